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
        let r = omni_resources::Resource::new(
            "Clusters.omni.sidero.dev",
            "default",
            "a",
            serde_json::json!({"x": 1}),
        );
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
}
