//! Writing one object so that it becomes visible only complete.
//!
//! * Local: a hidden temp file next to the destination, `fsync`ed, then renamed
//!   without clobbering, then the directory is `fsync`ed. (object_store's own
//!   `LocalFileSystem` renames a staged file but never calls `fsync`, so a crash
//!   could leave a visible, truncated backup.) Dropping the sink deletes the temp file.
//!   A process killed before the rename leaves the temp file (named
//!   [`TEMP_PREFIX`]`*`[`TEMP_SUFFIX`]) behind; [`super::BackupStore::remove_incomplete`]
//!   removes such files on the next start.
//! * S3: see [`super::remote`]: a journaled multipart upload, aborted on failure.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::multipart::MultipartStore;
use object_store::ObjectStore;
use tokio::io::AsyncWriteExt;

use super::error::{ErrorContext, StoreError};
use super::journal::UploadJournal;
use super::remote::RemoteSink;

/// Size of one multipart part (and of the buffer before a multipart upload starts).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded concurrently; bounds memory to about `(1 + this) * PART_SIZE`.
pub const MAX_PARTS_IN_FLIGHT: usize = 2;
/// Name prefix of the local store's temp files.
pub const TEMP_PREFIX: &str = ".tmp-";
/// Name suffix of the local store's temp files.
pub const TEMP_SUFFIX: &str = ".partial";

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
                .prefix(TEMP_PREFIX)
                .suffix(TEMP_SUFFIX)
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

    /// A sink writing `key` to an object store (S3), journaling a multipart upload
    /// in `journal`.
    pub(crate) fn remote(
        store: Arc<dyn ObjectStore>,
        multipart: Arc<dyn MultipartStore>,
        journal: Arc<dyn UploadJournal>,
        key: &str,
        ctx: ErrorContext,
    ) -> Self {
        Self {
            key: key.to_string(),
            written: 0,
            inner: Inner::Remote(Box::new(RemoteSink::new(
                store, multipart, journal, key, ctx,
            ))),
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
            Inner::Remote(r) => r.abort().await,
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

/// Whether `name` is one of the local sink's temp files.
fn is_temp_name(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| {
        n.len() > TEMP_PREFIX.len() + TEMP_SUFFIX.len()
            && n.starts_with(TEMP_PREFIX)
            && n.ends_with(TEMP_SUFFIX)
    })
}

/// Removes the temp files a killed process left in `root` and its cluster
/// directories (one level down, where the sink creates them). Symlinks are not
/// followed and nothing else is touched. Returns the removed paths.
pub(crate) fn remove_temp_files(root: &std::path::Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut removed = Vec::new();
    let mut dirs = vec![(root.to_path_buf(), true)];
    while let Some((dir, descend)) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(io_err("list", &dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err("list", &dir))?;
            let kind = entry.file_type().map_err(io_err("stat", &entry.path()))?;
            if kind.is_dir() && descend {
                dirs.push((entry.path(), false));
            } else if kind.is_file() && is_temp_name(&entry.file_name()) {
                let path = entry.path();
                match std::fs::remove_file(&path) {
                    Ok(()) => removed.push(path),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("remove", &path)(e)),
                }
            }
        }
    }
    Ok(removed)
}
