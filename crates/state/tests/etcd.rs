//! The etcd backend against a real 3-member etcd: the conformance suite,
//! fencing, elections and watch re-lists after compaction.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use omni_resources::meta::ResourceKey;
use omni_resources::Resource;
use omni_state::{conformance, EtcdBackend, EtcdOptions, State, StateError};
use omni_testkit::EtcdCluster;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const KIND: &str = "Clusters.omni.sidero.dev";

async fn backend(cluster: &EtcdCluster, prefix: &str) -> EtcdBackend {
    EtcdBackend::connect(EtcdOptions::new(cluster.client_urls(), prefix))
        .await
        .unwrap()
}

fn key(id: &str) -> ResourceKey {
    ResourceKey::new("default", KIND, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_backend_conforms() {
    let cluster = EtcdCluster::start(3).await.unwrap();
    let n = AtomicUsize::new(0);
    conformance::run_all(|| {
        // A fresh prefix is a fresh, empty state; two clients are two
        // independent handles.
        let prefix = format!("/conformance/{}", n.fetch_add(1, Ordering::SeqCst));
        let cluster = &cluster;
        async move {
            let one = backend(cluster, &prefix).await;
            let two = backend(cluster, &prefix).await;
            (State::new(one), State::new(two))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_keep_states_apart() {
    let cluster = EtcdCluster::start(1).await.unwrap();
    let a = State::new(backend(&cluster, "/a").await);
    let b = State::new(backend(&cluster, "/a2").await);
    a.create(Resource::new(KIND, "default", "x", json!({})))
        .await
        .unwrap();
    assert!(b.get_opt(&key("x")).await.unwrap().is_none());
    assert!(b
        .list("default", KIND, &Default::default())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_writes_are_fenced() {
    let cluster = EtcdCluster::start(1).await.unwrap();
    let one = backend(&cluster, "/fence").await;
    let two = backend(&cluster, "/fence").await;
    let cancel = CancellationToken::new();
    let ttl = Duration::from_secs(2);
    let term = one.campaign("one", ttl, &cancel).await.unwrap();
    let one = State::new(one);
    let leader_writes = one.fenced(term.fence());
    leader_writes
        .create(Resource::new(KIND, "default", "a", json!({"n": 1})))
        .await
        .unwrap();
    // The other replica waits while the term lasts.
    let waiting = tokio::spawn(async move {
        let term = two.campaign("two", ttl, &CancellationToken::new()).await;
        (two, term)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "two leaders at once");
    let lost = term.lost();
    let old_fence = term.fence();
    term.resign().await;
    assert!(lost.is_cancelled());
    let (two, new_term) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the other replica is elected once the key is free")
        .unwrap();
    let new_term = new_term.unwrap();
    assert_ne!(new_term.fence(), old_fence);
    // The old term's handle can no longer write; the new leader can.
    let mut update = one.get(&key("a")).await.unwrap();
    update.spec = json!({"n": 2});
    let err = leader_writes.update(update.clone()).await.unwrap_err();
    assert!(matches!(err, StateError::Fenced(_)), "{err}");
    let err = leader_writes
        .create(Resource::new(KIND, "default", "b", json!({})))
        .await
        .unwrap_err();
    assert!(err.is_fenced(), "{err}");
    assert_eq!(one.get(&key("a")).await.unwrap().metadata.version, 1);
    assert!(one.get_opt(&key("b")).await.unwrap().is_none());
    // Unfenced (API) writes are unaffected.
    one.update(update.clone()).await.unwrap();
    let two = State::new(two).fenced(new_term.fence());
    let mut again = two.get(&key("a")).await.unwrap();
    again.spec = json!({"n": 3});
    assert_eq!(two.update(again).await.unwrap().metadata.version, 3);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_cannot_be_renewed_ends_the_term_before_it_expires() {
    let mut cluster = EtcdCluster::start(1).await.unwrap();
    let one = backend(&cluster, "/expire").await;
    let ttl = Duration::from_secs(3);
    let term = one
        .campaign("one", ttl, &CancellationToken::new())
        .await
        .unwrap();
    let lost = term.lost();
    let elected = tokio::time::Instant::now();
    cluster.stop_member(0).unwrap();
    tokio::time::timeout(ttl * 2, lost.cancelled())
        .await
        .expect("term ends when renewals stop");
    // Renewals stopped at the latest when the member did, so the lease
    // (TTL from its last renewal) cannot have expired before this point.
    assert!(
        elected.elapsed() < ttl + Duration::from_secs(1),
        "the term ended only after {:?}",
        elected.elapsed()
    );
    cluster.start_member(0).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_makes_a_resumed_watch_relist() {
    let cluster = EtcdCluster::start(1).await.unwrap();
    let state = State::new(backend(&cluster, "/compact").await);
    let a = state
        .create(Resource::new(KIND, "default", "a", json!({"n": 0})))
        .await
        .unwrap();
    let mut watch = state.watch(Some("default"), KIND);
    let mut cur = a;
    for n in 1..5 {
        cur.spec = json!({"n": n});
        cur = state.update(cur).await.unwrap();
    }
    let first = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap();
    let mut client = cluster.client().await.unwrap();
    let rev = client
        .get("x", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    client.compact(rev, None).await.unwrap();
    let mut resumed = state
        .watch_from(Some("default"), KIND, first.revision)
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), resumed.next())
        .await
        .expect("a compacted resume answers");
    assert!(matches!(got, Err(n) if n > 0), "re-list asked: {got:?}");
    // The watch goes on after the re-list signal.
    cur.spec = json!({"n": 99});
    state.update(cur).await.unwrap();
    let live = loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), resumed.next())
            .await
            .unwrap()
            .unwrap();
        if ev.resource.spec == json!({"n": 99}) {
            break ev;
        }
    };
    assert_eq!(live.resource.metadata.version, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_come_from_the_view_and_see_every_replicas_writes_at_once() {
    let cluster = EtcdCluster::start(1).await.unwrap();
    let one = State::new(backend(&cluster, "/view").await);
    let two_backend = std::sync::Arc::new(backend(&cluster, "/view").await);
    let two = State::shared(two_backend.clone());
    let selector = omni_resources::LabelSelector::parse("cluster=c1").unwrap();
    for (i, c) in ["c1", "c2", "c1"].iter().enumerate() {
        let mut r = Resource::new(KIND, "default", &format!("m{i}"), json!({}));
        r.metadata.labels.insert("cluster".into(), c.to_string());
        one.create(r).await.unwrap();
        // Written through the other replica a moment ago: listed now.
        let ids: Vec<String> = two
            .list("default", KIND, &selector)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.metadata.id)
            .collect();
        let want: Vec<&str> = ["m0", "m2"][..(i + 2) / 2].to_vec();
        assert_eq!(ids, want);
    }
    // Writes outside the state's prefix move etcd's revision past the
    // view's newest event; the view still answers, after asking the watch
    // how far it is.
    cluster.put("/elsewhere/x", "1").await.unwrap();
    cluster.put("/elsewhere/y", "2").await.unwrap();
    let all = two
        .list("default", KIND, &Default::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    let stats = two_backend.read_stats();
    assert_eq!(stats.from_etcd, 0, "{stats:?}");
    assert_eq!(stats.from_view, 4, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_reads_come_from_the_view_and_see_their_own_and_earlier_writes() {
    let cluster = EtcdCluster::start(1).await.unwrap();
    let other = State::new(backend(&cluster, "/ctl").await);
    let mine = std::sync::Arc::new(backend(&cluster, "/ctl").await);
    // Written by another replica before the view handle was made: seen.
    other
        .create(Resource::new(KIND, "default", "before", json!({"n": 1})))
        .await
        .unwrap();
    let view = State::shared(std::sync::Arc::new(mine.view_reads().await.unwrap()));
    let start = mine.read_stats();
    assert_eq!(
        view.get(&key("before")).await.unwrap().spec,
        json!({"n": 1})
    );
    // Own writes, through the view handle or the plain one, are read back
    // at once, each at its new version, many times in a row.
    let plain = State::shared(mine.clone());
    for n in 0..20 {
        let id = format!("own{}", n % 3);
        let handle = if n % 2 == 0 { &view } else { &plain };
        let current = view.get_opt(&key(&id)).await.unwrap();
        let version = current.as_ref().map_or(0, |r| r.metadata.version);
        match current {
            None => handle
                .create(Resource::new(KIND, "default", &id, json!({"n": n})))
                .await
                .unwrap(),
            Some(mut r) => {
                r.spec = json!({"n": n});
                handle.update(r).await.unwrap()
            }
        };
        let read = view.get(&key(&id)).await.unwrap();
        assert_eq!(read.spec, json!({"n": n}), "own write {n} not read back");
        assert_eq!(read.metadata.version, version + 1);
    }
    let stats = mine.read_stats();
    assert_eq!(stats.from_etcd, start.from_etcd, "{stats:?}");
    assert!(stats.from_view >= start.from_view + 41, "{stats:?}");
    // A write based on a stale read still fails.
    let stale = view.get(&key("before")).await.unwrap();
    let mut newer = other.get(&key("before")).await.unwrap();
    newer.spec = json!({"n": 2});
    other.update(newer).await.unwrap();
    let mut r = stale.clone();
    r.spec = json!({"n": 3});
    assert!(matches!(
        view.update(r).await,
        Err(StateError::Conflict { .. })
    ));
}
