//! What the retention controller did to each cluster's backups.

use serde::{Deserialize, Serialize};

use super::Kind;
use crate::kinds::{Column, Writer};
use crate::retention::RetentionPolicy;
use crate::{Timestamp, NS_EPHEMERAL};

/// Deletions kept in a status (newest first); older ones are only counted.
pub const DELETED_HISTORY: usize = 50;

/// Where a cluster's effective policy comes from.
pub mod source {
    /// The cluster's `spec.backupconfiguration`.
    pub const CLUSTER: &str = "cluster";
    /// The server's `--etcd-backup-keep-*` flags.
    pub const SERVER: &str = "server";
}

/// One backup the retention controller deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeletedBackup {
    /// The backup's id, `<cluster>-<unix seconds>`.
    pub id: String,
    pub createdat: Timestamp,
    pub deletedat: Timestamp,
}

/// Per-cluster retention status, written only by the retention controller.
/// Kept while the cluster's backup data exists (also after the cluster is
/// gone), because it records which backups are marked to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdBackupRetentionStatusSpec {
    /// The policy applied at the last run.
    pub policy: RetentionPolicy,
    /// `policy` in words, e.g. `keep-last=3 keep-daily=7`.
    pub summary: String,
    /// `cluster` or `server` (see [`source`]).
    pub policysource: String,
    pub lastrun: Timestamp,
    /// Backups in the store after the last run.
    pub backups: u32,
    /// Backups deleted by retention, ever.
    pub deletedtotal: u64,
    /// The latest deletions, newest first (at most [`DELETED_HISTORY`]).
    pub deleted: Vec<DeletedBackup>,
    /// IDs of backups marked to keep (by `keep: true` on a manual request).
    pub kept: Vec<String>,
    /// When a `keep: true` request was stored whose backup is not in the
    /// store yet; zero when none is pending.
    pub pendingkeep: Timestamp,
    /// The stored time of the last manual request looked at, so one request
    /// marks one backup.
    pub lastkeeprequest: Timestamp,
    /// Why the last run failed; empty when it did not.
    pub error: String,
}

impl Kind for EtcdBackupRetentionStatusSpec {
    const TYPE: &'static str = "EtcdBackupRetentionStatuses.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_EPHEMERAL;
    const ALIASES: &'static [&'static str] =
        &["etcdbackupretentionstatus", "etcdbackupretentionstatuses"];
    const COLUMNS: &'static [Column] = &[
        Column::new("POLICY", "summary"),
        Column::new("SOURCE", "policysource"),
        Column::new("BACKUPS", "backups"),
        Column::new("DELETED", "deletedtotal"),
        Column::new("LAST RUN", "lastrun"),
        Column::new("ERROR", "error"),
    ];
    const WRITER: Writer = Writer::Controller("EtcdBackupRetentionController");
}
