//! The conformance suite every state backend must pass. Call [`run_all`]
//! from a test with a factory that makes a fresh, empty state.

use omni_resources::meta::ResourceKey;
use omni_resources::{LabelSelector, Phase, Resource};
use serde_json::json;

use crate::{EventKind, State};

const KIND: &str = "Clusters.omni.sidero.dev";

fn res(id: &str, labels: &[(&str, &str)]) -> Resource {
    let mut r = Resource::new(KIND, "default", id, json!({"talosversion": id}));
    for (k, v) in labels {
        r.metadata.labels.insert(k.to_string(), v.to_string());
    }
    r
}

fn key(id: &str) -> ResourceKey {
    ResourceKey::new("default", KIND, id)
}

/// Runs every case, each on a fresh state from `make`.
pub async fn run_all(make: impl Fn() -> State) {
    create_get_and_duplicate(make()).await;
    update_requires_current_version(make()).await;
    list_filters_by_namespace_type_and_selector(make()).await;
    finalizers_block_destroy(make()).await;
    watch_sees_commits_in_order(make()).await;
    modify_skips_unchanged_writes(make()).await;
    concurrent_updates_never_lose_a_write(make()).await;
}

async fn create_get_and_duplicate(state: State) {
    let created = state.create(res("a", &[])).await.unwrap();
    assert_eq!(created.metadata.version, 1);
    assert!(created.metadata.created.is_some());
    let got = state.get(&key("a")).await.unwrap();
    assert_eq!(got, created);
    assert!(state.create(res("a", &[])).await.unwrap_err().is_conflict());
    assert!(state.get(&key("b")).await.unwrap_err().is_not_found());
}

async fn update_requires_current_version(state: State) {
    let created = state.create(res("a", &[])).await.unwrap();
    let mut next = created.clone();
    next.spec = json!({"talosversion": "2"});
    let updated = state.update(next.clone()).await.unwrap();
    assert_eq!(updated.metadata.version, 2);
    assert_eq!(updated.metadata.created, created.metadata.created);
    // Same stale version again: conflict, and nothing changes.
    next.spec = json!({"talosversion": "3"});
    let err = state.update(next).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(
        state.get(&key("a")).await.unwrap().spec,
        json!({"talosversion": "2"})
    );
    let mut missing = res("zz", &[]);
    missing.metadata.version = 1;
    assert!(state.update(missing).await.unwrap_err().is_not_found());
}

async fn list_filters_by_namespace_type_and_selector(state: State) {
    state.create(res("a", &[("c", "x")])).await.unwrap();
    state.create(res("b", &[("c", "y")])).await.unwrap();
    state
        .create(Resource::new(KIND, "ephemeral", "c", json!({})))
        .await
        .unwrap();
    state
        .create(Resource::new(
            "Machines.omni.sidero.dev",
            "default",
            "d",
            json!({}),
        ))
        .await
        .unwrap();
    let all = state
        .list("default", KIND, &LabelSelector::default())
        .await
        .unwrap();
    let ids: Vec<_> = all.iter().map(|r| r.metadata.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    let sel = LabelSelector::parse("c=y").unwrap();
    let ids: Vec<_> = state
        .list("default", KIND, &sel)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.metadata.id)
        .collect();
    assert_eq!(ids, ["b"]);
}

async fn finalizers_block_destroy(state: State) {
    state.create(res("a", &[])).await.unwrap();
    state
        .add_finalizer(&key("a"), "ClusterController")
        .await
        .unwrap();
    state
        .add_finalizer(&key("a"), "ClusterController")
        .await
        .unwrap();
    assert_eq!(
        state.get(&key("a")).await.unwrap().metadata.finalizers,
        ["ClusterController"]
    );
    let err = state.destroy(&key("a")).await.unwrap_err();
    assert!(err.to_string().contains("pending finalizers"), "{err}");
    assert!(!state.teardown(&key("a")).await.unwrap());
    assert_eq!(
        state.get(&key("a")).await.unwrap().metadata.phase,
        Phase::TearingDown
    );
    assert!(state.add_finalizer(&key("a"), "Other").await.is_err());
    state
        .remove_finalizer(&key("a"), "ClusterController")
        .await
        .unwrap();
    assert!(state.get(&key("a")).await.unwrap_err().is_not_found());
    // Without finalizers teardown destroys at once.
    state.create(res("b", &[])).await.unwrap();
    assert!(state.teardown(&key("b")).await.unwrap());
    assert!(state.get_opt(&key("b")).await.unwrap().is_none());
}

async fn watch_sees_commits_in_order(state: State) {
    let mut watch = state.watch(Some("default"), KIND);
    let created = state.create(res("a", &[])).await.unwrap();
    state
        .create(Resource::new(
            "Machines.omni.sidero.dev",
            "default",
            "m",
            json!({}),
        ))
        .await
        .unwrap();
    let mut next = created.clone();
    next.spec = json!({"talosversion": "9"});
    state.update(next).await.unwrap();
    state.destroy(&key("a")).await.unwrap();
    let kinds: Vec<(EventKind, u64)> = [
        watch.next().await.unwrap(),
        watch.next().await.unwrap(),
        watch.next().await.unwrap(),
    ]
    .iter()
    .map(|e| (e.kind, e.resource.metadata.version))
    .collect();
    assert_eq!(
        kinds,
        [
            (EventKind::Created, 1),
            (EventKind::Updated, 2),
            (EventKind::Destroyed, 2)
        ]
    );
}

async fn modify_skips_unchanged_writes(state: State) {
    use omni_resources::specs::backup::EtcdBackupStatusSpec;
    let r = state
        .modify::<EtcdBackupStatusSpec>("ephemeral", "c1", "EtcdBackupController", |s| s.status = 1)
        .await
        .unwrap();
    assert_eq!(r.metadata.version, 1);
    assert_eq!(r.metadata.owner, "EtcdBackupController");
    let r = state
        .modify::<EtcdBackupStatusSpec>("ephemeral", "c1", "EtcdBackupController", |s| s.status = 1)
        .await
        .unwrap();
    assert_eq!(
        r.metadata.version, 1,
        "an unchanged spec must not be rewritten"
    );
    let r = state
        .modify::<EtcdBackupStatusSpec>("ephemeral", "c1", "EtcdBackupController", |s| s.status = 2)
        .await
        .unwrap();
    assert_eq!(r.metadata.version, 2);
}

async fn concurrent_updates_never_lose_a_write(state: State) {
    use omni_resources::specs::backup::EtcdBackupOverallStatusSpec;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                state
                    .modify::<EtcdBackupOverallStatusSpec>("ephemeral", "o", "T", |s| {
                        s.configurationattempt += 1
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, spec) = state
        .get_spec::<EtcdBackupOverallStatusSpec>("ephemeral", "o")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(spec.configurationattempt, 80);
}
