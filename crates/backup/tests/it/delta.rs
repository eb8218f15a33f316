//! Delta chains against a real etcd: every change lands in a segment, in
//! order and sealed; a compaction past the chain, or the watched member
//! going away, ends the chain with a clear error after storing what it
//! had, never with a hole.

use std::time::Duration;

use omni_backup::delta::format::{decode, Op};
use omni_backup::delta::{
    current_revision, open, run_chain, ChainEnd, ChainProgress, ChainSettings,
};
use omni_backup::BackupStore;
use omni_testkit::EtcdCluster;
use tokio::sync::{oneshot, watch};

use crate::common::{keys, members, CLUSTER};

fn settings(base_rev: i64) -> ChainSettings {
    ChainSettings {
        cluster_uuid: CLUSTER.into(),
        full_unix: 1_800_000_000,
        base_rev,
        interval: Duration::from_millis(300),
        max_bytes: 4096,
    }
}

#[tokio::test]
async fn every_change_lands_in_order_and_a_stop_stores_the_rest() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = BackupStore::local(dir.path()).unwrap();
    let k = keys();
    let m = members(&etcd);
    let base = current_revision(&m).await.unwrap();
    let (tx, mut rx) = watch::channel(ChainProgress::default());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let s = settings(base);
    let chain = tokio::spawn({
        let (store, m, recipient) = (store.clone(), m.clone(), k.recipient.clone());
        async move {
            run_chain(&s, &m, &store, &recipient, &tx, async {
                let _ = stop_rx.await;
            })
            .await
        }
    });
    let mut c = etcd.client().await.unwrap();
    // Enough bytes to pass the segment limit several times.
    for i in 0..60 {
        c.put(format!("/k{}", i % 7), "v".repeat(200 + i), None)
            .await
            .unwrap();
        if i % 10 == 0 {
            c.delete(format!("/k{}", i % 5), None).await.unwrap();
        }
    }
    let last = c.get("/", None).await.unwrap().header().unwrap().revision();
    tokio::time::timeout(
        Duration::from_secs(20),
        rx.wait_for(|p| p.through_rev >= last),
    )
    .await
    .expect("the chain reaches the last write")
    .unwrap();
    stop_tx.send(()).unwrap();
    chain.await.unwrap().expect("a stopped chain ends cleanly");

    let segs = store.list_chain(CLUSTER, 1_800_000_000).await.unwrap();
    assert!(segs.len() >= 3, "{} segments", segs.len());
    let mut next = base + 1;
    let mut seen = Vec::new();
    for s in &segs {
        assert_eq!(s.name.from_rev, next, "{}", s.key);
        let plain = open(
            store.get_delta(&s.key).await.unwrap(),
            k.identity.clone(),
            &s.key,
        )
        .await
        .unwrap();
        let seg = decode(&plain).unwrap();
        assert_eq!(
            (seg.header.from_rev, seg.header.to_rev),
            (s.name.from_rev, s.name.to_rev)
        );
        assert_eq!(seg.header.base_rev, base);
        for r in seg.revisions {
            seen.push(r.rev);
            for op in r.ops {
                if let Op::Put { value, .. } = op {
                    assert!(value.len() >= 200);
                }
            }
        }
        next = s.name.to_rev + 1;
    }
    // One revision per change, none missing, none twice.
    assert_eq!(seen, ((base + 1)..=last).collect::<Vec<_>>());
    // Full backups listed from the same store see none of it.
    assert!(store.list(CLUSTER).await.unwrap().is_empty());
    assert_eq!(
        store.delete_chain(CLUSTER, 1_800_000_000).await.unwrap(),
        segs.len()
    );
    assert!(store.list_deltas(CLUSTER).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_compaction_past_the_chain_ends_it() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = BackupStore::local(dir.path()).unwrap();
    let k = keys();
    let m = members(&etcd);
    let base = current_revision(&m).await.unwrap();
    let mut c = etcd.client().await.unwrap();
    for i in 0..5 {
        c.put(format!("/c{i}"), "x", None).await.unwrap();
    }
    let now = c.get("/", None).await.unwrap().header().unwrap().revision();
    c.compact(now, None).await.unwrap();
    let (tx, _rx) = watch::channel(ChainProgress::default());
    let end = tokio::time::timeout(
        Duration::from_secs(20),
        run_chain(
            &settings(base),
            &m,
            &store,
            &k.recipient,
            &tx,
            std::future::pending(),
        ),
    )
    .await
    .expect("the chain ends");
    match end {
        Err(ChainEnd::Compacted(rev)) => assert_eq!(rev, now),
        other => panic!("expected a compaction end, got {other:?}"),
    }
    assert!(end_message_names_full(&ChainEnd::Compacted(now)));
}

fn end_message_names_full(e: &ChainEnd) -> bool {
    e.to_string().contains("new full backup")
}

#[tokio::test]
async fn the_watched_member_going_away_ends_the_chain_after_storing_what_came() {
    let mut etcd = EtcdCluster::start(1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = BackupStore::local(dir.path()).unwrap();
    let k = keys();
    let m = members(&etcd);
    let base = current_revision(&m).await.unwrap();
    let (tx, mut rx) = watch::channel(ChainProgress::default());
    let s = settings(base);
    let chain = tokio::spawn({
        let (store, m, recipient) = (store.clone(), m.clone(), k.recipient.clone());
        async move { run_chain(&s, &m, &store, &recipient, &tx, std::future::pending()).await }
    });
    let mut c = etcd.client().await.unwrap();
    c.put("/a", "1", None).await.unwrap();
    let last = c
        .put("/b", "2", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    tokio::time::timeout(
        Duration::from_secs(20),
        rx.wait_for(|p| p.through_rev >= last),
    )
    .await
    .unwrap()
    .unwrap();
    etcd.stop_member(0).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(60), chain)
        .await
        .expect("the chain notices")
        .unwrap();
    assert!(matches!(end, Err(ChainEnd::Watch(_))), "{end:?}");
    let segs = store.list_chain(CLUSTER, 1_800_000_000).await.unwrap();
    assert_eq!(segs.last().unwrap().name.to_rev, last);
}

#[tokio::test]
async fn a_store_outage_ends_the_chain_with_a_store_error_and_no_hole() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    let s3 = omni_testkit::S3Server::start().await.unwrap();
    let store = BackupStore::s3(&crate::common::s3_settings(&s3)).unwrap();
    let k = keys();
    let m = members(&etcd);
    let base = current_revision(&m).await.unwrap();
    let (tx, mut rx) = watch::channel(ChainProgress::default());
    let s = settings(base);
    let chain = tokio::spawn({
        let (store, m, recipient) = (store.clone(), m.clone(), k.recipient.clone());
        async move { run_chain(&s, &m, &store, &recipient, &tx, std::future::pending()).await }
    });
    let mut c = etcd.client().await.unwrap();
    let first = c
        .put("/s", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    tokio::time::timeout(
        Duration::from_secs(20),
        rx.wait_for(|p| p.through_rev >= first),
    )
    .await
    .unwrap()
    .unwrap();
    let listed = store.list_chain(CLUSTER, 1_800_000_000).await.unwrap();
    drop(s3);
    c.put("/s", "2", None).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(120), chain)
        .await
        .expect("the chain gives up on the store")
        .unwrap();
    assert!(matches!(end, Err(ChainEnd::Store(_))), "{end:?}");
    // What was stored before the outage is contiguous from the base.
    assert_eq!(listed.first().unwrap().name.from_rev, base + 1);
    for w in listed.windows(2) {
        assert_eq!(w[1].name.from_rev, w[0].name.to_rev + 1);
    }
}
