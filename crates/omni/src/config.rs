//! Server configuration: flags, environment and an optional YAML file.
//! Flags win over the file; the file wins over defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Parser;
use omni_resources::duration::parse_go_duration;
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    name = "omni",
    version,
    about = "omni server: resources, controllers and etcd backups"
)]
pub struct Flags {
    /// YAML config file with the same keys as the flags (e.g. `bind: 127.0.0.1:8099`).
    #[arg(long, env = "OMNI_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where state, the admin token and (by default) local backups live.
    #[arg(long, env = "OMNI_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the HTTP API.
    #[arg(long, env = "OMNI_BIND")]
    pub bind: Option<SocketAddr>,
    /// State backend: `embedded` (durable, under the data dir), `memory`,
    /// or `etcd` (shared by several replicas; see --state-etcd-*).
    #[arg(long)]
    pub state: Option<String>,
    #[command(flatten)]
    pub ha: crate::ha::HaFlags,
    /// Keep backups in S3, configured later by an EtcdBackupS3Configs resource.
    #[arg(long, conflicts_with = "etcd_backup_local_path")]
    pub etcd_backup_s3: bool,
    /// Keep backups in this directory (default: <data-dir>/backups).
    #[arg(long)]
    pub etcd_backup_local_path: Option<PathBuf>,
    /// Copy every backup of clusters that name no secondary store to the
    /// EtcdBackupStores resource of this name.
    #[arg(long)]
    pub etcd_backup_secondary_store: Option<String>,
    /// Shortest automatic backup interval accepted (Go duration).
    #[arg(long)]
    pub etcd_backup_min_interval: Option<String>,
    /// Longest automatic backup interval accepted (Go duration).
    #[arg(long)]
    pub etcd_backup_max_interval: Option<String>,
    /// Upper bound of the random delay added to each interval.
    #[arg(long)]
    pub etcd_backup_jitter: Option<String>,
    /// Longest time between two looks at the backup schedule.
    #[arg(long)]
    pub etcd_backup_tick: Option<String>,
    /// Most backups running at once.
    #[arg(long)]
    pub etcd_backup_max_concurrent: Option<usize>,
    /// Longest a single backup may take.
    #[arg(long)]
    pub etcd_backup_timeout: Option<String>,
    /// Default retention (clusters that set none): keep the N newest backups; 0 unsets.
    #[arg(long, value_name = "N")]
    pub etcd_backup_keep_last: Option<u32>,
    /// Default retention: keep the newest backup of each of the last N hours that have one.
    #[arg(long, value_name = "N")]
    pub etcd_backup_keep_hourly: Option<u32>,
    /// Default retention: keep the newest backup of each of the last N days (UTC).
    #[arg(long, value_name = "N")]
    pub etcd_backup_keep_daily: Option<u32>,
    /// Default retention: keep the newest backup of each of the last N ISO weeks.
    #[arg(long, value_name = "N")]
    pub etcd_backup_keep_weekly: Option<u32>,
    /// Default retention: keep the newest backup of each of the last N months.
    #[arg(long, value_name = "N")]
    pub etcd_backup_keep_monthly: Option<u32>,
    /// Longest time between two retention runs (they also run after each
    /// backup and on policy changes) [default: 1h].
    #[arg(long)]
    pub etcd_backup_retention_interval: Option<String>,
    /// Restore-drill every cluster's new backups, not only clusters with `restoredrill: true`.
    #[arg(long)]
    pub etcd_backup_restore_drill: bool,
    /// Longest a restore drill may take.
    #[arg(long)]
    pub etcd_backup_drill_timeout: Option<String>,
    /// Where restore drills make their temp dirs (default: <data-dir>/drills).
    #[arg(long)]
    pub etcd_backup_drill_dir: Option<PathBuf>,
    /// etcd binary for restore drills: a path, or a name on PATH [default: etcd].
    #[arg(long)]
    pub etcd_bin: Option<PathBuf>,
    /// etcdutl binary for restore drills: a path, or a name on PATH [default: etcdutl].
    #[arg(long)]
    pub etcdutl_bin: Option<PathBuf>,
    /// Shortest time between two probes of one machine's etcd member (Go
    /// duration) [default: 10s].
    #[arg(long)]
    pub machine_probe_interval: Option<String>,
    /// Probes per second across all machines; a fleet larger than
    /// interval × rate is probed less often than the interval (0: no limit)
    /// [default: 5].
    #[arg(long)]
    pub machine_probe_rate: Option<f64>,
    /// First delay before retrying a failed automatic backup (doubles per failure).
    #[arg(long)]
    pub etcd_backup_retry_backoff: Option<String>,
    /// How long shutdown waits for running backups and drills before
    /// aborting them (they are then marked interrupted) (Go duration).
    #[arg(long)]
    pub shutdown_timeout: Option<String>,
    /// Requests per second each API token may make.
    #[arg(long)]
    pub api_rate_limit: Option<f64>,
    /// Requests a token may burst above its rate.
    #[arg(long)]
    pub api_rate_burst: Option<f64>,
    /// Cap on backup bytes written to the store (S3 or local), in megabits
    /// per second, shared by all backups at once. Unlimited when unset.
    #[arg(long, value_name = "MBPS")]
    pub etcd_backup_upload_limit_mbps: Option<f64>,
    /// Cap on backup bytes read from the store (downloads, verifies,
    /// restores, drills), in megabits per second. Unlimited when unset.
    #[arg(long, value_name = "MBPS")]
    pub etcd_backup_download_limit_mbps: Option<f64>,
    /// Log format: `text` or `json`.
    #[arg(long)]
    pub log_format: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "OMNI_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "OMNI_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback --bind (tokens cross the network in clear).
    #[arg(long)]
    pub insecure_http: bool,
}

