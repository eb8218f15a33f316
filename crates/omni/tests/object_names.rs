//! Backup objects carry the reference product's names, and a store that
//! also holds names an earlier omni-rs wrote lists them all, newest first.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use omni_backup::keys::{format_key, legacy_key, parse_key};
use omni_testkit::EtcdCluster;

const CLUSTER: &str = "talos-default";

fn snapshots_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(snapshots_under(&p));
        } else if p.extension().is_some_and(|e| e == "snapshot") {
            out.push(p);
        }
    }
    out
}

fn listing(omni: &Omni) -> Vec<serde_json::Value> {
    let out = omni.ctl_ok(&[
        "get",
        "etcdbackup",
        "--selector",
        &format!("omni.sidero.dev/cluster={CLUSTER}"),
        "-o",
        "json",
    ]);
    serde_json::Deserializer::from_str(&out)
        .into_iter::<serde_json::Value>()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_names_are_written_and_legacy_names_still_list() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    let omni = Omni::start(&["--etcd-backup-tick", "1s"]).await;
    register_members(&omni, CLUSTER, &etcd);
    create_cluster(&omni, CLUSTER);
    let at = now();
    let yaml = format!("metadata:\n  namespace: ephemeral\n  type: EtcdManualBackups.omni.sidero.dev\n  id: {CLUSTER}\nspec:\n  backupat:\n    seconds: {at}\n    nanos: 0\n");
    assert!(omni.apply_yaml(&yaml).status.success());
    let written = eventually("the backup object", || {
        let found = snapshots_under(&omni.data_dir());
        (found.len() == 1).then(|| found[0].clone())
    })
    .await;

    // Written under the reference's name: upper case, 2^64 - unix.
    let dir = written.parent().unwrap().to_path_buf();
    let uuid = dir.file_name().unwrap().to_str().unwrap().to_string();
    let name = written.file_name().unwrap().to_str().unwrap().to_string();
    let (_, t) = parse_key(&format!("{uuid}/{name}")).unwrap();
    assert_eq!(format!("{uuid}/{name}"), format_key(&uuid, t).unwrap());
    assert!(
        name.starts_with("FFFFFFFF") && name != name.to_lowercase(),
        "{name}"
    );

    // Objects an earlier version wrote, one newer and one older. By name the
    // newer one would sort after the upper-case one; by time it comes first.
    for when in [t + 100, t - 100] {
        let legacy = legacy_key(&uuid, when).unwrap();
        std::fs::copy(&written, dir.join(legacy.rsplit('/').next().unwrap())).unwrap();
    }
    let items = eventually("three backups listed", || {
        let items = listing(&omni);
        (items.len() == 3).then_some(items)
    })
    .await;
    let ids: Vec<&str> = items
        .iter()
        .map(|i| i["metadata"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [t + 100, t, t - 100].map(|w| format!("{CLUSTER}-{w}")),
        "newest first"
    );
    let names: Vec<&str> = items
        .iter()
        .map(|i| i["spec"]["snapshot"].as_str().unwrap())
        .collect();
    let short = |k: String| k.rsplit('/').next().unwrap().to_string();
    assert_eq!(
        names,
        [
            short(legacy_key(&uuid, t + 100).unwrap()),
            name.clone(),
            short(legacy_key(&uuid, t - 100).unwrap()),
        ]
    );
    for item in &items {
        let labels = &item["metadata"]["labels"];
        assert_eq!(
            labels["omni.sidero.dev/cluster-uuid"],
            uuid.as_str(),
            "{item}"
        );
        assert_eq!(labels["omni.sidero.dev/cluster"], CLUSTER, "{item}");
    }

    // A legacy backup is found by its ID, and deleted from its own name.
    let old_id = format!("{CLUSTER}-{}", t - 100);
    let one = omni.ctl_ok(&["get", "etcdbackup", &old_id, "-o", "json"]);
    assert!(
        one.contains(&short(legacy_key(&uuid, t - 100).unwrap())),
        "{one}"
    );
    omni.ctl_ok(&["delete", "etcdbackup", &old_id]);
    assert!(!dir
        .join(short(legacy_key(&uuid, t - 100).unwrap()))
        .exists());
    assert_eq!(listing(&omni).len(), 2);
}
