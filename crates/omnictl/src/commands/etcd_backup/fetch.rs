//! Getting a backup out of omni into a local file: pick it, stream it,
//! verify etcd's SHA-256 trailer, and rename into place only when it all
//! checked out. Shared by `download` and `restore`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use futures::StreamExt;
use omni_resources::specs::backup::EtcdBackupSpec;
use omni_resources::specs::Kind;
use omni_resources::{Resource, LABEL_CLUSTER, NS_EXTERNAL};
use omni_snapshot::digest::TrailerVerifier;

use super::super::Context;

/// A backup written to a local file.
#[derive(Debug)]
pub struct Fetched {
    /// The backup's id, `<cluster>-<unix seconds>`.
    pub id: String,
    /// The verified SHA-256 of the db; `None` for an encrypted download.
    pub sha256: Option<String>,
}

/// Picks the backup: by ID or snapshot name, or the newest.
pub async fn choose(
    ctx: &Context,
    cluster: &str,
    snapshot: Option<&str>,
) -> anyhow::Result<Resource> {
    let selector = format!("{LABEL_CLUSTER}={cluster}");
    let backups = ctx
        .client()?
        .list(EtcdBackupSpec::TYPE, NS_EXTERNAL, Some(&selector))
        .await
        .with_context(|| format!("listing the backups of cluster {cluster}"))?;
    let found = match snapshot {
        None => backups.into_iter().next(),
        Some(want) => backups.into_iter().find(|b| {
            b.metadata.id == want || b.spec.get("snapshot").and_then(|s| s.as_str()) == Some(want)
        }),
    };
    match (found, snapshot) {
        (Some(b), _) => Ok(b),
        (None, None) => bail!("cluster {cluster} has no backups"),
        (None, Some(s)) => bail!("cluster {cluster} has no backup {s:?} (see omnictl get etcdbackup --selector {selector})"),
    }
}

/// Picks a backup of `cluster` (`snapshot`, or the newest) and writes it to
/// `path`: the snapshot (trailer verified), or with `encrypted` the stored
/// object as is. A failure leaves nothing at `path`.
pub async fn fetch(
    ctx: &Context,
    cluster: &str,
    snapshot: Option<&str>,
    encrypted: bool,
    path: &Path,
) -> anyhow::Result<Fetched> {
    let mode = if encrypted {
        Mode::Encrypted
    } else {
        Mode::Verified
    };
    fetch_with(ctx, cluster, snapshot, mode, path).await
}

/// [`fetch`] of the snapshot, trailer verified, into a scratch file that
/// `etcdutl snapshot restore` reads once before it is removed; see
/// [`Mode::Scratch`].
pub async fn fetch_scratch(
    ctx: &Context,
    cluster: &str,
    snapshot: Option<&str>,
    path: &Path,
) -> anyhow::Result<Fetched> {
    fetch_with(ctx, cluster, snapshot, Mode::Scratch, path).await
}

/// What the local file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// The stored object as is; synced to disk.
    Encrypted,
    /// The snapshot, its trailer checked here; synced to disk.
    Verified,
    /// The snapshot for `etcdutl snapshot restore`: its trailer checked here
    /// on the bytes as they are written, so that etcdutl can skip its own
    /// second read of the whole file (`--skip-hash-check`); not synced, since
    /// a crash loses it anyway and etcdutl syncs what it writes.
    Scratch,
}

async fn fetch_with(
    ctx: &Context,
    cluster: &str,
    snapshot: Option<&str>,
    mode: Mode,
    path: &Path,
) -> anyhow::Result<Fetched> {
    let backup = choose(ctx, cluster, snapshot).await?;
    let id = backup.metadata.id.clone();
    let size = backup
        .spec
        .get("size")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    // Checked here, as written: the server need not hash it too.
    let what = match mode {
        Mode::Encrypted => "object",
        Mode::Verified | Mode::Scratch => "snapshot?check=client",
    };
    let stream = ctx
        .client()?
        .get_stream(&format!("/api/v1/etcd-backups/{id}/{what}"))
        .await
        .with_context(|| format!("backup {id}"))?;
    match write_atomically(path, stream.body, mode, size).await {
        Ok(sha256) => Ok(Fetched { id, sha256 }),
        // A broken stream does not say why; the server's verification does.
        Err(e) => match verify(ctx, &id).await {
            Ok(Verdict {
                ok: false, error, ..
            }) => {
                bail!("backup {id}: integrity check failed: {error}; nothing was written")
            }
            _ => Err(e.context(format!("backup {id}"))),
        },
    }
}

/// The server's verdict on one backup, read end to end on its side.
#[derive(Debug, serde::Deserialize)]
pub struct Verdict {
    pub ok: bool,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub sha256: String,
    #[serde(default)]
    pub bytes: u64,
    /// The store whose copy the verdict is about.
    #[serde(default)]
    pub store: String,
    /// Copies read before it that failed their check.
    #[serde(default)]
    pub failedcopies: Vec<FailedCopy>,
}

/// A copy of a backup that failed the server's check.
#[derive(Debug, serde::Deserialize)]
pub struct FailedCopy {
    pub store: String,
    pub error: String,
}

