//! Which alerts fire: pure functions from what the state says about a
//! cluster (or the store) and a receiver's thresholds to conditions. No
//! clock is read; `now` is given.

use std::time::Duration;

use omni_resources::duration::format_go_duration;
use omni_resources::specs::alert::{event, AlertReceiverSpec};
use omni_resources::specs::backup::{status, EtcdBackupStatusSpec};
use omni_resources::specs::backup_drill::EtcdBackupDrillStatusSpec;
use omni_resources::specs::backup_retention::EtcdBackupRetentionStatusSpec;
use omni_resources::specs::backup_store::EtcdBackupCopyStatusSpec;
use omni_resources::Timestamp;

pub const CRITICAL: &str = "critical";
pub const WARNING: &str = "warning";

/// A firing condition, before delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub alert: &'static str,
    pub severity: &'static str,
    pub summary: String,
    pub description: String,
}

/// What the state says about one cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    pub cluster: String,
    /// When the cluster was created: the reference point for staleness
    /// before its first good backup.
    pub created: Timestamp,
    /// The interval automatic backups are expected at; `None` when the
    /// cluster has no automatic backups (nothing can be stale).
    pub interval: Option<Duration>,
    pub backup: Option<EtcdBackupStatusSpec>,
    pub drill: Option<EtcdBackupDrillStatusSpec>,
    pub retention: Option<EtcdBackupRetentionStatusSpec>,
    /// Copies to the cluster's secondary store, when it has one.
    pub copy: Option<EtcdBackupCopyStatusSpec>,
    /// Consecutive retention runs that deleted nothing while over policy
    /// (counted by [`count_idle_runs`]).
    pub retention_idle_runs: u32,
}

/// The expected backup interval of a cluster: its own, else (automatic
/// backups configured some other way, e.g. a schedule) the server's
/// longest allowed interval; `None` without automatic backups.
pub fn expected_interval(
    spec: &omni_resources::specs::cluster::ClusterSpec,
    server_max: Duration,
) -> Option<Duration> {
    spec.backupconfiguration.as_ref()?;
    Some(spec.backup_interval().unwrap_or(server_max))
}

/// When the cluster's backups turn stale for a receiver waiting `k`
/// intervals: `None` when they cannot (no automatic backups).
pub fn stale_at(facts: &ClusterFacts, k: u32) -> Option<Timestamp> {
    let interval = facts.interval?;
    let last_good = facts
        .backup
        .as_ref()
        .map(|b| b.lastbackuptime)
        .filter(|t| !t.is_zero())
        .unwrap_or(facts.created);
    let grace = interval.as_secs().saturating_mul(u64::from(k.max(1)));
    Some(Timestamp::from_unix(
        last_good.seconds.saturating_add(grace as i64),
    ))
}

