//! Alert deduplication across a leader change: two `omni` replicas on a
//! state etcd, the backed-up cluster's etcd stopped. The leader announces
//! the failure, is killed, and the new leader (reading the delivery state
//! from the shared state) does not announce it again; it resolves it once
//! etcd is back.

mod common;
mod receiver;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use omni_testkit::EtcdCluster;
use receiver::{receiver_yaml, Inbox};

const PREFIX: &str = "/omni-alerts-ha";

struct Replica {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl Replica {
    async fn start(state_etcd: &EtcdCluster) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let port = omni_testkit::free_port().unwrap();
        let log = std::fs::File::create(dir.path().join("omni.log")).unwrap();
        let child = Command::new(omni_bin())
            .args(["--data-dir", path_str(&dir.path().join("data"))])
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(["--state", "etcd", "--state-etcd-prefix", PREFIX])
            .args([
                "--state-etcd-endpoints",
                &state_etcd.client_urls().join(","),
            ])
            .args(["--leader-lease-ttl", "3s", "--etcd-backup-tick", "1s"])
            .args([
                "--etcd-backup-min-interval",
                "2s",
                "--etcd-backup-jitter",
                "0s",
            ])
            .args(["--etcd-backup-retry-backoff", "1s"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let r = Replica {
            child: Some(child),
            dir,
            port,
        };
        let url = format!("http://127.0.0.1:{port}/readyz");
        let http = reqwest::Client::new();
        omni_testkit::wait_until(WAIT, || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await
        .expect("replica ready");
        r
    }

    fn ctl(&self, token: &str, args: &[&str]) -> std::process::Output {
        omnictl(
            &format!("http://127.0.0.1:{}", self.port),
            self.dir.path(),
            token,
            args,
        )
    }

    fn apply(&self, token: &str, yaml: &str) {
        let path = self.dir.path().join("apply.yaml");
        std::fs::write(&path, yaml).unwrap();
        let out = self.ctl(token, &["apply", "-f", path_str(&path)]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    fn attempt(&self, token: &str) -> Option<i64> {
        let out = self.ctl(
            token,
            &["get", "etcdbackupstatus", "talos-default", "-o", "json"],
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["spec"]["lastbackupattempt"]["seconds"].as_i64()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
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
    let mut replicas = vec![Replica::start(&state_etcd).await];
    let token = std::fs::read_to_string(replicas[0].dir.path().join("data/admin-token"))
        .unwrap()
        .trim()
        .to_string();
    replicas.push(Replica::start(&state_etcd).await);

    let url = format!("http://127.0.0.1:{port}/hook");
    replicas[0].apply(
        &token,
        &receiver_yaml("hook", "webhook", &url, "  events: [backup-failed]\n"),
    );
    let machines = vec![("m0".to_string(), backed_up.member(0).client_url())];
    replicas[0].apply(&token, &machines_yaml("talos-default", &machines, true));
    replicas[0].apply(&token, "metadata:\n  type: cluster\n  id: talos-default\nspec:\n  backupconfiguration:\n    interval:\n      seconds: 2\n");
    eventually("a first backup attempt", || replicas[0].attempt(&token)).await;

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
        if let Some(a) = survivor.attempt(&token).filter(|_| taken_over) {
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
