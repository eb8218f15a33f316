use std::sync::Arc;

use omni_resources::meta::ResourceKey;
use omni_state::{conformance, Backend, MemoryBackend, RedbBackend, State};

fn pair(backend: Arc<dyn Backend>) -> (State, State) {
    (State::shared(backend.clone()), State::shared(backend))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend_conforms() {
    conformance::run_all(|| async { pair(Arc::new(MemoryBackend::new())) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    conformance::run_all(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = dir.path().join(format!("state-{n}.redb"));
        async move { pair(Arc::new(RedbBackend::open(&path).unwrap())) }
    })
    .await;
}

#[tokio::test]
async fn redb_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/state.redb");
    {
        let state = State::new(RedbBackend::open(&path).unwrap());
        let mut r = omni_resources::Resource::new(
            "Clusters.omni.sidero.dev",
            "default",
            "a",
            serde_json::json!({"x": 1}),
        );
        r.metadata.labels.insert("team".into(), "blue".into());
        state.create(r).await.unwrap();
    }
    let state = State::new(RedbBackend::open(&path).unwrap());
    let got = state
        .get(&ResourceKey::new(
            "default",
            "Clusters.omni.sidero.dev",
            "a",
        ))
        .await
        .unwrap();
    assert_eq!(got.spec, serde_json::json!({"x": 1}));
    assert_eq!(got.metadata.version, 1);
    // The label index is rebuilt from the file.
    let blue = omni_resources::LabelSelector::parse("team=blue").unwrap();
    let listed = state
        .list("default", "Clusters.omni.sidero.dev", &blue)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

/// Writes that queue up together are committed together: each is still
/// checked on its own (one of many racing updates wins, the rest conflict),
/// and every acknowledged write is in the file after a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_group_commits_keep_every_write_and_every_check() {
    const KIND: &str = "Clusters.omni.sidero.dev";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let state = State::new(RedbBackend::open(&path).unwrap());
    let raced = omni_resources::Resource::new(KIND, "default", "raced", serde_json::json!({}));
    let raced = state.create(raced).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300 {
        let state = state.clone();
        tasks.spawn(async move {
            let r = omni_resources::Resource::new(
                KIND,
                "default",
                &format!("c{i:03}"),
                serde_json::json!({"i": i}),
            );
            state.create(r).await.map(|_| "created")
        });
    }
    for i in 0..50 {
        let (state, mut r) = (state.clone(), raced.clone());
        tasks.spawn(async move {
            r.spec = serde_json::json!({"winner": i});
            state.update(r).await.map(|_| "updated")
        });
    }
    let (mut created, mut updated, mut conflicts) = (0, 0, 0);
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Ok("created") => created += 1,
            Ok(_) => updated += 1,
            Err(omni_state::StateError::Conflict { .. }) => conflicts += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((created, updated, conflicts), (300, 1, 49));
    drop(state);
    let state = State::new(RedbBackend::open(&path).unwrap());
    let all = state
        .list("default", KIND, &omni_resources::LabelSelector::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 301);
    let raced = state
        .get(&ResourceKey::new("default", KIND, "raced"))
        .await
        .unwrap();
    assert_eq!(raced.metadata.version, 2, "exactly one update landed");
}
