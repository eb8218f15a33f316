//! When a cluster's next restore drill is due: after each new backup, or
//! on the drill's own schedule. Pure functions, tested without clocks.

use std::time::Duration;

use omni_resources::cron::Cadence;
use omni_resources::specs::cluster::{ClusterSpec, RestoreDrill};
use omni_resources::Timestamp;

/// How a cluster wants its drills.
#[derive(Debug, Clone)]
pub enum DrillMode {
    Off,
    /// Each new backup, once.
    AfterEachBackup,
    /// The newest backup, on the drill's own schedule.
    Scheduled(Cadence),
}

impl DrillMode {
    /// The cluster's mode; the server-wide flag turns `Off` into
    /// [`DrillMode::AfterEachBackup`], a cluster's own schedule wins.
    pub fn of(spec: &ClusterSpec, all_clusters: bool) -> DrillMode {
        let own = spec.backupconfiguration.as_ref().map(|c| &c.restoredrill);
        match own {
            Some(RestoreDrill::Scheduled(_)) => match spec.drill_cadence() {
                Some(c) => DrillMode::Scheduled(c),
                // Refused on write; an old or hand-edited state keeps quiet.
                None => DrillMode::Off,
            },
            Some(RestoreDrill::AfterEachBackup) => DrillMode::AfterEachBackup,
            _ if all_clusters => DrillMode::AfterEachBackup,
            _ => DrillMode::Off,
        }
    }

    pub fn is_off(&self) -> bool {
        matches!(self, DrillMode::Off)
    }
}

/// When a scheduled drill is next due, given when the last one started
/// (zero: never drilled → at once). `None` when a cron pattern never fires
/// again.
pub fn next_drill(cadence: &Cadence, last_started: Timestamp) -> Option<Timestamp> {
    if last_started.is_zero() {
        return Some(Timestamp::default());
    }
    match cadence {
        Cadence::Every(d) => {
            let d = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            Some(Timestamp {
                seconds: last_started.seconds.saturating_add(d),
                nanos: last_started.nanos,
            })
        }
        Cadence::Cron(c) => c.next_after(last_started),
    }
}

/// How long from `now` until `at`; zero when it has passed.
pub fn wait_until(at: Timestamp, now: Timestamp) -> Duration {
    let wait = at.as_secs_f64() - now.as_secs_f64();
    if wait > 0.0 {
        Duration::from_secs_f64(wait)
    } else {
        Duration::ZERO
    }
}

/// For a continuous cluster drilled after each backup: how much longer to
/// wait for the new backup's chain to store its first segment, so that the
/// drill proves the join of the full backup and its chain too, not the
/// full backup alone. `None`: drill now (a chain exists, the cluster is
/// drilled on a schedule, or the chain is late and the full backup is
/// drilled by itself rather than never).
pub fn chain_wait(
    has_segments: bool,
    mode: &DrillMode,
    delta_interval: Duration,
    full_unix: i64,
    now: Timestamp,
) -> Option<Duration> {
    if has_segments || !matches!(mode, DrillMode::AfterEachBackup) {
        return None;
    }
    let grace = i64::try_from((delta_interval * 2).as_secs()).unwrap_or(i64::MAX);
    let wait = wait_until(
        Timestamp::from_unix(full_unix.saturating_add(grace).saturating_add(5)),
        now,
    );
    (!wait.is_zero()).then_some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use omni_resources::cron::CronSchedule;
    use omni_resources::specs::cluster::{BackupConfiguration, DrillSchedule};

    fn spec(drill: RestoreDrill) -> ClusterSpec {
        ClusterSpec {
            backupconfiguration: Some(BackupConfiguration {
                restoredrill: drill,
                ..BackupConfiguration::default()
            }),
            ..ClusterSpec::default()
        }
    }

    #[test]
    fn the_mode_follows_the_cluster_then_the_server_flag() {
        assert!(DrillMode::of(&ClusterSpec::default(), false).is_off());
        assert!(matches!(
            DrillMode::of(&ClusterSpec::default(), true),
            DrillMode::AfterEachBackup
        ));
        assert!(matches!(
            DrillMode::of(&spec(RestoreDrill::AfterEachBackup), false),
            DrillMode::AfterEachBackup
        ));
        let daily = RestoreDrill::Scheduled(DrillSchedule {
            schedule: Some("daily".into()),
            ..DrillSchedule::default()
        });
        assert!(matches!(
            DrillMode::of(&spec(daily), true),
            DrillMode::Scheduled(Cadence::Every(d)) if d == Duration::from_secs(86400)
        ));
    }

    #[test]
    fn a_scheduled_drill_runs_at_once_then_on_its_schedule() {
        let day = Cadence::Every(Duration::from_secs(86400));
        assert_eq!(
            next_drill(&day, Timestamp::default()),
            Some(Timestamp::default())
        );
        assert_eq!(
            next_drill(&day, Timestamp::from_unix(1000)),
            Some(Timestamp::from_unix(87400))
        );
        let at3 = Cadence::Cron(Box::new(CronSchedule::parse("0 3 * * *", None).unwrap()));
        // 1970-01-01 00:16:40 → 03:00 the same day.
        assert_eq!(
            next_drill(&at3, Timestamp::from_unix(1000)),
            Some(Timestamp::from_unix(3 * 3600))
        );
        assert_eq!(
            wait_until(Timestamp::from_unix(100), Timestamp::from_unix(40)),
            Duration::from_secs(60)
        );
        assert_eq!(
            wait_until(Timestamp::from_unix(10), Timestamp::from_unix(40)),
            Duration::ZERO
        );
    }

    #[test]
    fn a_new_chain_is_awaited_a_little_before_a_drill_after_a_backup() {
        let ten = Duration::from_secs(10);
        let after = DrillMode::AfterEachBackup;
        let now = Timestamp::from_unix(1003);
        assert_eq!(
            chain_wait(false, &after, ten, 1000, now),
            Some(Duration::from_secs(22))
        );
        assert_eq!(chain_wait(true, &after, ten, 1000, now), None);
        let late = Timestamp::from_unix(1025);
        assert_eq!(chain_wait(false, &after, ten, 1000, late), None);
        let hourly = DrillMode::Scheduled(Cadence::Every(Duration::from_secs(3600)));
        assert_eq!(chain_wait(false, &hourly, ten, 1000, now), None);
    }
}
