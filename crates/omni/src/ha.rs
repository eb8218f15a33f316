//! High availability: state on an external etcd, shared by several
//! replicas. Every replica serves the API; the one holding the etcd lease
//! runs the controllers, whose writes are fenced on its term. With the
//! embedded state there is one replica and it always leads.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use omni_resources::duration::parse_go_duration;
use omni_runtime::Runtime;
use omni_state::{EtcdBackend, EtcdOptions, EtcdTls, RedbBackend, State};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, StateKind};

/// Flags of `--state etcd`.
#[derive(Debug, Default, Args)]
pub struct HaFlags {
    /// Client URLs of the state etcd (comma-separated); not the etcd of a backed-up cluster.
    #[arg(long, value_delimiter = ',')]
    pub state_etcd_endpoints: Vec<String>,
    /// Key prefix of this omni's state in the state etcd [default: /omni].
    #[arg(long)]
    pub state_etcd_prefix: Option<String>,
    /// CA bundle (PEM) to verify the state etcd.
    #[arg(long)]
    pub state_etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for the state etcd.
    #[arg(long, requires = "state_etcd_key")]
    pub state_etcd_cert: Option<PathBuf>,
    /// Client key (PEM) for the state etcd.
    #[arg(long, requires = "state_etcd_cert")]
    pub state_etcd_key: Option<PathBuf>,
    /// Leader lease TTL (Go duration, whole seconds): a dead leader is replaced within about this long [default: 15s].
    #[arg(long)]
    pub leader_lease_ttl: Option<String>,
}

/// The same settings from the config file.
#[derive(Debug, Default)]
pub struct HaFile {
    pub endpoints: Option<Vec<String>>,
    pub prefix: Option<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub lease_ttl: Option<String>,
}

/// Resolved `--state etcd` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdState {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub lease_ttl: Duration,
}

impl HaFlags {
    pub fn refuse_without_etcd(&self) -> anyhow::Result<()> {
        let set = !self.state_etcd_endpoints.is_empty()
            || self.state_etcd_prefix.is_some()
            || self.state_etcd_ca.is_some()
            || self.state_etcd_cert.is_some()
            || self.leader_lease_ttl.is_some();
        if set {
            bail!("--state-etcd-* and --leader-lease-ttl need --state etcd");
        }
        Ok(())
    }
}

impl EtcdState {
    pub fn resolve(flags: &HaFlags, file: HaFile) -> anyhow::Result<EtcdState> {
        let endpoints = if flags.state_etcd_endpoints.is_empty() {
            file.endpoints.unwrap_or_default()
        } else {
            flags.state_etcd_endpoints.clone()
        };
        if endpoints.is_empty() {
            bail!("--state etcd needs --state-etcd-endpoints (the client URLs of the state etcd)");
        }
        let prefix = flags
            .state_etcd_prefix
            .clone()
            .or(file.prefix)
            .unwrap_or_else(|| "/omni".into());
        if prefix.is_empty() || prefix.contains('\0') {
            bail!("--state-etcd-prefix: must be a non-empty key prefix, e.g. /omni");
        }
        let raw = flags
            .leader_lease_ttl
            .clone()
            .or(file.lease_ttl)
            .unwrap_or_else(|| "15s".into());
        let lease_ttl = parse_go_duration(&raw).context("--leader-lease-ttl")?;
        if lease_ttl < Duration::from_secs(2) || lease_ttl.subsec_nanos() != 0 {
            bail!("--leader-lease-ttl: must be whole seconds and at least 2s, actual {raw}");
        }
        let cert = flags.state_etcd_cert.clone().or(file.cert);
        let key = flags.state_etcd_key.clone().or(file.key);
        if cert.is_some() != key.is_some() {
            bail!("--state-etcd-cert and --state-etcd-key go together");
        }
        Ok(EtcdState {
            endpoints,
            prefix,
            ca: flags.state_etcd_ca.clone().or(file.ca),
            cert,
            key,
            lease_ttl,
        })
    }

    fn options(&self) -> anyhow::Result<EtcdOptions> {
        let read = |p: &Option<PathBuf>, what: &str| -> anyhow::Result<Option<Vec<u8>>> {
            p.as_ref()
                .map(|p| {
                    std::fs::read(p).with_context(|| format!("{what}: reading {}", p.display()))
                })
                .transpose()
        };
        let tls = EtcdTls {
            ca_pem: read(&self.ca, "--state-etcd-ca")?,
            cert_pem: read(&self.cert, "--state-etcd-cert")?,
            key_pem: read(&self.key, "--state-etcd-key")?,
        };
        let mut opts = EtcdOptions::new(self.endpoints.clone(), self.prefix.clone());
        let any_tls = tls.ca_pem.is_some() || tls.cert_pem.is_some();
        if any_tls || self.endpoints.iter().any(|e| e.starts_with("https://")) {
            opts.tls = Some(tls);
        }
        Ok(opts)
    }
}

