//! Three `omni` replicas on a 3-member state etcd (separate from the
//! backed-up cluster's etcd), backups in S3 (s3s-fs). Phases, in order:
//! every replica reads and writes and a follower's watch sees the others'
//! writes; kill -9 of the leader during a backup (new leader, the backup
//! retried, each object listed once); SIGSTOP of the leader past its TTL
//! (the woken replica no longer leads); one state-etcd member down (nothing
//! visible changes), the quorum down (503 naming the state store), quorum
//! back (everything resumes). Failover time is printed, not asserted.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::replica::Replica;
use common::*;
use nix::sys::signal::{kill, Signal};
use omni_testkit::{EtcdCluster, S3Server};
use serde_json::Value;

const PREFIX: &str = "/omni-ha";
const TTL: Duration = Duration::from_secs(3);
const CLUSTER: &str = "c1";

/// The replica id in the leader key (`127.0.0.1:<port>/…`) names its port.
fn id_prefix(r: &Replica) -> String {
    format!("127.0.0.1:{}/", r.port)
}

async fn start(state_etcd: &EtcdCluster) -> Replica {
    let extra = ["--etcd-backup-s3", "--etcd-backup-retry-backoff", "2s"];
    Replica::start(state_etcd, PREFIX, &extra).await
}

/// The replica id in the leader key, if any.
const INTERRUPTED: &str = "backup interrupted: the server stopped while it was running";

async fn leader(state_etcd: &EtcdCluster) -> Option<String> {
    let v = state_etcd.get(format!("{PREFIX}/leader")).await.ok()??;
    Some(String::from_utf8_lossy(&v).into_owned())
}

fn leader_index(replicas: &[Replica], id: &str) -> usize {
    replicas
        .iter()
        .position(|r| r.child.is_some() && id.starts_with(&id_prefix(r)))
        .unwrap_or_else(|| panic!("leader {id} is none of the running replicas"))
}

