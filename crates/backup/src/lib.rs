//! The etcd backup pipeline: an etcd v3 `Maintenance.Snapshot` stream (SHA-256
//! trailer verified while streaming) → zstd → age (X25519) → a [`BackupStore`]
//! (local directory or S3), with memory bounded independently of the db size; and
//! the way back ([`download`], [`download_to_file`]).
//!
//! A downloaded file is byte for byte what `etcdctl snapshot save` writes, so
//! `etcdutl snapshot restore` accepts it. Without this crate a backup opens with
//! the standard tools: `age -d -i key.txt < obj | zstd -d > snapshot.db`.
//!
//! Objects are named `<cluster-uuid>/<inverted-ts>.snapshot` ([`keys`], the
//! reference product's names) so a plain listing is newest first. No object is
//! visible until complete.

mod backup;
mod crypto;
pub mod delta;
mod download;
mod error;
mod label;
pub mod limit;
pub mod probe;
pub mod snapshot;
pub mod store;
mod transform;

pub use age::secrecy;
pub use backup::{
    take_backup, take_backup_journaled, take_backup_with, BackupOptions, BackupOutcome,
};
pub use crypto::{
    generate_identity, parse_identity, parse_recipient, recipient_of, Identity, KeyParseError,
    Recipient,
};
pub use download::{
    download, download_checked, download_to_channel, download_to_file, DownloadInfo, TrailerCheck,
};
pub use error::Error;
pub use limit::{mbps_to_bytes_per_sec, set_transfer_limits};
/// The object format, shared with `omnictl` through `omni-snapshot`.
pub use omni_snapshot::{digest, keys};
pub use snapshot::{MemberEndpoint, SourceError, SourceOptions, TlsMaterial};
pub use store::{
    BackupObject, BackupStore, JournalError, NoJournal, OpenUpload, S3Settings, StoreError,
    UploadJournal,
};
pub use transform::DEFAULT_ZSTD_LEVEL;
