//! What each backup this process ran measured: duration, size, throughput
//! and why it failed. Process-local (Prometheus counters restart at zero
//! with the process); the per-cluster recovery points live in the state
//! instead. Labels are a closed set, never a cluster or backup id, so the
//! series count stays fixed however many clusters there are.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// What asked for the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// An `EtcdManualBackups` request.
    Manual,
    /// The cluster's interval.
    Automatic,
}

impl Trigger {
    pub fn of(automatic: bool) -> Self {
        if automatic {
            Trigger::Automatic
        } else {
            Trigger::Manual
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Automatic => "automatic",
        }
    }
}

/// Why a backup failed, in words an alert can route on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// No etcd member answered (or the cluster has none).
    SourceUnreachable,
    /// A snapshot's SHA-256 trailer did not match.
    DigestMismatch,
    /// The store refused, failed or is not configured.
    StoreError,
    /// The backup outlived its time limit, or a stage stalled.
    Timeout,
    /// The server stopped while it ran.
    Interrupted,
    Other,
}

impl FailureReason {
    pub const ALL: [FailureReason; 6] = [
        FailureReason::SourceUnreachable,
        FailureReason::DigestMismatch,
        FailureReason::StoreError,
        FailureReason::Timeout,
        FailureReason::Interrupted,
        FailureReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::SourceUnreachable => "source_unreachable",
            FailureReason::DigestMismatch => "digest_mismatch",
            FailureReason::StoreError => "store_error",
            FailureReason::Timeout => "timeout",
            FailureReason::Interrupted => "interrupted",
            FailureReason::Other => "other",
        }
    }

    /// The reason of a failed `take_backup`. A member that sent a bad
    /// snapshot outweighs others that were unreachable: data went wrong.
    pub fn of(e: &omni_backup::Error) -> Self {
        use omni_backup::{Error, SourceError};
        match e {
            Error::NoMembers => FailureReason::SourceUnreachable,
            Error::NoSnapshot { failures } => {
                if failures
                    .iter()
                    .any(|f| matches!(f, SourceError::Digest { .. }))
                {
                    FailureReason::DigestMismatch
                } else if !failures.is_empty()
                    && failures
                        .iter()
                        .all(|f| matches!(f, SourceError::Stalled { .. }))
                {
                    FailureReason::Timeout
                } else {
                    FailureReason::SourceUnreachable
                }
            }
            Error::Digest(_) => FailureReason::DigestMismatch,
            Error::Store(_) => FailureReason::StoreError,
            Error::Stalled { .. } => FailureReason::Timeout,
            Error::Object { source, .. } => FailureReason::of(source),
            _ => FailureReason::Other,
        }
    }
}

macro_rules! label_value {
    ($t:ty) => {
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                EncodeLabelValue::encode(&self.as_str(), encoder)
            }
        }
    };
}
label_value!(Trigger);
label_value!(FailureReason);

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TriggerLabels {
    trigger: Trigger,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FailureLabels {
    trigger: Trigger,
    reason: FailureReason,
}

/// The backup controller's measurements. Cheap to clone (shared inside),
/// and kept by the server across leadership terms.
#[derive(Debug, Clone)]
pub struct BackupMetrics {
    duration: Family<TriggerLabels, Histogram>,
    size: Family<TriggerLabels, Histogram>,
    throughput: Family<TriggerLabels, Histogram>,
    failures: Family<FailureLabels, Counter>,
}

impl Default for BackupMetrics {
    fn default() -> Self {
        let m = BackupMetrics {
            // 0.25 s .. ~2.3 h: a lab cluster to a huge one near the timeout.
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.25, 2.0, 16))
            }),
            // 4 KiB .. 16 GiB stored (compressed, encrypted).
            size: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(4096.0, 4.0, 12))
            }),
            // 64 KiB/s .. 4 GiB/s of snapshot read.
            throughput: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(65536.0, 4.0, 9))
            }),
            failures: Family::default(),
        };
        // Every series exists from the start, so `increase()` sees the
        // first failure and dashboards show zeros rather than nothing.
        for trigger in [Trigger::Manual, Trigger::Automatic] {
            let t = TriggerLabels { trigger };
            m.duration.get_or_create_owned(&t);
            m.size.get_or_create_owned(&t);
            m.throughput.get_or_create_owned(&t);
            for reason in FailureReason::ALL {
                m.failures
                    .get_or_create_owned(&FailureLabels { trigger, reason });
            }
        }
        m
    }
}

