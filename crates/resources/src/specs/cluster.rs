//! Clusters and the resources that tie machines to them.

use serde::{Deserialize, Serialize};

use super::{Kind, ValidationContext};
use crate::cron::Cadence;
use crate::kinds::{Column, Writer};
use crate::retention::RetentionPolicy;
use crate::validate::ValidationError;
use crate::NS_DEFAULT;

pub use super::cluster_backup::{BackupConfiguration, DrillSchedule, RestoreDrill};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterFeatures {
    pub enableworkloadproxy: bool,
    pub diskencryption: bool,
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
    /// The automatic backup interval, when automatic backups run on one.
    pub fn backup_interval(&self) -> Option<std::time::Duration> {
        match self.backup_cadence()? {
            Cadence::Every(d) => Some(d),
            Cadence::Cron(_) => None,
        }
    }

    /// When automatic backups run; `None` when they are off.
    pub fn backup_cadence(&self) -> Option<Cadence> {
        self.backupconfiguration.as_ref()?.cadence()
    }

    /// The cluster's own retention policy; `None` when it sets no rule (the
    /// server default applies).
    pub fn retention_policy(&self) -> Option<RetentionPolicy> {
        let policy = self.backupconfiguration.as_ref()?.retention();
        (!policy.is_empty()).then_some(policy)
    }

    /// Whether the cluster asks for restore drills, after each backup or
    /// on their own schedule.
    pub fn restore_drill(&self) -> bool {
        self.backupconfiguration
            .as_ref()
            .is_some_and(|c| !c.restoredrill.is_off())
    }

    /// The names of the cluster's primary store (`default` unless it
    /// names one) and of its own secondary store, if any.
    pub fn backup_stores(&self) -> (String, Option<String>) {
        let conf = self.backupconfiguration.as_ref();
        let primary = conf
            .and_then(|c| c.store.clone())
            .unwrap_or_else(|| super::backup_store::DEFAULT_STORE.to_string());
        (primary, conf.and_then(|c| c.secondarystore.clone()))
    }

    /// When the cluster's drills run on their own schedule; `None` when
    /// they follow backups or are off.
    pub fn drill_cadence(&self) -> Option<Cadence> {
        match &self.backupconfiguration.as_ref()?.restoredrill {
            RestoreDrill::Scheduled(d) => d.cadence(),
            _ => None,
        }
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
        match &self.backupconfiguration {
            Some(conf) => conf.check(ctx),
            None => Ok(()),
        }
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
