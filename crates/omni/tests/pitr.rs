//! Continuous backup and point-in-time restore end to end: a load of puts,
//! deletes, multi-key transactions and leases on a real 3-member etcd
//! while omni writes delta segments; the whole keyspace digested at many
//! revisions; a restore to each of them (by revision, and by time) must
//! give exactly that digest. Then omni is killed with SIGKILL mid-segment:
//! what was stored still restores exactly, and a new chain covers the
//! writes after the restart without anyone acting.

mod common;
mod ops;

use std::path::Path;
use std::time::Duration;

use common::*;
use etcd_client::{Client, GetOptions, PutOptions, Txn, TxnOp};
use omni_testkit::EtcdCluster;
use ops::*;

/// A digest of every key at `rev` (0: now): key, value, create and mod
/// revisions and version. Leases are left out: a replay cannot keep those
/// granted after its full backup.
async fn digest(c: &mut Client, rev: i64) -> (i64, String) {
    let mut opts = GetOptions::new().with_all_keys();
    if rev > 0 {
        opts = opts.with_revision(rev);
    }
    let resp = c.get("", Some(opts)).await.unwrap();
    let mut text = String::new();
    for kv in resp.kvs() {
        text.push_str(&format!(
            "{:?}={:?}@{}/{}/{};",
            kv.key(),
            kv.value(),
            kv.create_revision(),
            kv.mod_revision(),
            kv.version()
        ));
    }
    let at = if rev > 0 {
        rev
    } else {
        resp.header().unwrap().revision()
    };
    (
        at,
        format!(
            "{} keys, fnv {:016x}",
            resp.kvs().len(),
            fnv(text.as_bytes())
        ),
    )
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x100000001b3)
    })
}

/// One step of the load: the kind of change cycles through puts, deletes,
/// transactions and leases.
async fn step(c: &mut Client, i: u64, leases: &mut Vec<i64>) {
    let key = |n: u64| format!("/load/k{:03}", n % 97);
    match i % 6 {
        0 | 1 => {
            c.put(
                key(i * 7),
                format!("v{i}-{}", "x".repeat((i % 50) as usize)),
                None,
            )
            .await
            .unwrap();
        }
        2 => {
            c.delete(key(i * 3), None).await.unwrap();
        }
        3 => {
            let ops = vec![
                TxnOp::put(key(i), format!("t{i}"), None),
                TxnOp::put(key(i + 1), format!("t{i}"), None),
                TxnOp::delete(key(i + 2), None),
            ];
            c.txn(Txn::new().and_then(ops)).await.unwrap();
        }
        4 => {
            let lease = c.lease_grant(300, None).await.unwrap().id();
            let opts = PutOptions::new().with_lease(lease);
            c.put(format!("/lease/{i}"), "leased", Some(opts))
                .await
                .unwrap();
            leases.push(lease);
        }
        _ => {
            // Revoking deletes the lease's keys: events of their own.
            if leases.len() > 2 {
                let lease = leases.remove(0);
                c.lease_revoke(lease).await.unwrap();
            } else {
                c.put(key(i * 11), "p", None).await.unwrap();
            }
        }
    }
}

fn scrape(omni: &Omni) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sf", "-H"])
        .arg(format!("Authorization: Bearer {}", omni.token))
        .arg(format!("{}/metrics", omni.endpoint()))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The digest of a snapshot file: restored into its own etcd.
async fn snapshot_digest(path: &Path) -> (i64, String) {
    let etcd = EtcdCluster::restore_single(path).await.unwrap();
    let mut c = etcd.client().await.unwrap();
    digest(&mut c, 0).await
}

