//! A cluster's `spec.backupconfiguration`: when automatic backups run (an
//! interval or a cron schedule), what retention keeps and when restore
//! drills run.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ValidationContext;
use crate::cron::{check_gaps, Cadence, CronError, CronSchedule};
use crate::duration::{format_go_duration, ProtoDuration};
use crate::retention::{RetentionPolicy, MAX_KEEP};
use crate::validate::ValidationError;

const FIELD: &str = "spec.backupconfiguration";

/// Automatic backup settings of a cluster, its retention policy (counts;
/// zero leaves a rule unset, see [`crate::retention`]) and restore drills.
/// Neither `interval` nor `schedule`: no automatic backups (manual ones
/// only), as without a configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<ProtoDuration>,
    /// A cron pattern (five fields, or six with seconds first), exclusive
    /// with `interval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA zone the schedule is read in; UTC when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub keeplast: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub keephourly: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub keepdaily: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub keepweekly: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub keepmonthly: i64,
    /// Restore backups into a throwaway etcd to prove they restore.
    #[serde(skip_serializing_if = "RestoreDrill::is_off")]
    pub restoredrill: RestoreDrill,
    /// The `EtcdBackupStores` backups go to; the server's store
    /// (`default`) when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// A store that receives a copy of every backup after it is stored;
    /// the server's `--etcd-backup-secondary-store` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secondarystore: Option<String>,
    /// Stream every change between full backups into delta segments, so
    /// the cluster can be restored to any revision or second since its
    /// oldest kept full backup (see `docs/point-in-time-restore.md`).
    #[serde(skip_serializing_if = "is_false")]
    pub continuous: bool,
    /// Longest time a change waits before its delta segment is written
    /// ([`DEFAULT_DELTA_INTERVAL`] when unset); only with `continuous`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deltainterval: Option<ProtoDuration>,
}

/// How often a continuous backup writes a delta segment unless told.
pub const DEFAULT_DELTA_INTERVAL: Duration = Duration::from_secs(10);
/// Bounds of `deltainterval` (inclusive).
pub const MIN_DELTA_INTERVAL: Duration = Duration::from_secs(1);
pub const MAX_DELTA_INTERVAL: Duration = Duration::from_secs(3600);

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// When restore drills run: `false` (never), `true` (after each new
/// backup), or on their own schedule (`{schedule: daily}`,
/// `{interval: {seconds: 86400}}`, `{schedule: "0 3 * * *", timezone: …}`)
/// against the newest backup, whenever backups happen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RestoreDrill {
    #[default]
    Off,
    AfterEachBackup,
    Scheduled(DrillSchedule),
}

/// A drill's own schedule: exactly one of `schedule` and `interval`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DrillSchedule {
    /// `hourly`, `daily`, `weekly` (that long after the previous drill) or
    /// a cron pattern.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<ProtoDuration>,
    /// IANA zone a cron `schedule` is read in; UTC when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

impl RestoreDrill {
    pub fn is_off(&self) -> bool {
        *self == RestoreDrill::Off
    }
}

impl Serialize for RestoreDrill {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RestoreDrill::Off => s.serialize_bool(false),
            RestoreDrill::AfterEachBackup => s.serialize_bool(true),
            RestoreDrill::Scheduled(d) => d.serialize(s),
        }
    }
}

