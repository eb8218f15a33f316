//! etcd failures: the whole cluster down gives an error status in words and
//! retries that back off; when etcd returns, backups resume on their own.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use omni_testkit::EtcdCluster;

fn status(omni: &Omni) -> serde_json::Value {
    backup_status(omni, "talos-default")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_down_backs_off_and_recovers_without_help() {
    // One member: down is the whole cluster down (a 3-member restart needs
    // quorum before any member reports ready, which the harness waits for).
    let mut etcd = EtcdCluster::start(1).await.unwrap();
    etcd.put("/k", "v").await.unwrap();
    let omni = Omni::start(&[
        "--etcd-backup-tick",
        "1s",
        "--etcd-backup-min-interval",
        "2s",
        "--etcd-backup-jitter",
        "0s",
        "--etcd-backup-retry-backoff",
        "1s",
    ])
    .await;
    register_members(&omni, "talos-default", &etcd);
    let cluster = "metadata:\n  type: cluster\n  id: talos-default\nspec:\n  backupconfiguration:\n    interval:\n      seconds: 30\n";
    assert!(omni.apply_yaml(cluster).status.success());
    eventually("first backup", || {
        (status(&omni)["status"] == 1).then_some(())
    })
    .await;

    // Fake an overdue schedule: a restart of omni is not needed, the next
    // automatic backup is 30s away; instead take etcd down and ask for one.
    etcd.stop_member(0).unwrap();
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let req = format!("metadata:\n  type: etcdmanualbackup\n  id: talos-default\nspec:\n  backupat:\n    seconds: {at}\n");
    assert!(omni.apply_yaml(&req).status.success());
    let st = eventually("error status", || {
        let s = status(&omni);
        (s["status"] == 2).then_some(s)
    })
    .await;
    let err = st["error"].as_str().unwrap();
    assert!(
        err.contains("no etcd member could provide a verified snapshot"),
        "{err}"
    );
    assert!(err.contains("m0"), "the member is not named in {err}");
    // The overall status carries it too.
    let overall = omni.ctl_ok(&["get", "etcdbackupoverallstatus", "-o", "json"]);
    assert!(
        overall.contains("no etcd member could provide"),
        "{overall}"
    );

    // Make the automatic schedule due by shortening the interval; failed
    // attempts then back off (1s, 2s, 4s, ...) instead of firing every tick.
    let due = cluster.replace("seconds: 30", "seconds: 2");
    assert!(omni.apply_yaml(&due).status.success());
    let mut attempts = BTreeSet::new();
    let watch_for = Duration::from_secs(7);
    let start = std::time::Instant::now();
    while start.elapsed() < watch_for {
        let s = status(&omni);
        attempts.insert(s["lastbackupattempt"]["seconds"].as_i64().unwrap());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(attempts.len() >= 2, "no retries at all: {attempts:?}");
    assert!(
        attempts.len() <= 5,
        "retries did not back off: {attempts:?}"
    );

    // etcd comes back: the next retry succeeds with nobody doing anything.
    etcd.start_member(0).await.unwrap();
    etcd.wait_healthy().await.unwrap();
    let st = eventually("recovery", || {
        let s = status(&omni);
        (s["status"] == 1).then_some(s)
    })
    .await;
    assert_eq!(st["error"], "");
}
