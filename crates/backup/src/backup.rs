//! `take_backup`: snapshot → verify → zstd → age → store, one member at a time.
//!
//! Three stages run concurrently over bounded channels: the snapshot reader (async,
//! verifies the trailer), the compressor/encryptor (blocking thread) and the
//! uploader (async). The object is committed only after the trailer has been
//! verified and every stage succeeded; otherwise the upload is aborted and nothing
//! becomes visible.
//!
//! # Cancellation and crashes
//! Dropping the future at any point leaves no visible object: the local temp file is
//! deleted, and an open S3 multipart upload is aborted in a background task. A
//! process killed outright leaves invisible remains: a local temp file
//! ([`BackupStore::remove_incomplete`] removes it on the next start) or an open S3
//! upload, which [`take_backup_journaled`] records in an [`UploadJournal`] so that
//! the next start can abort it ([`BackupStore::abort_upload`]).

use std::sync::Arc;
use std::time::Duration;

use age::x25519::Recipient;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::keys::format_key;
use crate::snapshot::{
    probe, Batch, MemberEndpoint, Probe, SnapshotSource, SourceError, SourceOptions,
};
use crate::store::{BackupStore, NoJournal, ObjectSink, StoreError, UploadJournal};
use crate::transform::{compress_encrypt, DEFAULT_ZSTD_LEVEL, DEPTH};
use crate::Error;

/// What a successful backup produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupOutcome {
    /// Object key.
    pub key: String,
    /// Stored (compressed, encrypted) bytes.
    pub size: u64,
    /// Snapshot bytes, including etcd's 32-byte SHA-256 trailer.
    pub snapshot_bytes: u64,
    /// SHA-256 of the db (the verified trailer), lower-case hex.
    pub snapshot_sha256: String,
    /// Name of the member that served the snapshot.
    pub member: String,
}

/// Tuning of [`take_backup_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupOptions {
    /// Snapshot source timeouts.
    pub source: SourceOptions,
    /// zstd level (1..=19).
    pub zstd_level: i32,
    /// Longest wait for one write to the store.
    pub store_idle_timeout: Duration,
}

