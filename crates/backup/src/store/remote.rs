//! Writing one object to S3: one `PUT` for a small object, otherwise a journaled
//! multipart upload through `object_store`'s [`MultipartStore`] (which, unlike
//! `put_multipart`, exposes the upload id, so a crash can be cleaned up after).
//!
//! At most [`MAX_PARTS_IN_FLIGHT`] parts of [`PART_SIZE`] bytes are in flight. The
//! upload is recorded in the [`UploadJournal`] before its first part is sent, and
//! forgotten after it was completed or aborted. Any failure aborts the upload;
//! dropping an uncommitted sink spawns the abort on the current Tokio runtime. Only
//! a completed upload is listed by S3.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::task::JoinSet;

use super::error::{ErrorContext, StoreError};
use super::journal::{OpenUpload, UploadJournal};
use super::sink::{MAX_PARTS_IN_FLIGHT, PART_SIZE};

type PartResult = object_store::Result<(usize, PartId)>;

pub(super) struct RemoteSink {
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    journal: Arc<dyn UploadJournal>,
    path: ObjectPath,
    ctx: ErrorContext,
    buffer: Vec<u8>,
    pool: PartPool,
    /// Set once the multipart upload exists and is journaled.
    upload: Option<OpenUpload>,
    parts: JoinSet<PartResult>,
    /// Finished parts by index.
    done: Vec<Option<PartId>>,
    next_part: usize,
}

impl std::fmt::Debug for RemoteSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSink")
            .field("path", &self.path)
            .field("buffered", &self.buffer.len())
            .field("upload", &self.upload)
            .field("parts_sent", &self.next_part)
            .finish_non_exhaustive()
    }
}

impl RemoteSink {
    pub(super) fn new(
        store: Arc<dyn ObjectStore>,
        multipart: Arc<dyn MultipartStore>,
        journal: Arc<dyn UploadJournal>,
        key: &str,
        ctx: ErrorContext,
    ) -> Self {
        Self {
            store,
            multipart,
            journal,
            path: ObjectPath::from(key),
            ctx,
            buffer: Vec::new(),
            pool: PartPool::default(),
            upload: None,
            parts: JoinSet::new(),
            done: Vec::new(),
            next_part: 0,
        }
    }

    pub(super) async fn write(&mut self, key: &str, mut data: &[u8]) -> Result<(), StoreError> {
        while !data.is_empty() {
            if self.buffer.capacity() == 0 {
                self.buffer = self.pool.take();
            }
            let room = PART_SIZE - self.buffer.len();
            let n = room.min(data.len());
            self.buffer.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buffer.len() == PART_SIZE {
                self.flush_part(key).await?;
            }
        }
        Ok(())
    }

    /// Creates the multipart upload and journals it; on a journal failure the
    /// upload is aborted at once (no part was sent).
    async fn start(&mut self, key: &str) -> Result<(), StoreError> {
        let upload_id = self
            .multipart
            .create_multipart(&self.path)
            .await
            .map_err(|e| self.ctx.classify("start upload of", key, e))?;
        let upload = OpenUpload {
            key: key.to_string(),
            upload_id,
        };
        if let Err(e) = self.journal.record(&upload).await {
            let detail = self.ctx.scrub(&e.to_string());
            abort_upload(Closing {
                parts: JoinSet::new(),
                multipart: self.multipart.clone(),
                journal: self.journal.clone(),
                ctx: self.ctx.clone(),
                upload,
            })
            .await;
            return Err(StoreError::Journal {
                key: key.to_string(),
                detail,
            });
        }
        tracing::debug!(%key, upload_id = %upload.upload_id, "multipart upload started");
        self.upload = Some(upload);
        Ok(())
    }

    /// Sends the buffer as the next part, starting the multipart upload if needed.
    async fn flush_part(&mut self, key: &str) -> Result<(), StoreError> {
        if self.upload.is_none() {
            self.start(key).await?;
        }
        while self.parts.len() >= MAX_PARTS_IN_FLIGHT {
            self.join_one(key).await?;
        }
        let Some(upload) = &self.upload else {
            return Err(StoreError::Backend {
                op: "upload part of",
                key: key.to_string(),
                detail: "no open upload".into(),
            });
        };
        let payload = self.pool.payload(std::mem::take(&mut self.buffer));
        let idx = self.next_part;
        self.next_part += 1;
        let (multipart, path, id) = (
            self.multipart.clone(),
            self.path.clone(),
            upload.upload_id.clone(),
        );
        self.parts.spawn(async move {
            multipart
                .put_part(&path, &id, idx, payload)
                .await
                .map(|part| (idx, part))
        });
        Ok(())
    }

    async fn join_one(&mut self, key: &str) -> Result<(), StoreError> {
        match self.parts.join_next().await {
            None => Ok(()),
            Some(Ok(Ok((idx, part)))) => {
                if self.done.len() <= idx {
                    self.done.resize(idx + 1, None);
                }
                self.done[idx] = Some(part);
                Ok(())
            }
            Some(Ok(Err(e))) => Err(self.ctx.classify("upload part of", key, e)),
            Some(Err(join)) => Err(StoreError::Backend {
                op: "upload part of",
                key: key.to_string(),
                detail: join.to_string(),
            }),
        }
    }

    pub(super) async fn commit(&mut self, key: &str) -> Result<(), StoreError> {
        let res = self.try_commit(key).await;
        if res.is_err() {
            self.abort().await;
        }
        res
    }

