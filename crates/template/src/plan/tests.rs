use omni_resources::specs::cluster::MachineSetNodeSpec;
use omni_resources::{Timestamp, NS_DEFAULT};
use serde_json::json;

use super::*;
use crate::parse;

const SEED: &str = crate::parse::tests::SEED;

/// What the server would hold after syncing `t`: every resource created,
/// with the metadata the server and controllers add.
fn stored(t: &Template) -> Current {
    let mut current = Current::default();
    for mut r in t.resources() {
        r.metadata.version = 3;
        r.metadata.created = Some(Timestamp::from_unix(1));
        r.metadata.updated = Some(Timestamp::from_unix(2));
        match r.metadata.kind.as_str() {
            ClusterSpec::TYPE => {
                r.metadata.finalizers = vec!["ClusterController".into()];
                current.cluster = Some(r);
            }
            MachineSetSpec::TYPE => current.machine_sets.push(r),
            _ => current.nodes.push(r),
        }
    }
    current
}

fn ids(rs: &[Resource]) -> Vec<String> {
    rs.iter().map(|r| r.key().to_string()).collect()
}

#[test]
fn a_new_cluster_is_created_whole() {
    let t = parse(SEED).unwrap();
    let p = plan(&t, &Current::default());
    assert!(p.update.is_empty() && p.destroy.is_empty());
    assert_eq!(
        ids(&p.create),
        [
            "Clusters.omni.sidero.dev(default/talos-default)",
            "MachineSets.omni.sidero.dev(default/talos-default-control-planes)",
            "MachineSets.omni.sidero.dev(default/talos-default-workers)",
            "MachineSetNodes.omni.sidero.dev(default/1dd4397b-37f1-4196-9c37-becef670b64a)",
            "MachineSetNodes.omni.sidero.dev(default/0d1f01c3-0a8a-4560-8745-bb792e3dfaad)",
            "MachineSetNodes.omni.sidero.dev(default/a0f29661-cd2d-4e25-a6c9-da5ca4c48d58)",
        ]
    );
    assert_eq!(
        p.create[0].spec,
        json!({"installimage": "", "kubernetesversion": "1.28.2", "talosversion": "1.5.5",
               "features": {"enableworkloadproxy": false, "diskencryption": false},
               "backupconfiguration": {"interval": {"seconds": 3600, "nanos": 0}}})
    );
    assert_eq!(p.create[1].spec, json!({"role": "controlplane"}));
    assert_eq!(p.create[2].spec, json!({"role": "worker"}));
    assert_eq!(
        p.create[1].metadata.labels,
        [(LABEL_CLUSTER.to_string(), "talos-default".to_string())].into()
    );
    let node = &p.create[4];
    assert_eq!(node.spec, json!({}));
    assert_eq!(
        node.metadata.labels,
        [
            (LABEL_CLUSTER.to_string(), "talos-default".to_string()),
            (
                LABEL_MACHINE_SET.to_string(),
                "talos-default-workers".to_string()
            ),
            (LABEL_ROLE_WORKER.to_string(), String::new()),
        ]
        .into()
    );
}

#[test]
fn a_synced_cluster_has_nothing_to_do() {
    let t = parse(SEED).unwrap();
    assert!(plan(&t, &stored(&t)).is_empty());
}

#[test]
fn enabling_backups_updates_only_the_cluster_and_keeps_the_rest() {
    let without = SEED.replace("features:\n  backupConfiguration:\n    interval: 1h\n", "");
    let mut current = stored(&parse(&without).unwrap());
    if let Some(c) = current.cluster.as_mut() {
        c.spec["installimage"] = json!("factory/image:1");
        c.metadata
            .labels
            .insert("team".to_string(), "blue".to_string());
    }
    let p = plan(&parse(SEED).unwrap(), &current);
    assert!(p.create.is_empty() && p.destroy.is_empty());
    assert_eq!(p.update.len(), 1);
    let Update { old, new } = &p.update[0];
    assert_eq!(old.metadata, new.metadata, "metadata is kept as stored");
    assert_eq!(new.spec["installimage"], "factory/image:1");
    assert_eq!(
        new.spec["backupconfiguration"],
        json!({"interval": {"seconds": 3600, "nanos": 0}})
    );
    assert!(old.spec.get("backupconfiguration").is_none());
}

#[test]
fn moved_and_removed_machines() {
    let t = parse(SEED).unwrap();
    let mut current = stored(&t);
    // Another cluster's node is never touched.
    let mut foreign = Resource::new(MachineSetNodeSpec::TYPE, NS_DEFAULT, "x", json!({}));
    foreign
        .metadata
        .labels
        .insert(LABEL_CLUSTER.into(), "other".into());
    current.nodes.push(foreign);
    // An extra label of a node survives the move.
    current.nodes[1]
        .metadata
        .labels
        .insert("rack".into(), "r1".into());
    // The first worker becomes a control-plane node, the second goes.
    let text = SEED
        .replace(
            "  - 1dd4397b-37f1-4196-9c37-becef670b64a\n",
            "  - 1dd4397b-37f1-4196-9c37-becef670b64a\n  - 0d1f01c3-0a8a-4560-8745-bb792e3dfaad\n",
        )
        .replace(
            "machines:\n  - 0d1f01c3-0a8a-4560-8745-bb792e3dfaad\n  - a0f29661-cd2d-4e25-a6c9-da5ca4c48d58\n",
            "machines: []\n",
        );
    let p = plan(&parse(&text).unwrap(), &current);
    assert!(p.create.is_empty());
    assert_eq!(p.update.len(), 1);
    let labels = &p.update[0].new.metadata.labels;
    assert_eq!(labels[LABEL_MACHINE_SET], "talos-default-control-planes");
    assert!(labels.contains_key(LABEL_ROLE_CONTROLPLANE));
    assert!(!labels.contains_key(LABEL_ROLE_WORKER));
    assert_eq!(labels["rack"], "r1");
    assert_eq!(
        ids(&p.destroy),
        ["MachineSetNodes.omni.sidero.dev(default/a0f29661-cd2d-4e25-a6c9-da5ca4c48d58)"]
    );
}
