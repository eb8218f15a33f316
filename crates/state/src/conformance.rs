//! The conformance suite every state backend must pass, after the
//! semantics of cosi-project/runtime's state conformance. Call [`run_all`]
//! from a test with a factory that makes a fresh, empty backend and returns
//! two independent handles on it (for etcd: two clients), so that races
//! between handles reach the backend's compare-and-swap.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use omni_resources::meta::ResourceKey;
use omni_resources::{LabelSelector, Phase, Resource};
use serde_json::json;

use crate::{Event, EventKind, State, StateError, Watch};

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

/// Runs every case, each on a fresh backend from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (State, State)>,
{
    create_get_and_duplicate(make().await.0).await;
    update_requires_current_version(make().await.0).await;
    list_filters_by_namespace_type_and_selector(make().await.0).await;
    finalizers_block_destroy(make().await.0).await;
    watch_sees_commits_in_order(make().await.0).await;
    modify_skips_unchanged_writes(make().await.0).await;
    concurrent_updates_never_lose_a_write(make().await.0).await;
    owner_is_enforced_by_the_state(make().await.0).await;
    updates_refused_while_tearing_down(make().await.0).await;
    selector_watch_reports_leaving_as_destroyed(make().await.0).await;
    watch_resumes_from_a_revision(make().await.0).await;
    two_handles_race_on_one_key(make().await).await;
}

/// The next event, or a failure naming what was awaited.
async fn next(watch: &mut Watch, what: &str) -> Arc<Event> {
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Ok(ev)) => ev,
        Ok(Err(missed)) => panic!("{what}: watch failed ({missed} missed)"),
        Err(_) => panic!("{what}: no event within 10s"),
    }
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
    // A relabelled resource leaves its old label's list and joins the new
    // one's; a destroyed one leaves every list.
    let key = ResourceKey::new("default", KIND, "a");
    let mut a = state.get(&key).await.unwrap();
    a.metadata.labels.insert("c".into(), "y".into());
    state.update(a).await.unwrap();
    let ids =
        |list: Vec<Resource>| -> Vec<String> { list.into_iter().map(|r| r.metadata.id).collect() };
    assert_eq!(
        ids(state.list("default", KIND, &sel).await.unwrap()),
        ["a", "b"]
    );
    let x = LabelSelector::parse("c=x").unwrap();
    assert!(state.list("default", KIND, &x).await.unwrap().is_empty());
    assert!(
        state.teardown(&key).await.unwrap(),
        "no finalizers: gone at once"
    );
    assert_eq!(ids(state.list("default", KIND, &sel).await.unwrap()), ["b"]);
    let not_y = LabelSelector::parse("c!=y").unwrap();
    assert!(state
        .list("default", KIND, &not_y)
        .await
        .unwrap()
        .is_empty());
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

async fn owner_is_enforced_by_the_state(state: State) {
    use omni_resources::specs::backup::EtcdBackupStatusSpec;
    let owned = state
        .modify::<EtcdBackupStatusSpec>("ephemeral", "c1", "A", |s| s.status = 1)
        .await
        .unwrap();
    let mut other = owned.clone();
    other.metadata.owner = "B".into();
    other.spec = json!({"status": 2});
    let err = state.update(other).await.unwrap_err();
    assert!(matches!(err, StateError::OwnerConflict { .. }), "{err}");
    let mut user = owned.clone();
    user.metadata.owner = String::new();
    assert!(matches!(
        state.update(user).await.unwrap_err(),
        StateError::OwnerConflict { .. }
    ));
    let err = state
        .modify::<EtcdBackupStatusSpec>("ephemeral", "c1", "B", |s| s.status = 2)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::OwnerConflict { .. }), "{err}");
    let key = ResourceKey::new("ephemeral", owned.metadata.kind.as_str(), "c1");
    let stored = state.get(&key).await.unwrap();
    assert_eq!(
        stored.metadata.version, 1,
        "a refused write changes nothing"
    );
    assert_eq!(stored.metadata.owner, "A");
    // The owner itself may write.
    let mut mine = stored;
    mine.spec = json!({"status": 3});
    assert_eq!(state.update(mine).await.unwrap().metadata.version, 2);
}

