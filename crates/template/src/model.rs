//! A parsed, checked template: what the cluster should look like.

use std::time::Duration;

use omni_resources::retention::RetentionPolicy;
use omni_resources::specs::cluster::RestoreDrill;
use omni_resources::{LABEL_ROLE_CONTROLPLANE, LABEL_ROLE_WORKER};

/// The role of a machine set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    ControlPlane,
    Worker,
}

impl Role {
    /// The machine set's `spec.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "controlplane",
            Role::Worker => "worker",
        }
    }

    /// The label (with an empty value) marking the set's nodes.
    pub fn label(self) -> &'static str {
        match self {
            Role::ControlPlane => LABEL_ROLE_CONTROLPLANE,
            Role::Worker => LABEL_ROLE_WORKER,
        }
    }

    /// The template kind describing sets of this role.
    pub fn kind(self) -> &'static str {
        match self {
            Role::ControlPlane => "ControlPlane",
            Role::Worker => "Workers",
        }
    }

    /// The machine set id for a cluster: `<cluster>-control-planes` or
    /// `<cluster>-workers`.
    pub fn machine_set_id(self, cluster: &str) -> String {
        match self {
            Role::ControlPlane => format!("{cluster}-control-planes"),
            Role::Worker => format!("{cluster}-workers"),
        }
    }
}

/// The `kind: Cluster` document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTemplate {
    /// Document number (1-based).
    pub document: usize,
    pub name: String,
    /// Without a leading `v`, as the cluster resource keeps it.
    pub kubernetes_version: String,
    /// Without a leading `v`.
    pub talos_version: String,
    pub enable_workload_proxy: bool,
    pub disk_encryption: bool,
    /// `features.backupConfiguration.interval`; `None` when not set.
    pub backup_interval: Option<Duration>,
    /// `features.backupConfiguration.schedule` (a cron pattern, exclusive
    /// with the interval) and `.timezone`; `None` when not set.
    pub backup_schedule: Option<String>,
    pub backup_timezone: Option<String>,
    /// `features.backupConfiguration.keepLast` … `keepMonthly` (zero: unset).
    pub backup_retention: RetentionPolicy,
    /// `features.backupConfiguration.restoreDrill`: `true`, `false`, or a
    /// schedule of its own.
    pub restore_drill: RestoreDrill,
    /// `features.backupConfiguration.store` and `.secondaryStore`.
    pub backup_store: Option<String>,
    pub backup_secondary_store: Option<String>,
    /// `features.backupConfiguration.continuous` and `.deltaInterval`:
    /// `None` when off; inside, the delta interval when one was given.
    pub continuous: Option<Option<Duration>>,
}

/// A `kind: ControlPlane` or `kind: Workers` document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSetTemplate {
    /// Document number; `None` for a Workers set the template leaves out
    /// (the cluster still gets an empty workers set).
    pub document: Option<usize>,
    pub role: Role,
    /// Machine UUIDs, in template order.
    pub machines: Vec<String>,
}

/// A whole template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub cluster: ClusterTemplate,
    pub control_plane: MachineSetTemplate,
    pub workers: MachineSetTemplate,
}

impl Template {
    /// The cluster name.
    pub fn name(&self) -> &str {
        &self.cluster.name
    }

    /// Both machine sets, control plane first.
    pub fn machine_sets(&self) -> [&MachineSetTemplate; 2] {
        [&self.control_plane, &self.workers]
    }

    /// Every machine with its set, document and index, in template order.
    pub fn machines(&self) -> impl Iterator<Item = (&MachineSetTemplate, usize, &str)> {
        self.machine_sets().into_iter().flat_map(|set| {
            set.machines
                .iter()
                .enumerate()
                .map(move |(i, m)| (set, i, m.as_str()))
        })
    }
}
