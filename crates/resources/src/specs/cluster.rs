//! Clusters and the resources that tie machines to them.

use serde::{Deserialize, Serialize};

use super::{Kind, ValidationContext};
use crate::duration::{format_go_duration, ProtoDuration};
use crate::kinds::{Column, Writer};
use crate::retention::{RetentionPolicy, MAX_KEEP};
use crate::validate::ValidationError;
use crate::NS_DEFAULT;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterFeatures {
    pub enableworkloadproxy: bool,
    pub diskencryption: bool,
}

/// Automatic backup settings of a cluster, its retention policy (counts;
/// zero leaves a rule unset, see [`crate::retention`]) and restore drills.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfiguration {
    pub interval: ProtoDuration,
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
    /// Restore each new backup into a throwaway etcd to prove it restores.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restoredrill: bool,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl BackupConfiguration {
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
            let field = format!("spec.backupconfiguration.{name}");
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
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSpec {
    pub installimage: String,
    pub kubernetesversion: String,
    pub talosversion: String,
    pub features: ClusterFeatures,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backupconfiguration: Option<BackupConfiguration>,
}

impl ClusterSpec {
    /// The automatic backup interval, when automatic backups are on.
    pub fn backup_interval(&self) -> Option<std::time::Duration> {
        let d = self.backupconfiguration.as_ref()?.interval.to_std()?;
        (!d.is_zero()).then_some(d)
    }

    /// The cluster's own retention policy; `None` when it sets no rule (the
    /// server default applies).
    pub fn retention_policy(&self) -> Option<RetentionPolicy> {
        let policy = self.backupconfiguration.as_ref()?.retention();
        (!policy.is_empty()).then_some(policy)
    }

    /// Whether the cluster asks for restore drills.
    pub fn restore_drill(&self) -> bool {
        self.backupconfiguration
            .as_ref()
            .is_some_and(|c| c.restoredrill)
    }
}

impl Kind for ClusterSpec {
    const TYPE: &'static str = "Clusters.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_DEFAULT;
    const ALIASES: &'static [&'static str] = &["cluster", "clusters"];
    const COLUMNS: &'static [Column] = &[
        Column::new("KUBERNETES VERSION", "kubernetesversion"),
        Column::new("TALOS VERSION", "talosversion"),
    ];
    const WRITER: Writer = Writer::User;

    fn check(&self, ctx: &ValidationContext) -> Result<(), ValidationError> {
        let Some(conf) = &self.backupconfiguration else {
            return Ok(());
        };
        conf.check_retention()?;
        let field = "spec.backupconfiguration.interval";
        let Some(interval) = conf.interval.to_std() else {
            return Err(ValidationError::field(field, "must not be negative"));
        };
        if conf.interval.nanos >= 1_000_000_000 {
            return Err(ValidationError::field(
                field,
                "nanos must be below 1000000000",
            ));
        }
        // A configuration that only keeps retention counts or drills has no
        // interval (automatic backups off); one that asks for nothing but a
        // zero interval is refused, as the reference does.
        let only_interval = BackupConfiguration {
            interval: conf.interval,
            ..BackupConfiguration::default()
        } == *conf;
        if interval.is_zero() && !only_interval {
            return Ok(());
        }
        if interval < ctx.min_backup_interval {
            return Err(ValidationError::field(
                field,
                format!(
                    "backup interval must be greater than {}, actual {}",
                    format_go_duration(ctx.min_backup_interval),
                    format_go_duration(interval)
                ),
            ));
        }
        if interval > ctx.max_backup_interval {
            return Err(ValidationError::field(
                field,
                format!(
                    "backup interval must be less than {}, actual {}",
                    format_go_duration(ctx.max_backup_interval),
                    format_go_duration(interval)
                ),
            ));
        }
        Ok(())
    }
}

/// A group of machines of one role in a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MachineSetSpec {
    /// `controlplane` or `worker`.
    pub role: String,
}

impl Kind for MachineSetSpec {
    const TYPE: &'static str = "MachineSets.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_DEFAULT;
    const ALIASES: &'static [&'static str] = &["machineset", "machinesets"];
    const COLUMNS: &'static [Column] = &[Column::new("ROLE", "role")];
    const WRITER: Writer = Writer::User;

    fn check(&self, _ctx: &ValidationContext) -> Result<(), ValidationError> {
        match self.role.as_str() {
            "controlplane" | "worker" => Ok(()),
            _ => Err(ValidationError::field(
                "spec.role",
                "must be controlplane or worker",
            )),
        }
    }
}

/// Membership of one machine (the ID) in a machine set (by labels).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MachineSetNodeSpec {}

impl Kind for MachineSetNodeSpec {
    const TYPE: &'static str = "MachineSetNodes.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_DEFAULT;
    const ALIASES: &'static [&'static str] = &["machinesetnode", "machinesetnodes"];
    const WRITER: Writer = Writer::User;
}

