use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Paths of the etcd binaries used by the tests.
#[derive(Debug, Clone)]
pub struct EtcdBins {
    /// The `etcd` server.
    pub etcd: PathBuf,
    /// The `etcdctl` client.
    pub etcdctl: PathBuf,
    /// The `etcdutl` offline tool (snapshot status / restore).
    pub etcdutl: PathBuf,
}

/// Locates etcd, etcdctl and etcdutl.
///
/// # Errors
/// [`Error::BinaryNotFound`] naming the first missing one.
pub fn etcd_bins() -> Result<EtcdBins> {
    Ok(EtcdBins {
        etcd: find("etcd", "OMNI_TEST_ETCD_BIN", "etcd/usr/bin/etcd")?,
        etcdctl: find("etcdctl", "OMNI_TEST_ETCDCTL_BIN", "etcd/usr/bin/etcdctl")?,
        etcdutl: find("etcdutl", "OMNI_TEST_ETCDUTL_BIN", "etcd/usr/bin/etcdutl")?,
    })
}

/// Locates the `s3s-fs` binary.
///
/// # Errors
/// [`Error::BinaryNotFound`].
pub fn s3s_bin() -> Result<PathBuf> {
    find("s3s-fs", "OMNI_TEST_S3S_BIN", "s3s-fs/bin/s3s-fs")
}

fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("OMNI_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| Path::new(&home).join(".cache/omni-rs"))
}

fn find(name: &'static str, env: &'static str, cached: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
    }
    if let Some(p) = cache_dir().map(|c| c.join(cached)).filter(|p| p.is_file()) {
        return Ok(p);
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .ok_or(Error::BinaryNotFound { name, env })
}

impl EtcdBins {
    /// `etcdutl snapshot status <file> -w json`: fails unless the file is a valid
    /// snapshot (bolt db whose SHA-256 trailer, when present, matches).
    ///
    /// # Errors
    /// [`Error::Command`] with etcdutl's stderr.
    pub fn snapshot_status(&self, snapshot: &Path) -> Result<String> {
        let mut cmd = std::process::Command::new(&self.etcdutl);
        cmd.args(["snapshot", "status", "-w", "json"]).arg(snapshot);
        crate::process::run(cmd)
    }

    /// `etcdutl snapshot restore` into `data_dir` as the single member `name`
    /// advertising `peer_url`. The trailer hash is checked by etcdutl.
    ///
    /// # Errors
    /// [`Error::Command`] with etcdutl's stderr.
    pub fn snapshot_restore(
        &self,
        snapshot: &Path,
        data_dir: &Path,
        name: &str,
        peer_url: &str,
    ) -> Result<()> {
        let mut cmd = std::process::Command::new(&self.etcdutl);
        cmd.args(["snapshot", "restore"])
            .arg(snapshot)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--name", name])
            .arg(format!("--initial-cluster={name}={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"));
        crate::process::run(cmd).map(drop)
    }

    /// `etcdctl --endpoints <endpoint> snapshot save <out>`.
    ///
    /// # Errors
    /// [`Error::Command`] with etcdctl's stderr.
    pub fn snapshot_save(&self, endpoint: &str, out: &Path) -> Result<()> {
        let mut cmd = std::process::Command::new(&self.etcdctl);
        cmd.arg(format!("--endpoints={endpoint}"))
            .args(["snapshot", "save"])
            .arg(out);
        crate::process::run(cmd).map(drop)
    }
}
