//! Writing one object so that it becomes visible only complete.
//!
//! * Local: a hidden temp file next to the destination, `fsync`ed, then renamed
//!   without clobbering, then the directory is `fsync`ed. (object_store's own
//!   `LocalFileSystem` renames a staged file but never calls `fsync`, so a crash
//!   could leave a visible, truncated backup.) Dropping the sink deletes the temp file.
//! * S3: one `PUT` for small objects, otherwise a multipart upload with at most
//!   [`MAX_PARTS_IN_FLIGHT`] parts of [`PART_SIZE`] bytes in flight. Any failure
//!   aborts the upload; dropping an uncommitted sink spawns the abort on the
//!   current Tokio runtime. Only a completed upload is listed by S3.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use super::error::{ErrorContext, StoreError};

/// Size of one multipart part (and of the buffer before a multipart upload starts).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded concurrently; bounds memory to about `(1 + this) * PART_SIZE`.
pub const MAX_PARTS_IN_FLIGHT: usize = 2;

/// An object being written; see the module docs for the visibility guarantees.
#[derive(Debug)]
pub(crate) struct ObjectSink {
    key: String,
    written: u64,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Local(LocalSink),
    Remote(Box<RemoteSink>),
}

#[derive(Debug)]
struct LocalSink {
    file: tokio::fs::File,
    tmp: Option<tempfile::TempPath>,
    dest: PathBuf,
}

struct RemoteSink {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    ctx: ErrorContext,
    buffer: Vec<u8>,
    upload: Option<Box<dyn MultipartUpload>>,
    parts: JoinSet<object_store::Result<()>>,
}

impl std::fmt::Debug for RemoteSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSink")
            .field("path", &self.path)
            .field("buffered", &self.buffer.len())
            .field("multipart", &self.upload.is_some())
            .finish_non_exhaustive()
    }
}

fn io_err<'a>(
    op: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl ObjectSink {
    /// A sink writing `dest` (under the local store root) via a temp file in its directory.
    pub(crate) async fn local(key: &str, dest: PathBuf) -> Result<Self, StoreError> {
        let dir = dest
            .parent()
            .map(std::path::Path::to_path_buf)
            .ok_or_else(|| {
                StoreError::InvalidSettings(format!("no parent dir for {}", dest.display()))
            })?;
        let d = dir.clone();
        let tmp = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&d)?;
            tempfile::Builder::new()
                .prefix(".tmp-")
                .suffix(".partial")
                .tempfile_in(&d)
        })
        .await
        .map_err(|e| StoreError::Io {
            op: "create temp file in",
            path: dir.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(io_err("create temp file in", &dir))?;
        let (file, tmp) = tmp.into_parts();
        Ok(Self {
            key: key.to_string(),
            written: 0,
            inner: Inner::Local(LocalSink {
                file: tokio::fs::File::from_std(file),
                tmp: Some(tmp),
                dest,
            }),
        })
    }

    /// A sink writing `key` to an object store (S3).
    pub(crate) fn remote(store: Arc<dyn ObjectStore>, key: &str, ctx: ErrorContext) -> Self {
        Self {
            key: key.to_string(),
            written: 0,
            inner: Inner::Remote(Box::new(RemoteSink {
                store,
                path: ObjectPath::from(key),
                ctx,
                buffer: Vec::new(),
                upload: None,
                parts: JoinSet::new(),
            })),
        }
    }

    /// Appends `data`.
    pub(crate) async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        match &mut self.inner {
            Inner::Local(l) => {
                let tmp = l.tmp.as_deref().unwrap_or(l.dest.as_path());
                l.file.write_all(data).await.map_err(io_err("write", tmp))?;
            }
            Inner::Remote(r) => r.write(&self.key, data).await?,
        }
        self.written += data.len() as u64;
        Ok(())
    }

    /// Makes the object visible; returns its size. On error nothing is visible.
    pub(crate) async fn commit(mut self) -> Result<u64, StoreError> {
        let key = self.key.clone();
        match &mut self.inner {
            Inner::Local(l) => l.commit(&key).await?,
            Inner::Remote(r) => r.commit(&key).await?,
        }
        Ok(self.written)
    }

    /// Discards everything written (best effort; failures are logged).
    pub(crate) async fn abort(mut self) {
        match &mut self.inner {
            Inner::Local(l) => drop(l.tmp.take()),
            Inner::Remote(r) => r.abort(&self.key).await,
        }
    }
}

