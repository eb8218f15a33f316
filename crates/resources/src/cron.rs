//! Cron schedules in a time zone: the pattern is parsed by `croner` (five
//! fields, or six with seconds first; `@daily` and friends), the zone is an
//! IANA name from `chrono-tz` (UTC when unset). Pure functions of their
//! inputs: the caller passes the clock.

use std::time::Duration;

use chrono::TimeZone;
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use thiserror::Error;

use crate::duration::format_go_duration;
use crate::Timestamp;

/// How far ahead the gaps between fire times are looked at: a year, so a
/// pattern dense in one month only (`*/5 * * 2 *`) is still seen.
const GAP_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);
/// At most this many fire times are looked at when checking gaps: a
/// pattern's gaps within a day repeat every matching day, so a dense
/// pattern shows its shortest gap long before this; a sparse one reaches
/// the end of the window first. Bounds a validation to a few milliseconds
/// (`examples/schedule_check_bench.rs`).
const GAP_SAMPLES: usize = 2_000;

/// A parsed cron pattern with its time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: croner::Cron,
    tz: Tz,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CronError {
    #[error("invalid cron expression {pattern:?}: {reason}")]
    Pattern { pattern: String, reason: String },
    #[error("unknown time zone {0:?}: expected an IANA name such as Europe/Berlin or UTC")]
    Zone(String),
}

/// The shortest and longest time between two consecutive fire times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gaps {
    pub shortest: Duration,
    pub longest: Duration,
}

impl CronSchedule {
    /// Parses `pattern` in `timezone` (UTC when `None` or empty).
    ///
    /// # Errors
    /// An invalid pattern or an unknown zone, with the reason.
    pub fn parse(pattern: &str, timezone: Option<&str>) -> Result<Self, CronError> {
        let tz = match timezone.map(str::trim).filter(|z| !z.is_empty()) {
            None => Tz::UTC,
            Some(z) => z
                .parse::<Tz>()
                .map_err(|_| CronError::Zone(z.to_string()))?,
        };
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(pattern).map_err(|e| CronError::Pattern {
            pattern: pattern.to_string(),
            reason: e.to_string(),
        })?;
        Ok(CronSchedule { cron, tz })
    }

    /// The first fire time strictly after `t`; `None` when the pattern
    /// never fires again.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let nanos = u32::try_from(t.nanos).unwrap_or(0);
        let start = self.tz.timestamp_opt(t.seconds, nanos).single()?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        Some(Timestamp {
            seconds: next.timestamp(),
            nanos: 0,
        })
    }

    /// The shortest and longest gap between consecutive fire times over
    /// the year after `from` (at most [`GAP_SAMPLES`] fire times). A
    /// pattern that fires at most once in that year has no gap shorter than
    /// the window: both are reported as the window.
    pub fn gaps(&self, from: Timestamp) -> Gaps {
        let end = from.seconds.saturating_add(GAP_WINDOW.as_secs() as i64);
        let mut gaps: Option<Gaps> = None;
        let Some(mut prev) = self.next_after(from) else {
            return Gaps {
                shortest: GAP_WINDOW,
                longest: GAP_WINDOW,
            };
        };
        for _ in 0..GAP_SAMPLES {
            if prev.seconds > end {
                break;
            }
            let Some(next) = self.next_after(prev) else {
                break;
            };
            let gap = Duration::from_secs(next.seconds.saturating_sub(prev.seconds).max(0) as u64);
            gaps = Some(match gaps {
                None => Gaps {
                    shortest: gap,
                    longest: gap,
                },
                Some(g) => Gaps {
                    shortest: g.shortest.min(gap),
                    longest: g.longest.max(gap),
                },
            });
            prev = next;
        }
        gaps.unwrap_or(Gaps {
            shortest: GAP_WINDOW,
            longest: GAP_WINDOW,
        })
    }

    /// Whether the zone is UTC (no daylight-saving shifts).
    pub fn is_utc(&self) -> bool {
        self.tz == Tz::UTC
    }
}

/// How often something runs: every fixed interval, or at cron fire times.
#[derive(Debug, Clone)]
pub enum Cadence {
    Every(Duration),
    Cron(Box<CronSchedule>),
}