impl Default for BackupOptions {
    fn default() -> Self {
        Self {
            source: SourceOptions::default(),
            zstd_level: DEFAULT_ZSTD_LEVEL,
            store_idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Takes a backup of `cluster_uuid` at `at_unix` with default options; see
/// [`take_backup_with`].
///
/// # Errors
/// See [`take_backup_with`].
pub async fn take_backup(
    members: &[MemberEndpoint],
    store: &BackupStore,
    cluster_uuid: &str,
    recipient: &Recipient,
    at_unix: i64,
) -> Result<BackupOutcome, Error> {
    take_backup_with(
        &BackupOptions::default(),
        members,
        store,
        cluster_uuid,
        recipient,
        at_unix,
    )
    .await
}

/// [`take_backup_journaled`] without a journal: an S3 upload cut short by a crash
/// of the process stays open until the bucket's lifecycle rule removes it.
///
/// # Errors
/// See [`take_backup_journaled`].
pub async fn take_backup_with(
    opts: &BackupOptions,
    members: &[MemberEndpoint],
    store: &BackupStore,
    cluster_uuid: &str,
    recipient: &Recipient,
    at_unix: i64,
) -> Result<BackupOutcome, Error> {
    let journal: Arc<dyn UploadJournal> = Arc::new(NoJournal);
    take_backup_journaled(
        opts,
        &journal,
        members,
        store,
        cluster_uuid,
        recipient,
        at_unix,
    )
    .await
}

/// Takes a backup: streams a snapshot from the first healthy member (in the given
/// order; members that answer but report no leader or alarms are tried last), and
/// stores it encrypted to `recipient` under `format_key(cluster_uuid, at_unix)`.
/// A member that fails before the object is committed (connect, stream, digest) is
/// skipped and the whole pipeline restarts with the next one.
///
/// Each S3 multipart upload is recorded in `journal` before its first part is sent
/// and forgotten once it was completed or aborted (see [`UploadJournal`]).
///
/// # Errors
/// [`Error::NoMembers`]; [`Error::Key`] for a bad cluster id or time;
/// [`StoreError::AlreadyExists`] when a backup with that key exists;
/// [`Error::NoSnapshot`] listing every member's failure; [`Error::Store`] when the
/// store fails (not retried with other members), including
/// [`StoreError::Journal`]; [`Error::Encode`].
pub async fn take_backup_journaled(
    opts: &BackupOptions,
    journal: &Arc<dyn UploadJournal>,
    members: &[MemberEndpoint],
    store: &BackupStore,
    cluster_uuid: &str,
    recipient: &Recipient,
    at_unix: i64,
) -> Result<BackupOutcome, Error> {
    let target = Target {
        store,
        journal,
        recipient,
    };
    if members.is_empty() {
        return Err(Error::NoMembers);
    }
    let key = format_key(cluster_uuid, at_unix)?;
    if store.exists(&key).await? {
        return Err(StoreError::AlreadyExists { key }.into());
    }
    let mut failures = Vec::new();
    let mut deferred = Vec::new();
    for m in members {
        match probe(m, &opts.source).await {
            Ok(p) if p.unhealthy.is_none() => match attempt(opts, p, &target, &key).await? {
                Ok(outcome) => return Ok(outcome),
                Err(e) => failures.push(note(e)),
            },
            Ok(p) => {
                tracing::info!(member = %p.member, reason = ?p.unhealthy, "member unhealthy; trying it last");
                deferred.push(p);
            }
            Err(e) => failures.push(note(e)),
        }
    }
    for p in deferred {
        match attempt(opts, p, &target, &key).await? {
            Ok(outcome) => return Ok(outcome),
            Err(e) => failures.push(note(e)),
        }
    }
    Err(Error::NoSnapshot { failures })
}

fn note(e: SourceError) -> SourceError {
    tracing::warn!(error = %e, "snapshot source failed; trying the next member");
    e
}

/// Where a backup goes.
struct Target<'a> {
    store: &'a BackupStore,
    journal: &'a Arc<dyn UploadJournal>,
    recipient: &'a Recipient,
}

/// One full pipeline run against one member. The outer error is fatal (store,
/// encoder); the inner one means "try the next member".
async fn attempt(
    opts: &BackupOptions,
    mut probe: Probe,
    target: &Target<'_>,
    key: &str,
) -> Result<Result<BackupOutcome, SourceError>, Error> {
    let source = match SnapshotSource::open(&mut probe, &opts.source).await {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    run(opts, source, &probe.member, target, key).await
}

/// Pipes an open source into a new object, committing only a verified snapshot.
async fn run(
    opts: &BackupOptions,
    mut source: SnapshotSource,
    member: &str,
    target: &Target<'_>,
    key: &str,
) -> Result<Result<BackupOutcome, SourceError>, Error> {
    let mut sink = target.store.sink(key, target.journal).await?;
    let verified = match pipe(opts, &mut source, &mut sink, target.recipient, key).await {
        Ok(Ok(())) => source.finish(),
        Ok(Err(e)) => Err(e),
        Err(fatal) => {
            sink.abort().await;
            return Err(fatal);
        }
    };
    let (snapshot_bytes, snapshot_sha256) = match verified {
        Ok(v) => v,
        Err(e) => {
            sink.abort().await;
            return Ok(Err(e));
        }
    };
    let size = sink.commit().await?;
    tracing::info!(%key, %member, size, snapshot_bytes, "backup stored");
    Ok(Ok(BackupOutcome {
        key: key.to_string(),
        size,
        snapshot_bytes,
        snapshot_sha256,
        member: member.to_string(),
    }))
}

/// Streams the whole snapshot through the encoder into the sink (not committed).
async fn pipe(
    opts: &BackupOptions,
    source: &mut SnapshotSource,
    sink: &mut ObjectSink,
    recipient: &Recipient,
    key: &str,
) -> Result<Result<(), SourceError>, Error> {
    let (plain_tx, plain_rx) = mpsc::channel::<Batch>(DEPTH);
    let (sealed_tx, mut sealed_rx) = mpsc::channel::<Bytes>(DEPTH);
    let recipient = recipient.clone();
    let level = opts.zstd_level;
    let label = key.to_string();
    let encoder = tokio::task::spawn_blocking(move || {
        compress_encrypt(plain_rx, sealed_tx, recipient, level, &label)
    });

    let read = async move {
        while let Some(chunk) = source.next_chunk().await? {
            if plain_tx.send(chunk).await.is_err() {
                break; // the encoder stopped; its error explains why
            }
        }
        Ok::<_, SourceError>(())
    };
    let idle = opts.store_idle_timeout;
    let pacer = crate::limit::upload();
    // Owns the receiver: returning early on a store error closes the channel, which
    // stops the encoder, which stops the reader (no stage is left blocked).
    let write = async move {
        while let Some(chunk) = sealed_rx.recv().await {
            if let Some(p) = &pacer {
                p.pace(chunk.len()).await;
            }
            match tokio::time::timeout(idle, sink.write(&chunk)).await {
                Ok(res) => res?,
                Err(_) => {
                    return Err(Error::Stalled {
                        what: "writing to the store",
                        after: idle,
                    })
                }
            }
        }
        Ok::<_, Error>(())
    };
    let (read, write) = tokio::join!(read, write);
    let encoded = encoder.await;
    // Root cause first: a store failure stops everything upstream.
    write?;
    if let Err(e) = read {
        return Ok(Err(e));
    }
    match encoded {
        Ok(Ok(_)) => Ok(Ok(())),
        Ok(Err(e)) => Err(Error::Encode(e)),
        Err(join) => Err(Error::Internal(format!("encoder task: {join}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{download, generate_identity, parse_identity};
    use sha2::{Digest, Sha256};

    fn snapshot_chunks(db: &[u8], corrupt: bool) -> Vec<Bytes> {
        let mut all = db.to_vec();
        all.extend_from_slice(&Sha256::digest(db));
        if corrupt {
            all[db.len() / 2] ^= 0xff;
        }
        all.chunks(4096).map(Bytes::copy_from_slice).collect()
    }

    fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(e.path());
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn verified_snapshot_is_stored_and_mismatch_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::local(dir.path()).unwrap();
        let (secret, recipient) = generate_identity();
        let recipient = crate::parse_recipient(&recipient).unwrap();
        let db: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let opts = BackupOptions::default();
        let journal: Arc<dyn UploadJournal> = Arc::new(NoJournal);
        let target = Target {
            store: &store,
            journal: &journal,
            recipient: &recipient,
        };

        let key = crate::keys::format_key("c", 100).unwrap();
        let src = SnapshotSource::canned("bad", snapshot_chunks(&db, true));
        let res = run(&opts, src, "bad", &target, &key).await.unwrap();
        assert!(matches!(res, Err(SourceError::Digest { .. })), "{res:?}");
        assert!(store.list("c").await.unwrap().is_empty());
        assert!(
            files_under(dir.path()).is_empty(),
            "no temp file left: {:?}",
            files_under(dir.path())
        );

        let src = SnapshotSource::canned("good", snapshot_chunks(&db, false));
        let out = run(&opts, src, "good", &target, &key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.member, "good");
        assert_eq!(out.snapshot_bytes, db.len() as u64 + 32);
        let listed = store.list("c").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].size, out.size);
        assert_eq!(files_under(dir.path()).len(), 1);

        let mut restored = Vec::new();
        let identity = parse_identity(&secret).unwrap();
        let info = download(&store, &key, &identity, &mut restored)
            .await
            .unwrap();
        assert_eq!(info.bytes, out.snapshot_bytes);
        assert_eq!(&restored[..db.len()], &db[..]);

        // Same key again: refused, the first object stays.
        let src = SnapshotSource::canned("good", snapshot_chunks(&db, false));
        let again = run(&opts, src, "good", &target, &key).await;
        assert!(
            matches!(again, Err(Error::Store(StoreError::AlreadyExists { .. }))),
            "{again:?}"
        );
        assert_eq!(store.list("c").await.unwrap(), listed);
        assert_eq!(files_under(dir.path()).len(), 1);
    }
}
