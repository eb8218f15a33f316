//! Clusters and the resources that tie machines to them.

use serde::{Deserialize, Serialize};

use super::{Kind, ValidationContext};
use crate::duration::{format_go_duration, ProtoDuration};
use crate::kinds::{Column, Writer};
use crate::validate::ValidationError;
use crate::NS_DEFAULT;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterFeatures {
    pub enableworkloadproxy: bool,
    pub diskencryption: bool,
}

/// Automatic backup settings of a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfiguration {
    pub interval: ProtoDuration,
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
        if interval.is_zero() {
            // Zero switches automatic backups off.
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
}
