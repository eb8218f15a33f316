//! Alert deduplication across a leader change: two `omni` replicas on a
//! state etcd, the backed-up cluster's etcd stopped. The leader announces
//! the failure, is killed, and the new leader (reading the delivery state
//! from the shared state) does not announce it again; it resolves it once
//! etcd is back.

mod common;
mod receiver;

use std::time::Duration;

use common::replica::Replica;
use common::*;
use omni_testkit::EtcdCluster;
use receiver::{receiver_yaml, Inbox};

const PREFIX: &str = "/omni-alerts-ha";

async fn start(state_etcd: &EtcdCluster) -> Replica {
    Replica::start(state_etcd, PREFIX, &["--etcd-backup-retry-backoff", "1s"]).await
}

fn apply(r: &Replica, token: &str, yaml: &str) {
    let out = r.apply(token, yaml);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The newest backup attempt of the cluster, as a replica reads it.
fn attempt(r: &Replica, token: &str) -> Option<i64> {
    let out = r.ctl(
        token,
        &["get", "etcdbackupstatus", "talos-default", "-o", "json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["spec"]["lastbackupattempt"]["seconds"].as_i64()
}

async fn leader(state_etcd: &EtcdCluster) -> Option<String> {
    let v = state_etcd.get(format!("{PREFIX}/leader")).await.ok()??;
    Some(String::from_utf8_lossy(&v).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_does_not_announce_an_alert_again() {
    let state_etcd = EtcdCluster::start(1).await.unwrap();
    let mut backed_up = EtcdCluster::start(1).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let inbox = Inbox::serve(listener).await;
    let mut replicas = vec![start(&state_etcd).await];
    let token = std::fs::read_to_string(replicas[0].dir.path().join("data/admin-token"))
        .unwrap()
        .trim()
        .to_string();
    replicas.push(start(&state_etcd).await);

    let url = format!("http://127.0.0.1:{port}/hook");
    apply(
        &replicas[0],
        &token,
        &receiver_yaml("hook", "webhook", &url, "  events: [backup-failed]\n"),
    );
    let machines = vec![("m0".to_string(), backed_up.member(0).client_url())];
    apply(
        &replicas[0],
        &token,
        &machines_yaml("talos-default", &machines, true),
    );
    apply(&replicas[0], &token, "metadata:\n  type: cluster\n  id: talos-default\nspec:\n  backupconfiguration:\n    interval:\n      seconds: 2\n");
    eventually("a first backup attempt", || attempt(&replicas[0], &token)).await;

    backed_up.stop_member(0).unwrap();
    eventually("the firing alert", || {
        (!inbox.webhook("/hook", "backup-failed", "firing").is_empty()).then_some(())
    })
    .await;

    // Delivered and recorded (a leader killed between the two would send
    // again: delivery is at least once).
    eventually("the delivery recorded", || {
        let out = replicas[0].ctl(
            &token,
            &[
                "get",
                "alertstatus",
                "talos-default.backup-failed",
                "-o",
                "json",
            ],
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["spec"]["receivers"][0]["sent"] == "firing").then_some(())
    })
    .await;

    // Kill the leader; the survivor takes over and keeps backing up.
    let first = leader(&state_etcd).await.expect("a leader");
    let i = replicas
        .iter()
        .position(|r| first.starts_with(&format!("127.0.0.1:{}/", r.port)))
        .expect("the leader is a replica");
    drop(replicas.remove(i));
    let survivor = &replicas[0];
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while seen.len() < 3 {
        let taken_over = leader(&state_etcd).await.is_some_and(|l| l != first);
        if let Some(a) = attempt(survivor, &token).filter(|_| taken_over) {
            if !seen.contains(&a) {
                seen.push(a);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new leader backing up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        inbox.webhook("/hook", "backup-failed", "firing").len(),
        1,
        "{:?}",
        inbox.all()
    );

    backed_up.start_member(0).await.unwrap();
    backed_up.wait_healthy().await.unwrap();
    eventually("the resolved alert", || {
        (!inbox
            .webhook("/hook", "backup-failed", "resolved")
            .is_empty())
        .then_some(())
    })
    .await;
    assert_eq!(inbox.on("/hook").len(), 2, "{:?}", inbox.all());
}