/// The opened state, and the etcd backend when replicas share it.
pub struct Opened {
    pub state: State,
    etcd: Option<(Arc<EtcdBackend>, Duration)>,
}

impl Opened {
    /// The etcd state backend, when the state lives in etcd.
    pub fn etcd(&self) -> Option<Arc<EtcdBackend>> {
        self.etcd.as_ref().map(|(b, _)| b.clone())
    }
}

pub async fn open_state(config: &Config) -> anyhow::Result<Opened> {
    Ok(match &config.state {
        StateKind::Embedded => {
            let path = config.data_dir.join("state.redb");
            let backend = RedbBackend::open(&path)
                .with_context(|| format!("opening state {}", path.display()))?;
            Opened {
                state: State::new(backend),
                etcd: None,
            }
        }
        StateKind::Memory => Opened {
            state: State::memory(),
            etcd: None,
        },
        StateKind::Etcd(etcd) => {
            let backend = EtcdBackend::connect(etcd.options()?)
                .await
                .with_context(|| {
                    format!(
                        "connecting to the state etcd at {}",
                        etcd.endpoints.join(",")
                    )
                })?;
            let backend = Arc::new(backend);
            Opened {
                state: State::shared(backend.clone()),
                etcd: Some((backend, etcd.lease_ttl)),
            }
        }
    })
}

/// Runs the controllers while this replica leads, until `cancel`: each
/// leadership term gets fresh controllers, writing through a handle fenced
/// on the term, stopped when the term ends.
pub async fn run_controllers(
    opened: &Opened,
    id: String,
    cancel: CancellationToken,
    build: impl Fn(State) -> anyhow::Result<Runtime>,
) -> anyhow::Result<()> {
    let Some((etcd, ttl)) = &opened.etcd else {
        build(opened.state.clone())?.run(cancel).await;
        return Ok(());
    };
    loop {
        tracing::info!(id, "campaigning for leadership");
        let Some(term) = etcd.campaign(&id, *ttl, &cancel).await else {
            return Ok(());
        };
        // Controllers read from this replica's view (see `ViewReads`); if
        // the store cannot say where it is now, they read etcd itself.
        let reads = match etcd.view_reads().await {
            Ok(view) => State::shared(Arc::new(view)),
            Err(e) => {
                tracing::warn!(id, error = %e, "controllers read etcd directly this term");
                opened.state.clone()
            }
        };
        let runtime = build(reads.fenced(term.fence()))?;
        let term_cancel = cancel.child_token();
        let lost = term.lost();
        let run = runtime.run(term_cancel.clone());
        tokio::pin!(run);
        tokio::select! {
            _ = &mut run => {}
            _ = lost.cancelled() => {
                term_cancel.cancel();
                run.await;
            }
        }
        if cancel.is_cancelled() {
            term.resign().await;
            return Ok(());
        }
        tracing::warn!(id, "leadership term ended; controllers stopped");
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use crate::config::{Config, Flags, StateKind};

    fn resolve(args: &[&str]) -> anyhow::Result<Config> {
        Config::resolve(Flags::parse_from(
            std::iter::once("omni").chain(args.iter().copied()),
        ))
    }

    #[test]
    fn etcd_state_flags_resolve_with_defaults() {
        let c = resolve(&[
            "--state",
            "etcd",
            "--state-etcd-endpoints",
            "http://127.0.0.1:1,http://127.0.0.1:2",
        ])
        .unwrap();
        let StateKind::Etcd(e) = c.state else {
            panic!("not etcd: {:?}", c.state)
        };
        assert_eq!(e.endpoints.len(), 2);
        assert_eq!(e.prefix, "/omni");
        assert_eq!(e.lease_ttl.as_secs(), 15);
    }

    #[test]
    fn bad_etcd_state_flags_are_named() {
        let cases: [(&[&str], &str); 4] = [
            (&["--state", "etcd"], "--state-etcd-endpoints"),
            (
                &["--state-etcd-endpoints", "http://127.0.0.1:1"],
                "need --state etcd",
            ),
            (
                &[
                    "--state",
                    "etcd",
                    "--state-etcd-endpoints",
                    "http://x:1",
                    "--leader-lease-ttl",
                    "1500ms",
                ],
                "--leader-lease-ttl",
            ),
            (
                &[
                    "--state",
                    "etcd",
                    "--state-etcd-endpoints",
                    "http://x:1",
                    "--state-etcd-prefix",
                    "",
                ],
                "--state-etcd-prefix",
            ),
        ];
        for (args, want) in cases {
            let err = format!("{:#}", resolve(args).unwrap_err());
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }
}