/// A machine allocated to a cluster, derived from machine set nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterMachineSpec {}

impl Kind for ClusterMachineSpec {
    const TYPE: &'static str = "ClusterMachines.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_DEFAULT;
    const ALIASES: &'static [&'static str] = &["clustermachine", "clustermachines"];
    const WRITER: Writer = Writer::Controller("ClusterMachineController");
}

/// How a cluster machine is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterMachineStatusSpec {
    pub ready: bool,
    pub stage: String,
    pub etcdmemberid: String,
    pub error: String,
}

impl Kind for ClusterMachineStatusSpec {
    const TYPE: &'static str = "ClusterMachineStatuses.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_DEFAULT;
    const ALIASES: &'static [&'static str] = &["clustermachinestatus", "clustermachinestatuses"];
    const COLUMNS: &'static [Column] = &[
        Column::new("READY", "ready"),
        Column::new("STAGE", "stage"),
        Column::new("ERROR", "error"),
    ];
    const WRITER: Writer = Writer::Controller("ClusterMachineStatusController");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn with_interval(secs: i64) -> ClusterSpec {
        ClusterSpec {
            backupconfiguration: Some(BackupConfiguration {
                interval: ProtoDuration {
                    seconds: secs,
                    nanos: 0,
                },
                ..BackupConfiguration::default()
            }),
            ..ClusterSpec::default()
        }
    }

    #[test]
    fn interval_bounds_are_inclusive_and_named() {
        let ctx = ValidationContext::default();
        assert!(with_interval(3600).check(&ctx).is_ok());
        assert!(with_interval(86400).check(&ctx).is_ok());
        assert_eq!(
            with_interval(1800).check(&ctx).unwrap_err().to_string(),
            "spec.backupconfiguration.interval: backup interval must be greater than 1h0m0s, actual 30m0s"
        );
        assert_eq!(
            with_interval(90000).check(&ctx).unwrap_err().to_string(),
            "spec.backupconfiguration.interval: backup interval must be less than 24h0m0s, actual 25h0m0s"
        );
        assert!(with_interval(-5).check(&ctx).is_err());
        assert_eq!(
            with_interval(3600).backup_interval(),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(with_interval(0).backup_interval(), None);
    }

    #[test]
    fn zero_interval_alone_is_refused_like_the_reference() {
        let ctx = ValidationContext::default();
        assert_eq!(
            with_interval(0).check(&ctx).unwrap_err().to_string(),
            "spec.backupconfiguration.interval: backup interval must be greater than 1h0m0s, actual 0s"
        );
        // Without a configuration there is nothing to check.
        assert!(ClusterSpec::default().check(&ctx).is_ok());
        // Retention or drills alone: automatic backups stay off.
        let mut spec = with_interval(0);
        spec.backupconfiguration.as_mut().unwrap().keeplast = 2;
        assert!(spec.check(&ctx).is_ok());
        let mut spec = with_interval(0);
        spec.backupconfiguration.as_mut().unwrap().restoredrill = true;
        assert!(spec.check(&ctx).is_ok());
    }

    #[test]
    fn retention_counts_are_checked_by_field_name() {
        let ctx = ValidationContext::default();
        let mut spec = with_interval(0);
        assert_eq!(spec.retention_policy(), None);
        let conf = spec.backupconfiguration.as_mut().unwrap();
        conf.keepdaily = 7;
        conf.keeplast = 3;
        assert!(spec.check(&ctx).is_ok());
        assert_eq!(
            spec.retention_policy().unwrap().to_string(),
            "keep-last=3 keep-daily=7"
        );
        let conf = spec.backupconfiguration.as_mut().unwrap();
        conf.keepweekly = -1;
        assert_eq!(
            spec.check(&ctx).unwrap_err().to_string(),
            "spec.backupconfiguration.keepweekly: must not be negative, got -1"
        );
        let conf = spec.backupconfiguration.as_mut().unwrap();
        conf.keepweekly = 0;
        conf.keepmonthly = 1_000_000;
        assert_eq!(
            spec.check(&ctx).unwrap_err().to_string(),
            "spec.backupconfiguration.keepmonthly: must be at most 10000, got 1000000"
        );
    }

    #[test]
    fn unset_retention_fields_stay_out_of_the_document() {
        let v = serde_json::to_value(with_interval(3600)).unwrap();
        assert_eq!(
            v["backupconfiguration"],
            serde_json::json!({"interval": {"seconds": 3600, "nanos": 0}})
        );
        let mut spec = with_interval(3600);
        let conf = spec.backupconfiguration.as_mut().unwrap();
        conf.keeplast = 2;
        conf.restoredrill = true;
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["backupconfiguration"]["keeplast"], 2);
        assert_eq!(v["backupconfiguration"]["restoredrill"], true);
        assert!(spec.restore_drill());
    }
}