async fn updates_refused_while_tearing_down(state: State) {
    state.create(res("a", &[])).await.unwrap();
    state.add_finalizer(&key("a"), "F").await.unwrap();
    assert!(!state.teardown(&key("a")).await.unwrap());
    let mut next = state.get(&key("a")).await.unwrap();
    let version = next.metadata.version;
    next.spec = json!({"talosversion": "changed"});
    let err = state.update(next).await.unwrap_err();
    assert!(matches!(err, StateError::TearingDown(_)), "{err}");
    let stored = state.get(&key("a")).await.unwrap();
    assert_eq!(stored.metadata.version, version);
    assert_eq!(stored.spec, json!({"talosversion": "a"}));
    // Finalizers can still go, and the last one destroys it.
    state.remove_finalizer(&key("a"), "F").await.unwrap();
    assert!(state.get_opt(&key("a")).await.unwrap().is_none());
}

async fn selector_watch_reports_leaving_as_destroyed(state: State) {
    let sel = LabelSelector::parse("c=x").unwrap();
    let mut watch = state.watch(Some("default"), KIND).with_selector(sel);
    let a = state.create(res("a", &[("c", "x")])).await.unwrap();
    state.create(res("b", &[("c", "y")])).await.unwrap();
    let mut moved = a.clone();
    moved.metadata.labels.insert("c".into(), "y".into());
    let moved = state.update(moved).await.unwrap();
    let mut back = moved.clone();
    back.metadata.labels.insert("c".into(), "x".into());
    state.update(back).await.unwrap();
    state.destroy(&key("b")).await.unwrap();
    state.destroy(&key("a")).await.unwrap();
    let seen: Vec<(EventKind, String, u64)> = [
        next(&mut watch, "a created").await,
        next(&mut watch, "a left the selector").await,
        next(&mut watch, "a came back").await,
        next(&mut watch, "a destroyed").await,
    ]
    .iter()
    .map(|e| {
        (
            e.kind,
            e.resource.metadata.id.clone(),
            e.resource.metadata.version,
        )
    })
    .collect();
    assert_eq!(
        seen,
        [
            (EventKind::Created, "a".into(), 1),
            (EventKind::Destroyed, "a".into(), 2),
            (EventKind::Created, "a".into(), 3),
            (EventKind::Destroyed, "a".into(), 3),
        ],
        "b never matched, so it never shows"
    );
}

async fn watch_resumes_from_a_revision(state: State) {
    let mut live = state.watch(Some("default"), KIND);
    let a = state.create(res("a", &[])).await.unwrap();
    let first = next(&mut live, "a created").await;
    let mut up = a.clone();
    up.spec = json!({"talosversion": "2"});
    state.update(up).await.unwrap();
    state.create(res("b", &[])).await.unwrap();
    // Resume after the first event: what came since comes first, in order.
    let mut resumed = state
        .watch_from(Some("default"), KIND, first.revision)
        .await
        .unwrap();
    let e1 = next(&mut resumed, "a updated, from history").await;
    let e2 = next(&mut resumed, "b created, from history").await;
    assert_eq!(
        (
            e1.kind,
            e1.resource.metadata.id.as_str(),
            e1.resource.metadata.version
        ),
        (EventKind::Updated, "a", 2)
    );
    assert_eq!(
        (e2.kind, e2.resource.metadata.id.as_str()),
        (EventKind::Created, "b")
    );
    assert!(first.revision < e1.revision && e1.revision < e2.revision);
    // …then live changes, without duplicates.
    state.destroy(&key("b")).await.unwrap();
    let e3 = next(&mut resumed, "b destroyed, live").await;
    assert_eq!(
        (e3.kind, e3.resource.metadata.id.as_str()),
        (EventKind::Destroyed, "b")
    );
    assert!(e3.revision > e2.revision);
}

async fn two_handles_race_on_one_key((one, two): (State, State)) {
    use omni_resources::specs::backup::EtcdBackupOverallStatusSpec;
    // A watch on one handle sees the other handle's writes.
    let mut watch = two.watch(Some("default"), KIND);
    one.create(res("seen", &[])).await.unwrap();
    let ev = next(&mut watch, "the other handle's create").await;
    assert_eq!(ev.resource.metadata.id, "seen");
    // Creates race: exactly one wins.
    let (a, b) = tokio::join!(one.create(res("x", &[])), two.create(res("x", &[])));
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one create wins: {a:?} / {b:?}"
    );
    assert!(a.err().or(b.err()).unwrap().is_conflict());
    // Read-modify-write races: every increment lands exactly once.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let state = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                state
                    .modify::<EtcdBackupOverallStatusSpec>("ephemeral", "race", "T", |s| {
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
    let (stored, spec) = two
        .get_spec::<EtcdBackupOverallStatusSpec>("ephemeral", "race")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(spec.configurationattempt, 40);
    assert_eq!(stored.metadata.version, 40);
}
