use std::time::Duration;

use crate::digest::DigestError;
use crate::keys::KeyError;
use crate::snapshot::SourceError;
use crate::store::StoreError;

/// Errors of taking or reading a backup. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `take_backup` was given no members.
    #[error("no etcd members to take a snapshot from")]
    NoMembers,
    /// Every member failed; one entry per attempt, in order.
    #[error("no etcd member could provide a verified snapshot: {}", join(failures))]
    NoSnapshot { failures: Vec<SourceError> },
    /// The store failed (listing, writing, reading).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Invalid cluster id, time or key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Compression or encryption failed.
    #[error("compressing and encrypting the snapshot failed: {0}")]
    Encode(#[source] std::io::Error),
    /// Decryption or decompression failed: wrong key, or a corrupted/truncated object.
    #[error("decrypting and decompressing failed (wrong key or corrupted object): {0}")]
    Decode(#[source] std::io::Error),
    /// The object cannot be opened with any key: its age header is broken.
    #[error("the object is damaged: {0}")]
    Damaged(String),
    /// The restored snapshot's SHA-256 trailer does not match.
    #[error("integrity check failed: {0}")]
    Digest(#[from] DigestError),
    /// Writing the restored snapshot failed.
    #[error("writing the snapshot failed: {0}")]
    Output(#[source] std::io::Error),
    /// The store did not make progress.
    #[error("{what} stalled for {after:?}")]
    Stalled { what: &'static str, after: Duration },
    /// A failure while handling one stored backup.
    #[error("backup {key}: {source}")]
    Object {
        key: String,
        #[source]
        source: Box<Error>,
    },
    /// A pipeline stage died unexpectedly.
    #[error("internal pipeline failure: {0}")]
    Internal(String),
}

impl Error {
    /// Whether the backup (or its store location) does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Store(e) => e.is_not_found(),
            Error::Object { source, .. } => source.is_not_found(),
            _ => false,
        }
    }

    /// Whether the stored object is damaged or cannot be opened with the key given.
    pub fn is_corrupt(&self) -> bool {
        match self {
            Error::Decode(_) | Error::Damaged(_) | Error::Digest(_) => true,
            Error::Object { source, .. } => source.is_corrupt(),
            _ => false,
        }
    }

    /// A decoding failure: damage the decoder recognised as such, or else
    /// [`Error::Decode`] (wrong key, corrupted payload).
    pub(crate) fn decode(e: std::io::Error) -> Error {
        match e
            .get_ref()
            .and_then(|r| r.downcast_ref::<crate::transform::Damaged>())
        {
            Some(d) => Error::Damaged(d.to_string()),
            None => Error::Decode(e),
        }
    }

    pub(crate) fn in_object(self, key: &str) -> Error {
        match self {
            e @ Error::Object { .. } => e,
            e => Error::Object {
                key: key.to_string(),
                source: Box::new(e),
            },
        }
    }
}

fn join(failures: &[SourceError]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
