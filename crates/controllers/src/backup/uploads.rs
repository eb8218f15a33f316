//! The upload journal on durable state: one `EtcdBackupUploads` resource per
//! open S3 multipart upload, written before the upload's first part is sent and
//! destroyed once it was completed or aborted. An entry that outlived its
//! backup is stale: one of an earlier run of the server (killed mid-upload),
//! or one of this run whose abort failed (the store was down). Stale entries
//! are aborted whenever the store is available.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use omni_backup::{BackupStore, JournalError, OpenUpload, StoreError, UploadJournal};
use omni_resources::specs::backup_upload::EtcdBackupUploadSpec;
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Timestamp, NS_EPHEMERAL};
use omni_state::{State, StateError};

use super::data::OWNER;

/// Longest wait for one abort request.
const ABORT_TIMEOUT: Duration = Duration::from_secs(30);

type JournalFuture<'a> = Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + 'a>>;

/// Journal entry id: `<cluster>-<unix seconds>-<run>`; the run part keeps the
/// entries of two runs apart even when both backed up in the same second.
pub(super) fn entry_id(cluster: &str, at: i64, run: &str) -> String {
    let run: String = run.chars().take(8).collect();
    format!("{cluster}-{at}-{run}")
}

/// The journal of one backup job.
pub(super) struct StateJournal {
    pub state: State,
    pub cluster: String,
    pub at: i64,
    /// This run of the server.
    pub run: Arc<str>,
    pub bucket: String,
    pub endpoint: String,
}

impl StateJournal {
    fn id(&self) -> String {
        entry_id(&self.cluster, self.at, &self.run)
    }
}

impl UploadJournal for StateJournal {
    fn record<'a>(&'a self, upload: &'a OpenUpload) -> JournalFuture<'a> {
        Box::pin(async move {
            let entry = EtcdBackupUploadSpec {
                cluster: self.cluster.clone(),
                key: upload.key.clone(),
                uploadid: upload.upload_id.clone(),
                bucket: self.bucket.clone(),
                endpoint: self.endpoint.clone(),
                serverrun: self.run.to_string(),
                startedat: Timestamp::now(),
            };
            self.state
                .modify::<EtcdBackupUploadSpec>(NS_EPHEMERAL, &self.id(), OWNER, |s| {
                    *s = entry.clone();
                })
                .await?;
            Ok(())
        })
    }

    fn clear<'a>(&'a self, upload: &'a OpenUpload) -> JournalFuture<'a> {
        Box::pin(async move { Ok(forget(&self.state, &self.id(), &upload.upload_id).await?) })
    }
}

