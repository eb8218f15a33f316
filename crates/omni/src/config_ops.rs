//! The retention and restore-drill part of the server configuration:
//! flags and file keys `etcd-backup-keep-*`, `etcd-backup-retention-interval`,
//! `etcd-backup-restore-drill`, `etcd-backup-drill-*`, `etcd-bin`,
//! `etcdutl-bin`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use omni_controllers::drill::DrillSettings;
use omni_controllers::retention::RetentionSettings;
use omni_resources::duration::parse_go_duration;
use omni_resources::retention::{RetentionPolicy, MAX_KEEP};

use crate::config::{FileConfig, Flags};

/// Resolved settings, before the data dir and tick are known.
#[derive(Debug, Clone)]
pub struct Ops {
    pub retention: RetentionSettings,
    drill_timeout: Duration,
    drill_dir: Option<PathBuf>,
    all_clusters: bool,
    etcd_bin: PathBuf,
    etcdutl_bin: PathBuf,
}

impl Ops {
    /// Drill settings, with temp dirs under `<data-dir>/drills` unless set.
    pub fn drill(&self, data_dir: &Path, tick: Duration) -> DrillSettings {
        DrillSettings {
            etcd_bin: self.etcd_bin.clone(),
            etcdutl_bin: self.etcdutl_bin.clone(),
            work_dir: self
                .drill_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("drills")),
            timeout: self.drill_timeout,
            all_clusters: self.all_clusters,
            tick,
        }
    }
}

fn count(name: &str, flag: Option<u32>, file: Option<u32>) -> anyhow::Result<u32> {
    let v = flag.or(file).unwrap_or(0);
    if i64::from(v) > MAX_KEEP {
        bail!("--{name}: must be at most {MAX_KEEP}, got {v}");
    }
    Ok(v)
}

fn duration(
    name: &str,
    flag: &Option<String>,
    file: &Option<String>,
    default: &str,
) -> anyhow::Result<Duration> {
    let raw = flag.as_deref().or(file.as_deref()).unwrap_or(default);
    let d = parse_go_duration(raw).with_context(|| format!("--{name}"))?;
    if d.is_zero() {
        bail!("--{name} must be positive");
    }
    Ok(d)
}

/// Reads the retention and drill flags (flags over file over defaults).
pub fn resolve(flags: &Flags, file: &FileConfig) -> anyhow::Result<Ops> {
    let default_policy = RetentionPolicy {
        keeplast: count(
            "etcd-backup-keep-last",
            flags.etcd_backup_keep_last,
            file.etcd_backup_keep_last,
        )?,
        keephourly: count(
            "etcd-backup-keep-hourly",
            flags.etcd_backup_keep_hourly,
            file.etcd_backup_keep_hourly,
        )?,
        keepdaily: count(
            "etcd-backup-keep-daily",
            flags.etcd_backup_keep_daily,
            file.etcd_backup_keep_daily,
        )?,
        keepweekly: count(
            "etcd-backup-keep-weekly",
            flags.etcd_backup_keep_weekly,
            file.etcd_backup_keep_weekly,
        )?,
        keepmonthly: count(
            "etcd-backup-keep-monthly",
            flags.etcd_backup_keep_monthly,
            file.etcd_backup_keep_monthly,
        )?,
    };
    Ok(Ops {
        retention: RetentionSettings {
            default_policy,
            interval: duration(
                "etcd-backup-retention-interval",
                &flags.etcd_backup_retention_interval,
                &file.etcd_backup_retention_interval,
                "1h",
            )?,
        },
        drill_timeout: duration(
            "etcd-backup-drill-timeout",
            &flags.etcd_backup_drill_timeout,
            &file.etcd_backup_drill_timeout,
            "5m",
        )?,
        drill_dir: flags
            .etcd_backup_drill_dir
            .clone()
            .or_else(|| file.etcd_backup_drill_dir.clone()),
        all_clusters: flags.etcd_backup_restore_drill
            || file.etcd_backup_restore_drill.unwrap_or(false),
        etcd_bin: flags
            .etcd_bin
            .clone()
            .or_else(|| file.etcd_bin.clone())
            .unwrap_or_else(|| PathBuf::from("etcd")),
        etcdutl_bin: flags
            .etcdutl_bin
            .clone()
            .or_else(|| file.etcdutl_bin.clone())
            .unwrap_or_else(|| PathBuf::from("etcdutl")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn flags(args: &[&str]) -> Flags {
        Flags::parse_from(std::iter::once("omni").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_keep_everything_and_drill_nothing() {
        let ops = resolve(&flags(&[]), &FileConfig::default()).unwrap();
        assert!(ops.retention.default_policy.is_empty());
        assert_eq!(ops.retention.interval, Duration::from_secs(3600));
        let d = ops.drill(Path::new("/data"), Duration::from_secs(60));
        assert_eq!(d.work_dir, PathBuf::from("/data/drills"));
        assert_eq!(d.etcd_bin, PathBuf::from("etcd"));
        assert_eq!(d.etcdutl_bin, PathBuf::from("etcdutl"));
        assert!(!d.all_clusters);
    }

    #[test]
    fn flags_set_the_default_policy_and_bad_values_are_named() {
        let ops = resolve(
            &flags(&[
                "--etcd-backup-keep-last",
                "3",
                "--etcd-backup-keep-daily",
                "7",
                "--etcd-backup-restore-drill",
            ]),
            &FileConfig::default(),
        )
        .unwrap();
        assert_eq!(
            ops.retention.default_policy.to_string(),
            "keep-last=3 keep-daily=7"
        );
        assert!(ops.all_clusters);
        let err = resolve(
            &flags(&["--etcd-backup-keep-weekly", "20000"]),
            &FileConfig::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--etcd-backup-keep-weekly: must be at most 10000, got 20000"
        );
        assert!(Flags::try_parse_from(["omni", "--etcd-backup-keep-last", "-1"]).is_err());
        let err = resolve(
            &flags(&["--etcd-backup-drill-timeout", "0s"]),
            &FileConfig::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("etcd-backup-drill-timeout"),
            "{err}"
        );
    }
}
