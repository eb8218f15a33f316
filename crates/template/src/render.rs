//! The resources a template stands for.

use std::collections::BTreeMap;

use omni_resources::duration::ProtoDuration;
use omni_resources::specs::cluster::{
    BackupConfiguration, ClusterFeatures, ClusterSpec, MachineSetNodeSpec, MachineSetSpec,
};
use omni_resources::specs::Kind;
use omni_resources::{Resource, LABEL_CLUSTER, LABEL_MACHINE_SET, NS_DEFAULT};

use crate::model::{MachineSetTemplate, Template};

impl Template {
    /// The cluster spec the template asks for. Fields a template cannot
    /// express (`installimage`) are kept from `current`.
    pub fn cluster_spec(&self, current: Option<&ClusterSpec>) -> ClusterSpec {
        let c = &self.cluster;
        let mut spec = current.cloned().unwrap_or_default();
        spec.kubernetesversion = c.kubernetes_version.clone();
        spec.talosversion = c.talos_version.clone();
        spec.features = ClusterFeatures {
            enableworkloadproxy: c.enable_workload_proxy,
            diskencryption: c.disk_encryption,
        };
        let r = c.backup_retention;
        // `interval: 0s` turns automatic backups off: with nothing else set
        // there is no configuration at all (`null`, as a cluster without
        // backups has), so such a cluster shows no spurious diff.
        let conf = BackupConfiguration {
            interval: c
                .backup_interval
                .filter(|i| !i.is_zero())
                .map(ProtoDuration::from_std),
            schedule: c.backup_schedule.clone(),
            timezone: c.backup_timezone.clone(),
            keeplast: r.keeplast.into(),
            keephourly: r.keephourly.into(),
            keepdaily: r.keepdaily.into(),
            keepweekly: r.keepweekly.into(),
            keepmonthly: r.keepmonthly.into(),
            restoredrill: c.restore_drill.clone(),
            store: c.backup_store.clone(),
            secondarystore: c.backup_secondary_store.clone(),
            continuous: c.continuous.is_some(),
            deltainterval: c.continuous.flatten().map(ProtoDuration::from_std),
        };
        spec.backupconfiguration = (conf != BackupConfiguration::default()).then_some(conf);
        spec
    }

    /// The labels of a machine set's nodes.
    pub fn node_labels(&self, set: &MachineSetTemplate) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_CLUSTER.to_string(), self.name().to_string()),
            (
                LABEL_MACHINE_SET.to_string(),
                set.role.machine_set_id(self.name()),
            ),
            (set.role.label().to_string(), String::new()),
        ])
    }

    /// Every resource of the template, new (no metadata beyond identity
    /// and labels): the cluster, its two machine sets, one node per machine.
    pub fn resources(&self) -> Vec<Resource> {
        let name = self.name();
        let mut out = vec![Resource::from_spec(
            ClusterSpec::TYPE,
            NS_DEFAULT,
            name,
            &self.cluster_spec(None),
        )];
        for set in self.machine_sets() {
            let spec = MachineSetSpec {
                role: set.role.as_str().to_string(),
            };
            let mut r = Resource::from_spec(
                MachineSetSpec::TYPE,
                NS_DEFAULT,
                &set.role.machine_set_id(name),
                &spec,
            );
            r.metadata
                .labels
                .insert(LABEL_CLUSTER.to_string(), name.to_string());
            out.push(r);
        }
        for set in self.machine_sets() {
            for m in &set.machines {
                let mut r = Resource::from_spec(
                    MachineSetNodeSpec::TYPE,
                    NS_DEFAULT,
                    m,
                    &MachineSetNodeSpec::default(),
                );
                r.metadata.labels = self.node_labels(set);
                out.push(r);
            }
        }
        out
    }
}
