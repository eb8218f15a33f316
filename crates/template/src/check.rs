//! Checks that need to know what the server has: which machines are
//! registered and which clusters machines already belong to.

use std::collections::{BTreeMap, BTreeSet};

use omni_resources::{Resource, LABEL_CLUSTER};

use crate::model::Template;
use crate::problem::Problem;

/// What the server knows about machines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Ids of the `Machines` resources.
    pub machines: BTreeSet<String>,
    /// Machine id → the cluster its `MachineSetNodes` puts it in.
    pub assignments: BTreeMap<String, String>,
}

impl Facts {
    /// Facts from the `Machines` and `MachineSetNodes` resources.
    pub fn from_resources(machines: &[Resource], nodes: &[Resource]) -> Self {
        Facts {
            machines: machines.iter().map(|m| m.metadata.id.clone()).collect(),
            assignments: nodes
                .iter()
                .filter_map(|n| {
                    let cluster = n.metadata.labels.get(LABEL_CLUSTER)?;
                    Some((n.metadata.id.clone(), cluster.clone()))
                })
                .collect(),
        }
    }
}

impl Template {
    /// Problems with the template's machines, given the server's facts:
    /// unknown machines and machines that belong to another cluster.
    pub fn check(&self, facts: &Facts) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (set, i, m) in self.machines() {
            let problem = |message: String| {
                Problem::document(
                    set.document.unwrap_or(0),
                    Some(set.role.kind()),
                    format!("machines[{i}]"),
                    message,
                )
            };
            if !facts.machines.contains(m) {
                problems.push(problem(format!(
                    "machine {m:?} is not registered (no Machines resource)"
                )));
            }
            if let Some(other) = facts.assignments.get(m).filter(|c| *c != self.name()) {
                problems.push(problem(format!(
                    "machine {m:?} belongs to cluster {other:?}"
                )));
            }
        }
        problems
    }
}
