//! Continuous backup's upkeep, end to end on real etcd: drills prove the
//! newest restorable point, retention deletes chains whose full backup
//! vanished (never the live one), and an etcd cluster destroyed mid-load
//! loses nothing omni had reported as stored.

mod common;
mod ops;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use etcd_client::{Client, GetOptions};
use omni_testkit::EtcdCluster;
use ops::*;

async fn revision(c: &mut Client) -> i64 {
    let resp = c.get("/", None).await.unwrap();
    resp.header().unwrap().revision()
}

/// A drill of a continuous cluster proves its newest restorable point:
/// the full backup with the chain replayed, its revision and time in the
/// drill status. A damaged segment fails the drill, naming the segment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_proves_the_newest_point_and_names_a_damaged_segment() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let omni = start_with_etcd_bins(
        &work.path().join("drills"),
        &[
            "--etcd-backup-drill-timeout",
            "60s",
            "--etcd-backup-min-interval",
            "1s",
            "--etcd-backup-tick",
            "1s",
        ],
    )
    .await;
    register_machines(&omni, &etcd, "c1");
    let conf = format!("{CONTINUOUS}    restoredrill:\n      interval:\n        seconds: 2\n");
    assert!(apply_cluster(&omni, "c1", &conf).status.success());
    let mut c = etcd.client().await.unwrap();
    let first = revision(&mut c).await;
    covered(&omni, "c1", first).await;
    // Written after the full backup: only a replay of the chain has them.
    let before_writes = now();
    for i in 0..30 {
        c.put(format!("/drill/{i}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    c.delete("/drill/0", None).await.unwrap();
    let keys = c
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_count_only()),
        )
        .await
        .unwrap()
        .count();
    let rev = revision(&mut c).await;
    covered(&omni, "c1", rev).await;
    let st = eventually(&format!("a drill proving revision {rev}"), || {
        spec(&omni, "etcdbackupdrillstatus", "c1")
            .filter(|s| s["status"] == 1 && s["pointrevision"] == rev)
    })
    .await;
    assert_eq!(st["revision"], rev, "{st}");
    assert_eq!(st["keys"], keys, "{st}");
    assert!(st["segments"].as_u64().unwrap() >= 1, "{st}");
    // The point is when omni had the last write, so after they began.
    assert!(
        st["pointat"]["seconds"].as_i64().unwrap() >= before_writes,
        "{st}"
    );

    // Damage the segment holding the writes: the next drill fails on it.
    let chain_dir = std::fs::read_dir(omni.data_dir().join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("deltas"))
        .find(|p| p.is_dir())
        .unwrap();
    let segment = common_files(&chain_dir)
        .into_iter()
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let mut parts = name.split('-');
            let from = i64::from_str_radix(parts.next().unwrap(), 16).unwrap();
            let to = i64::from_str_radix(parts.next().unwrap(), 16).unwrap();
            from <= rev && rev <= to
        })
        .expect("the segment holding the last write");
    let mut bytes = std::fs::read(&segment).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&segment, bytes).unwrap();
    let name = segment.file_name().unwrap().to_string_lossy().to_string();
    let st = eventually("a drill failing on the damaged segment", || {
        spec(&omni, "etcdbackupdrillstatus", "c1").filter(|s| s["status"] == 2)
    })
    .await;
    let error = st["error"].as_str().unwrap();
    assert!(
        error.contains("delta segment") && error.contains(&name),
        "{st}"
    );
}

/// Every file below `dir`.
fn common_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The chain directories of the only cluster in `omni`'s local store,
/// newest base first (names sort so), and the cluster's directory.
fn chain_dirs(omni: &Omni) -> (std::path::PathBuf, Vec<String>) {
    let cluster_dir = std::fs::read_dir(omni.data_dir().join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("deltas").is_dir())
        .unwrap();
    let mut stems: Vec<String> = std::fs::read_dir(cluster_dir.join("deltas"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    stems.sort();
    (cluster_dir, stems)
}

/// Full backups deleted behind omni's back (by hand, a bucket lifecycle):
/// retention deletes the chain of the older one, but never the chain
/// still being written, even though its base is gone too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_whose_full_backup_vanished_is_deleted_but_not_the_live_one() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    let omni = Omni::start(&["--etcd-backup-retention-interval", "1s"]).await;
    register_machines(&omni, &etcd, "c1");
    assert!(apply_cluster(&omni, "c1", CONTINUOUS).status.success());
    let mut c = etcd.client().await.unwrap();
    c.put("/a", "1", None).await.unwrap();
    covered(&omni, "c1", revision(&mut c).await).await;
    manual_backup(&omni, "c1", false).await;
    c.put("/b", "2", None).await.unwrap();
    let rev = revision(&mut c).await;
    eventually("a second chain with the write", || {
        let p = points(&omni, "c1");
        let chains = p["chains"].as_array()?;
        (chains.len() == 2 && chains[0]["torevision"].as_i64()? >= rev).then_some(())
    })
    .await;
    let (cluster_dir, stems) = chain_dirs(&omni);
    assert_eq!(stems.len(), 2, "{stems:?}");
    let (live, old) = (&stems[0], &stems[1]);
    for stem in [live, old] {
        std::fs::remove_file(cluster_dir.join(format!("{stem}.snapshot"))).unwrap();
    }
    eventually("the orphaned chain deleted", || {
        (!cluster_dir.join("deltas").join(old).exists()).then_some(())
    })
    .await;
    // Retention ran again since, and the live chain is still written.
    let gone_at = now();
    eventually("another retention run", || {
        let st = spec(&omni, "etcdbackupretentionstatus", "c1")?;
        (st["lastrun"]["seconds"].as_i64()? > gone_at + 1).then_some(())
    })
    .await;
    let live_dir = cluster_dir.join("deltas").join(live);
    let before = std::fs::read_dir(&live_dir).unwrap().count();
    c.put("/c", "3", None).await.unwrap();
    eventually("the live chain growing", || {
        (std::fs::read_dir(&live_dir).ok()?.count() > before).then_some(())
    })
    .await;
    assert_eq!(chain_dirs(&omni).1, std::slice::from_ref(live));
}

/// The segment files of every chain: (chain stem, from, to).
fn segment_names(omni: &Omni) -> Vec<(String, i64, i64)> {
    let (cluster_dir, _) = chain_dirs(omni);
    common_files(&cluster_dir.join("deltas"))
        .into_iter()
        .filter_map(|p| {
            let stem = p.parent()?.file_name()?.to_string_lossy().into_owned();
            let name = p.file_name()?.to_string_lossy().into_owned();
            let mut parts = name.split('-');
            let from = i64::from_str_radix(parts.next()?, 16).ok()?;
            let to = i64::from_str_radix(parts.next()?, 16).ok()?;
            Some((stem, from, to))
        })
        .collect()
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{cluster=\"c1\"}}")))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

