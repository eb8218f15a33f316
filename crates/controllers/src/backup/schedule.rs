//! When is a cluster's next backup due? Pure functions, tested without
//! clocks.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use omni_resources::specs::backup::EtcdBackupStatusSpec;
use omni_resources::Timestamp;

/// Server-wide schedule knobs.
#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    pub min_interval: Duration,
    pub max_interval: Duration,
    /// Upper bound of the per-cluster random delay added to each interval,
    /// so clusters with equal intervals do not all fire at once.
    pub max_jitter: Duration,
}

/// Clamps a cluster's interval into the server's bounds.
pub fn effective_interval(interval: Duration, s: &ScheduleSettings) -> Duration {
    interval.clamp(s.min_interval, s.max_interval.max(s.min_interval))
}

/// A stable jitter in `[0, max)` for one cluster and one last-backup time.
pub fn jitter(cluster: &str, last_unix: i64, max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (cluster, last_unix).hash(&mut h);
    Duration::from_millis(h.finish() % max.as_millis().max(1) as u64)
}

/// Unix time (seconds, fractional) at which the next automatic backup is
/// due, given the newest backup (`None`: never backed up → due at once).
pub fn next_automatic(
    cluster: &str,
    last_backup_unix: Option<i64>,
    interval: Duration,
    s: &ScheduleSettings,
) -> f64 {
    match last_backup_unix {
        None => 0.0,
        Some(last) => {
            let i = effective_interval(interval, s);
            last as f64 + i.as_secs_f64() + jitter(cluster, last, s.max_jitter).as_secs_f64()
        }
    }
}

/// After `failures` failed automatic attempts in a row, the earliest next
/// try: the base backoff doubled per failure, never longer than the interval.
pub fn retry_at(last_attempt: Timestamp, failures: u32, base: Duration, interval: Duration) -> f64 {
    if failures == 0 {
        return 0.0;
    }
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    let delay = base.saturating_mul(factor).min(interval);
    last_attempt.as_secs_f64() + delay.as_secs_f64()
}

/// Whether a manual request at `backupat` has not been acted on yet.
pub fn manual_pending(backupat: Timestamp, status: &EtcdBackupStatusSpec) -> bool {
    !backupat.is_zero() && status.lastbackupattempt < backupat
}

/// For a pending manual request, how long until it is due (zero: now); a
/// request for a moment ahead runs at that moment, once. `None` when there
/// is nothing to do.
pub fn manual_wait(
    backupat: Timestamp,
    status: &EtcdBackupStatusSpec,
    now: Timestamp,
) -> Option<Duration> {
    if !manual_pending(backupat, status) {
        return None;
    }
    let wait = backupat.as_secs_f64() - now.as_secs_f64();
    Some(if wait > 0.0 {
        Duration::from_secs_f64(wait)
    } else {
        Duration::ZERO
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ScheduleSettings {
        ScheduleSettings {
            min_interval: Duration::from_secs(3600),
            max_interval: Duration::from_secs(86400),
            max_jitter: Duration::ZERO,
        }
    }

    #[test]
    fn first_backup_is_due_at_once_then_every_interval() {
        let s = settings();
        assert_eq!(
            next_automatic("c", None, Duration::from_secs(3600), &s),
            0.0
        );
        assert_eq!(
            next_automatic("c", Some(1000), Duration::from_secs(3600), &s),
            4600.0
        );
    }

    #[test]
    fn intervals_are_clamped_into_server_bounds() {
        let s = settings();
        assert_eq!(
            next_automatic("c", Some(0), Duration::from_secs(60), &s),
            3600.0
        );
        assert_eq!(
            next_automatic("c", Some(0), Duration::from_secs(999_999), &s),
            86400.0
        );
    }

    #[test]
    fn jitter_is_bounded_and_stable() {
        let max = Duration::from_secs(600);
        for i in 0..100 {
            let j = jitter("c", i, max);
            assert!(j < max);
            assert_eq!(j, jitter("c", i, max));
        }
        assert_ne!(jitter("a", 1, max), jitter("b", 1, max));
    }

    #[test]
    fn failed_automatic_backups_back_off_up_to_the_interval() {
        let t = Timestamp::from_unix(1000);
        let base = Duration::from_secs(30);
        let hour = Duration::from_secs(3600);
        assert_eq!(retry_at(t, 0, base, hour), 0.0);
        assert_eq!(retry_at(t, 1, base, hour), 1030.0);
        assert_eq!(retry_at(t, 2, base, hour), 1060.0);
        assert_eq!(retry_at(t, 4, base, hour), 1240.0);
        assert_eq!(retry_at(t, 40, base, hour), 4600.0);
    }

    #[test]
    fn a_request_ahead_of_now_waits_for_its_moment_and_runs_once() {
        let mut st = EtcdBackupStatusSpec::default();
        let at = Timestamp::from_unix(1030);
        assert_eq!(
            manual_wait(at, &st, Timestamp::from_unix(1000)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            manual_wait(at, &st, Timestamp::from_unix(1031)),
            Some(Duration::ZERO)
        );
        // Attempted at (or after) its moment: done, even though it was ahead.
        st.lastbackupattempt = Timestamp::from_unix(1031);
        assert_eq!(manual_wait(at, &st, Timestamp::from_unix(1032)), None);
    }

    #[test]
    fn manual_request_is_pending_until_attempted() {
        let mut st = EtcdBackupStatusSpec::default();
        let at = Timestamp::from_unix(100);
        assert!(manual_pending(at, &st));
        st.lastbackupattempt = Timestamp {
            seconds: 100,
            nanos: 5,
        };
        assert!(!manual_pending(at, &st));
        assert!(!manual_pending(
            Timestamp::default(),
            &EtcdBackupStatusSpec::default()
        ));
    }
}
