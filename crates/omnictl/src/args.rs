//! Command-line arguments, parsed into plain structs. Nothing here does I/O;
//! `config::Settings` resolves the global flags against env and the file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "omnictl",
    version,
    about = "Command-line client for omni",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts. Each overrides its environment variable,
/// which overrides the config file.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// omni API endpoint [env: OMNICTL_ENDPOINT] [default: http://127.0.0.1:8099]
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint: Option<String>,
    /// API token [env: OMNICTL_TOKEN]
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Config file [env: OMNICTL_CONFIG] [default: $XDG_CONFIG_HOME/omnictl/config.yaml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Context of the config file to use [env: OMNICTL_CONTEXT]
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// PEM CA certificate to trust for an https:// endpoint [env: OMNICTL_CA_CERT]
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Do not verify the server's certificate (insecure) [env: OMNICTL_INSECURE_SKIP_TLS_VERIFY]
    #[arg(long, global = true)]
    pub insecure_skip_tls_verify: bool,
}

/// The subcommands; each has its module under `commands/`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List resources of a type, or get one by id
    Get(GetArgs),
    /// Create or update resources from multi-document YAML files or directories
    Apply(ApplyArgs),
    /// Delete resources by id, selector or --all, and wait until they are gone
    Delete(DeleteArgs),
    /// Manage API tokens (admins only)
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show or change the omnictl config file
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Download, verify, restore and prune etcd backups; export their keys
    #[command(subcommand, name = "etcd-backup")]
    EtcdBackup(EtcdBackupCommand),
    /// Manage clusters
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Print a shell completion script, e.g. `source <(omnictl completion bash)`
    Completion {
        /// Shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (omnictl.1 and one per subcommand) into a directory
    Man {
        /// Output directory (created when missing)
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Yaml,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// Resource type: full name (EtcdBackups.omni.sidero.dev) or alias (etcdbackup)
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// Resource id; all resources of the type when omitted
    pub id: Option<String>,
    /// Namespace [default: the type's namespace]
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Output format
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
    /// Label selector, e.g. omni.sidero.dev/cluster=talos-default
    #[arg(short = 'l', long, value_name = "k=v,...")]
    pub selector: Option<String>,
    /// Keep printing changes until interrupted
    #[arg(short, long)]
    pub watch: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// YAML file(s) with one or more resources, or directories (their
    /// *.yaml, *.yml, *.json, recursively, in name order); '-' for stdin.
    /// Repeat -f or list several after it.
    #[arg(short, long = "file", value_name = "FILE", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Parse and check the documents without sending them
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// Resource type: full name or alias
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// Resource ids (all must exist)
    #[arg(value_name = "ID", required_unless_present_any = ["all", "selector"])]
    pub ids: Vec<String>,
    /// Delete every resource of the type
    #[arg(long, conflicts_with_all = ["ids", "selector"])]
    pub all: bool,
    /// Delete the resources matching a label selector, e.g. omni.sidero.dev/cluster=c1
    #[arg(short = 'l', long, value_name = "k=v,...", conflicts_with = "ids")]
    pub selector: Option<String>,
    /// Namespace [default: the type's namespace]
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Wait until the resources are gone, finalizers and all (--wait=false to return at once)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub wait: bool,
    /// How long to wait, as a Go duration
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub timeout: String,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (shown only once)
    Create {
        /// reader, operator or admin
        #[arg(long)]
        role: String,
        /// What the token is for
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Revoke a token by id
    Revoke {
        /// Token id (see `omnictl token list`)
        id: String,
    },
    /// List tokens
    List {
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Write --endpoint, --token, --ca-cert, --insecure-skip-tls-verify into the
    /// config file, in the current context if any (an empty value removes it)
    Set,
    /// Print the config file, tokens redacted
    Show,
    /// List the contexts; the current one is marked with *
    Contexts,
    /// Make a context the current one
    UseContext {
        /// Context name
        name: String,
    },
    /// Add or replace a context from --endpoint, --token, --ca-cert, --insecure-skip-tls-verify
    AddContext {
        /// Context name
        name: String,
        /// Also make it the current context
        #[arg(long = "use")]
        use_it: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_after_subcommand() {
        let cli = Cli::try_parse_from([
            "omnictl",
            "config",
            "set",
            "--endpoint",
            "http://x:1",
            "--token",
            "t",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Config(ConfigCommand::Set)));
        assert_eq!(cli.global.endpoint.as_deref(), Some("http://x:1"));
        assert_eq!(cli.global.token.as_deref(), Some("t"));
    }

    #[test]
    fn get_flags() {
        let cli = Cli::try_parse_from([
            "omnictl",
            "get",
            "etcdbackup",
            "--selector",
            "omni.sidero.dev/cluster=talos-default",
            "-o",
            "yaml",
        ])
        .unwrap();
        let Command::Get(get) = cli.command else {
            panic!("not get")
        };
        assert_eq!(get.kind, "etcdbackup");
        assert_eq!(get.output, OutputFormat::Yaml);
        assert_eq!(
            get.selector.as_deref(),
            Some("omni.sidero.dev/cluster=talos-default")
        );
    }
}

#[derive(Debug, Subcommand)]
pub enum EtcdBackupCommand {
    /// Download a backup as a snapshot file that `etcdutl snapshot restore` accepts
    Download(DownloadArgs),
    /// Check a backup end to end on the server (decrypt, decompress, digest)
    Verify(VerifyArgs),
    /// Write a cluster's backup key (age identity) to a file (admins only)
    ExportKey(ExportKeyArgs),
    /// Download, verify and `etcdutl snapshot restore` a backup into a new etcd data dir
    Restore(RestoreArgs),
    /// Show which backups a retention policy would delete (dry run)
    Retention(RetentionArgs),
    /// Show what a cluster can be restored to: its delta chains, newest restorable point and recovery point (continuous backup)
    Points(PointsArgs),
}

#[derive(Debug, Args)]
pub struct PointsArgs {
    /// Cluster name
    #[arg(long)]
    pub cluster: String,
    /// Print the server's answer as JSON instead of a table
    #[arg(short, long, value_parser = ["table", "json"], default_value = "table")]
    pub output: String,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Cluster name
    #[arg(long)]
    pub cluster: String,
    /// Backup id (talos-default-1702166400) or snapshot name; restore every member from the same one
    #[arg(long, conflicts_with = "latest")]
    pub snapshot: Option<String>,
    /// The newest backup (one of --snapshot, --latest, --to-revision or --to-time is required)
    #[arg(long)]
    pub latest: bool,
    /// Restore to this etcd revision: the newest full backup before it plus its delta chain, replayed on the server (continuous backup)
    #[arg(long, value_name = "N", conflicts_with_all = ["snapshot", "latest", "to_time"])]
    pub to_revision: Option<i64>,
    /// Restore to the cluster as it was at this time (RFC 3339, e.g. 2026-11-30T14:02:00Z; continuous backup)
    #[arg(long, value_name = "TIME", conflicts_with_all = ["snapshot", "latest"])]
    pub to_time: Option<String>,
    /// The member's new data dir (must not exist or be empty)
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The member's name
    #[arg(long)]
    pub name: String,
    /// All members, e.g. m0=https://10.0.0.1:2380,m1=https://10.0.0.2:2380 (the same on every member)
    #[arg(long, value_name = "NAME=URL,...")]
    pub initial_cluster: String,
    /// This member's peer URL(s), as in --initial-cluster
    #[arg(long, value_name = "URL")]
    pub initial_advertise_peer_urls: String,
    /// Cluster token (the same on every member) [default: etcdutl's]
    #[arg(long)]
    pub initial_cluster_token: Option<String>,
    /// etcdutl binary: a path, or a name on PATH [default: etcdutl]
    #[arg(long, value_name = "PATH")]
    pub etcdutl: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// Cluster name
    #[arg(long)]
    pub cluster: String,
    /// Keep the N newest backups [default: the cluster's or the server's policy]
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours that have one
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the last N days (UTC)
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// Cluster name
    #[arg(long)]
    pub cluster: String,
    /// Backup id (talos-default-1702166400) or snapshot name
    #[arg(long, conflicts_with = "latest")]
    pub snapshot: Option<String>,
    /// The newest backup (the default)
    #[arg(long)]
    pub latest: bool,
    /// Download the stored object as is (age-encrypted zstd; admins only)
    #[arg(long)]
    pub encrypted: bool,
    /// The cluster at this etcd revision (full backup plus replayed delta chain; continuous backup)
    #[arg(long, value_name = "N", conflicts_with_all = ["snapshot", "latest", "encrypted", "to_time"])]
    pub to_revision: Option<i64>,
    /// The cluster as it was at this time (RFC 3339, e.g. 2026-11-30T14:02:00Z; continuous backup)
    #[arg(long, value_name = "TIME", conflicts_with_all = ["snapshot", "latest", "encrypted"])]
    pub to_time: Option<String>,
    /// Output file
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExportKeyArgs {
    /// Cluster name
    #[arg(long)]
    pub cluster: String,
    /// Output file (written with mode 0600)
    #[arg(short, long)]
    pub output: PathBuf,
    /// Overwrite the output file if it exists
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Cluster templates: validate, diff, sync, status, delete
    Template(TemplateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TemplateArgs {
    /// Cluster template file ('-' for stdin); before or after the subcommand
    #[arg(short, long, global = true, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: TemplateCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TemplateCommand {
    /// Check the template: every problem, with its document and field (offline; machines are checked when omni is reachable)
    Validate {
        /// Require the machine checks against the server (fail when omni cannot be reached)
        #[arg(long)]
        online: bool,
    },
    /// Show what a sync would change, as a unified diff per resource
    Diff,
    /// Create, update and delete resources so the cluster matches the template
    Sync {
        /// Also print the diff of every change
        #[arg(short, long)]
        verbose: bool,
        /// Print what would be done, change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the cluster, its machine sets and its machines' statuses
    Status,
    /// Delete the cluster; its machine sets and nodes are torn down with it
    Delete,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Cluster name
    #[arg(long)]
    pub cluster: String,
    /// Backup id or snapshot name [default: the newest]
    #[arg(long, conflicts_with = "latest")]
    pub snapshot: Option<String>,
    /// The newest backup (the default)
    #[arg(long)]
    pub latest: bool,
}
