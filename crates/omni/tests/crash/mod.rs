//! Helpers of the crash test: the two stores as seen from the disk, and the
//! cluster's backup status as seen through a watch.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use omni_client::WatchEvent;
use omni_testkit::S3Server;
use serde_json::Value;

use crate::common::Omni;

pub const CLUSTER: &str = "talos-default";
pub const STATUSES: &str = "EtcdBackupStatuses.omni.sidero.dev";
pub const UPLOADS: &str = "EtcdBackupUploads.omni.sidero.dev";
/// Longest wait for one step of a round.
pub const STEP: Duration = Duration::from_secs(45);

pub enum Store {
    Local(tempfile::TempDir),
    S3(Box<S3Server>),
}

impl Store {
    pub fn name(&self) -> &'static str {
        match self {
            Store::Local(_) => "local",
            Store::S3(_) => "s3",
        }
    }

    /// The server flags choosing this store.
    pub fn flags(&self) -> Vec<String> {
        match self {
            Store::Local(dir) => vec![
                "--etcd-backup-local-path".into(),
                dir.path().display().to_string(),
            ],
            Store::S3(_) => vec!["--etcd-backup-s3".into()],
        }
    }

    /// Where the object of backup `key` lands.
    pub fn object(&self, key: &str) -> PathBuf {
        match self {
            Store::Local(dir) => dir.path().join(key),
            Store::S3(s3) => s3.bucket_dir().join(key),
        }
    }

    /// Unfinished writes that must not survive a restart: the local sink's
    /// temp files, or s3s-fs's open multipart uploads (`.upload-<id>.json`,
    /// the upload's `…upload-<id>.metadata.json`, and the parts of an upload
    /// that is still open).
    pub fn unfinished(&self) -> Vec<String> {
        match self {
            Store::Local(dir) => names(dir.path(), true)
                .into_iter()
                .filter(|n| n.starts_with(".tmp-") && n.ends_with(".partial"))
                .collect(),
            Store::S3(s3) => {
                let open = open_uploads(s3);
                names(s3.root(), false)
                    .into_iter()
                    .filter(|n| upload_of(n).is_some_and(|id| open.contains(id)))
                    .collect()
            }
        }
    }

    /// s3s-fs only: uploads whose files are on disk though s3s-fs no longer
    /// knows the upload. s3s-fs retires the upload id first thing in a
    /// CompleteMultipartUpload and then concatenates the parts; a client that
    /// goes away in between makes it drop the request half-way. No S3 call
    /// can reach those parts any more (real S3 completes server-side).
    pub fn retired_parts(&self) -> BTreeSet<String> {
        let Store::S3(s3) = self else {
            return BTreeSet::new();
        };
        let open = open_uploads(s3);
        names(s3.root(), false)
            .iter()
            .filter_map(|n| upload_of(n))
            .filter(|id| !open.contains(*id))
            .map(str::to_string)
            .collect()
    }

    /// Where the pipeline was at the kill, from what is on disk (`retired`:
    /// the uploads retired by earlier rounds).
    pub fn phase(&self, stored: bool, retired: &BTreeSet<String>) -> String {
        let unfinished = self.unfinished();
        let parts = unfinished.iter().filter(|n| n.contains(".part-")).count();
        let completing = !self.retired_parts().is_subset(retired);
        match (self, stored) {
            (_, true) => "object in place, status write pending or done".into(),
            (Store::Local(_), false) if unfinished.is_empty() => "before the temp file".into(),
            (Store::Local(_), false) => "streaming into the temp file".into(),
            (Store::S3(_), false) if completing => "in CompleteMultipartUpload".into(),
            (Store::S3(_), false) if !unfinished.is_empty() => {
                format!("multipart upload open, {parts} part(s) on disk")
            }
            (Store::S3(_), false) => "streaming the first part, no upload yet".into(),
        }
    }
}

/// Ids of the uploads s3s-fs has open (`.upload-<id>.json`).
fn open_uploads(s3: &S3Server) -> BTreeSet<String> {
    names(s3.root(), false)
        .iter()
        .filter_map(|n| n.strip_prefix(".upload-")?.strip_suffix(".json"))
        .map(str::to_string)
        .collect()
}

