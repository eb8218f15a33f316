//! The wire form of a point-in-time restore's report: the server sends it
//! (JSON, in the [`REPORT_HEADER`] header) with the snapshot it made, and
//! `omnictl` reads it back. One type, so the two cannot drift apart.

use serde::{Deserialize, Serialize};

/// Header carrying the restore's report (JSON) with the snapshot.
pub const REPORT_HEADER: &str = "x-omni-restore-point";

/// What a point-in-time restore produced. Fields an older server does not
/// send read as their default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PitrReport {
    /// Time of the full backup it started from (unix seconds).
    pub full_unix: i64,
    /// Revision held by that full snapshot.
    pub snapshot_revision: i64,
    /// Revision of the result.
    pub revision: i64,
    /// When omni received that revision (unix ms); the full backup's
    /// time when no revision was replayed.
    pub point_ms: i64,
    /// `point_ms` in RFC 3339.
    pub point: String,
    pub replayed_revisions: u64,
    pub replayed_events: u64,
    /// Puts whose lease was granted after the full backup: restored
    /// without a lease.
    pub leases_dropped: u64,
    pub segments_read: u64,
    /// SHA-256 of the resulting db (etcd's trailer, verified).
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_round_trips_and_tolerates_missing_fields() {
        let r = PitrReport {
            full_unix: 1_764_510_000,
            snapshot_revision: 47_000,
            revision: 48_213,
            point_ms: 1_764_513_727_412,
            point: "2025-11-30T14:42:07.412Z".into(),
            replayed_revisions: 1_213,
            replayed_events: 1_500,
            leases_dropped: 3,
            segments_read: 361,
            sha256: "ab".repeat(32),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"point_ms\":1764513727412"), "{json}");
        assert_eq!(serde_json::from_str::<PitrReport>(&json).unwrap(), r);
        let old: PitrReport = serde_json::from_str(r#"{"revision": 7}"#).unwrap();
        assert_eq!((old.revision, old.segments_read), (7, 0));
    }
}
