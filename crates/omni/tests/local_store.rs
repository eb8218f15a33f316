//! The guide with the local store, and what a user does with a backup:
//! download it, check it with etcdutl, restore it and read the keys back;
//! open it without omni; see corruption and member failures handled.

mod common;

use std::process::Command;

use common::*;
use omni_testkit::EtcdCluster;

const CLUSTER: &str = "metadata:\n  namespace: default\n  type: Clusters.omni.sidero.dev\n  id: talos-default\nspec:\n  kubernetesversion: 1.28.2\n  talosversion: 1.5.5\n";

fn request_backup(omni: &Omni, at: i64) {
    let yaml = format!("metadata:\n  namespace: ephemeral\n  type: EtcdManualBackups.omni.sidero.dev\n  id: talos-default\nspec:\n  backupat:\n    seconds: {at}\n    nanos: 0\n");
    let out = omni.apply_yaml(&yaml);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The status as YAML; empty until the backup controller wrote it.
fn status_yaml(omni: &Omni) -> String {
    stdout(&omni.ctl(&["get", "etcdbackupstatus", "talos-default", "-o", "yaml"]))
}

async fn wait_backup_count(omni: &Omni, n: usize) -> Vec<String> {
    eventually(&format!("{n} backups"), || {
        let out = omni.ctl_ok(&[
            "get",
            "etcdbackup",
            "--selector",
            "omni.sidero.dev/cluster=talos-default",
            "-o",
            "json",
        ]);
        let ids: Vec<String> = serde_json::Deserializer::from_str(&out)
            .into_iter::<serde_json::Value>()
            .map(|v| v.unwrap()["metadata"]["id"].as_str().unwrap().to_string())
            .collect();
        (ids.len() == n).then_some(ids)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_store_backup_restores_with_etcdutl_and_opens_without_omni() {
    let mut etcd = EtcdCluster::start(3).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..50 {
        let (k, v) = (
            format!("/restore/key{i:03}"),
            format!("value-{i}-{}", "x".repeat(i)),
        );
        etcd.put(k.clone(), v.clone()).await.unwrap();
        expected.push((k, v));
    }
    let omni = Omni::start(&["--etcd-backup-tick", "1s"]).await;
    let overall = omni.ctl_ok(&["get", "etcdbackupoverallstatus"]);
    assert_eq!(
        overall.lines().nth(1),
        Some("ephemeral   EtcdBackupOverallStatus   etcdbackup-overall-status   1         local")
    );

    let machines: Vec<(String, String)> = etcd
        .members()
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("m{i}-uuid"), m.client_url()))
        .collect();
    assert!(omni
        .apply_yaml(&machines_yaml("talos-default", &machines, true))
        .status
        .success());
    assert!(omni.apply_yaml(CLUSTER).status.success());
    request_backup(&omni, now());
    eventually("backup ok", || {
        status_yaml(&omni).contains("  status: 1\n").then_some(())
    })
    .await;
    let ids = wait_backup_count(&omni, 1).await;

    // Download: a plain etcd snapshot that stock etcdutl accepts.
    let snap = omni.dir.path().join("snap.db");
    let out = omni.ctl_ok(&[
        "etcd-backup",
        "download",
        "--cluster",
        "talos-default",
        "--latest",
        "-o",
        path_str(&snap),
    ]);
    assert!(out.contains("verified"), "{out}");
    let v = omni.ctl_ok(&[
        "etcd-backup",
        "verify",
        "--cluster",
        "talos-default",
        "--latest",
    ]);
    assert!(v.contains(&format!("backup {} is intact", ids[0])), "{v}");
    let status = etcd.bins().snapshot_status(&snap).unwrap();
    let status: serde_json::Value = serde_json::from_str(status.trim()).unwrap();
    assert!(status["totalKey"].as_u64().unwrap() >= 50, "{status}");

    // Restore into a fresh etcd and compare key by key.
    let restored = EtcdCluster::restore_single(&snap).await.unwrap();
    for (k, v) in &expected {
        let got = restored.get(k.clone()).await.unwrap();
        assert_eq!(got.as_deref(), Some(v.as_bytes()), "key {k}");
    }
    drop(restored);

    // Without omni: the exported key and the stock age + zstd tools.
    let key = omni.dir.path().join("key.txt");
    omni.ctl_ok(&[
        "etcd-backup",
        "export-key",
        "--cluster",
        "talos-default",
        "-o",
        path_str(&key),
    ]);
    let obj = omni.dir.path().join("obj.age");
    omni.ctl_ok(&[
        "etcd-backup",
        "download",
        "--cluster",
        "talos-default",
        "--snapshot",
        &ids[0],
        "--encrypted",
        "-o",
        path_str(&obj),
    ]);
    let opened = omni.dir.path().join("opened.db");
    let sh = format!(
        "age -d -i {} {} | zstd -d -q -o {}",
        path_str(&key),
        path_str(&obj),
        path_str(&opened)
    );
    let st = Command::new("sh").arg("-c").arg(&sh).status().unwrap();
    assert!(st.success(), "{sh}");
    assert_eq!(
        std::fs::read(&opened).unwrap(),
        std::fs::read(&snap).unwrap()
    );

    // A reader cannot export the key.
    let reader = omni.ctl_ok(&["token", "create", "--role", "reader"]);
    let out = omni.ctl_as(
        reader.trim(),
        &[
            "etcd-backup",
            "export-key",
            "--cluster",
            "talos-default",
            "-o",
            path_str(&omni.dir.path().join("k2")),
        ],
    );
    assert!(!out.status.success());
    assert!(!omni.dir.path().join("k2").exists());

    // The chosen member down: the backup comes from another one.
    etcd.stop_member(0).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    request_backup(&omni, now());
    let ids = wait_backup_count(&omni, 2).await;
    // The object is listed a moment before the status says ok.
    eventually("the backup status to say ok", || {
        status_yaml(&omni).contains("  status: 1\n").then_some(())
    })
    .await;
    // It came from a live member: either the source fell back past m0, or
    // the machine probe had already put m0 last.
    let log = omni.log_text();
    let served = log
        .lines()
        .rfind(|l| l.contains("snapshot stored"))
        .unwrap()
        .to_string();
    assert!(
        served.contains("member=m1-uuid") || served.contains("member=m2-uuid"),
        "{served}"
    );

    // One flipped byte in the store: download fails naming the backup and
    // leaves no output file.
    let uuid_dir = std::fs::read_dir(omni.data_dir().join("backups"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let newest = std::fs::read_dir(&uuid_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&newest, bytes).unwrap();
    let bad = omni.dir.path().join("bad.db");
    let out = omni.ctl(&[
        "etcd-backup",
        "download",
        "--cluster",
        "talos-default",
        "--snapshot",
        &ids[0],
        "-o",
        path_str(&bad),
    ]);
    assert!(!out.status.success(), "a corrupted backup downloaded fine");
    assert!(stderr(&out).contains(&ids[0]), "{}", stderr(&out));
    assert!(!bad.exists(), "a partial file was left behind");
    let leftovers: Vec<_> = std::fs::read_dir(omni.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".omnictl-download-")
        })
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    // Automatic backups with the local store: a cluster with none gets its
    // first one at once when an interval is set.
    let auto_etcd = EtcdCluster::start(1).await.unwrap();
    let auto = vec![("auto-uuid".to_string(), auto_etcd.member(0).client_url())];
    assert!(omni
        .apply_yaml(&machines_yaml("auto", &auto, true))
        .status
        .success());
    let out = omni.apply_yaml("metadata:\n  type: cluster\n  id: auto\nspec:\n  backupconfiguration:\n    interval:\n      seconds: 3600\n      nanos: 0\n");
    assert!(out.status.success(), "{}", stderr(&out));
    eventually("the first automatic local backup", || {
        let out = omni.ctl_ok(&[
            "get",
            "etcdbackup",
            "--selector",
            "omni.sidero.dev/cluster=auto",
            "-o",
            "json",
        ]);
        out.contains("\"auto-").then_some(())
    })
    .await;
}
