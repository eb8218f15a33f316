//! Restore drills: proof that a cluster's newest backup restores.

use serde::{Deserialize, Serialize};

use super::Kind;
use crate::duration::ProtoDuration;
use crate::kinds::{Column, Writer};
use crate::{Timestamp, NS_EPHEMERAL};

/// Per-cluster result of the latest restore drill, written only by the
/// drill controller. `status` uses the backup status codes
/// ([`super::backup::status`]): 1 ok, 2 error, 3 running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdBackupDrillStatusSpec {
    pub status: i32,
    pub error: String,
    /// The backup drilled, `<cluster>-<unix seconds>`.
    pub backup: String,
    /// Keys in the restored etcd.
    pub keys: u64,
    /// Revision of the restored etcd.
    pub revision: i64,
    /// Database size of the restored etcd, bytes.
    pub dbsize: u64,
    /// How long the drill took, download to health check.
    pub duration: ProtoDuration,
    pub startedat: Timestamp,
    pub finishedat: Timestamp,
    /// The store whose copy was restored, when the cluster has more than
    /// one (the secondary's when the primary's copy was missing or broken).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub store: String,
    /// For a continuously backed-up cluster, the point the drill proved
    /// restorable: the full backup with its delta chain replayed up to
    /// this revision (`revision` then equals it)...
    #[serde(skip_serializing_if = "is_zero")]
    pub pointrevision: i64,
    /// ...which omni received at this time...
    #[serde(skip_serializing_if = "Timestamp::is_zero")]
    pub pointat: Timestamp,
    /// ...from this many segments.
    #[serde(skip_serializing_if = "is_zero")]
    pub segments: u64,
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl Kind for EtcdBackupDrillStatusSpec {
    const TYPE: &'static str = "EtcdBackupDrillStatuses.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_EPHEMERAL;
    const ALIASES: &'static [&'static str] = &["etcdbackupdrillstatus", "etcdbackupdrillstatuses"];
    const COLUMNS: &'static [Column] = &[
        Column::new("STATUS", "status"),
        Column::new("BACKUP", "backup"),
        Column::new("KEYS", "keys"),
        Column::new("REVISION", "revision"),
        Column::new("DB SIZE", "dbsize"),
        Column::new("FINISHED AT", "finishedat"),
        Column::new("ERROR", "error"),
    ];
    const WRITER: Writer = Writer::Controller("EtcdBackupDrillController");
}
