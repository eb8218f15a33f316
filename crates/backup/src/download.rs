//! Reading a backup back: store → age → zstd → SHA-256 trailer check → writer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use age::x25519::Identity;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::digest::TrailerVerifier;
use crate::store::BackupStore;
use crate::transform::{decrypt_decompress, DEPTH};
use crate::Error;

/// Longest wait for the next chunk from the store.
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// What a successful download produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadInfo {
    /// Bytes written: the snapshot including its 32-byte SHA-256 trailer, i.e. exactly
    /// what `etcdctl snapshot save` writes.
    pub bytes: u64,
    /// SHA-256 of the db (verified against the trailer), lower-case hex; empty
    /// with [`TrailerCheck::Reader`].
    pub sha256: String,
}

/// Who checks the snapshot's SHA-256 trailer on the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailerCheck {
    /// The download itself: a mismatch fails it.
    Here,
    /// Whoever reads `out`, which then must (omnictl checks it on the bytes
    /// it writes to disk). One SHA-256 of the whole snapshot is a second of
    /// CPU per GB; on a restore it was done twice, here and by the reader.
    /// The object is still authenticated chunk by chunk by age's
    /// ChaCha20-Poly1305, so damage to it fails the download either way.
    Reader,
}

/// Streams backup `key` decrypted and decompressed into `out`, verifying the
/// snapshot's SHA-256 trailer on the way. `out` is flushed on success.
///
/// On error `out` may hold partial data: write to a temp file (see
/// [`download_to_file`]) and keep it only on success.
///
/// # Errors
/// [`Error::Object`] naming `key`, wrapping the store error (e.g. not found), a
/// decode error (wrong key, corrupted object), a digest mismatch or an output error.
pub async fn download<W>(
    store: &BackupStore,
    key: &str,
    identity: &Identity,
    out: &mut W,
) -> Result<DownloadInfo, Error>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    download_checked(store, key, identity, out, TrailerCheck::Here).await
}

/// [`download`], with the trailer checked by `check`.
///
/// # Errors
/// As [`download`]; with [`TrailerCheck::Reader`] a digest mismatch is not one.
pub async fn download_checked<W>(
    store: &BackupStore,
    key: &str,
    identity: &Identity,
    out: &mut W,
    check: TrailerCheck,
) -> Result<DownloadInfo, Error>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    download_inner(store, key, identity, Writer(out), check)
        .await
        .map_err(|e| e.in_object(key))
}

/// [`download_checked`] into a channel: each piece of the snapshot is sent
/// as it is decoded, with no copy. The HTTP endpoint hands these pieces to
/// the response body; going through an `AsyncWrite` pipe instead cost two
/// copies of every byte and a wakeup per few KiB. A dropped receiver fails
/// the download with [`Error::Output`].
///
/// # Errors
/// As [`download_checked`].
pub async fn download_to_channel(
    store: &BackupStore,
    key: &str,
    identity: &Identity,
    out: mpsc::Sender<Bytes>,
    check: TrailerCheck,
) -> Result<DownloadInfo, Error> {
    download_inner(store, key, identity, out, check)
        .await
        .map_err(|e| e.in_object(key))
}

/// Where the decoded snapshot goes.
trait Plain {
    fn put(&mut self, chunk: Bytes) -> impl std::future::Future<Output = std::io::Result<()>>;
    fn done(&mut self) -> impl std::future::Future<Output = std::io::Result<()>>;
}

struct Writer<'a, W: ?Sized>(&'a mut W);

impl<W: AsyncWrite + Unpin + ?Sized> Plain for Writer<'_, W> {
    async fn put(&mut self, chunk: Bytes) -> std::io::Result<()> {
        self.0.write_all(&chunk).await
    }

    async fn done(&mut self) -> std::io::Result<()> {
        self.0.flush().await
    }
}

impl Plain for mpsc::Sender<Bytes> {
    async fn put(&mut self, chunk: Bytes) -> std::io::Result<()> {
        self.send(chunk).await.map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the reader went away")
        })
    }

    async fn done(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn download_inner<P: Plain>(
    store: &BackupStore,
    key: &str,
    identity: &Identity,
    mut out: P,
    check: TrailerCheck,
) -> Result<DownloadInfo, Error> {
    let mut stream = store.get_ranged(key).await?;
    let (sealed_tx, sealed_rx) = mpsc::channel::<Bytes>(DEPTH);
    let (plain_tx, mut plain_rx) = mpsc::channel::<Bytes>(DEPTH);
    let identity = identity.clone();
    let label = key.to_string();
    let decoder = tokio::task::spawn_blocking(move || {
        decrypt_decompress(sealed_rx, plain_tx, identity, &label)
    });

    let pacer = crate::limit::download();
    let feed = async move {
        loop {
            let next = tokio::time::timeout(READ_IDLE_TIMEOUT, stream.next())
                .await
                .map_err(|_| Error::Stalled {
                    what: "reading from the store",
                    after: READ_IDLE_TIMEOUT,
                })?;
            let Some(chunk) = next else {
                return Ok::<(), Error>(());
            };
            let chunk = chunk?;
            if let Some(p) = &pacer {
                p.pace(chunk.len()).await;
            }
            if sealed_tx.send(chunk).await.is_err() {
                return Ok(()); // the decoder stopped; its error explains why
            }
        }
    };
    // Owns the receiver so that an output error stops the decoder (and so the feed).
    let sink = &mut out;
    let drain = async move {
        let mut verifier = TrailerVerifier::new();
        let mut bytes = 0u64;
        while let Some(chunk) = plain_rx.recv().await {
            if check == TrailerCheck::Here {
                verifier.update(&chunk);
            }
            bytes += chunk.len() as u64;
            sink.put(chunk).await.map_err(Error::Output)?;
        }
        Ok::<_, Error>((verifier, bytes))
    };
    let (fed, drained) = tokio::join!(feed, drain);
    let decoded = decoder.await;
    fed?;
    let (verifier, bytes) = drained?;
    match decoded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Error::decode(e)),
        Err(join) => return Err(Error::Internal(format!("decoder task: {join}"))),
    }
    let sha256 = match check {
        TrailerCheck::Here => verifier.finish()?,
        TrailerCheck::Reader => String::new(),
    };
    out.done().await.map_err(Error::Output)?;
    Ok(DownloadInfo { bytes, sha256 })
}