impl BackupMetrics {
    /// A stored backup: how long it took, its stored size, and the
    /// snapshot bytes read per second.
    pub fn succeeded(&self, trigger: Trigger, took: Duration, stored: u64, snapshot: u64) {
        let t = TriggerLabels { trigger };
        let secs = took.as_secs_f64();
        self.duration.get_or_create(&t).observe(secs);
        self.size.get_or_create(&t).observe(stored as f64);
        if secs > 0.0 {
            self.throughput
                .get_or_create(&t)
                .observe(snapshot as f64 / secs);
        }
    }

    pub fn failed(&self, trigger: Trigger, reason: FailureReason) {
        self.failures
            .get_or_create(&FailureLabels { trigger, reason })
            .inc();
    }

    /// Failures counted so far, for tests.
    pub fn failures(&self, trigger: Trigger, reason: FailureReason) -> u64 {
        self.failures
            .get(&FailureLabels { trigger, reason })
            .map(|c| c.get())
            .unwrap_or(0)
    }

    /// Adds these families to `registry` (they stay shared with `self`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "omni_etcd_backup_duration_seconds",
            "Time one backup took, snapshot to stored object, by what asked for it",
            self.duration.clone(),
        );
        registry.register(
            "omni_etcd_backup_size_bytes",
            "Stored (compressed, encrypted) size of each backup",
            self.size.clone(),
        );
        registry.register(
            "omni_etcd_backup_throughput_bytes_per_second",
            "Snapshot bytes read per second of each backup",
            self.throughput.clone(),
        );
        registry.register(
            "omni_etcd_backup_failures",
            "Failed backups by reason: source_unreachable, digest_mismatch, store_error, timeout, interrupted, other",
            self.failures.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omni_backup::digest::DigestError;
    use omni_backup::{Error, SourceError, StoreError};

    fn connect(m: &str) -> SourceError {
        SourceError::Connect {
            member: m.into(),
            detail: "connection refused".into(),
        }
    }

    #[test]
    fn reasons_follow_the_error_kinds() {
        let unreachable = Error::NoSnapshot {
            failures: vec![connect("a"), connect("b")],
        };
        assert_eq!(
            FailureReason::of(&unreachable),
            FailureReason::SourceUnreachable
        );
        let bad_data = Error::NoSnapshot {
            failures: vec![
                connect("a"),
                SourceError::Digest {
                    member: "b".into(),
                    source: DigestError::Mismatch {
                        expected: "a".into(),
                        actual: "b".into(),
                    },
                },
            ],
        };
        assert_eq!(FailureReason::of(&bad_data), FailureReason::DigestMismatch);
        let stalled = Error::NoSnapshot {
            failures: vec![SourceError::Stalled {
                member: "a".into(),
                after: Duration::from_secs(1),
            }],
        };
        assert_eq!(FailureReason::of(&stalled), FailureReason::Timeout);
        let store = Error::Store(StoreError::NoSuchBucket { bucket: "b".into() });
        assert_eq!(FailureReason::of(&store), FailureReason::StoreError);
        let nested = Error::Object {
            key: "k".into(),
            source: Box::new(Error::Stalled {
                what: "upload",
                after: Duration::from_secs(1),
            }),
        };
        assert_eq!(FailureReason::of(&nested), FailureReason::Timeout);
        assert_eq!(
            FailureReason::of(&Error::Internal("x".into())),
            FailureReason::Other
        );
    }

    #[test]
    fn encodes_closed_label_sets() {
        let m = BackupMetrics::default();
        m.succeeded(Trigger::Manual, Duration::from_secs(2), 5000, 1 << 20);
        m.failed(Trigger::Automatic, FailureReason::SourceUnreachable);
        assert_eq!(
            m.failures(Trigger::Automatic, FailureReason::SourceUnreachable),
            1
        );
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("omni_etcd_backup_duration_seconds_count{trigger=\"manual\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("omni_etcd_backup_duration_seconds_count{trigger=\"automatic\"} 0"),
            "{text}"
        );
        assert!(text.contains(
            "omni_etcd_backup_failures_total{trigger=\"automatic\",reason=\"source_unreachable\"} 1"
        ), "{text}");
        assert!(
            text.contains(
                "omni_etcd_backup_throughput_bytes_per_second_sum{trigger=\"manual\"} 524288"
            ),
            "{text}"
        );
        // 2 triggers × 6 reasons, nothing else.
        let failure_series = text
            .lines()
            .filter(|l| l.starts_with("omni_etcd_backup_failures_total{"))
            .count();
        assert_eq!(failure_series, 12, "{text}");
    }
}
