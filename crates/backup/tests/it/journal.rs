//! The upload journal against a real S3 server (s3s-fs): an upload is journaled
//! while open and forgotten when done; one left open by a failure is aborted
//! later from its journal entry, leaving nothing in the server's root.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use omni_backup::{take_backup_journaled, BackupStore, JournalError, OpenUpload, UploadJournal};
use omni_testkit::S3Server;

use crate::common::*;

#[derive(Default)]
struct MemJournal {
    open: Mutex<Vec<OpenUpload>>,
    /// Upload ids seen, in order.
    seen: Mutex<Vec<String>>,
}

impl MemJournal {
    fn open(&self) -> Vec<OpenUpload> {
        self.open.lock().expect("lock").clone()
    }
}

impl UploadJournal for MemJournal {
    fn record<'a>(&'a self, upload: &'a OpenUpload) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move {
            self.open.lock().expect("lock").push(upload.clone());
            self.seen
                .lock()
                .expect("lock")
                .push(upload.upload_id.clone());
            Ok(())
        })
    }

    fn clear<'a>(&'a self, upload: &'a OpenUpload) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move {
            self.open.lock().expect("lock").retain(|u| u != upload);
            Ok(())
        })
    }
}

/// s3s-fs keeps an open upload as `.upload-<id>.json` plus `.upload_id-<id>.part-N`
/// files (and a `.bucket-….upload-<id>.metadata.json`) in its root.
fn upload_files(s3: &S3Server) -> Vec<String> {
    std::fs::read_dir(s3.root())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".upload"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journaled_upload_is_forgotten_when_done_and_aborted_from_the_journal() {
    let etcd = etcd_with_keys(1, 5).await;
    fill_random(&etcd, 24 << 20).await;
    let mut s3 = S3Server::start().await.expect("s3");
    let store = BackupStore::s3(&s3_settings(&s3)).expect("store");
    let k = keys();
    let members = members(&etcd);

    // 1. A good multipart backup: journaled while open (the record came before the
    //    server saw any part), forgotten after complete.
    let journal = Arc::new(MemJournal::default());
    let dyn_journal: Arc<dyn UploadJournal> = journal.clone();
    let task = {
        let (j, m, st, r) = (
            dyn_journal.clone(),
            members.clone(),
            store.clone(),
            k.recipient.clone(),
        );
        tokio::spawn(async move {
            take_backup_journaled(&fast_opts(), &j, &m, &st, CLUSTER, &r, 100).await
        })
    };
    let seen_open = poll_fast(Duration::from_secs(60), || {
        !journal.open().is_empty() || task.is_finished()
    })
    .await;
    assert!(
        seen_open && !journal.open().is_empty(),
        "journaled while open"
    );
    let open = journal.open();
    assert!(
        upload_files(&s3)
            .iter()
            .any(|f| f == &format!(".upload-{}.json", open[0].upload_id)),
        "the journaled id is the server's: {:?}",
        upload_files(&s3)
    );
    let out = task.await.expect("join").expect("backup");
    assert!(out.size > 2 * omni_backup::store::PART_SIZE as u64);
    assert!(journal.open().is_empty(), "forgotten after complete");
    assert!(upload_files(&s3).is_empty(), "{:?}", upload_files(&s3));

    // 2. The server goes away mid-upload: the abort fails too, so the entry stays...
    let journal = Arc::new(MemJournal::default());
    let dyn_journal: Arc<dyn UploadJournal> = journal.clone();
    let task = {
        let (j, m, st, r) = (
            dyn_journal.clone(),
            members.clone(),
            store.clone(),
            k.recipient.clone(),
        );
        tokio::spawn(async move {
            take_backup_journaled(&fast_opts(), &j, &m, &st, CLUSTER, &r, 200).await
        })
    };
    let parts_seen = poll_fast(Duration::from_secs(60), || {
        upload_files(&s3).iter().any(|f| f.contains(".part-")) || task.is_finished()
    })
    .await;
    assert!(parts_seen && !task.is_finished(), "caught mid-upload");
    s3.stop();
    assert!(task.await.expect("join").is_err());
    let left = journal.open();
    assert_eq!(left.len(), 1, "the failed abort leaves the entry");
    assert!(
        !upload_files(&s3).is_empty(),
        "and the upload is still open"
    );

    // ...and the next start aborts it from there: nothing left in the root.
    s3.restart().await.expect("restart");
    store.abort_upload(&left[0]).await.expect("abort");
    assert!(upload_files(&s3).is_empty(), "{:?}", upload_files(&s3));
    // Aborting it again (a stale entry) is not an error on real S3; s3s-fs
    // answers an unknown upload id with AccessDenied.
    let again = store.abort_upload(&left[0]).await;
    assert!(
        again.is_ok() || matches!(again, Err(omni_backup::StoreError::AccessDenied { .. })),
        "{again:?}"
    );
    let listed = store.list(CLUSTER).await.expect("list");
    assert_eq!(listed.len(), 1, "only the finished backup is listed");
    assert_eq!(listed[0].key, out.key);
}