/// The conditions that fire for one cluster as `receiver` sees them (its
/// event filter is applied by the caller).
pub fn cluster_conditions(
    facts: &ClusterFacts,
    receiver: &AlertReceiverSpec,
    now: Timestamp,
) -> Vec<Condition> {
    let c = &facts.cluster;
    let mut out = Vec::new();
    if let Some(b) = facts.backup.as_ref().filter(|b| b.status == status::ERROR) {
        out.push(Condition {
            alert: event::BACKUP_FAILED,
            severity: CRITICAL,
            summary: format!("etcd backup of cluster {c} failed"),
            description: b.error.clone(),
        });
    }
    if let Some(at) = stale_at(facts, receiver.staleafterintervals) {
        if now >= at {
            let interval = format_go_duration(facts.interval.unwrap_or_default());
            let last = facts
                .backup
                .as_ref()
                .map(|b| b.lastbackuptime)
                .filter(|t| !t.is_zero());
            out.push(Condition {
                alert: event::BACKUP_STALE,
                severity: CRITICAL,
                summary: format!(
                    "cluster {c} has had no good etcd backup for {} backup intervals ({interval} each)",
                    receiver.staleafterintervals
                ),
                description: match last {
                    Some(t) => format!("last good backup at {}", rfc3339(t)),
                    None => "no good backup yet".to_string(),
                },
            });
        }
    }
    if let Some(d) = facts.drill.as_ref().filter(|d| d.status == status::ERROR) {
        out.push(Condition {
            alert: event::DRILL_FAILED,
            severity: WARNING,
            summary: format!("restore drill of cluster {c} failed"),
            description: format!("backup {}: {}", d.backup, d.error),
        });
    }
    if facts.retention_idle_runs >= receiver.retentionidleruns {
        let r = facts.retention.clone().unwrap_or_default();
        out.push(Condition {
            alert: event::RETENTION_IDLE,
            severity: WARNING,
            summary: format!(
                "retention of cluster {c} deleted nothing for {} runs while over policy",
                facts.retention_idle_runs
            ),
            description: format!(
                "{} backups stored, policy {}{}",
                r.backups,
                r.summary,
                if r.error.is_empty() {
                    String::new()
                } else {
                    format!("; error: {}", r.error)
                }
            ),
        });
    }
    if let Some(cp) = facts.copy.as_ref().filter(|s| s.status == status::ERROR) {
        out.push(Condition {
            alert: event::COPY_FAILED,
            severity: WARNING,
            summary: format!(
                "backups of cluster {c} are not being copied to store {}",
                cp.secondarystore
            ),
            description: format!(
                "{} backup(s) without their copy, {} failed attempt(s) in a row: {}",
                cp.pending, cp.attempts, cp.error
            ),
        });
    }
    out
}

/// Whether `alert` keeps its current state because a new attempt is under
/// way: a running backup (or drill) neither proves nor clears a failure.
pub fn holds(facts: &ClusterFacts, alert: &str) -> bool {
    match alert {
        event::BACKUP_FAILED => facts
            .backup
            .as_ref()
            .is_some_and(|b| b.status == status::RUNNING),
        event::DRILL_FAILED => facts
            .drill
            .as_ref()
            .is_some_and(|d| d.status == status::RUNNING),
        event::COPY_FAILED => facts
            .copy
            .as_ref()
            .is_some_and(|s| s.status == status::RUNNING),
        _ => false,
    }
}

/// The store condition: a configuration error in the overall status.
pub fn store_condition(configuration_error: &str) -> Option<Condition> {
    (!configuration_error.is_empty()).then(|| Condition {
        alert: event::STORE_CONFIG_INVALID,
        severity: CRITICAL,
        summary: "the backup store configuration is invalid".to_string(),
        description: configuration_error.to_string(),
    })
}

/// Whether more backups are stored than any reading of the policy keeps:
/// each rule keeps at most its count, plus the newest and pinned ones.
pub fn over_policy(r: &EtcdBackupRetentionStatusSpec) -> bool {
    let p = &r.policy;
    if p.is_empty() {
        return false;
    }
    let bound = u64::from(p.keeplast)
        + u64::from(p.keephourly)
        + u64::from(p.keepdaily)
        + u64::from(p.keepweekly)
        + u64::from(p.keepmonthly)
        + r.kept.len() as u64
        + 1;
    u64::from(r.backups) > bound
}

/// The idle-run counter after a retention status change: a new run that
/// deleted nothing while over policy counts one more; any deletion, or
/// being within policy, resets it; the same run seen again changes nothing.
/// Returns the new count and the run (its `lastrun`, `deletedtotal`) seen.
pub fn count_idle_runs(
    prev: (u32, Timestamp, u64),
    r: &EtcdBackupRetentionStatusSpec,
) -> (u32, Timestamp, u64) {
    let (count, seen_run, seen_deleted) = prev;
    if r.lastrun == seen_run {
        return prev;
    }
    let deleted = r.deletedtotal != seen_deleted && !seen_run.is_zero();
    let count = if deleted || !over_policy(r) {
        0
    } else {
        count + 1
    };
    (count, r.lastrun, r.deletedtotal)
}

/// `2026-11-30T12:00:00Z`.
pub fn rfc3339(t: Timestamp) -> String {
    let days = t.seconds.div_euclid(86_400);
    let secs = t.seconds.rem_euclid(86_400);
    let (y, m, d) = omni_resources::retention::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}