impl LocalSink {
    async fn commit(&mut self, key: &str) -> Result<(), StoreError> {
        let dest = self.dest.clone();
        self.file.flush().await.map_err(io_err("flush", &dest))?;
        self.file.sync_all().await.map_err(io_err("fsync", &dest))?;
        let Some(tmp) = self.tmp.take() else {
            return Err(StoreError::InvalidSettings("sink already committed".into()));
        };
        let d = dest.clone();
        let res = tokio::task::spawn_blocking(move || {
            tmp.persist_noclobber(&d).map_err(|e| {
                // `e.path` (the temp file) is dropped here, which deletes it.
                e.error
            })?;
            // Make the rename durable: fsync the directory (and its parent, which
            // may have just gained the cluster directory).
            if let Some(dir) = d.parent() {
                std::fs::File::open(dir)?.sync_all()?;
                if let Some(parent) = dir.parent() {
                    std::fs::File::open(parent)?.sync_all()?;
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| StoreError::Io {
            op: "rename into",
            path: dest.clone(),
            source: std::io::Error::other(e),
        })?;
        match res {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StoreError::AlreadyExists {
                    key: key.to_string(),
                })
            }
            other => other.map_err(io_err("rename into", &dest)),
        }
    }
}

impl RemoteSink {
    async fn write(&mut self, key: &str, mut data: &[u8]) -> Result<(), StoreError> {
        while !data.is_empty() {
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

    /// Sends the buffer as the next part, starting the multipart upload if needed.
    async fn flush_part(&mut self, key: &str) -> Result<(), StoreError> {
        if self.upload.is_none() {
            let upload = self
                .store
                .put_multipart(&self.path)
                .await
                .map_err(|e| self.ctx.classify("start upload of", key, e))?;
            self.upload = Some(upload);
        }
        while self.parts.len() >= MAX_PARTS_IN_FLIGHT {
            self.join_one(key).await?;
        }
        let part = PutPayload::from(std::mem::take(&mut self.buffer));
        if let Some(upload) = self.upload.as_mut() {
            self.parts.spawn(upload.put_part(part));
        }
        self.buffer = Vec::with_capacity(PART_SIZE);
        Ok(())
    }

    async fn join_one(&mut self, key: &str) -> Result<(), StoreError> {
        match self.parts.join_next().await {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(self.ctx.classify("upload part of", key, e)),
            Some(Err(join)) => Err(StoreError::Backend {
                op: "upload part of",
                key: key.to_string(),
                detail: join.to_string(),
            }),
        }
    }

    async fn commit(&mut self, key: &str) -> Result<(), StoreError> {
        let res = self.try_commit(key).await;
        if res.is_err() {
            self.abort(key).await;
        }
        res
    }

    async fn try_commit(&mut self, key: &str) -> Result<(), StoreError> {
        if self.upload.is_none() {
            let payload = PutPayload::from(std::mem::take(&mut self.buffer));
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
        if let Some(upload) = self.upload.as_mut() {
            upload
                .complete()
                .await
                .map_err(|e| self.ctx.classify("complete upload of", key, e))?;
        }
        self.upload = None;
        Ok(())
    }

    async fn abort(&mut self, key: &str) {
        let parts = std::mem::take(&mut self.parts);
        if let Some(upload) = self.upload.take() {
            abort_upload(parts, upload, self.ctx.clone(), key.to_string()).await;
        }
    }
}

/// How long an abort waits for in-flight part uploads to settle.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Aborts a multipart upload after its in-flight parts have finished: a part still
/// being received by the server when the abort arrives may otherwise be stored after
/// it (S3 documents this race; s3s-fs shows it).
async fn abort_upload(
    mut parts: JoinSet<object_store::Result<()>>,
    mut upload: Box<dyn MultipartUpload>,
    ctx: ErrorContext,
    key: String,
) {
    let settle = async { while parts.join_next().await.is_some() {} };
    if tokio::time::timeout(SETTLE_TIMEOUT, settle).await.is_err() {
        parts.abort_all();
    }
    match tokio::time::timeout(SETTLE_TIMEOUT, upload.abort()).await {
        Ok(Ok(())) => tracing::debug!(%key, "multipart upload aborted"),
        Ok(Err(e)) => {
            let error = ctx.classify("abort upload of", &key, e);
            tracing::warn!(%key, %error, "could not abort multipart upload; the bucket's lifecycle rules must clean it up");
        }
        Err(_) => tracing::warn!(%key, "aborting the multipart upload timed out"),
    }
}

impl Drop for RemoteSink {
    fn drop(&mut self) {
        // Dropped while a multipart upload is open: the future was cancelled before
        // commit or abort. Abort it in the background.
        let Some(upload) = self.upload.take() else {
            return;
        };
        let parts = std::mem::take(&mut self.parts);
        let key = self.path.to_string();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(abort_upload(parts, upload, self.ctx.clone(), key));
            }
            Err(_) => tracing::warn!(%key, "no runtime to abort the multipart upload"),
        }
    }
}
