//! Backup retention: which backups a policy keeps. Pure: backup times (Unix
//! seconds) in, decisions out. No clock is read; "now" never matters, because
//! every count is of backups or of periods that hold backups, counted from
//! the newest backup back (as restic and borg do). So when backups stop,
//! retention stops eating into what is left.
//!
//! Rules (a backup is kept when any rule keeps it):
//! - the newest backup, always;
//! - `keeplast` N: the N newest backups;
//! - `keephourly`/`keepdaily`/`keepweekly`/`keepmonthly` N: the newest backup
//!   of each of the N most recent UTC hours / days / ISO weeks (Monday to
//!   Sunday) / months that hold a backup;
//! - backups marked to keep (pinned).
//!
//! A policy with every count zero keeps everything: retention is off.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Largest count a policy may hold (10,000 hourly backups is over a year).
pub const MAX_KEEP: i64 = 10_000;

/// A retention policy: counts per rule, zero meaning "rule unset".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    pub keeplast: u32,
    pub keephourly: u32,
    pub keepdaily: u32,
    pub keepweekly: u32,
    pub keepmonthly: u32,
}

impl RetentionPolicy {
    /// Whether no rule is set (retention off: everything is kept).
    pub fn is_empty(&self) -> bool {
        *self == RetentionPolicy::default()
    }

    fn periods(&self) -> [(Period, u32); 4] {
        [
            (Period::Hour, self.keephourly),
            (Period::Day, self.keepdaily),
            (Period::Week, self.keepweekly),
            (Period::Month, self.keepmonthly),
        ]
    }
}

impl fmt::Display for RetentionPolicy {
    /// `keep-last=3 keep-daily=7`, or `keep all` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("keep all");
        }
        let parts = [
            ("keep-last", self.keeplast),
            ("keep-hourly", self.keephourly),
            ("keep-daily", self.keepdaily),
            ("keep-weekly", self.keepweekly),
            ("keep-monthly", self.keepmonthly),
        ];
        let shown: Vec<String> = parts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name}={n}"))
            .collect();
        f.write_str(&shown.join(" "))
    }
}

/// A calendar period of the GFS rules, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Hour,
    Day,
    /// ISO 8601 week: Monday to Sunday.
    Week,
    Month,
}

impl Period {
    /// A number that is equal for two times exactly when they fall into the
    /// same period.
    pub fn bucket(self, unix: i64) -> i64 {
        let days = unix.div_euclid(86_400);
        match self {
            Period::Hour => unix.div_euclid(3_600),
            Period::Day => days,
            // The Monday starting the week.
            Period::Week => days - weekday(days),
            Period::Month => {
                let (y, m, _) = civil_from_days(days);
                y * 12 + i64::from(m) - 1
            }
        }
    }

    /// The period as people write it: `2024-01-02T15`, `2024-01-02`,
    /// `2024-W01`, `2024-01`.
    pub fn label(self, unix: i64) -> String {
        let days = unix.div_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        match self {
            Period::Hour => format!(
                "{y:04}-{m:02}-{d:02}T{:02}",
                unix.rem_euclid(86_400) / 3_600
            ),
            Period::Day => format!("{y:04}-{m:02}-{d:02}"),
            Period::Week => {
                let (wy, w) = iso_week(days);
                format!("{wy:04}-W{w:02}")
            }
            Period::Month => format!("{y:04}-{m:02}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Period::Hour => "hourly",
            Period::Day => "daily",
            Period::Week => "weekly",
            Period::Month => "monthly",
        }
    }
}

/// Why a backup is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The newest backup, kept whatever the policy says.
    Newest,
    /// Among the `keeplast` newest.
    Last,
    /// Newest of its period, e.g. `daily 2024-01-02`.
    Period(Period, String),
    /// Marked to keep.
    Pinned,
    /// The policy is empty.
    NoPolicy,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Newest => f.write_str("newest"),
            Reason::Last => f.write_str("last"),
            Reason::Period(p, label) => write!(f, "{} {label}", p.name()),
            Reason::Pinned => f.write_str("marked to keep"),
            Reason::NoPolicy => f.write_str("no policy"),
        }
    }
}

/// The verdict on one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Backup time, Unix seconds.
    pub at: i64,
    /// Why it is kept; empty means it is deleted.
    pub reasons: Vec<Reason>,
}

impl Decision {
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// Applies `policy` to backups taken at `times` (any order, duplicates
/// ignored), with `pinned` times always kept. Returns one decision per
/// backup, newest first.
pub fn plan(times: &[i64], policy: &RetentionPolicy, pinned: &HashSet<i64>) -> Vec<Decision> {
    let mut sorted: Vec<i64> = times.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    let mut out: Vec<Decision> = sorted
        .iter()
        .map(|&at| Decision {
            at,
            reasons: Vec::new(),
        })
        .collect();
    if policy.is_empty() {
        for d in &mut out {
            d.reasons.push(Reason::NoPolicy);
        }
        return out;
    }
    if let Some(first) = out.first_mut() {
        first.reasons.push(Reason::Newest);
    }
    for d in out.iter_mut().take(policy.keeplast as usize) {
        d.reasons.push(Reason::Last);
    }
    for (period, count) in policy.periods() {
        let mut left = count;
        let mut last_bucket = None;
        for d in out.iter_mut() {
            if left == 0 {
                break;
            }
            let bucket = period.bucket(d.at);
            if last_bucket != Some(bucket) {
                last_bucket = Some(bucket);
                left -= 1;
                d.reasons.push(Reason::Period(period, period.label(d.at)));
            }
        }
    }
    for d in &mut out {
        if pinned.contains(&d.at) {
            d.reasons.push(Reason::Pinned);
        }
    }
    out
}

/// Day of the week of a day number: Monday 0 … Sunday 6 (1970-01-01 was a
/// Thursday).
fn weekday(days: i64) -> i64 {
    (days + 3).rem_euclid(7)
}

/// `(ISO week-year, ISO week)` of a day number: the week belongs to the
/// year of its Thursday.
pub fn iso_week(days: i64) -> (i64, u32) {
    let thursday = days - weekday(days) + 3;
    let (year, _, _) = civil_from_days(thursday);
    let week = (thursday - days_from_civil(year, 1, 1)) / 7 + 1;
    (year, week as u32)
}

/// `(year, month 1-12, day 1-31)` of a day number (days since 1970-01-01),
/// proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Day number (days since 1970-01-01) of a civil date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
