//! A storm of manual backup requests across many clusters neither crashes
//! the server nor starves the scheduler of an automatic cluster.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use omni_resources::Resource;
use omni_testkit::EtcdCluster;
use serde_json::json;

const CLUSTERS: usize = 50;
const REQUESTS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_manual_requests_across_fifty_clusters() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    etcd.put("/load/k", "v").await.unwrap();
    let omni = Omni::start(&[
        "--state",
        "memory",
        "--etcd-backup-tick",
        "1s",
        "--etcd-backup-min-interval",
        "2s",
        "--etcd-backup-jitter",
        "0s",
        "--api-rate-limit",
        "5000",
        "--api-rate-burst",
        "5000",
    ])
    .await;
    let url = etcd.member(0).client_url();
    let mut yaml = String::new();
    for i in 0..CLUSTERS {
        yaml.push_str(&machines_yaml(
            &format!("load-{i}"),
            &[(format!("load-{i}-machine"), url.clone())],
            true,
        ));
        yaml.push_str(&format!(
            "metadata:\n  type: cluster\n  id: load-{i}\nspec: {{}}\n---\n"
        ));
    }
    yaml.push_str(&machines_yaml(
        "auto",
        &[("auto-machine".into(), url.clone())],
        true,
    ));
    yaml.push_str("metadata:\n  type: cluster\n  id: auto\nspec:\n  backupconfiguration:\n    interval:\n      seconds: 2\n");
    let out = omni.apply_yaml(&yaml);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually("the automatic cluster's first backup", || {
        (backup_status(&omni, "auto")["status"] == 1).then_some(())
    })
    .await;

    let client = Arc::new(omni.client());
    let start = now();
    let mut tasks = Vec::new();
    for worker in 0..20 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut refused = 0;
            for i in (worker..REQUESTS).step_by(20) {
                let cluster = format!("load-{}", i % CLUSTERS);
                // 20 distinct request times per cluster, all inside the window.
                let at = start - (i / CLUSTERS) as i64;
                let r = Resource::new(
                    "EtcdManualBackups.omni.sidero.dev",
                    "ephemeral",
                    &cluster,
                    json!({"backupat": {"seconds": at, "nanos": 0}}),
                );
                if client.apply(&r).await.is_err() {
                    refused += 1;
                }
            }
            refused
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await.unwrap();
    }
    assert_eq!(refused, 0, "requests were refused");
    let took = now() - start;

    // Every cluster gets its backup, and the automatic one keeps its pace.
    let statuses = eventually("all clusters backed up", || {
        let out = omni.ctl_ok(&["get", "etcdbackupstatus", "-o", "json"]);
        let all: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out)
            .into_iter::<serde_json::Value>()
            .map(|v| v.unwrap())
            .collect();
        let ok = all
            .iter()
            .filter(|v| {
                v["spec"]["status"] == 1
                    && v["spec"]["lastbackupattempt"]["seconds"].as_i64() >= Some(start)
            })
            .count();
        (ok == CLUSTERS + 1).then_some(all)
    })
    .await;
    assert_eq!(statuses.len(), CLUSTERS + 1);
    let auto_before = omni
        .ctl_ok(&[
            "get",
            "etcdbackup",
            "--selector",
            "omni.sidero.dev/cluster=auto",
        ])
        .lines()
        .count();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let auto_after = omni
        .ctl_ok(&[
            "get",
            "etcdbackup",
            "--selector",
            "omni.sidero.dev/cluster=auto",
        ])
        .lines()
        .count();
    assert!(
        auto_after > auto_before,
        "the automatic cluster stopped being backed up ({auto_before} → {auto_after})"
    );
    let health = reqwest::get(format!("{}/healthz", omni.endpoint()))
        .await
        .unwrap();
    assert!(health.status().is_success());
    eprintln!(
        "{REQUESTS} requests accepted in {took}s; {} clusters backed up",
        CLUSTERS + 1
    );
}