/// The upload an s3s-fs file belongs to: `.upload-<id>.json`,
/// `.upload_id-<id>.part-N`, or `.bucket-….upload-<id>.metadata.json`.
/// The upload ids the killed server's journal holds, read from its state
/// file while it is down.
pub async fn journaled_upload_ids(data_dir: &std::path::Path) -> BTreeSet<String> {
    let backend = omni_state::RedbBackend::open(&data_dir.join("state.redb")).unwrap();
    let state = omni_state::State::new(backend);
    state
        .list(
            "ephemeral",
            UPLOADS,
            &omni_resources::LabelSelector::default(),
        )
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| Some(r.spec["uploadid"].as_str()?.to_string()))
        .collect()
}

/// The upload id an s3s-fs file belongs to.
pub fn upload_of(name: &str) -> Option<&str> {
    if let Some(rest) = name.strip_prefix(".upload_id-") {
        return rest.split_once(".part-").map(|(id, _)| id);
    }
    if let Some(id) = name
        .strip_prefix(".upload-")
        .and_then(|r| r.strip_suffix(".json"))
    {
        return Some(id);
    }
    let (_, rest) = name.split_once(".upload-")?;
    rest.strip_suffix(".metadata.json")
}

/// File names in `dir` (and one level down when `deep`).
fn names(dir: &Path, deep: bool) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() && deep {
            out.extend(names(&p, false));
        } else if p.is_file() {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

pub fn attempt_of(s: &Value) -> i64 {
    s["lastbackupattempt"]["seconds"].as_i64().unwrap_or(0)
}

/// Watches the cluster's status until `f` returns a verdict.
pub async fn watch_status<T>(omni: &Omni, what: &str, mut f: impl FnMut(&Value) -> Option<T>) -> T {
    let client = omni.client();
    let mut watch = client
        .watch(STATUSES, "ephemeral", None, Some(CLUSTER))
        .await
        .unwrap();
    let found = tokio::time::timeout(STEP, async {
        while let Some(ev) = watch.next().await {
            if let WatchEvent::Created(r) | WatchEvent::Updated(r) = ev.unwrap() {
                if let Some(v) = f(&r.spec) {
                    return Some(v);
                }
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(v)) => v,
        _ => panic!("{what}: not seen\nserver log:\n{}", omni.log_text()),
    }
}

/// The next backup attempt after `after` is running: its time, and when seen.
pub async fn next_running(omni: &Omni, after: i64) -> (i64, Instant) {
    watch_status(omni, &format!("a backup after {after} running"), |s| {
        (s["status"] == 3 && attempt_of(s) > after).then(|| (attempt_of(s), Instant::now()))
    })
    .await
}

/// Attempt `at` ended with status ok.
pub async fn wait_ok(omni: &Omni, at: i64) {
    watch_status(omni, &format!("backup {at} ok"), |s| {
        (s["status"] == 1 && attempt_of(s) == at).then_some(())
    })
    .await
}

/// The backups listed (waiting for the store to be configured after a start).
pub async fn listed(omni: &Omni) -> BTreeSet<String> {
    let client = omni.client();
    let selector = format!("omni.sidero.dev/cluster={CLUSTER}");
    let deadline = Instant::now() + STEP;
    loop {
        match client
            .list("EtcdBackups.omni.sidero.dev", "external", Some(&selector))
            .await
        {
            Ok(items) => return items.into_iter().map(|r| r.metadata.id).collect(),
            Err(e) => assert!(Instant::now() < deadline, "listing backups: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Upload journal entries started before `t` (unix seconds): a killed
/// run's, which the restarted server must abort and drop.
pub async fn stale_journal_entries(omni: &Omni, t: f64) -> Vec<String> {
    let entries = omni
        .client()
        .list(UPLOADS, "ephemeral", None)
        .await
        .unwrap();
    entries
        .into_iter()
        .filter(|r| {
            let s = &r.spec["startedat"];
            s["seconds"].as_f64().unwrap_or(0.0) + s["nanos"].as_f64().unwrap_or(0.0) / 1e9 < t
        })
        .map(|r| r.metadata.id)
        .collect()
}

/// Polls `f` every 20 ms until it holds, or fails with `what()`.
pub async fn until(omni: &Omni, what: impl Fn() -> String, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{}\nserver log:\n{}",
            what(),
            omni.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A pseudo-random fraction in [0, 1) for `round`, from `seed`.
pub fn fraction(seed: u64, round: u64) -> f64 {
    let mut x = (seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
    for _ in 0..4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    (x % 10_000) as f64 / 10_000.0
}

pub fn unix_now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