/// The bool form or the schedule map; a visitor rather than
/// `#[serde(untagged)]` so that a bad map names its bad field.
impl<'de> Deserialize<'de> for RestoreDrill {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RestoreDrill;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false, or a map with schedule or interval")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RestoreDrill, E> {
                Ok(if v {
                    RestoreDrill::AfterEachBackup
                } else {
                    RestoreDrill::Off
                })
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<RestoreDrill, E> {
                Ok(RestoreDrill::Off)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RestoreDrill, A::Error> {
                let d =
                    DrillSchedule::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RestoreDrill::Scheduled(d))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The fixed-interval words a drill `schedule` accepts.
fn named_interval(word: &str) -> Option<Duration> {
    let hours = match word {
        "hourly" => 1,
        "daily" => 24,
        "weekly" => 7 * 24,
        _ => return None,
    };
    Some(Duration::from_secs(hours * 3600))
}

impl DrillSchedule {
    /// When drills run; `None` for a schedule validation refuses.
    pub fn cadence(&self) -> Option<Cadence> {
        match (&self.schedule, self.interval) {
            (Some(s), None) => match named_interval(s.trim()) {
                Some(d) => Some(Cadence::Every(d)),
                None => CronSchedule::parse(s, self.timezone.as_deref())
                    .ok()
                    .map(|c| Cadence::Cron(Box::new(c))),
            },
            (None, Some(i)) => i.to_std().filter(|d| !d.is_zero()).map(Cadence::Every),
            _ => None,
        }
    }

    fn check(&self, ctx: &ValidationContext) -> Result<(), ValidationError> {
        let base = format!("{FIELD}.restoredrill");
        let min = ctx.min_backup_interval;
        let what = "drill interval";
        match (&self.schedule, self.interval) {
            (Some(_), Some(_)) => Err(both(&base)),
            (None, None) => {
                let words = "hourly, daily, weekly or a cron pattern";
                Err(ValidationError::field(
                    base.clone(),
                    format!("set {base}.schedule ({words}) or {base}.interval"),
                ))
            }
            (None, Some(i)) => {
                if self.timezone.is_some() {
                    return Err(zone_needs_schedule(&base));
                }
                check_interval(&format!("{base}.interval"), i, min, None, what)
            }
            (Some(s), None) => match named_interval(s.trim()) {
                Some(_) if self.timezone.is_some() => Err(ValidationError::field(
                    format!("{base}.timezone"),
                    format!("only applies to a cron pattern, not to {s:?}"),
                )),
                Some(d) => {
                    let field = format!("{base}.schedule");
                    check_interval(&field, ProtoDuration::from_std(d), min, None, what)
                }
                None => {
                    let tz = self.timezone.as_deref();
                    check_cron(&base, s, tz, ctx, None, "drill schedule")
                }
            },
        }
    }
}

impl BackupConfiguration {
    /// When automatic backups run; `None` when they are off (no interval
    /// or schedule, a zero interval, or a schedule validation refuses).
    pub fn cadence(&self) -> Option<Cadence> {
        if let Some(pattern) = &self.schedule {
            return CronSchedule::parse(pattern, self.timezone.as_deref())
                .ok()
                .map(|c| Cadence::Cron(Box::new(c)));
        }
        let d = self.interval?.to_std()?;
        (!d.is_zero()).then_some(Cadence::Every(d))
    }

    /// The delta segment interval when continuous backup is on, else `None`.
    pub fn delta_interval(&self) -> Option<Duration> {
        if !self.continuous {
            return None;
        }
        let d = self.deltainterval.and_then(|d| d.to_std());
        Some(
            d.unwrap_or(DEFAULT_DELTA_INTERVAL)
                .clamp(MIN_DELTA_INTERVAL, MAX_DELTA_INTERVAL),
        )
    }

    fn check_continuous(&self) -> Result<(), ValidationError> {
        let Some(interval) = self.deltainterval else {
            return Ok(());
        };
        let field = format!("{FIELD}.deltainterval");
        if !self.continuous {
            return Err(ValidationError::field(
                field,
                format!("only applies with {FIELD}.continuous: true"),
            ));
        }
        check_interval(
            &field,
            interval,
            MIN_DELTA_INTERVAL,
            Some(MAX_DELTA_INTERVAL),
            "delta interval",
        )
    }

    /// The retention counts by field name.
    fn counts(&self) -> [(&'static str, i64); 5] {
        [
            ("keeplast", self.keeplast),
            ("keephourly", self.keephourly),
            ("keepdaily", self.keepdaily),
            ("keepweekly", self.keepweekly),
            ("keepmonthly", self.keepmonthly),
        ]
    }

    /// The retention policy (counts clamped into `0..=MAX_KEEP`; validation
    /// rejects anything outside).
    pub fn retention(&self) -> RetentionPolicy {
        let c = |v: i64| v.clamp(0, MAX_KEEP) as u32;
        RetentionPolicy {
            keeplast: c(self.keeplast),
            keephourly: c(self.keephourly),
            keepdaily: c(self.keepdaily),
            keepweekly: c(self.keepweekly),
            keepmonthly: c(self.keepmonthly),
        }
    }

    fn check_retention(&self) -> Result<(), ValidationError> {
        for (name, value) in self.counts() {
            let field = format!("{FIELD}.{name}");
            if value < 0 {
                return Err(ValidationError::field(
                    field,
                    format!("must not be negative, got {value}"),
                ));
            }
            if value > MAX_KEEP {
                return Err(ValidationError::field(
                    field,
                    format!("must be at most {MAX_KEEP}, got {value}"),
                ));
            }
        }
        Ok(())
    }

    /// Every rule of the configuration, first problem first.
    pub(crate) fn check(&self, ctx: &ValidationContext) -> Result<(), ValidationError> {
        self.check_retention()?;
        self.check_stores()?;
        self.check_continuous()?;
        if let RestoreDrill::Scheduled(d) = &self.restoredrill {
            d.check(ctx)?;
        }
        let bounds = (ctx.min_backup_interval, Some(ctx.max_backup_interval));
        match (self.interval, &self.schedule) {
            (Some(_), Some(_)) => Err(both(FIELD)),
            (None, None) if self.timezone.is_some() => Err(zone_needs_schedule(FIELD)),
            (None, None) => Ok(()),
            (None, Some(s)) => check_cron(
                FIELD,
                s,
                self.timezone.as_deref(),
                ctx,
                bounds.1,
                "backup schedule",
            ),
            (Some(interval), None) => {
                if self.timezone.is_some() {
                    return Err(zone_needs_schedule(FIELD));
                }
                // A zero interval beside other settings turns automatic
                // backups off; one that asks for nothing else is refused,
                // as the reference does.
                let only_interval = BackupConfiguration {
                    interval: Some(interval),
                    ..BackupConfiguration::default()
                } == *self;
                if interval == ProtoDuration::default() && !only_interval {
                    return Ok(());
                }
                check_interval(
                    &format!("{FIELD}.interval"),
                    interval,
                    bounds.0,
                    bounds.1,
                    "backup interval",
                )
            }
        }
    }
}

impl BackupConfiguration {
    fn check_stores(&self) -> Result<(), ValidationError> {
        use super::backup_store::check_store_name;
        if let Some(s) = &self.store {
            check_store_name(&format!("{FIELD}.store"), s)?;
        }
        if let Some(s) = &self.secondarystore {
            let field = format!("{FIELD}.secondarystore");
            check_store_name(&field, s)?;
            let primary = self
                .store
                .as_deref()
                .unwrap_or(super::backup_store::DEFAULT_STORE);
            if s == primary {
                return Err(ValidationError::field(
                    field,
                    format!("must differ from the primary store {primary:?}"),
                ));
            }
        }
        Ok(())
    }
}

fn both(base: &str) -> ValidationError {
    ValidationError::field(
        base.to_string(),
        format!("{base}.interval and {base}.schedule are mutually exclusive: set one of them"),
    )
}

fn zone_needs_schedule(base: &str) -> ValidationError {
    ValidationError::field(
        format!("{base}.timezone"),
        format!("only applies with {base}.schedule"),
    )
}

/// An interval within `[min, max]` (inclusive), in the reference's words
/// (`what`: `backup interval` or `drill interval`).
fn check_interval(
    field: &str,
    interval: ProtoDuration,
    min: Duration,
    max: Option<Duration>,
    what: &str,
) -> Result<(), ValidationError> {
    let Some(d) = interval.to_std() else {
        return Err(ValidationError::field(field, "must not be negative"));
    };
    if interval.nanos >= 1_000_000_000 {
        return Err(ValidationError::field(
            field,
            "nanos must be below 1000000000",
        ));
    }
    if d < min {
        return Err(ValidationError::field(
            field,
            format!(
                "{what} must be greater than {}, actual {}",
                format_go_duration(min),
                format_go_duration(d)
            ),
        ));
    }
    if let Some(max) = max.filter(|max| d > *max) {
        return Err(ValidationError::field(
            field,
            format!(
                "{what} must be less than {}, actual {}",
                format_go_duration(max),
                format_go_duration(d)
            ),
        ));
    }
    Ok(())
}

/// A cron pattern that parses in its zone and fires within the bounds.
fn check_cron(
    base: &str,
    pattern: &str,
    timezone: Option<&str>,
    ctx: &ValidationContext,
    max: Option<Duration>,
    what: &str,
) -> Result<(), ValidationError> {
    let schedule = CronSchedule::parse(pattern, timezone).map_err(|e| {
        let field = match e {
            CronError::Zone(_) => "timezone",
            CronError::Pattern { .. } => "schedule",
        };
        ValidationError::field(format!("{base}.{field}"), e.to_string())
    })?;
    check_gaps(
        &schedule,
        pattern,
        ctx.now,
        ctx.min_backup_interval,
        max,
        what,
    )
    .map_err(|m| ValidationError::field(format!("{base}.schedule"), m))
}

#[cfg(test)]
#[path = "cluster_backup_tests.rs"]
mod tests;