/// Checks that the fire times of `schedule` (written `pattern`) are at
/// least `min` apart and at most `max` apart (an hour more in a zone with
/// daylight saving time, whose daily runs are 25 h apart once a year).
/// `what` names the schedule in messages (`backup schedule`).
///
/// # Errors
/// A message for the field naming the bound broken.
pub fn check_gaps(
    schedule: &CronSchedule,
    pattern: &str,
    now: Timestamp,
    min: Duration,
    max: Option<Duration>,
    what: &str,
) -> Result<(), String> {
    let gaps = schedule.gaps(now);
    if gaps.shortest < min {
        return Err(format!(
            "{what} {pattern:?} fires {} apart, more often than the minimum interval {}",
            format_go_duration(gaps.shortest),
            format_go_duration(min)
        ));
    }
    if let Some(max) = max {
        let allowed = if schedule.is_utc() {
            max
        } else {
            max + Duration::from_secs(3600)
        };
        if gaps.longest > allowed {
            return Err(format!(
                "{what} {pattern:?} leaves {} between runs, longer than the maximum interval {}",
                format_go_duration(gaps.longest),
                format_go_duration(max)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-28 12:00:00 UTC, the day before Europe's spring change.
    const SAT_BEFORE_DST: i64 = 1_774_699_200;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_unix(s)
    }

    #[test]
    fn five_and_six_fields_and_nicknames_parse() {
        let every_6h = CronSchedule::parse("0 */6 * * *", None).unwrap();
        // 12:00 → 18:00 the same day.
        assert_eq!(
            every_6h.next_after(ts(SAT_BEFORE_DST)),
            Some(ts(SAT_BEFORE_DST + 6 * 3600))
        );
        let every_5s = CronSchedule::parse("*/5 * * * * *", None).unwrap();
        assert_eq!(
            every_5s.next_after(ts(SAT_BEFORE_DST + 1)),
            Some(ts(SAT_BEFORE_DST + 5))
        );
        let daily = CronSchedule::parse("@daily", Some("UTC")).unwrap();
        assert_eq!(
            daily.next_after(ts(SAT_BEFORE_DST)),
            Some(ts(SAT_BEFORE_DST + 12 * 3600))
        );
    }

    #[test]
    fn bad_patterns_and_zones_say_what_is_wrong() {
        let e = CronSchedule::parse("0 */6 * *", None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid cron expression \"0 */6 * *\": "),
            "{e}"
        );
        let e = CronSchedule::parse("61 * * * *", None).unwrap_err();
        assert!(matches!(e, CronError::Pattern { .. }), "{e}");
        assert_eq!(
            CronSchedule::parse("0 * * * *", Some("Mars/Olympus"))
                .unwrap_err()
                .to_string(),
            "unknown time zone \"Mars/Olympus\": expected an IANA name such as Europe/Berlin or UTC"
        );
    }

    #[test]
    fn a_zone_moves_fire_times_and_follows_daylight_saving() {
        // 02:30 every day in Berlin: on 2026-03-29 02:30 does not exist
        // (clocks jump 02:00 → 03:00); the run happens right after the gap.
        let s = CronSchedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        let sat = s.next_after(ts(SAT_BEFORE_DST - 12 * 3600)).unwrap();
        // Saturday 02:30 CET = 01:30 UTC.
        assert_eq!(sat, ts(SAT_BEFORE_DST - 12 * 3600 + 3600 + 1800));
        let sun = s.next_after(sat).unwrap();
        let mon = s.next_after(sun).unwrap();
        // Monday 02:30 CEST = 00:30 UTC: 47 h after Saturday's run, and
        // Sunday's run lies between them, within the skipped hour's day.
        assert_eq!(mon.seconds - sat.seconds, 47 * 3600);
        assert!(sun.seconds > sat.seconds && sun.seconds < mon.seconds);
        assert!(sun.seconds - sat.seconds <= 24 * 3600);
    }

    #[test]
    fn gaps_bound_the_schedule() {
        let day = Duration::from_secs(86400);
        let hour = Duration::from_secs(3600);
        let g = CronSchedule::parse("0 0,1 * * *", None)
            .unwrap()
            .gaps(ts(SAT_BEFORE_DST));
        assert_eq!(g.shortest, hour);
        assert_eq!(g.longest, day - hour);
        let check = |p: &str, tz: Option<&str>, now: i64, max: Option<Duration>| {
            let s = CronSchedule::parse(p, tz).unwrap();
            check_gaps(&s, p, ts(now), hour, max, "backup schedule")
        };
        let e = check("* * * * *", None, 0, Some(day)).unwrap_err();
        assert_eq!(
            e,
            "backup schedule \"* * * * *\" fires 1m0s apart, more often than the minimum interval 1h0m0s"
        );
        let e = check("0 0 * * 1", None, 0, Some(day)).unwrap_err();
        assert_eq!(
            e,
            "backup schedule \"0 0 * * 1\" leaves 168h0m0s between runs, longer than the maximum interval 24h0m0s"
        );
        // A daily run in a zone with DST is 25 h apart once a year: allowed.
        assert!(check(
            "0 3 * * *",
            Some("Europe/Berlin"),
            SAT_BEFORE_DST,
            Some(day)
        )
        .is_ok());
        // ... but not in UTC, where nothing excuses it.
        assert!(check("0 3 * * */2", None, SAT_BEFORE_DST, Some(day)).is_err());
        // Without a maximum (drills), weekly is fine.
        assert!(check("@weekly", None, 0, None).is_ok());
    }
}
