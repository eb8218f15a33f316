//! `cluster template status`: the cluster, its machine sets and the status
//! of each of its machines, as three tables.

use std::collections::HashMap;

use omni_resources::duration::format_go_duration;
use omni_resources::specs::cluster::{
    ClusterMachineSpec, ClusterMachineStatusSpec, ClusterSpec, MachineSetNodeSpec, MachineSetSpec,
};
use omni_resources::specs::Kind;
use omni_resources::{
    Resource, LABEL_CLUSTER, LABEL_MACHINE_SET, LABEL_ROLE_CONTROLPLANE, LABEL_ROLE_WORKER,
};

use crate::output::render_table;

/// Everything `status` shows, read from the server.
pub struct Snapshot {
    pub cluster: Resource,
    pub machine_sets: Vec<Resource>,
    pub nodes: Vec<Resource>,
    pub cluster_machines: Vec<Resource>,
    pub statuses: Vec<Resource>,
}

impl Snapshot {
    pub async fn fetch(client: &omni_client::Client, name: &str) -> anyhow::Result<Snapshot> {
        let ns = ClusterSpec::DEFAULT_NAMESPACE;
        let cluster = match client.get(ClusterSpec::TYPE, ns, name).await {
            Ok(c) => c,
            Err(e) if e.is_not_found() => {
                anyhow::bail!("cluster {name:?} does not exist (sync the template to create it)")
            }
            Err(e) => return Err(e.into()),
        };
        let selector = format!("{LABEL_CLUSTER}={name}");
        let list = |kind: &'static str| client.list(kind, ns, Some(&selector));
        Ok(Snapshot {
            cluster,
            machine_sets: list(MachineSetSpec::TYPE).await?,
            nodes: list(MachineSetNodeSpec::TYPE).await?,
            cluster_machines: list(ClusterMachineSpec::TYPE).await?,
            statuses: list(ClusterMachineStatusSpec::TYPE).await?,
        })
    }
}

fn role_of(r: &Resource) -> &'static str {
    let labels = &r.metadata.labels;
    if labels.contains_key(LABEL_ROLE_CONTROLPLANE) {
        "controlplane"
    } else if labels.contains_key(LABEL_ROLE_WORKER) {
        "worker"
    } else {
        ""
    }
}

fn phase(r: &Resource) -> String {
    serde_json::to_value(r.metadata.phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The three tables, separated by blank lines.
pub fn render(s: &Snapshot) -> String {
    let statuses: HashMap<&str, ClusterMachineStatusSpec> = s
        .statuses
        .iter()
        .filter_map(|r| Some((r.metadata.id.as_str(), r.spec_as().ok()?)))
        .collect();
    let ready = |id: &str| statuses.get(id).is_some_and(|st| st.ready);

    let spec: ClusterSpec = s.cluster.spec_as().unwrap_or_default();
    // A cron schedule shows as its pattern (and zone, when not UTC).
    let conf = spec.backupconfiguration.as_ref();
    let interval = match (
        spec.backup_interval(),
        conf.and_then(|c| c.schedule.as_ref()),
    ) {
        (Some(i), _) => format_go_duration(i),
        (None, Some(s)) => match conf.and_then(|c| c.timezone.as_deref()) {
            Some(tz) => format!("{s} ({tz})"),
            None => s.clone(),
        },
        (None, None) => "off".into(),
    };
    let ready_count = s
        .cluster_machines
        .iter()
        .filter(|cm| ready(&cm.metadata.id))
        .count();
    let cluster = render_table(&[
        row(&[
            "CLUSTER",
            "PHASE",
            "KUBERNETES",
            "TALOS",
            "BACKUP INTERVAL",
            "MACHINES READY",
        ]),
        vec![
            s.cluster.metadata.id.clone(),
            phase(&s.cluster),
            spec.kubernetesversion,
            spec.talosversion,
            interval,
            format!("{ready_count}/{}", s.cluster_machines.len()),
        ],
    ]);

    let mut sets = vec![row(&["MACHINE SET", "ROLE", "MACHINES", "READY"])];
    for set in &s.machine_sets {
        let id = &set.metadata.id;
        let members: Vec<&Resource> = s
            .nodes
            .iter()
            .filter(|n| n.metadata.labels.get(LABEL_MACHINE_SET) == Some(id))
            .collect();
        let role = set.spec_as::<MachineSetSpec>().unwrap_or_default().role;
        let up = members.iter().filter(|n| ready(&n.metadata.id)).count();
        sets.push(vec![
            id.clone(),
            role,
            members.len().to_string(),
            up.to_string(),
        ]);
    }

    let mut machines = vec![row(&[
        "MACHINE",
        "ROLE",
        "READY",
        "STAGE",
        "ETCD MEMBER",
        "ERROR",
    ])];
    for cm in &s.cluster_machines {
        let id = cm.metadata.id.as_str();
        let st = statuses
            .get(id)
            .cloned()
            .unwrap_or_else(|| ClusterMachineStatusSpec {
                stage: "waiting".into(),
                ..ClusterMachineStatusSpec::default()
            });
        machines.push(vec![
            id.to_string(),
            role_of(cm).to_string(),
            st.ready.to_string(),
            st.stage,
            st.etcdmemberid,
            st.error.replace(['\n', '\r'], " "),
        ]);
    }
    format!(
        "{cluster}\n{}\n{}",
        render_table(&sets),
        render_table(&machines)
    )
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labelled(
        kind: &str,
        id: &str,
        spec: serde_json::Value,
        labels: &[(&str, &str)],
    ) -> Resource {
        let mut r = Resource::new(kind, "default", id, spec);
        for (k, v) in labels {
            r.metadata.labels.insert(k.to_string(), v.to_string());
        }
        r
    }

    #[test]
    fn tables() {
        let cp = [
            (LABEL_CLUSTER, "c"),
            (LABEL_MACHINE_SET, "c-control-planes"),
            (LABEL_ROLE_CONTROLPLANE, ""),
        ];
        let s = Snapshot {
            cluster: Resource::new(
                ClusterSpec::TYPE,
                "default",
                "c",
                json!({"kubernetesversion": "1.28.2", "talosversion": "1.5.5",
                       "backupconfiguration": {"interval": {"seconds": 3600, "nanos": 0}}}),
            ),
            machine_sets: vec![labelled(
                MachineSetSpec::TYPE,
                "c-control-planes",
                json!({"role": "controlplane"}),
                &[(LABEL_CLUSTER, "c")],
            )],
            nodes: vec![
                labelled(MachineSetNodeSpec::TYPE, "m1", json!({}), &cp),
                labelled(MachineSetNodeSpec::TYPE, "m2", json!({}), &cp),
            ],
            cluster_machines: vec![
                labelled(ClusterMachineSpec::TYPE, "m1", json!({}), &cp),
                labelled(ClusterMachineSpec::TYPE, "m2", json!({}), &cp),
            ],
            statuses: vec![labelled(
                ClusterMachineStatusSpec::TYPE,
                "m1",
                json!({"ready": true, "stage": "running", "etcdmemberid": "abc", "error": ""}),
                &cp,
            )],
        };
        assert_eq!(
            render(&s),
            "\
CLUSTER   PHASE     KUBERNETES   TALOS   BACKUP INTERVAL   MACHINES READY
c         running   1.28.2       1.5.5   1h0m0s            1/2

MACHINE SET        ROLE           MACHINES   READY
c-control-planes   controlplane   2          1

MACHINE   ROLE           READY   STAGE     ETCD MEMBER   ERROR
m1        controlplane   true    running   abc
m2        controlplane   false   waiting
"
        );
    }
}