/// The config file; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub bind: Option<SocketAddr>,
    pub state: Option<String>,
    pub state_etcd_endpoints: Option<Vec<String>>,
    pub state_etcd_prefix: Option<String>,
    pub state_etcd_ca: Option<PathBuf>,
    pub state_etcd_cert: Option<PathBuf>,
    pub state_etcd_key: Option<PathBuf>,
    pub leader_lease_ttl: Option<String>,
    pub etcd_backup_s3: Option<bool>,
    pub etcd_backup_local_path: Option<PathBuf>,
    pub etcd_backup_secondary_store: Option<String>,
    pub etcd_backup_min_interval: Option<String>,
    pub etcd_backup_max_interval: Option<String>,
    pub etcd_backup_jitter: Option<String>,
    pub etcd_backup_tick: Option<String>,
    pub etcd_backup_max_concurrent: Option<usize>,
    pub etcd_backup_timeout: Option<String>,
    pub etcd_backup_keep_last: Option<u32>,
    pub etcd_backup_keep_hourly: Option<u32>,
    pub etcd_backup_keep_daily: Option<u32>,
    pub etcd_backup_keep_weekly: Option<u32>,
    pub etcd_backup_keep_monthly: Option<u32>,
    pub etcd_backup_retention_interval: Option<String>,
    pub etcd_backup_restore_drill: Option<bool>,
    pub etcd_backup_drill_timeout: Option<String>,
    pub etcd_backup_drill_dir: Option<PathBuf>,
    pub etcd_bin: Option<PathBuf>,
    pub etcdutl_bin: Option<PathBuf>,
    pub machine_probe_interval: Option<String>,
    pub machine_probe_rate: Option<f64>,
    pub api_rate_limit: Option<f64>,
    pub api_rate_burst: Option<f64>,
    pub etcd_backup_upload_limit_mbps: Option<f64>,
    pub etcd_backup_download_limit_mbps: Option<f64>,
    pub etcd_backup_retry_backoff: Option<String>,
    pub log_format: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub insecure_http: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateKind {
    Embedded,
    Memory,
    Etcd(crate::ha::EtcdState),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    S3,
    Local(PathBuf),
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    pub state: StateKind,
    pub store: Store,
    /// `--etcd-backup-secondary-store`.
    pub secondary_store: Option<String>,
    pub min_interval: Duration,
    pub max_interval: Duration,
    pub jitter: Duration,
    pub tick: Duration,
    pub max_concurrent: usize,
    pub timeout: Duration,
    pub retention: omni_controllers::retention::RetentionSettings,
    pub drill: omni_controllers::drill::DrillSettings,
    pub machine_probe_interval: Duration,
    pub machine_probe_rate: f64,
    pub rate_limit: f64,
    pub rate_burst: f64,
    /// Store write / read limits, bytes per second.
    pub upload_limit: Option<f64>,
    pub download_limit: Option<f64>,
    pub retry_backoff: Duration,
    pub json_logs: bool,
    pub shutdown_timeout: Duration,
    pub transport: crate::listener::Transport,
}

