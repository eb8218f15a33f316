//! When is a cluster's next backup due? Pure functions, tested without
//! clocks.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use omni_resources::cron::Cadence;
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

/// When the next automatic backup of `cluster` is due, given the moment of
/// its newest backup (`None`: never backed up → due at once, the zero
/// timestamp). The moment keeps its fraction of a second: backups taken
/// one after another within a second stay that far apart a round later,
/// instead of all coming due at once on the whole second.
/// An interval is clamped into the server's bounds; a cron schedule fires
/// at its next time after the newest backup (its bounds were checked when
/// it was written). Both get the cluster's jitter. `None` when a cron
/// pattern never fires again.
pub fn next_due(
    cluster: &str,
    last_backup: Option<Timestamp>,
    cadence: &Cadence,
    s: &ScheduleSettings,
) -> Option<Timestamp> {
    let Some(last) = last_backup else {
        return Some(Timestamp::default());
    };
    let jitter = jitter(cluster, last.seconds, s.max_jitter);
    let base = match cadence {
        Cadence::Every(interval) => {
            last.as_secs_f64() + effective_interval(*interval, s).as_secs_f64()
        }
        Cadence::Cron(cron) => cron.next_after(last)?.as_secs_f64(),
    };
    Some(from_secs_f64(base + jitter.as_secs_f64()))
}

/// The longest a failed automatic backup waits before its retry: its
/// interval, or for a cron schedule the server's minimum interval.
pub fn retry_cap(cadence: &Cadence, s: &ScheduleSettings) -> Duration {
    match cadence {
        Cadence::Every(interval) => effective_interval(*interval, s),
        Cadence::Cron(_) => s.min_interval,
    }
}

fn from_secs_f64(secs: f64) -> Timestamp {
    let seconds = secs.floor();
    Timestamp {
        seconds: seconds as i64,
        nanos: ((secs - seconds) * 1e9) as i32,
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
    use omni_resources::cron::CronSchedule;

    fn settings() -> ScheduleSettings {
        ScheduleSettings {
            min_interval: Duration::from_secs(3600),
            max_interval: Duration::from_secs(86400),
            max_jitter: Duration::ZERO,
        }
    }

    fn every(secs: u64) -> Cadence {
        Cadence::Every(Duration::from_secs(secs))
    }

    fn cron(pattern: &str, tz: Option<&str>) -> Cadence {
        Cadence::Cron(Box::new(CronSchedule::parse(pattern, tz).unwrap()))
    }

    fn due(last: Option<i64>, cadence: &Cadence, s: &ScheduleSettings) -> i64 {
        next_due("c", last.map(Timestamp::from_unix), cadence, s)
            .unwrap()
            .seconds
    }

    #[test]
    fn first_backup_is_due_at_once_then_every_interval() {
        let s = settings();
        assert_eq!(due(None, &every(3600), &s), 0);
        assert_eq!(due(Some(1000), &every(3600), &s), 4600);
        // The first-backup rule holds for schedules too.
        assert_eq!(due(None, &cron("0 */6 * * *", None), &s), 0);
    }

    #[test]
    fn backups_within_one_second_come_due_as_far_apart() {
        let s = settings();
        let at = |nanos| Timestamp {
            seconds: 1000,
            nanos,
        };
        let first = next_due("c", Some(at(100_000_000)), &every(3600), &s).unwrap();
        let second = next_due("c", Some(at(900_000_000)), &every(3600), &s).unwrap();
        assert_eq!((first.seconds, second.seconds), (4600, 4600));
        let apart = second.as_secs_f64() - first.as_secs_f64();
        assert!((apart - 0.8).abs() < 1e-6, "{apart}");
    }

    #[test]
    fn intervals_are_clamped_into_server_bounds() {
        let s = settings();
        assert_eq!(due(Some(0), &every(60), &s), 3600);
        assert_eq!(due(Some(0), &every(999_999), &s), 86400);
    }

    /// 2026-10-24 12:00:00 UTC, a Saturday: Europe falls back the next night.
    const SAT_BEFORE_FALL_BACK: i64 = 1_792_843_200;

    #[test]
    fn a_schedule_fires_at_its_next_time_after_the_newest_backup() {
        let s = settings();
        let six = cron("0 */6 * * *", None);
        // Backed up at 12:00:05 (late by a few seconds): next at 18:00.
        let t = SAT_BEFORE_FALL_BACK;
        assert_eq!(due(Some(t + 5), &six, &s), t + 6 * 3600);
        // A manual backup at 13:00 does not move the 18:00 run.
        assert_eq!(due(Some(t + 3600), &six, &s), t + 6 * 3600);
        // 03:30 Berlin daily: before the change 01:30 UTC; the day after
        // the clocks go back, 02:30 UTC, 25 h later.
        let berlin = cron("30 3 * * *", Some("Europe/Berlin"));
        let sun = due(Some(t), &berlin, &s);
        assert_eq!(sun, t + 14 * 3600 + 1800);
        let mon = due(Some(sun), &berlin, &s);
        assert_eq!(mon - sun, 24 * 3600);
        // Sunday's 03:30 is already CET (UTC+1): Saturday's was CEST.
        let sat = due(Some(t - 12 * 3600), &berlin, &s);
        assert_eq!(sun - sat, 25 * 3600);
    }

    #[test]
    fn a_schedule_gets_the_same_jitter_as_an_interval() {
        let s = ScheduleSettings {
            max_jitter: Duration::from_secs(600),
            ..settings()
        };
        let t = SAT_BEFORE_FALL_BACK;
        let j = jitter("c", t, s.max_jitter).as_secs_f64();
        let at = next_due(
            "c",
            Some(Timestamp::from_unix(t)),
            &cron("0 */6 * * *", None),
            &s,
        )
        .unwrap();
        assert!((at.as_secs_f64() - (t as f64 + 6.0 * 3600.0 + j)).abs() < 1e-3);
        // The jittered backup does not push the next run past its time.
        let late = at.seconds;
        let next = next_due(
            "c",
            Some(Timestamp::from_unix(late)),
            &cron("0 */6 * * *", None),
            &s,
        )
        .unwrap();
        let j2 = jitter("c", late, s.max_jitter).as_secs_f64();
        assert!((next.as_secs_f64() - (t as f64 + 12.0 * 3600.0 + j2)).abs() < 1e-3);
        let at = next_due("c", Some(Timestamp::from_unix(t)), &every(3600), &s).unwrap();
        assert!((at.as_secs_f64() - (t as f64 + 3600.0 + j)).abs() < 1e-3);
        assert_eq!(retry_cap(&cron("0 * * * *", None), &s), s.min_interval);
        assert_eq!(retry_cap(&every(7200), &s), Duration::from_secs(7200));
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