/// The etcd cluster destroyed (every member SIGKILLed) at a moment the
/// test does not choose, under a load that records each write's revision.
/// Stated without clocks: the chain's last act is to store what it had
/// received, so the newest restorable point is then what omni reported as
/// stored (nothing acknowledged is lost), it is the end of the last
/// segment in the store (no hole before it), and a restore to it gives
/// exactly every write up to it. How much time the lost writes span is
/// measured by `scripts/bench-pitr.sh`, not asserted here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_destroyed_mid_load_loses_nothing_omni_had_stored() {
    let mut etcd = EtcdCluster::start(3).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let omni = start_with_etcd_bins(
        &work.path().join("drills"),
        &[
            "--etcd-backup-drill-timeout",
            "60s",
            "--etcd-backup-retry-backoff",
            "1s",
        ],
    )
    .await;
    register_machines(&omni, &etcd, "c1");
    assert!(apply_cluster(&omni, "c1", CONTINUOUS).status.success());
    let mut c = etcd.client().await.unwrap();
    let base = revision(&mut c).await;
    covered(&omni, "c1", base).await;

    // Puts and deletes, each revision recorded, for a number of writes
    // the clock picks (several segments' worth at this pace).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let total = 600 + u64::from(nanos % 900);
    eprintln!("destroying etcd after {total} writes");
    let mut writes: Vec<(i64, String, Option<String>)> = Vec::new();
    for i in 0..total {
        let key = format!("/load/k{:03}", i % 61);
        if i % 7 == 6 {
            let resp = c.delete(key.clone(), None).await.unwrap();
            if resp.deleted() > 0 {
                writes.push((resp.header().unwrap().revision(), key, None));
            }
        } else {
            let value = format!("v{i}");
            let resp = c.put(key.clone(), value.clone(), None).await.unwrap();
            writes.push((resp.header().unwrap().revision(), key, Some(value)));
        }
    }
    let stored_before = points(&omni, "c1")["newest"]["revision"]
        .as_i64()
        .unwrap_or(0);
    for i in 0..3 {
        etcd.stop_member(i).unwrap();
    }
    let destroyed_at = now();

    // The chain ended (after its last store): the chain's full backup is
    // asked for again, and fails with etcd gone.
    eventually("the chain ends and a full backup is tried", || {
        let st = spec(&omni, "etcdbackupstatus", "c1")?;
        (st["status"] == 2 && st["lastbackupattempt"]["seconds"].as_i64()? >= destroyed_at)
            .then_some(())
    })
    .await;
    let p = points(&omni, "c1");
    let newest = p["newest"]["revision"].as_i64().unwrap();
    let text = omni.metrics_text().await;
    let reported = metric(&text, "omni_continuous_restorable_revision").unwrap();
    assert_eq!(
        newest as f64, reported,
        "the store has what omni reported: {p}"
    );
    assert!(newest >= stored_before, "{newest} < {stored_before}");
    assert!(newest > base, "the load reached the store: {p}");
    // No hole: the newest point is the end of the newest segment stored.
    let newest_stem = chain_dirs(&omni).1.remove(0);
    let last_stored = segment_names(&omni)
        .into_iter()
        .filter(|(stem, _, _)| *stem == newest_stem)
        .map(|(_, _, to)| to)
        .max()
        .unwrap();
    assert_eq!(newest, last_stored.max(base), "{p}");

    // Every write up to that point restores exactly, none after it.
    let file = work.path().join("newest.db");
    omni.ctl_ok(&[
        "etcd-backup",
        "download",
        "--cluster",
        "c1",
        "-o",
        path_str(&file),
        "--to-revision",
        &newest.to_string(),
    ]);
    let mut want: BTreeMap<String, String> = BTreeMap::new();
    for (rev, key, value) in &writes {
        if *rev > newest {
            break;
        }
        match value {
            Some(v) => want.insert(key.clone(), v.clone()),
            None => want.remove(key),
        };
    }
    let lost = writes.iter().filter(|(rev, ..)| *rev > newest).count();
    eprintln!(
        "{} writes, newest restorable revision {newest}, {lost} writes after it lost",
        writes.len()
    );
    let restored = EtcdCluster::restore_single(&file).await.unwrap();
    let mut rc = restored.client().await.unwrap();
    let resp = rc
        .get("/load/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(resp.header().unwrap().revision(), newest);
    let got: BTreeMap<String, String> = resp
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().unwrap().to_string(),
                kv.value_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, want);
}
