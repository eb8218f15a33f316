//! One restore drill: download the backup (decrypt, decompress, verify the
//! SHA-256 trailer), `etcdutl snapshot restore` it into a temp dir, start a
//! single-member etcd on free loopback ports, wait until it is healthy (a
//! leader, a linearizable read), and read its key count, revision and db
//! size. Everything it starts is owned by a [`Workspace`] guard.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};
use omni_backup::{BackupStore, Identity};

use super::guard::{find_program, free_port, EtcdProcess, Workspace};

/// Attempts with fresh ports when etcd finds a port taken meanwhile.
const START_ATTEMPTS: usize = 3;
const MEMBER: &str = "drill";

/// How to run drills.
#[derive(Debug, Clone)]
pub struct DrillSettings {
    /// `etcd` binary: a path, or a name looked up on `PATH`.
    pub etcd_bin: PathBuf,
    /// `etcdutl` binary: a path, or a name looked up on `PATH`.
    pub etcdutl_bin: PathBuf,
    /// Where drill temp dirs (`omni-drill-*`) are made.
    pub work_dir: PathBuf,
    /// Longest a drill may take, download included.
    pub timeout: Duration,
    /// Drill every cluster, whatever its `restoredrill` says.
    pub all_clusters: bool,
    /// Longest time between two looks for new backups.
    pub tick: Duration,
}

/// What the restored etcd holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrillReport {
    pub keys: u64,
    pub revision: i64,
    pub db_size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("{what} binary {given:?} not found (as a path or on PATH); set {flag}")]
    BinaryNotFound {
        what: &'static str,
        given: PathBuf,
        flag: &'static str,
    },
    #[error("preparing the drill dir: {0}")]
    Workspace(std::io::Error),
    #[error("download: {0}")]
    Download(omni_backup::Error),
    #[error("etcdutl snapshot restore failed ({status}): {stderr}")]
    Restore { status: String, stderr: String },
    #[error("starting etcd: {0}")]
    Spawn(std::io::Error),
    #[error("etcd exited ({status}) before it was healthy: {log_tail}")]
    Exited { status: String, log_tail: String },
    #[error("reading the restored etcd: {0}")]
    Check(String),
    /// Replaying the backup's delta chain failed (a segment is named).
    #[error("delta chain: {0}")]
    Chain(String),
    #[error("drill timed out after {0}")]
    Timeout(String),
}

fn resolve(given: &Path, what: &'static str, flag: &'static str) -> Result<PathBuf, DrillError> {
    find_program(given).ok_or_else(|| DrillError::BinaryNotFound {
        what,
        given: given.to_path_buf(),
        flag,
    })
}

/// Runs one drill of backup `key`. Bound it with a timeout: dropping the
/// future cleans up like returning does.
pub async fn drill(
    store: &BackupStore,
    key: &str,
    identity: &Identity,
    settings: &DrillSettings,
) -> Result<DrillReport, DrillError> {
    let (_ws, mut client) = start_restored(store, key, identity, settings).await?;
    measure(&mut client).await
}

/// Backup `key` restored into a single-member etcd on loopback, healthy;
/// the workspace owns the process and its files (dropping it ends both).
pub(crate) async fn start_restored(
    store: &BackupStore,
    key: &str,
    identity: &Identity,
    settings: &DrillSettings,
) -> Result<(Workspace, Client), DrillError> {
    let etcd = resolve(&settings.etcd_bin, "etcd", "--etcd-bin")?;
    let etcdutl = resolve(&settings.etcdutl_bin, "etcdutl", "--etcdutl-bin")?;
    let mut ws = Workspace::create(&settings.work_dir).map_err(DrillError::Workspace)?;
    let snapshot = ws.path().join("snapshot.db");
    omni_backup::download_to_file(store, key, identity, &snapshot)
        .await
        .map_err(DrillError::Download)?;
    let mut last = None;
    for attempt in 0..START_ATTEMPTS {
        let port = || free_port().map_err(DrillError::Workspace);
        let peer = format!("http://127.0.0.1:{}", port()?);
        let client = format!("http://127.0.0.1:{}", port()?);
        let data = ws.path().join(format!("data-{attempt}"));
        restore(&etcdutl, &snapshot, &data, &peer).await?;
        let mut cmd = Command::new(&etcd);
        cmd.arg(format!("--name={MEMBER}"))
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={MEMBER}={peer}"))
            .arg("--log-level=warn");
        let log = ws.path().join(format!("etcd-{attempt}.log"));
        ws.set_etcd(EtcdProcess::spawn(cmd, &log).map_err(DrillError::Spawn)?);
        match wait_healthy(&mut ws, &client).await {
            Ok(c) => return Ok((ws, c)),
            Err(e @ DrillError::Exited { .. })
                if e.to_string().contains("address already in use") =>
            {
                ws.stop_etcd();
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| DrillError::Check("etcd never started".into())))
}

async fn restore(
    etcdutl: &Path,
    snapshot: &Path,
    data: &Path,
    peer: &str,
) -> Result<(), DrillError> {
    let out = tokio::process::Command::new(etcdutl)
        .args(["snapshot", "restore"])
        .arg(snapshot)
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--name={MEMBER}"))
        .arg(format!("--initial-cluster={MEMBER}={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(DrillError::Spawn)?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String = stderr
        .trim()
        .lines()
        .rev()
        .take(5)
        .collect::<Vec<_>>()
        .join(" | ");
    Err(DrillError::Restore {
        status: out.status.to_string(),
        stderr: tail,
    })
}

/// Waits until the member has a leader; fails as soon as it exits.
async fn wait_healthy(ws: &mut Workspace, url: &str) -> Result<Client, DrillError> {
    loop {
        if let Some(p) = ws.etcd_mut() {
            if let Some(status) = p.exited() {
                return Err(DrillError::Exited {
                    status,
                    log_tail: p.log_tail(),
                });
            }
        }
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2));
        let probe = async {
            let mut c = Client::connect([url], Some(opts)).await.ok()?;
            let st = c.status().await.ok()?;
            (st.leader() != 0).then_some(c)
        };
        if let Ok(Some(c)) = tokio::time::timeout(Duration::from_secs(3), probe).await {
            return Ok(c);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn measure(c: &mut Client) -> Result<DrillReport, DrillError> {
    let check = |e: etcd_client::Error| DrillError::Check(e.to_string());
    // A linearizable read: the member serves, not just listens.
    let resp = c
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_count_only()),
        )
        .await
        .map_err(check)?;
    let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
    let status = c.status().await.map_err(check)?;
    Ok(DrillReport {
        keys: u64::try_from(resp.count()).unwrap_or(0),
        revision,
        db_size: u64::try_from(status.db_size()).unwrap_or(0),
    })
}
