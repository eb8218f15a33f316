//! What the overview says about a cluster, computed from the resources the
//! controllers publish. Pure: the time is passed in, so the rules are tested
//! without a clock.

use omni_resources::cron::Cadence;
use omni_resources::specs::backup::{status, EtcdBackupStatusSpec};
use omni_resources::specs::backup_drill::EtcdBackupDrillStatusSpec;
use omni_resources::specs::cluster::ClusterSpec;
use omni_resources::Timestamp;
use serde::Serialize;

/// Red, amber or green: can this cluster be restored to a recent state?
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Red,
    Amber,
    Green,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Red => "red",
            Health::Amber => "amber",
            Health::Green => "green",
        }
    }

    pub fn parse(s: &str) -> Option<Health> {
        match s {
            "red" => Some(Health::Red),
            "amber" => Some(Health::Amber),
            "green" => Some(Health::Green),
            _ => None,
        }
    }
}

/// A cluster without automatic backups is fine while its last backup is
/// younger than this (the server's default maximum interval).
const MANUAL_FRESH_SECS: i64 = 24 * 3600;

/// One line of the fleet overview.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub cluster: String,
    pub health: Health,
    /// The backup status code (0 unknown, 1 ok, 2 error, 3 running).
    pub status: i32,
    /// Unix seconds of the newest backup; 0 when there is none.
    pub last_backup: i64,
    /// Automatic backup interval, seconds; `None` when off.
    pub interval: Option<i64>,
    /// Unix seconds when the next automatic backup is due.
    pub next_due: Option<i64>,
    /// Bytes of the newest stored backup, when known.
    pub size: Option<u64>,
    /// Status code of the latest restore drill, when one ran.
    pub drill: Option<i32>,
    /// What is wrong, in words; empty when nothing is.
    pub problem: String,
}

pub fn status_word(code: i32) -> &'static str {
    match code {
        status::OK => "ok",
        status::ERROR => "error",
        status::RUNNING => "running",
        _ => "unknown",
    }
}

impl Row {
    pub fn build(
        cluster: &str,
        spec: Option<&ClusterSpec>,
        backup: Option<&EtcdBackupStatusSpec>,
        drill: Option<&EtcdBackupDrillStatusSpec>,
        size: Option<u64>,
        now: i64,
    ) -> Row {
        let code = backup.map_or(status::UNKNOWN, |b| b.status);
        let last = backup.map_or(0, |b| b.lastbackuptime.seconds);
        let (interval, next_due) = match spec.and_then(ClusterSpec::backup_cadence) {
            None => (None, None),
            Some(Cadence::Every(d)) => {
                let i = d.as_secs() as i64;
                (Some(i), Some(if last == 0 { now } else { last + i }))
            }
            // A schedule's interval is the gap between its next two runs.
            Some(Cadence::Cron(c)) => {
                let next = c.next_after(Timestamp::from_unix(if last == 0 { now } else { last }));
                let gap = next.and_then(|n| Some(c.next_after(n)?.seconds - n.seconds));
                let due = if last == 0 {
                    Some(now)
                } else {
                    next.map(|n| n.seconds)
                };
                (gap, due)
            }
        };
        let age = now - last;
        let (mut health, mut problem) = if code == status::ERROR {
            let err = backup.map(|b| b.error.as_str()).unwrap_or_default();
            (Health::Red, format!("last backup failed: {err}"))
        } else if last == 0 {
            if code == status::RUNNING {
                (Health::Amber, "first backup running".to_string())
            } else {
                (Health::Red, "never backed up".to_string())
            }
        } else if let Some(i) = interval {
            // Jitter delays a backup by up to 10 minutes by default.
            let slack = (i / 4).max(600);
            if age > 2 * i {
                (
                    Health::Red,
                    format!(
                        "no backup for {}; interval is {}",
                        human_duration(age),
                        human_duration(i)
                    ),
                )
            } else if age > i + slack {
                (
                    Health::Amber,
                    format!("backup overdue by {}", human_duration(age - i)),
                )
            } else {
                (Health::Green, String::new())
            }
        } else if age > MANUAL_FRESH_SECS {
            (
                Health::Amber,
                format!(
                    "automatic backups off; last backup {} ago",
                    human_duration(age)
                ),
            )
        } else {
            (Health::Green, String::new())
        };
        let drill_code = drill.map(|d| d.status);
        if let Some(d) = drill.filter(|d| d.status == status::ERROR) {
            if health == Health::Green {
                health = Health::Amber;
            }
            if problem.is_empty() {
                problem = format!("restore drill failed: {}", d.error);
            }
        }
        Row {
            cluster: cluster.to_string(),
            health,
            status: code,
            last_backup: last,
            interval,
            next_due,
            size,
            drill: drill_code,
            problem,
        }
    }
}