    async fn try_commit(&mut self, key: &str) -> Result<(), StoreError> {
        if self.upload.is_none() {
            let payload = self.pool.payload(std::mem::take(&mut self.buffer));
            self.store
                .put(&self.path, payload)
                .await
                .map_err(|e| self.ctx.classify("upload", key, e))?;
            return Ok(());
        }
        if !self.buffer.is_empty() {
            self.flush_part(key).await?;
        }
        while !self.parts.is_empty() {
            self.join_one(key).await?;
        }
        let parts: Option<Vec<PartId>> = std::mem::take(&mut self.done).into_iter().collect();
        let Some(upload) = self.upload.clone() else {
            return Ok(());
        };
        let parts =
            parts
                .filter(|p| p.len() == self.next_part)
                .ok_or_else(|| StoreError::Backend {
                    op: "complete upload of",
                    key: key.to_string(),
                    detail: "a part is missing".into(),
                })?;
        self.multipart
            .complete_multipart(&self.path, &upload.upload_id, parts)
            .await
            .map_err(|e| self.ctx.classify("complete upload of", key, e))?;
        self.upload = None;
        forget(self.journal.as_ref(), &upload).await;
        Ok(())
    }

    /// Aborts the open upload, if any (best effort; failures are logged and leave
    /// the journal entry in place).
    pub(super) async fn abort(&mut self) {
        if let Some(closing) = self.closing() {
            abort_upload(closing).await;
        }
    }

    fn closing(&mut self) -> Option<Closing> {
        let upload = self.upload.take()?;
        Some(Closing {
            parts: std::mem::take(&mut self.parts),
            multipart: self.multipart.clone(),
            journal: self.journal.clone(),
            ctx: self.ctx.clone(),
            upload,
        })
    }
}

/// Part buffers of one sink, handed back when their upload is done with them.
///
/// The process's mmap threshold is 1 MiB (`omni`'s `alloc.rs`, which keeps
/// RSS flat), so every fresh [`PART_SIZE`] buffer was a new mapping whose
/// pages the kernel faulted in and zeroed: about 8 % of a backup's CPU. At
/// most one buffer fills while [`MAX_PARTS_IN_FLIGHT`] are sent, so that many
/// are kept; the pool goes with the sink, so an idle server holds none.
#[derive(Debug, Clone, Default)]
struct PartPool(Arc<Mutex<Vec<Vec<u8>>>>);

/// Buffers a pool keeps.
const POOLED: usize = MAX_PARTS_IN_FLIGHT + 1;

impl PartPool {
    /// An empty buffer of [`PART_SIZE`] capacity, used before if one is back.
    fn take(&self) -> Vec<u8> {
        let reused = self.0.lock().unwrap_or_else(PoisonError::into_inner).pop();
        reused.unwrap_or_else(|| Vec::with_capacity(PART_SIZE))
    }

    /// `buf` as a payload that returns it to the pool once the request (and
    /// any retry) dropped its last reference.
    fn payload(&self, buf: Vec<u8>) -> PutPayload {
        PutPayload::from(Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        }))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

struct Pooled {
    buf: Vec<u8>,
    pool: PartPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() != PART_SIZE {
            return;
        }
        buf.clear();
        let mut pool = self.pool.0.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOLED {
            pool.push(buf);
        }
    }
}

/// Everything an abort needs, detached from the sink (it may outlive it).
struct Closing {
    parts: JoinSet<PartResult>,
    multipart: Arc<dyn MultipartStore>,
    journal: Arc<dyn UploadJournal>,
    ctx: ErrorContext,
    upload: OpenUpload,
}

/// How long an abort waits for in-flight part uploads to settle, and for itself.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

async fn forget(journal: &dyn UploadJournal, upload: &OpenUpload) {
    if let Err(e) = journal.clear(upload).await {
        tracing::warn!(key = %upload.key, upload_id = %upload.upload_id, error = %e,
            "could not remove the finished upload from the journal; the next start will try to abort it");
    }
}

/// Aborts a multipart upload after its in-flight parts have finished: a part still
/// being received by the server when the abort arrives may otherwise be stored after
/// it (S3 documents this race; s3s-fs shows it). Forgets the upload in the journal
/// only when the abort succeeded (or found nothing to abort).
async fn abort_upload(mut c: Closing) {
    let settle = async { while c.parts.join_next().await.is_some() {} };
    if tokio::time::timeout(SETTLE_TIMEOUT, settle).await.is_err() {
        c.parts.abort_all();
    }
    let key = c.upload.key.clone();
    let path = ObjectPath::from(key.as_str());
    let abort = c.multipart.abort_multipart(&path, &c.upload.upload_id);
    let result = match tokio::time::timeout(SETTLE_TIMEOUT, abort).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => match c.ctx.classify("abort upload of", &key, e) {
            StoreError::NotFound { .. } => Ok(()),
            other => Err(other.to_string()),
        },
        Err(_) => Err("timed out".to_string()),
    };
    match result {
        Ok(()) => {
            tracing::debug!(%key, upload_id = %c.upload.upload_id, "multipart upload aborted");
            forget(c.journal.as_ref(), &c.upload).await;
        }
        Err(error) => tracing::warn!(%key, upload_id = %c.upload.upload_id, %error,
            "could not abort multipart upload; it stays journaled and is aborted at the next start"),
    }
}

impl Drop for RemoteSink {
    fn drop(&mut self) {
        // Dropped while a multipart upload is open: the future was cancelled before
        // commit or abort. Abort it in the background.
        let Some(closing) = self.closing() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(abort_upload(closing));
            }
            Err(_) => tracing::warn!(key = %closing.upload.key,
                "no runtime to abort the multipart upload; it is aborted at the next start"),
        }
    }
}

#[cfg(test)]
#[path = "remote_tests.rs"]
mod tests;