/// A leader other than `old`, and how long it took to appear.
async fn new_leader(state_etcd: &EtcdCluster, old: &str, since: Instant) -> (String, Duration) {
    loop {
        if let Some(id) = leader(state_etcd).await {
            if id != old {
                return (id, since.elapsed());
            }
        }
        assert!(since.elapsed() < WAIT, "no new leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn status(r: &Replica, token: &str) -> Value {
    let out = r.ctl(token, &["get", "etcdbackupstatus", CLUSTER, "-o", "json"]);
    serde_json::from_slice::<Value>(&out.stdout).map_or(Value::Null, |v| v["spec"].clone())
}

/// Backup IDs listed through replica `r`.
fn listed(r: &Replica, token: &str) -> Vec<String> {
    let out = r.ctl(
        token,
        &[
            "get",
            "etcdbackup",
            "--selector",
            &format!("omni.sidero.dev/cluster={CLUSTER}"),
            "-o",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .flat_map(|v| match v.unwrap() {
            Value::Array(items) => items,
            one => vec![one],
        })
        .filter_map(|v| v["metadata"]["id"].as_str().map(String::from))
        .collect()
}

fn objects(s3: &S3Server) -> usize {
    fn walk(p: &std::path::Path, n: &mut usize) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, n);
            } else if path.extension().is_some_and(|x| x == "snapshot") {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(&s3.bucket_dir(), &mut n);
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_a_state_etcd() {
    let mut state_etcd = EtcdCluster::start(3).await.unwrap();
    let backed_up = EtcdCluster::start(1).await.unwrap();
    for i in 0..24u64 {
        backed_up
            .put(format!("/big/{i}"), noise(i + 3, 1 << 20))
            .await
            .unwrap();
    }
    let s3 = S3Server::start().await.unwrap();
    let mut replicas = vec![start(&state_etcd).await];
    let token = std::fs::read_to_string(replicas[0].dir.path().join("data/admin-token"))
        .unwrap()
        .trim()
        .to_string();
    replicas.push(start(&state_etcd).await);
    replicas.push(start(&state_etcd).await);

    // Every replica writes; a follower's watch sees the others' writes.
    let first = leader(&state_etcd).await.expect("a leader");
    let follower = (leader_index(&replicas, &first) + 1) % 3;
    let mut watch = Command::new(omnictl_bin())
        .args(["get", "machines", "--watch", "-o", "json"])
        .env("OMNICTL_ENDPOINT", replicas[follower].endpoint())
        .env("OMNICTL_TOKEN", &token)
        .env("HOME", replicas[follower].dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cfg = format!(
        "metadata:\n  type: EtcdBackupS3Configs.omni.sidero.dev\n  id: etcd-backup-s3-conf\nspec:\n  bucket: {}\n  endpoint: {}\n  accesskeyid: {}\n  secretaccesskey: {}\n",
        s3.bucket(), s3.endpoint(), s3.access_key(), s3.secret_key()
    );
    let out = replicas[0].apply(&token, &cfg);
    assert!(out.status.success(), "{}", stderr(&out));
    let machines = vec![("m0".to_string(), backed_up.member(0).client_url())];
    let other = (follower + 1) % 3;
    let out = replicas[other].apply(&token, &machines_yaml(CLUSTER, &machines, true));
    assert!(out.status.success(), "{}", stderr(&out));
    let cluster = format!(
        "metadata:\n  type: cluster\n  id: {CLUSTER}\nspec:\n  kubernetesversion: 1.28.2\n  talosversion: 1.5.5\n  backupconfiguration:\n    interval:\n      seconds: 4\n      nanos: 0\n"
    );
    let out = replicas[2].apply(&token, &cluster);
    assert!(out.status.success(), "{}", stderr(&out));
    for r in &replicas {
        let out = r.ctl(&token, &["get", "cluster", CLUSTER, "-o", "json"]);
        assert!(out.status.success(), "read on {}: {}", r.port, stderr(&out));
    }
    let seen = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut buf = vec![0u8; 4096];
        let mut text = String::new();
        let mut out = watch.stdout.take().unwrap();
        while !text.contains("\"m0\"") {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        let _ = watch.kill();
        let _ = watch.wait();
        text
    });
    let seen = tokio::time::timeout(WAIT, seen).await.unwrap().unwrap();
    assert!(seen.contains("\"m0\""), "the follower's watch: {seen}");

    // kill -9 the leader while a backup runs.
    let at = eventually("a backup running", || {
        let s = status(&replicas[follower], &token);
        (s["status"] == 3).then(|| s["lastbackupattempt"]["seconds"].as_i64().unwrap())
    })
    .await;
    let old = leader(&state_etcd).await.unwrap();
    let li = leader_index(&replicas, &old);
    // A survivor's watch sees every status the new leader writes: the cut
    // short attempt must be recorded as interrupted before it is retried.
    let watcher = (li + 1) % 3;
    let mut statuses = Command::new(omnictl_bin())
        .args(["get", "etcdbackupstatus", "--watch", "-o", "json"])
        .env("OMNICTL_ENDPOINT", replicas[watcher].endpoint())
        .env("OMNICTL_TOKEN", &token)
        .env("HOME", replicas[watcher].dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status_out = statuses.stdout.take().unwrap();
    let statuses_seen = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut buf = vec![0u8; 4096];
        let mut text = String::new();
        while !text.contains(INTERRUPTED) {
            match status_out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        text
    });
    let killed = Instant::now();
    replicas[li].kill9();
    let (newer, failover) = new_leader(&state_etcd, &old, killed).await;
    println!(
        "failover after kill -9: {:.2}s (lease TTL {}s)",
        failover.as_secs_f64(),
        TTL.as_secs()
    );
    let alive = leader_index(&replicas, &newer);
    let done = eventually("a backup completed after the failover", || {
        let s = status(&replicas[alive], &token);
        (s["status"] == 1 && s["lastbackuptime"]["seconds"].as_i64() > Some(at)).then_some(s)
    })
    .await;
    println!("after failover: {done}");
    let _ = statuses.kill();
    let _ = statuses.wait();
    let seen = tokio::time::timeout(WAIT, statuses_seen)
        .await
        .unwrap()
        .unwrap();
    assert!(
        seen.contains(INTERRUPTED),
        "the killed leader's backup was never marked interrupted: {seen}"
    );
    let ids = listed(&replicas[alive], &token);
    let unique: BTreeSet<_> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "a backup listed twice: {ids:?}");
    assert_eq!(ids.len(), objects(&s3), "listed vs stored: {ids:?}");

    // SIGSTOP the leader past its TTL: on SIGCONT it no longer leads.
    let old = newer;
    let li = leader_index(&replicas, &old);
    kill(replicas[li].pid(), Signal::SIGSTOP).unwrap();
    let stopped = Instant::now();
    let (newer, failover) = new_leader(&state_etcd, &old, stopped).await;
    println!("failover after SIGSTOP: {:.2}s", failover.as_secs_f64());
    tokio::time::sleep(Duration::from_secs(1)).await;
    kill(replicas[li].pid(), Signal::SIGCONT).unwrap();
    let woken = &replicas[li];
    eventually("the woken replica to step down", || {
        woken.log().contains("leadership term ended").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(leader(&state_etcd).await.as_deref(), Some(newer.as_str()));
    assert!(
        !woken.log().contains("elected leader")
            || woken.log().matches("elected leader").count() == 1,
        "the woken replica must not lead again while the new leader lives"
    );
    let out = woken.ctl(&token, &["get", "cluster", CLUSTER]);
    assert!(out.status.success(), "the woken replica still serves");

    // One state-etcd member down: nothing visible changes.
    state_etcd.stop_member(2).unwrap();
    for r in replicas.iter().filter(|r| r.child.is_some()) {
        let out = r.ctl(&token, &["get", "cluster", CLUSTER]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let leader_now = leader(&state_etcd).await;
    assert_eq!(leader_now.as_deref(), Some(newer.as_str()));

    // Quorum down: 503 naming the state store.
    state_etcd.stop_member(1).unwrap();
    let up = replicas.iter().find(|r| r.child.is_some()).unwrap();
    let http = reqwest::Client::new();
    let url = format!(
        "{}/api/v1/resources/Clusters.omni.sidero.dev/default/{CLUSTER}",
        up.endpoint()
    );
    let quorum_lost = Instant::now();
    let resp = loop {
        let resp = http.get(&url).bearer_auth(&token).send().await.unwrap();
        if resp.status() == 503 {
            break resp.text().await.unwrap();
        }
        assert!(quorum_lost.elapsed() < WAIT, "no 503 without quorum");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(resp.contains("state store"), "{resp}");

    // Quorum back: everything resumes by itself, nothing lost.
    state_etcd.start_member(1).await.unwrap();
    state_etcd.start_member(2).await.unwrap();
    let back = Instant::now();
    let since = now();
    eventually("a backup after quorum came back", || {
        let s = status(up, &token);
        (s["status"] == 1 && s["lastbackuptime"]["seconds"].as_i64() > Some(since)).then_some(())
    })
    .await;
    println!(
        "backups resumed {:.1}s after quorum came back",
        back.elapsed().as_secs_f64()
    );
    assert!(leader(&state_etcd).await.is_some());
    let ids = listed(up, &token);
    let unique: BTreeSet<_> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "a backup listed twice: {ids:?}");
    assert_eq!(ids.len(), objects(&s3), "listed vs stored: {ids:?}");
}