/// A `--*-limit-mbps` value as bytes per second.
fn transfer_limit(name: &str, mbps: Option<f64>) -> anyhow::Result<Option<f64>> {
    match mbps {
        None => Ok(None),
        Some(m) if m.is_finite() && m > 0.0 => Ok(Some(omni_backup::mbps_to_bytes_per_sec(m))),
        Some(m) => bail!("--{name} must be a positive number of megabits per second, not {m}"),
    }
}

fn duration(name: &str, value: Option<String>, default: &str) -> anyhow::Result<Duration> {
    let raw = value.unwrap_or_else(|| default.to_string());
    parse_go_duration(&raw).with_context(|| format!("--{name}"))
}

impl Config {
    pub fn resolve(flags: Flags) -> anyhow::Result<Config> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let ops = crate::config_ops::resolve(&flags, &file)?;
        let data_dir = flags
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("omni-data"));
        let ha_file = crate::ha::HaFile {
            endpoints: file.state_etcd_endpoints,
            prefix: file.state_etcd_prefix,
            ca: file.state_etcd_ca,
            cert: file.state_etcd_cert,
            key: file.state_etcd_key,
            lease_ttl: file.leader_lease_ttl,
        };
        let state = match flags.state.or(file.state).as_deref().unwrap_or("embedded") {
            "embedded" => StateKind::Embedded,
            "memory" => StateKind::Memory,
            "etcd" => StateKind::Etcd(crate::ha::EtcdState::resolve(&flags.ha, ha_file)?),
            other => bail!("--state: {other:?} is not one of embedded, memory, etcd"),
        };
        if !matches!(state, StateKind::Etcd(_)) {
            flags.ha.refuse_without_etcd()?;
        }
        let s3 = flags.etcd_backup_s3 || file.etcd_backup_s3.unwrap_or(false);
        let local = flags.etcd_backup_local_path.or(file.etcd_backup_local_path);
        let store = match (s3, local) {
            (true, Some(_)) => {
                bail!("--etcd-backup-s3 and --etcd-backup-local-path are mutually exclusive")
            }
            (true, None) => Store::S3,
            (false, Some(p)) => Store::Local(p),
            (false, None) => Store::Local(data_dir.join("backups")),
        };
        let secondary_store = flags
            .etcd_backup_secondary_store
            .or(file.etcd_backup_secondary_store)
            .filter(|s| !s.is_empty());
        if let Some(name) = &secondary_store {
            omni_resources::validate::validate_id(name)
                .with_context(|| format!("--etcd-backup-secondary-store {name:?}"))?;
            if name == omni_resources::specs::backup_store::DEFAULT_STORE {
                bail!("--etcd-backup-secondary-store: {name:?} is the primary store; name an EtcdBackupStores resource");
            }
        }
        let min_interval = duration(
            "etcd-backup-min-interval",
            flags
                .etcd_backup_min_interval
                .or(file.etcd_backup_min_interval),
            "1h",
        )?;
        let max_interval = duration(
            "etcd-backup-max-interval",
            flags
                .etcd_backup_max_interval
                .or(file.etcd_backup_max_interval),
            "24h",
        )?;
        if min_interval.is_zero() || max_interval < min_interval {
            bail!("--etcd-backup-min-interval must be positive and not above --etcd-backup-max-interval");
        }
        let tick = duration(
            "etcd-backup-tick",
            flags.etcd_backup_tick.or(file.etcd_backup_tick),
            "1m",
        )?;
        if tick.is_zero() {
            bail!("--etcd-backup-tick must be positive");
        }
        let max_concurrent = flags
            .etcd_backup_max_concurrent
            .or(file.etcd_backup_max_concurrent)
            .unwrap_or(5);
        if max_concurrent == 0 {
            bail!("--etcd-backup-max-concurrent must be at least 1");
        }
        let machine_probe_interval = duration(
            "machine-probe-interval",
            flags.machine_probe_interval.or(file.machine_probe_interval),
            "10s",
        )?;
        if machine_probe_interval.is_zero() {
            bail!("--machine-probe-interval must be positive");
        }
        let machine_probe_rate = flags
            .machine_probe_rate
            .or(file.machine_probe_rate)
            .unwrap_or(omni_controllers::machine_status::DEFAULT_PROBE_RATE);
        if !machine_probe_rate.is_finite() || machine_probe_rate < 0.0 {
            bail!("--machine-probe-rate must be a number of probes per second, 0 or more (0: no limit), not {machine_probe_rate}");
        }
        let rate_limit = flags.api_rate_limit.or(file.api_rate_limit).unwrap_or(50.0);
        let rate_burst = flags
            .api_rate_burst
            .or(file.api_rate_burst)
            .unwrap_or(200.0);
        let rate_ok = rate_limit.is_finite()
            && rate_limit > 0.0
            && rate_burst.is_finite()
            && rate_burst >= 1.0;
        if !rate_ok {
            bail!("--api-rate-limit must be positive and --api-rate-burst at least 1");
        }
        let json_logs = match flags
            .log_format
            .or(file.log_format)
            .as_deref()
            .unwrap_or("text")
        {
            "text" => false,
            "json" => true,
            other => bail!("--log-format: {other:?} is not one of text, json"),
        };
        let bind = flags
            .bind
            .or(file.bind)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8099)));
        let transport = crate::listener::Transport::resolve(
            flags.tls_cert.or(file.tls_cert),
            flags.tls_key.or(file.tls_key),
            flags.insecure_http || file.insecure_http.unwrap_or(false),
            bind,
        )?;
        Ok(Config {
            bind,
            transport,
            state,
            store,
            secondary_store,
            min_interval,
            max_interval,
            jitter: duration(
                "etcd-backup-jitter",
                flags.etcd_backup_jitter.or(file.etcd_backup_jitter),
                "10m",
            )?,
            tick,
            max_concurrent,
            timeout: duration(
                "etcd-backup-timeout",
                flags.etcd_backup_timeout.or(file.etcd_backup_timeout),
                "30m",
            )?,
            retention: ops.retention.clone(),
            drill: ops.drill(&data_dir, tick),
            machine_probe_interval,
            machine_probe_rate,
            rate_limit,
            rate_burst,
            upload_limit: transfer_limit(
                "etcd-backup-upload-limit-mbps",
                flags
                    .etcd_backup_upload_limit_mbps
                    .or(file.etcd_backup_upload_limit_mbps),
            )?,
            download_limit: transfer_limit(
                "etcd-backup-download-limit-mbps",
                flags
                    .etcd_backup_download_limit_mbps
                    .or(file.etcd_backup_download_limit_mbps),
            )?,
            retry_backoff: duration(
                "etcd-backup-retry-backoff",
                flags
                    .etcd_backup_retry_backoff
                    .or(file.etcd_backup_retry_backoff),
                "30s",
            )?,
            json_logs,
            shutdown_timeout: duration(
                "shutdown-timeout",
                flags.shutdown_timeout.or(file.shutdown_timeout),
                "30s",
            )?,
            data_dir,
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    serde_yaml_ng::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        Flags::parse_from(std::iter::once("omni").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_embedded_state_and_a_local_store_under_the_data_dir() {
        let c = Config::resolve(flags(&[])).unwrap();
        assert_eq!(c.state, StateKind::Embedded);
        assert_eq!(c.store, Store::Local(PathBuf::from("omni-data/backups")));
        assert_eq!(c.min_interval, Duration::from_secs(3600));
        assert_eq!(c.max_concurrent, 5);
        assert_eq!(c.machine_probe_interval, Duration::from_secs(10));
        let c = Config::resolve(flags(&["--machine-probe-interval", "500ms"])).unwrap();
        assert_eq!(c.machine_probe_interval, Duration::from_millis(500));
        assert!(Config::resolve(flags(&["--machine-probe-interval", "0s"])).is_err());
        assert_eq!(c.machine_probe_rate, 5.0);
        let err = Config::resolve(flags(&["--machine-probe-rate=-1"])).unwrap_err();
        assert!(err.to_string().contains("--machine-probe-rate"), "{err}");
    }

    #[test]
    fn flags_override_the_file_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("omni.yaml");
        std::fs::write(&path, "bind: 127.0.0.1:9999\netcd-backup-s3: true\n").unwrap();
        let c = Config::resolve(flags(&[
            "--config",
            path.to_str().unwrap(),
            "--bind",
            "127.0.0.1:1234",
        ]))
        .unwrap();
        assert_eq!(c.bind.port(), 1234);
        assert_eq!(c.store, Store::S3);
        let err = Config::resolve(flags(&["--etcd-backup-min-interval", "soon"])).unwrap_err();
        assert!(
            format!("{err:#}").contains("etcd-backup-min-interval"),
            "{err:#}"
        );
        std::fs::write(&path, "bnd: x\n").unwrap();
        let err = Config::resolve(flags(&["--config", path.to_str().unwrap()])).unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
    }
}