fn download(omni: &Omni, dir: &Path, name: &str, point: &[&str]) -> (std::path::PathBuf, String) {
    let file = dir.join(name);
    let mut args = vec![
        "etcd-backup",
        "download",
        "--cluster",
        "c1",
        "-o",
        path_str(&file),
    ];
    args.extend_from_slice(point);
    let said = omni.ctl_ok(&args);
    (file, said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_every_recorded_moment_and_survives_a_kill_mid_segment() {
    let etcd = EtcdCluster::start(3).await.unwrap();
    let mut c = etcd.client().await.unwrap();
    for i in 0..20 {
        c.put(format!("/seed/{i}"), format!("s{i}"), None)
            .await
            .unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let drills = work.path().join("drills");
    let mut omni = start_with_etcd_bins(
        &drills,
        &[
            "--etcd-backup-drill-timeout",
            "60s",
            "--etcd-backup-retry-backoff",
            "1s",
        ],
    )
    .await;
    register_machines(&omni, &etcd, "c1");
    let out = apply_cluster(&omni, "c1", CONTINUOUS);
    assert!(out.status.success(), "{}", stderr(&out));
    // The chain asks for its full backup itself (no interval set).
    let start = digest(&mut c, 0).await;
    covered(&omni, "c1", start.0).await;

    // Load, with the keyspace digested at moments along the way; a few
    // moments are also taken by time, with quiet around them so that
    // "what omni had received by then" is unambiguous.
    let mut leases = Vec::new();
    let mut moments = vec![start.clone()];
    let mut timed = Vec::new();
    for i in 0..240u64 {
        step(&mut c, i, &mut leases).await;
        if i % 40 == 39 {
            moments.push(digest(&mut c, 0).await);
        }
        if i == 100 || i == 180 {
            tokio::time::sleep(Duration::from_millis(600)).await;
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            timed.push((at, digest(&mut c, 0).await));
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
    }
    let last = digest(&mut c, 0).await;
    let p = covered(&omni, "c1", last.0).await;
    assert_eq!(p["chains"].as_array().unwrap().len(), 1, "{p}");
    assert!(p["newest"]["rposeconds"].as_f64().is_some(), "{p}");
    // The same point in the metrics, for alerting on the recovery point.
    let metrics = eventually("the restorable revision in /metrics", || {
        let text = scrape(&omni);
        let line = text
            .lines()
            .find(|l| l.starts_with("omni_continuous_restorable_revision{cluster=\"c1\"}"))?
            .to_string();
        let rev: f64 = line.rsplit(' ').next()?.parse().ok()?;
        (rev >= last.0 as f64).then_some(text)
    })
    .await;
    assert!(
        metrics.contains("omni_continuous_recovery_point_seconds{cluster=\"c1\"}"),
        "{metrics}"
    );

    for (i, (rev, want)) in moments.iter().enumerate() {
        let (file, said) = download(
            &omni,
            work.path(),
            &format!("r{i}.db"),
            &["--to-revision", &rev.to_string()],
        );
        assert!(said.contains(&format!("at revision {rev}")), "{said}");
        assert!(said.contains("cannot keep leases"), "{said}");
        assert_eq!(
            snapshot_digest(&file).await,
            (*rev, want.clone()),
            "revision {rev}"
        );
        std::fs::remove_file(&file).unwrap();
    }
    for (i, (at, (rev, want))) in timed.iter().enumerate() {
        let time = omni_controllers::continuous::pitr::rfc3339(*at);
        let (file, said) = download(
            &omni,
            work.path(),
            &format!("t{i}.db"),
            &["--to-time", &time],
        );
        assert_eq!(
            snapshot_digest(&file).await,
            (*rev, want.clone()),
            "{time}: {said}"
        );
        std::fs::remove_file(&file).unwrap();
    }
    // Beyond the newest restorable point: a clear error, no file.
    let beyond = last.0 + 1000;
    let out = omni.ctl(&[
        "etcd-backup",
        "download",
        "--cluster",
        "c1",
        "-o",
        path_str(&work.path().join("no.db")),
        "--to-revision",
        &beyond.to_string(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "no full backup with a delta chain reaches revision {beyond}"
        )),
        "{}",
        stderr(&out)
    );
    assert!(!work.path().join("no.db").exists());

    // SIGKILL while writes go on: the segment being filled is lost, what
    // was stored stays exact, and after the restart a full backup starts
    // a new chain by itself.
    for i in 240..300u64 {
        step(&mut c, i, &mut leases).await;
    }
    omni.kill9();
    let mid = digest(&mut c, 0).await;
    for i in 300..360u64 {
        step(&mut c, i, &mut leases).await;
    }
    omni.start_again().await;
    let after = digest(&mut c, 0).await;
    let p = covered(&omni, "c1", after.0).await;
    assert_eq!(p["chains"].as_array().unwrap().len(), 2, "{p}");
    let stored = p["chains"][1]["torevision"].as_i64().unwrap();
    assert!(stored >= last.0, "{p}");
    let (rev, want) = digest(&mut c, stored).await;
    let (file, _) = download(
        &omni,
        work.path(),
        "old.db",
        &["--to-revision", &stored.to_string()],
    );
    assert_eq!(snapshot_digest(&file).await, (rev, want));
    for (name, (rev, want)) in [("new.db", &after)] {
        let (file, _) = download(
            &omni,
            work.path(),
            name,
            &["--to-revision", &rev.to_string()],
        );
        assert_eq!(snapshot_digest(&file).await, (*rev, want.clone()));
    }
    let _ = mid;
    // Nothing of the replays is left behind.
    let left: Vec<_> = std::fs::read_dir(&drills)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// Each member stopped in turn (one of them is the one watched): writes
/// made while it is down are covered again without anyone acting, and a
/// restore to the newest of them is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_member_ends_the_chain_and_a_new_one_covers_what_follows() {
    let mut etcd = EtcdCluster::start(3).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let omni = start_with_etcd_bins(
        &work.path().join("drills"),
        &[
            "--etcd-backup-retry-backoff",
            "1s",
            "--machine-probe-interval",
            "1s",
        ],
    )
    .await;
    register_machines(&omni, &etcd, "c1");
    assert!(apply_cluster(&omni, "c1", CONTINUOUS).status.success());
    let mut leases = Vec::new();
    for i in 0..3 {
        etcd.stop_member(i).unwrap();
        let mut c = Client::connect(etcd.running_client_urls(), None)
            .await
            .unwrap();
        // A stopped leader: writes wait for the new one.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while c.put("/probe", "x", None).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "no leader after stopping m{i}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for j in 0..30u64 {
            step(&mut c, j + 100 * i as u64, &mut leases).await;
        }
        let (rev, want) = digest(&mut c, 0).await;
        covered(&omni, "c1", rev).await;
        let name = format!("m{i}.db");
        let (file, _) = download(
            &omni,
            work.path(),
            &name,
            &["--to-revision", &rev.to_string()],
        );
        assert_eq!(
            snapshot_digest(&file).await,
            (rev, want),
            "member {i} stopped"
        );
        std::fs::remove_file(&file).unwrap();
        etcd.start_member(i).await.unwrap();
        etcd.wait_healthy().await.unwrap();
    }
    // The watched member's loss ended at least one chain.
    let p = points(&omni, "c1");
    assert!(p["chains"].as_array().unwrap().len() >= 2, "{p}");
    let table = omni.ctl_ok(&["etcd-backup", "points", "--cluster", "c1"]);
    assert!(
        table.starts_with("newest restorable point: revision "),
        "{table}"
    );
    let rows = table.lines().filter(|l| l.starts_with("c1-")).count();
    assert!(rows >= 2, "{table}");
}
