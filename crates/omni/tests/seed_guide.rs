//! The seed guide (shared/seed/etcd-backups.md) end to end, step by step,
//! against a real etcd cluster, a real S3 server and the real binaries.

mod common;

use common::*;
use omni_testkit::{EtcdCluster, S3Server};

const SEED_HEADER: &str = "NAMESPACE   TYPE                      ID                          VERSION   CONFIGURATION NAME   CONFIGURATION ERROR   LAST BACKUP STATUS   LAST BACKUP ERROR   LAST BACKUP TIME   CONFIGURATION ATTEMPT";

fn s3_config_yaml(s3: &S3Server, secret: &str) -> String {
    format!(
        "metadata:\n  namespace: default\n  type: EtcdBackupS3Configs.omni.sidero.dev\n  id: etcd-backup-s3-conf\nspec:\n  bucket: {}\n  region: us-east-1\n  endpoint: {}\n  accesskeyid: {}\n  secretaccesskey: {secret}\n  sessiontoken: \"\"\n",
        s3.bucket(),
        s3.endpoint(),
        s3.access_key()
    )
}

fn manual_backup_yaml(cluster: &str, at: i64) -> String {
    format!("metadata:\n  namespace: ephemeral\n  type: EtcdManualBackups.omni.sidero.dev\n  id: {cluster}\nspec:\n  backupat:\n    seconds: {at}\n    nanos: 0\n")
}

fn backup_ids(omni: &Omni, cluster: &str) -> Vec<String> {
    let out = omni.ctl_ok(&[
        "get",
        "etcdbackup",
        "--selector",
        &format!("omni.sidero.dev/cluster={cluster}"),
        "-o",
        "json",
    ]);
    let mut ids = Vec::new();
    let de = serde_json::Deserializer::from_str(&out).into_iter::<serde_json::Value>();
    for v in de {
        ids.push(v.unwrap()["metadata"]["id"].as_str().unwrap().to_string());
    }
    ids
}