/// Destroys entry `id` if it still records `upload_id`.
async fn forget(state: &State, id: &str, upload_id: &str) -> Result<(), StateError> {
    let Some((res, spec)) = state
        .get_spec::<EtcdBackupUploadSpec>(NS_EPHEMERAL, id)
        .await?
    else {
        return Ok(());
    };
    if spec.uploadid != upload_id {
        return Ok(());
    }
    match state.destroy(&res.key()).await {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// What one pass over the orphans did.
#[derive(Debug, Default)]
pub(super) struct OrphanPass {
    /// Aborted, or found already gone.
    pub aborted: usize,
    /// Could not be aborted for good (e.g. access denied); entry dropped.
    pub dropped: usize,
    /// The store was unreachable: try again later.
    pub retry: usize,
    /// Uploads to another bucket or endpoint than the current store's: left
    /// for a run configured with that store.
    pub elsewhere: Vec<String>,
}

/// Aborts the stale uploads that went to `store`: those journaled by runs
/// other than `run`, and those of `run` whose cluster has no backup running.
///
/// # Errors
/// The state failing.
pub(super) async fn abort_stale(
    state: &State,
    store: &BackupStore,
    run: &str,
    running: impl Fn(&str) -> bool,
) -> Result<OrphanPass, StateError> {
    let mut pass = OrphanPass::default();
    let entries = state
        .list(
            NS_EPHEMERAL,
            EtcdBackupUploadSpec::TYPE,
            &LabelSelector::default(),
        )
        .await?;
    for r in entries {
        let id = r.metadata.id.clone();
        let spec: EtcdBackupUploadSpec = match r.spec_as() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%id, error = %e, "unreadable upload journal entry; dropping it");
                state.destroy(&r.key()).await?;
                continue;
            }
        };
        let earlier_run = spec.serverrun != run;
        if !earlier_run && running(&spec.cluster) {
            continue;
        }
        if store.bucket() != Some(spec.bucket.as_str()) || store.location() != spec.endpoint {
            pass.elsewhere.push(id);
            continue;
        }
        let upload = OpenUpload {
            key: spec.key.clone(),
            upload_id: spec.uploadid.clone(),
        };
        let result = match tokio::time::timeout(ABORT_TIMEOUT, store.abort_upload(&upload)).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unreachable {
                endpoint: spec.endpoint.clone(),
                detail: format!("no answer within {}s", ABORT_TIMEOUT.as_secs()),
            }),
        };
        match result {
            Ok(()) if earlier_run => {
                tracing::info!(cluster = %spec.cluster, key = %spec.key, upload_id = %spec.uploadid,
                    "aborted a multipart upload left open by a server that stopped mid-backup");
                pass.aborted += 1;
            }
            Ok(()) => {
                tracing::info!(cluster = %spec.cluster, key = %spec.key, upload_id = %spec.uploadid,
                    "aborted a multipart upload left open when its first abort failed");
                pass.aborted += 1;
            }
            Err(e @ StoreError::Unreachable { .. }) => {
                tracing::warn!(cluster = %spec.cluster, key = %spec.key, error = %e,
                    "cannot abort a multipart upload left open yet; will retry");
                pass.retry += 1;
                continue;
            }
            Err(e) => {
                tracing::warn!(cluster = %spec.cluster, key = %spec.key, upload_id = %spec.uploadid, error = %e,
                    "cannot abort a multipart upload left open; dropping its journal entry (the bucket's lifecycle rule must remove it)");
                pass.dropped += 1;
            }
        }
        match state.destroy(&r.key()).await {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
    }
    Ok(pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_differ_per_run() {
        assert_eq!(
            entry_id("talos-default", 1700000000, "0123456789abcdef"),
            "talos-default-1700000000-01234567"
        );
        assert_ne!(entry_id("c", 5, "aaaaaaaa1"), entry_id("c", 5, "bbbbbbbb1"));
        assert_eq!(entry_id("c", 5, ""), "c-5-");
    }

    #[tokio::test]
    async fn record_and_clear_keep_one_entry_per_upload() {
        let state = State::memory();
        let journal = StateJournal {
            state: state.clone(),
            cluster: "c1".into(),
            at: 42,
            run: Arc::from("feedfacecafe"),
            bucket: "b".into(),
            endpoint: "http://s3".into(),
        };
        let up = OpenUpload {
            key: "u/k.snapshot".into(),
            upload_id: "id-1".into(),
        };
        journal.record(&up).await.expect("record");
        let (res, spec) = state
            .get_spec::<EtcdBackupUploadSpec>(NS_EPHEMERAL, "c1-42-feedface")
            .await
            .expect("get")
            .expect("entry");
        assert_eq!(res.metadata.owner, OWNER);
        assert_eq!(
            (
                spec.key.as_str(),
                spec.uploadid.as_str(),
                spec.bucket.as_str()
            ),
            ("u/k.snapshot", "id-1", "b")
        );
        // A stale clear (another upload id) leaves the entry.
        let other = OpenUpload {
            upload_id: "id-0".into(),
            ..up.clone()
        };
        journal.clear(&other).await.expect("clear other");
        assert!(state
            .get_spec::<EtcdBackupUploadSpec>(NS_EPHEMERAL, "c1-42-feedface")
            .await
            .expect("get")
            .is_some());
        journal.clear(&up).await.expect("clear");
        journal.clear(&up).await.expect("clear twice");
        assert!(state
            .get_spec::<EtcdBackupUploadSpec>(NS_EPHEMERAL, "c1-42-feedface")
            .await
            .expect("get")
            .is_none());
    }

    #[tokio::test]
    async fn running_uploads_and_other_stores_uploads_are_left_alone() {
        let state = State::memory();
        let dir = tempfile::tempdir().expect("tmp");
        let store = BackupStore::local(dir.path()).expect("store");
        for (id, run, bucket) in [("mine", "run-now", ""), ("s3", "run-old", "b")] {
            state
                .modify::<EtcdBackupUploadSpec>(NS_EPHEMERAL, id, OWNER, |s| {
                    s.cluster = "busy".into();
                    s.serverrun = run.into();
                    s.bucket = bucket.into();
                    s.key = "k".into();
                })
                .await
                .expect("seed");
        }
        let pass = abort_stale(&state, &store, "run-now", |c| c == "busy")
            .await
            .expect("pass");
        assert_eq!(pass.elsewhere, ["s3"]);
        assert_eq!((pass.aborted, pass.dropped, pass.retry), (0, 0, 0));
        let left = state
            .list(
                NS_EPHEMERAL,
                EtcdBackupUploadSpec::TYPE,
                &LabelSelector::default(),
            )
            .await
            .expect("list");
        assert_eq!(left.len(), 2);
    }
}