/// Asks the server to read backup `id` end to end.
pub async fn verify(ctx: &Context, id: &str) -> anyhow::Result<Verdict> {
    let stream = ctx
        .client()?
        .get_stream(&format!("/api/v1/etcd-backups/{id}/verify"))
        .await?;
    let mut body = Vec::new();
    let mut chunks = stream.body;
    while let Some(chunk) = chunks.next().await {
        body.extend_from_slice(&chunk?);
    }
    serde_json::from_slice(&body).context("unexpected verification answer")
}

/// Write buffer: the body arrives in pieces of a few KiB to a few hundred.
const WRITE_BUF: usize = 1024 * 1024;

/// Streams into a temp file beside `path` (see [`Mode`]); renames only when
/// everything checked out, so a failed download leaves nothing at `path`.
pub(super) async fn write_atomically(
    path: &Path,
    mut body: futures::stream::BoxStream<'static, Result<bytes::Bytes, omni_client::ClientError>>,
    mode: Mode,
    size_hint: u64,
) -> anyhow::Result<Option<String>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".omnictl-download-")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    let mut verifier = TrailerVerifier::new();
    let progress = Progress::new(size_hint);
    let mut written = 0u64;
    let mut out = std::io::BufWriter::with_capacity(WRITE_BUF, tmp.as_file());
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("download interrupted")?;
        match mode {
            Mode::Verified | Mode::Scratch => verifier.update(&chunk),
            Mode::Encrypted => {}
        }
        out.write_all(&chunk).context("writing the snapshot")?;
        written += chunk.len() as u64;
        progress.set(written);
    }
    out.flush().context("writing the snapshot")?;
    drop(out);
    progress.finish();
    let sha = match mode {
        Mode::Verified | Mode::Scratch => Some(
            verifier
                .finish()
                .context("integrity check failed; nothing was written")?,
        ),
        Mode::Encrypted => None,
    };
    if mode != Mode::Scratch {
        tmp.as_file().sync_all().context("syncing the snapshot")?;
    }
    tmp.persist(path)
        .with_context(|| format!("moving the snapshot to {}", path.display()))?;
    Ok(sha)
}

/// A progress bar on a terminal, nothing otherwise.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(total: u64) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bytes} downloaded ({bytes_per_sec}) {spinner}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Progress(Some(bar))
    }

    fn set(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.set_position(n);
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omni_snapshot::digest::{DigestError, TRAILER_LEN};

    type Body = futures::stream::BoxStream<'static, Result<bytes::Bytes, omni_client::ClientError>>;

    fn body(data: Vec<u8>) -> Body {
        let chunks: Vec<_> = data
            .chunks(1000)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(chunks).boxed()
    }

    /// `db` and its SHA-256 trailer, as etcd sends it; and the digest in hex.
    fn snapshot(db: &[u8]) -> (Vec<u8>, String) {
        // The verifier names the digest it computed when the trailer is wrong.
        let mut v = TrailerVerifier::new();
        v.update(db);
        v.update(&[0; TRAILER_LEN]);
        let Err(DigestError::Mismatch { actual, .. }) = v.finish() else {
            panic!("a zero trailer matched");
        };
        let mut s = db.to_vec();
        s.extend(
            (0..TRAILER_LEN).map(|i| u8::from_str_radix(&actual[2 * i..2 * i + 2], 16).unwrap()),
        );
        (s, actual)
    }

    /// Pieces of every size, empty ones included, come out whole and in
    /// order through the write buffer.
    #[tokio::test]
    async fn pieces_of_any_size_are_written_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.db");
        let db: Vec<u8> = (0..3 * WRITE_BUF as u32 + 777)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let (good, digest) = snapshot(&db);
        let mut pieces = Vec::new();
        let (mut at, mut n) = (0, 0usize);
        while at < good.len() {
            // 0, 1, 2 KiB, ... up to 1.2 MiB, then around again.
            let len = (n % 1201) * 1024;
            n += 37;
            let end = (at + len).min(good.len());
            pieces.push(Ok(bytes::Bytes::copy_from_slice(&good[at..end])));
            at = end;
        }
        let body = futures::stream::iter(pieces).boxed();
        let sha = write_atomically(&path, body, Mode::Verified, 0)
            .await
            .unwrap();
        assert_eq!(sha, Some(digest));
        assert!(std::fs::read(&path).unwrap() == good);
    }

    /// etcdutl runs with `--skip-hash-check`: the scratch file's check is the only one.
    #[tokio::test]
    async fn a_scratch_snapshot_is_verified_as_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.db");
        let db: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let (good, digest) = snapshot(&db);
        let sha = write_atomically(&path, body(good.clone()), Mode::Scratch, 0)
            .await
            .unwrap();
        assert_eq!(sha, Some(digest));
        assert_eq!(std::fs::read(&path).unwrap(), good);
        std::fs::remove_file(&path).unwrap();

        let mut bad = good;
        bad[5000] ^= 1;
        let err = write_atomically(&path, body(bad), Mode::Scratch, 0)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("SHA-256 mismatch"), "{err:#}");
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