async fn register_cluster(omni: &Omni, etcd: &EtcdCluster, name: &str) {
    let machines: Vec<(String, String)> = etcd
        .members()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (
                format!("{name}-m{i}-0000-4000-8000-000000000000"),
                m.client_url(),
            )
        })
        .collect();
    let out = omni.apply_yaml(&machines_yaml(name, &machines, true));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_guide_with_s3() {
    let etcd = EtcdCluster::start(3).await.unwrap();
    for i in 0..20 {
        etcd.put(format!("/seed/key{i}"), format!("value{i}"))
            .await
            .unwrap();
    }
    let s3 = S3Server::start().await.unwrap();
    let omni = Omni::start(&[
        "--etcd-backup-s3",
        "--etcd-backup-min-interval",
        "3s",
        "--etcd-backup-tick",
        "1s",
        "--etcd-backup-jitter",
        "0s",
    ])
    .await;

    // 1. Fresh instance: s3 chosen, not initialized (the store controller
    // writes it just after the server turned ready).
    let out = eventually("overall status", || {
        let out = omni.ctl_ok(&["get", "etcdbackupoverallstatus"]);
        (out.lines().count() > 1).then_some(out)
    })
    .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], SEED_HEADER);
    assert_eq!(lines[1], "ephemeral   EtcdBackupOverallStatus   etcdbackup-overall-status   1         s3                   not initialized");

    // 2. A bad S3 config is rejected and nothing is stored.
    let out = omni.apply_yaml(&s3_config_yaml(&s3, "wrong-secret"));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("incorrect settings for s3 client"), "{err}");
    assert!(
        !err.contains("wrong-secret"),
        "the secret leaked into the error: {err}"
    );
    let out = omni.ctl(&["get", "etcdbackups3config", "etcd-backup-s3-conf"]);
    assert!(!out.status.success(), "a rejected config was stored");

    // 3. The seed's config (with this S3 server's address and keys).
    let out = omni.apply_yaml(&s3_config_yaml(&s3, s3.secret_key()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("created"), "{}", stdout(&out));
    // Round trip: every field as the seed names it, in the seed's order.
    let got = omni.ctl_ok(&[
        "get",
        "etcdbackups3config",
        "etcd-backup-s3-conf",
        "-o",
        "yaml",
    ]);
    let spec = got.split("spec:\n").nth(1).unwrap();
    assert_eq!(
        spec,
        s3_config_yaml(&s3, s3.secret_key())
            .split("spec:\n")
            .nth(1)
            .unwrap()
    );
    let reader = omni.ctl_ok(&["token", "create", "--role", "reader"]);
    let seen = stdout(&omni.ctl_as(
        reader.trim(),
        &[
            "get",
            "etcdbackups3config",
            "etcd-backup-s3-conf",
            "-o",
            "yaml",
        ],
    ));
    assert!(
        seen.contains("secretaccesskey: <redacted>") && !seen.contains(s3.secret_key()),
        "{seen}"
    );
    eventually("overall status version 2, configured", || {
        let out = omni.ctl_ok(&["get", "etcdbackupoverallstatus"]);
        (out.lines().nth(1)
            == Some(
                "ephemeral   EtcdBackupOverallStatus   etcdbackup-overall-status   2         s3",
            ))
        .then_some(())
    })
    .await;

    // 4. A manual backup of a cluster.
    register_cluster(&omni, &etcd, "talos-default").await;
    let out = omni.apply_yaml(SEED_CLUSTER);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = omni.apply_yaml(&manual_backup_yaml("talos-default", now()));
    assert!(out.status.success(), "{}", stderr(&out));
    let status = eventually("backup status ok", || {
        let y = omni.ctl_ok(&["get", "etcdbackupstatus", "-o", "yaml"]);
        y.contains("  status: 1\n").then_some(y)
    })
    .await;
    for line in [
        "  namespace: ephemeral",
        "  type: EtcdBackupStatuses.omni.sidero.dev",
        "  id: talos-default",
        "  owner: EtcdBackupController",
        "  phase: running",
        "  error: \"\"",
        "  lastbackuptime:",
        "  lastbackupattempt:",
    ] {
        assert!(
            status.lines().any(|l| l == line),
            "{line:?} missing in\n{status}"
        );
    }
    let overall = omni.ctl_ok(&["get", "etcdbackupoverallstatus", "-o", "yaml"]);
    assert!(
        overall.contains("  lastbackupstatus:\n    status: 1\n"),
        "{overall}"
    );
    assert!(
        overall.contains("  owner: EtcdBackupOverallStatusController"),
        "{overall}"
    );

    // The backup is listed, only with the cluster selector.
    let ids = backup_ids(&omni, "talos-default");
    assert_eq!(ids.len(), 1, "{ids:?}");
    let table = omni.ctl_ok(&[
        "get",
        "etcdbackup",
        "--selector",
        "omni.sidero.dev/cluster=talos-default",
    ]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        "NAMESPACE   TYPE         ID                         VERSION     CREATED AT"
    );
    let secs = ids[0].rsplit('-').next().unwrap();
    assert_eq!(
        lines[1],
        format!(
            "external    EtcdBackup   {}   undefined   {{\"nanos\":0,\"seconds\":{secs}}}",
            ids[0]
        )
    );
    let out = omni.ctl(&["get", "etcdbackup"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cluster ID must be specified in query"),
        "{}",
        stderr(&out)
    );

    // 5. Automatic backups through the cluster resource: every interval after the last.
    let with_interval = format!(
        "{SEED_CLUSTER}  backupconfiguration:\n    interval:\n      seconds: 3\n      nanos: 0\n"
    );
    let out = omni.apply_yaml(&with_interval);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("updated"), "{}", stdout(&out));
    let ids = eventually("two more automatic backups", || {
        let ids = backup_ids(&omni, "talos-default");
        (ids.len() >= 3).then_some(ids)
    })
    .await;
    let times: Vec<i64> = ids
        .iter()
        .map(|id| id.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] > w[1]),
        "listing must be newest first: {times:?}"
    );
    for w in times.windows(2) {
        assert!(
            w[0] - w[1] >= 3,
            "backups closer than the interval: {times:?}"
        );
    }

    // 6. A second cluster with no backups gets its first one at once when the
    // interval is enabled (the interval is long: only the first can come).
    let etcd2 = EtcdCluster::start(1).await.unwrap();
    register_cluster(&omni, &etcd2, "second").await;
    let second = SEED_CLUSTER.replace("talos-default", "second").replace("  finalizers:\n    - KubernetesUpgradeStatusController\n    - TalosUpgradeStatusController\n    - SecretsController\n    - ClusterController\n", "");
    let out = omni.apply_yaml(&format!(
        "{second}  backupconfiguration:\n    interval:\n      seconds: 3600\n      nanos: 0\n"
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    eventually("first automatic backup of the second cluster", || {
        (backup_ids(&omni, "second").len() == 1).then_some(())
    })
    .await;
}
