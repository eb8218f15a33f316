//! What a sync does: compare the template's resources with the current ones.

use std::collections::HashSet;

use omni_resources::specs::cluster::{ClusterSpec, MachineSetSpec};
use omni_resources::specs::Kind;
use omni_resources::{
    Resource, LABEL_CLUSTER, LABEL_MACHINE_SET, LABEL_ROLE_CONTROLPLANE, LABEL_ROLE_WORKER,
};

use crate::model::Template;

/// Labels a template decides on machine sets and nodes; others are kept.
const MANAGED_LABELS: [&str; 4] = [
    LABEL_CLUSTER,
    LABEL_MACHINE_SET,
    LABEL_ROLE_CONTROLPLANE,
    LABEL_ROLE_WORKER,
];

/// The resources that exist now.
#[derive(Debug, Clone, Default)]
pub struct Current {
    /// The cluster named by the template, if it exists.
    pub cluster: Option<Resource>,
    /// All `MachineSets` (those of other clusters are ignored).
    pub machine_sets: Vec<Resource>,
    /// All `MachineSetNodes` (those of other clusters are ignored).
    pub nodes: Vec<Resource>,
}

/// A resource to change: as it is and as it will be. `new` keeps `old`'s
/// metadata (version, owner, phase, times, finalizers), so that a diff
/// shows only what the sync changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub old: Resource,
    pub new: Resource,
}

/// The steps of a sync, each list in the order to run it: creations and
/// updates cluster first, destructions nodes first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub create: Vec<Resource>,
    pub update: Vec<Update>,
    pub destroy: Vec<Resource>,
}

impl Plan {
    /// Whether the cluster already matches the template.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.destroy.is_empty()
    }
}

/// Compares the template with what exists.
pub fn plan(template: &Template, current: &Current) -> Plan {
    let mut plan = Plan::default();
    let desired = template.resources();
    for d in &desired {
        let m = &d.metadata;
        let existing = match m.kind.as_str() {
            ClusterSpec::TYPE => current.cluster.as_ref(),
            MachineSetSpec::TYPE => current.machine_sets.iter().find(|r| r.metadata.id == m.id),
            _ => current.nodes.iter().find(|r| r.metadata.id == m.id),
        };
        match existing {
            None => plan.create.push(d.clone()),
            Some(old) => {
                let new = merged(template, old, d);
                if new.spec != old.spec || new.metadata.labels != old.metadata.labels {
                    plan.update.push(Update {
                        old: old.clone(),
                        new,
                    });
                }
            }
        }
    }
    let wanted: HashSet<(&str, &str)> = desired
        .iter()
        .map(|r| (r.metadata.kind.as_str(), r.metadata.id.as_str()))
        .collect();
    let ours = |r: &&Resource| {
        r.metadata.labels.get(LABEL_CLUSTER).map(String::as_str) == Some(template.name())
            && !wanted.contains(&(r.metadata.kind.as_str(), r.metadata.id.as_str()))
    };
    plan.destroy
        .extend(current.nodes.iter().filter(ours).cloned());
    plan.destroy
        .extend(current.machine_sets.iter().filter(ours).cloned());
    plan
}

/// `old` changed to what the template wants, keeping what it does not say.
fn merged(template: &Template, old: &Resource, desired: &Resource) -> Resource {
    let mut new = old.clone();
    if old.metadata.kind == ClusterSpec::TYPE {
        let current: Option<ClusterSpec> = old.spec_as().ok();
        new.spec = serde_json::to_value(template.cluster_spec(current.as_ref()))
            .unwrap_or_else(|_| desired.spec.clone());
        return new;
    }
    new.spec = desired.spec.clone();
    let labels = &mut new.metadata.labels;
    labels.retain(|k, _| !MANAGED_LABELS.contains(&k.as_str()));
    labels.extend(desired.metadata.labels.clone());
    new
}

#[cfg(test)]
mod tests;