/// `3d4h`, `5h12m`, `7m`, `42s`: two units at most, for people.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    }
}

/// `1.5 MiB`, `812 KiB`, `90 B`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else if v < 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

/// `2026-11-30 08:49:44 UTC`.
pub fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use omni_resources::duration::ProtoDuration;
    use omni_resources::specs::cluster::BackupConfiguration;
    use omni_resources::Timestamp;

    const NOW: i64 = 1_800_000_000;

    fn cluster(interval: u64) -> ClusterSpec {
        ClusterSpec {
            backupconfiguration: Some(BackupConfiguration {
                interval: Some(ProtoDuration::from_std(std::time::Duration::from_secs(
                    interval,
                ))),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn backed_up(code: i32, ago: i64) -> EtcdBackupStatusSpec {
        EtcdBackupStatusSpec {
            status: code,
            lastbackuptime: Timestamp::from_unix(NOW - ago),
            ..Default::default()
        }
    }

    #[test]
    fn age_against_interval_sets_the_colour() {
        let c = cluster(3600);
        let row = |ago| Row::build("c", Some(&c), Some(&backed_up(1, ago)), None, None, NOW);
        assert_eq!(row(600).health, Health::Green);
        assert_eq!(row(600).next_due, Some(NOW - 600 + 3600));
        assert_eq!(row(3600 + 1200).health, Health::Amber);
        assert_eq!(row(3600 + 1200).problem, "backup overdue by 20m");
        assert_eq!(row(3 * 3600).health, Health::Red);
        assert_eq!(
            row(3 * 3600).problem,
            "no backup for 3h0m; interval is 1h0m"
        );
    }

    #[test]
    fn errors_and_missing_backups_are_red_in_words() {
        let mut failed = backed_up(2, 60);
        failed.error = "etcd unreachable".into();
        let row = Row::build("c", None, Some(&failed), None, None, NOW);
        assert_eq!(row.health, Health::Red);
        assert_eq!(row.problem, "last backup failed: etcd unreachable");
        let never = Row::build("c", Some(&cluster(3600)), None, None, None, NOW);
        assert_eq!((never.health, never.next_due), (Health::Red, Some(NOW)));
        assert_eq!(never.problem, "never backed up");
        let first = Row::build("c", None, Some(&backed_up(3, NOW)), None, None, NOW);
        assert_eq!(first.health, Health::Amber);
    }

    #[test]
    fn manual_only_and_failed_drills_are_amber() {
        let recent = Row::build("c", None, Some(&backed_up(1, 60)), None, None, NOW);
        assert_eq!((recent.health, recent.next_due), (Health::Green, None));
        let old = Row::build("c", None, Some(&backed_up(1, 2 * 86_400)), None, None, NOW);
        assert_eq!(old.health, Health::Amber);
        let drill = EtcdBackupDrillStatusSpec {
            status: 2,
            error: "restored etcd is unhealthy".into(),
            ..Default::default()
        };
        let row = Row::build("c", None, Some(&backed_up(1, 60)), Some(&drill), None, NOW);
        assert_eq!(row.health, Health::Amber);
        assert_eq!(
            row.problem,
            "restore drill failed: restored etcd is unhealthy"
        );
        assert_eq!(row.drill, Some(2));
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(90_061), "1d1h");
        assert_eq!(human_bytes(90), "90 B");
        assert_eq!(human_bytes(1536 * 1024), "1.5 MiB");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_709_210_096), "2024-02-29 12:34:56 UTC");
    }
}
