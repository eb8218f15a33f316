//! One module per command; `run` dispatches.

mod apply;
mod cluster_template;
mod completion;
mod config;
mod delete;
mod etcd_backup;
mod get;
mod token;

use std::io::Write;

use anyhow::Context as _;
use omni_client::{Client, TlsOptions};

use crate::args::{Cli, ClusterCommand, Command, GlobalArgs};
use crate::config::{process_env, ConfigLocation, Settings};

/// What every command may need: the global flags and where the config is.
pub struct Context {
    pub global: GlobalArgs,
    pub location: ConfigLocation,
}

impl Context {
    pub fn new(global: GlobalArgs) -> Self {
        let location = ConfigLocation::resolve(&global, &process_env);
        Context { global, location }
    }

    /// A client for the resolved endpoint, token and TLS trust.
    pub fn client(&self) -> anyhow::Result<Client> {
        let file = self.location.load()?;
        let base = self.location.path.as_deref().and_then(|p| p.parent());
        let settings = Settings::resolve(&self.global, &process_env, &file, base)?;
        let ca_cert_pem = match &settings.ca_cert {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("cannot read CA certificate {}", path.display()))?,
            ),
            None => None,
        };
        let tls = TlsOptions {
            ca_cert_pem,
            insecure_skip_verify: settings.insecure_skip_tls_verify,
        };
        Client::with_tls(&settings.endpoint, settings.token, &tls)
            .context("cannot set up the API client")
    }
}

/// Runs a parsed command line, writing results to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    let ctx = Context::new(cli.global);
    match cli.command {
        Command::Get(args) => get::run(&ctx, &args, out).await,
        Command::Apply(args) => apply::run(&ctx, &args, out).await,
        Command::Delete(args) => delete::run(&ctx, &args, out).await,
        Command::Token(cmd) => token::run(&ctx, cmd, out).await,
        Command::Config(cmd) => config::run(&ctx, cmd, out),
        Command::EtcdBackup(cmd) => etcd_backup::run(&ctx, cmd, out).await,
        Command::Cluster(ClusterCommand::Template(args)) => {
            cluster_template::run(&ctx, &args, out).await
        }
        Command::Completion { shell } => completion::completion(shell, out),
        Command::Man { dir } => completion::man(&dir, out),
    }
}

/// A note for the user on stderr; failures to write it are ignored.
pub fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}
