//! When the whole fleet is due at once and only one backup may run, each
//! finished backup wakes the one cluster that waited longest, not every
//! waiting cluster: the number of reconciles stays linear in the fleet.

mod common;

use common::*;
use omni_testkit::EtcdCluster;

const CLUSTERS: usize = 30;

async fn reconciles(omni: &Omni, controller: &str) -> f64 {
    let text = omni.metrics_text().await;
    let series = format!("omni_controller_reconciles_total{{controller=\"{controller}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_backup_wakes_one_waiting_cluster_not_all() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    etcd.put("/admission/k", "v").await.unwrap();
    let omni = Omni::start(&[
        "--state",
        "memory",
        "--etcd-backup-max-concurrent",
        "1",
        // A long tick: the safety-net requeue of a blocked cluster cannot
        // be what moves the queue.
        "--etcd-backup-tick",
        "10m",
        "--etcd-backup-jitter",
        "0s",
        "--machine-probe-interval",
        "1h",
    ])
    .await;
    let url = etcd.member(0).client_url();
    let mut yaml = String::new();
    for i in 0..CLUSTERS {
        yaml.push_str(&machines_yaml(
            &format!("a{i}"),
            &[(format!("a{i}-machine"), url.clone())],
            true,
        ));
        yaml.push_str(&format!(
            "metadata:\n  type: cluster\n  id: a{i}\nspec:\n  backupconfiguration:\n    interval:\n      seconds: 3600\n---\n"
        ));
    }
    let out = omni.apply_yaml(&yaml);
    assert!(out.status.success(), "{}", stderr(&out));
    // One backup at a time on a busy test machine can take a while; what
    // must never happen is a stall: waiting clusters that nobody wakes
    // (the tick that would rescue them is ten minutes away).
    let mut done = 0;
    let mut progress_at = std::time::Instant::now();
    while done < CLUSTERS {
        let now_done = (0..CLUSTERS)
            .filter(|i| backup_status(&omni, &format!("a{i}"))["status"] == 1)
            .count();
        if now_done > done {
            (done, progress_at) = (now_done, std::time::Instant::now());
        }
        assert!(
            progress_at.elapsed() < std::time::Duration::from_secs(90),
            "stalled at {done} of {CLUSTERS} clusters backed up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let n = reconciles(&omni, "EtcdBackupController").await;
    // Each cluster reconciles for its own writes (cluster, machines,
    // statuses, the backup's start and end) and once when woken. Waking
    // every waiting cluster at each end adds CLUSTERS²/2 = 450.
    let linear = (12 * CLUSTERS) as f64;
    assert!(
        n <= linear,
        "{n} reconciles of the backup controller for {CLUSTERS} clusters (at most {linear})"
    );
}