/// Downloads backup `key` to `path` atomically: into a temp file in the same
/// directory, `fsync`ed, then renamed over `path`. On any failure (or if the future is
/// dropped) the temp file is removed and `path` is untouched.
///
/// # Errors
/// As [`download`], plus I/O errors creating or renaming the file.
pub async fn download_to_file(
    store: &BackupStore,
    key: &str,
    identity: &Identity,
    path: impl AsRef<Path>,
) -> Result<DownloadInfo, Error> {
    let path = path.as_ref().to_path_buf();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let d = dir.clone();
    let tmp = tokio::task::spawn_blocking(move || {
        tempfile::Builder::new()
            .prefix(".omni-download-")
            .suffix(".partial")
            .tempfile_in(d)
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
    .map_err(Error::Output)
    .map_err(|e| e.in_object(key))?;
    let (file, tmp_path) = tmp.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let info = download(store, key, identity, &mut file).await?;
    let finish = async {
        file.sync_all().await?;
        drop(file);
        tokio::task::spawn_blocking(move || {
            tmp_path.persist(&path).map_err(|e| e.error)?;
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(std::io::Error::other)?
    };
    finish.await.map_err(|e| Error::Output(e).in_object(key))?;
    Ok(info)
}

#[cfg(test)]
mod tests_support {
    use super::*;
    use crate::transform::compress_encrypt;

    /// Seals `plain` the way `take_backup` does and stores it under `key` in `root`.
    pub(super) async fn put_sealed(
        root: &Path,
        key: &str,
        plain: Vec<u8>,
        recipient: age::x25519::Recipient,
    ) {
        let (ptx, prx) = mpsc::channel(DEPTH);
        let (stx, mut srx) = mpsc::channel(DEPTH);
        let label = key.to_string();
        let enc =
            tokio::task::spawn_blocking(move || compress_encrypt(prx, stx, recipient, 3, &label));
        ptx.send(Bytes::from(plain)).await.unwrap();
        drop(ptx);
        let mut sealed = Vec::new();
        while let Some(b) = srx.recv().await {
            sealed.extend_from_slice(&b);
        }
        enc.await.unwrap().unwrap();
        let path = root.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, sealed).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;

    #[tokio::test]
    async fn wrong_trailer_fails_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::local(dir.path().join("store")).unwrap();
        let identity = Identity::generate();
        let key = crate::keys::format_key("c", 7).unwrap();
        // A "snapshot" whose last 32 bytes are not the SHA-256 of the rest.
        put_sealed(
            &dir.path().join("store"),
            &key,
            vec![7u8; 10_000],
            identity.to_public(),
        )
        .await;

        let out = dir.path().join("restored.db");
        let err = download_to_file(&store, &key, &identity, &out)
            .await
            .unwrap_err();
        assert!(err.is_corrupt(), "{err}");
        assert!(
            matches!(&err, Error::Object { source, .. } if matches!(**source, Error::Digest(_))),
            "{err:?}"
        );
        assert!(err.to_string().contains(&key), "{err}");
        assert!(!out.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("store")]);

        // Wrong identity: decode error, also naming the key.
        let other = Identity::generate();
        let err = download_to_file(&store, &key, &other, &out)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Object { source, .. } if matches!(**source, Error::Decode(_))),
            "{err:?}"
        );
        assert!(!out.exists());

        // A damaged age header: said so, naming the key; not age's "upgrade" advice.
        let mut bytes = std::fs::read(dir.path().join("store").join(&key)).unwrap();
        bytes[0] ^= 0x20;
        std::fs::write(dir.path().join("store").join(&key), bytes).unwrap();
        let err = download_to_file(&store, &key, &identity, &out)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            err.is_corrupt()
                && msg == format!("backup {key}: the object is damaged: its age header is unreadable (overwritten or truncated)"),
            "{msg}"
        );
        assert!(!out.exists());

        // Missing object: not found, naming the key.
        let missing = crate::keys::format_key("c", 8).unwrap();
        let err = download_to_file(&store, &missing, &identity, &out)
            .await
            .unwrap_err();
        assert!(
            err.is_not_found() && err.to_string().contains(&missing),
            "{err}"
        );
    }
}

#[cfg(test)]
mod stall_tests {
    use super::tests_support::*;
    use super::*;

    /// A writer that fails on the first write.
    struct Broken;

    impl AsyncWrite for Broken {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Ready(Err(std::io::Error::other("disk full")))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn output_error_stops_the_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::local(dir.path()).unwrap();
        let identity = Identity::generate();
        let key = crate::keys::format_key("c", 9).unwrap();
        // Far more than the channels hold, so a stage that kept running would block.
        let plain: Vec<u8> = (0..24_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        put_sealed(dir.path(), &key, plain, identity.to_public()).await;
        let res = tokio::time::timeout(
            Duration::from_secs(20),
            download(&store, &key, &identity, &mut Broken),
        )
        .await;
        let err = res.expect("download must not hang").unwrap_err();
        assert!(
            matches!(&err, Error::Object { source, .. } if matches!(**source, Error::Output(_))),
            "{err:?}"
        );
    }
}
