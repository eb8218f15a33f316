//! The upload journal: a durable list of S3 multipart uploads that were started
//! and not yet completed or aborted.
//!
//! S3 keeps an open multipart upload (and bills its parts) until it is completed or
//! aborted, and `object_store` cannot list open uploads. A process killed mid-upload
//! would leave it behind for good. So the sink records each upload in a journal the
//! caller provides *before* the first part is sent, and forgets it only once the
//! upload was completed or aborted. On its next start the caller aborts whatever is
//! still journaled ([`super::BackupStore::abort_upload`]).

use futures::future::BoxFuture;

/// An S3 multipart upload that was started and not yet completed or aborted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpenUpload {
    /// Object key the upload writes.
    pub key: String,
    /// The upload id S3 assigned (not a secret: useless without credentials).
    pub upload_id: String,
}

/// Why the journal could not record or forget an upload.
pub type JournalError = Box<dyn std::error::Error + Send + Sync>;

/// Where open uploads are recorded; implemented by the caller of
/// [`crate::take_backup_journaled`] on durable state.
///
/// Both methods may be called from a background task (an upload whose sink was
/// dropped is aborted there), so implementations must be `Send + Sync + 'static`.
pub trait UploadJournal: Send + Sync {
    /// Records `upload` durably. Called once the upload exists and before any of its
    /// parts is sent.
    ///
    /// # Errors
    /// Any: the upload is then aborted at once and the backup fails.
    fn record<'a>(&'a self, upload: &'a OpenUpload) -> BoxFuture<'a, Result<(), JournalError>>;

    /// Forgets `upload` after it was completed or aborted. Not called when the abort
    /// itself failed: the entry stays for the next start to retry.
    ///
    /// # Errors
    /// Any: it is logged, nothing else. A stale entry is harmless: aborting a
    /// completed upload finds nothing to abort.
    fn clear<'a>(&'a self, upload: &'a OpenUpload) -> BoxFuture<'a, Result<(), JournalError>>;
}

/// A journal that keeps nothing, for callers that do not need crash safety
/// (tests, one-shot tools). An upload cut short by a crash then stays open until
/// the bucket's lifecycle rule removes it.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJournal;

impl UploadJournal for NoJournal {
    fn record<'a>(&'a self, _upload: &'a OpenUpload) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async { Ok(()) })
    }

    fn clear<'a>(&'a self, _upload: &'a OpenUpload) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async { Ok(()) })
    }
}
