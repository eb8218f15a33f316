use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::*;
use omni_resources::Resource;

const CLUSTERS: &str = "Clusters.omni.sidero.dev";

/// Counts calls per key; fails the first `fail_first`, panics on keys named
/// `panic`, and sleeps long on keys named `slow`.
#[derive(Default)]
struct Recorder {
    calls: Mutex<HashMap<String, usize>>,
    total: AtomicUsize,
    fail_first: usize,
    /// Lose a compare-and-swap instead of failing.
    conflict: bool,
    keyed: bool,
    at: Mutex<Vec<tokio::time::Instant>>,
}

impl Recorder {
    fn calls(&self, key: &str) -> usize {
        self.calls.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

#[async_trait]
impl Controller for Recorder {
    fn name(&self) -> &'static str {
        "Recorder"
    }
    fn inputs(&self) -> Vec<Input> {
        if self.keyed {
            vec![Input::by_id(CLUSTERS)]
        } else {
            vec![Input::kind(CLUSTERS)]
        }
    }
    fn outputs(&self) -> Vec<&'static str> {
        vec!["EtcdBackupStatuses.omni.sidero.dev"]
    }
    async fn keys(&self, state: &State) -> Result<Vec<String>, BoxError> {
        if !self.keyed {
            return Ok(vec![SINGLETON.into()]);
        }
        let all = state.list("default", CLUSTERS, &Default::default()).await?;
        Ok(all.into_iter().map(|r| r.metadata.id).collect())
    }
    fn concurrency(&self) -> usize {
        4
    }
    async fn reconcile(&self, key: &str, _ctx: &Context) -> Result<Action, BoxError> {
        *self.calls.lock().unwrap().entry(key.into()).or_default() += 1;
        let n = self.total.fetch_add(1, Ordering::SeqCst);
        if key == "panic" {
            panic!("reconcile of {key} panicked on purpose");
        }
        if key == "slow" {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        self.at.lock().unwrap().push(tokio::time::Instant::now());
        if n < self.fail_first && self.conflict {
            let key = omni_resources::meta::ResourceKey::new("default", CLUSTERS, key);
            return Err(Box::new(omni_state::StateError::Conflict {
                key,
                expected: 1,
                found: 2,
            }));
        }
        if n < self.fail_first {
            return Err("boom".into());
        }
        Ok(Action::AwaitChange)
    }
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..250 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn cluster(id: &str) -> Resource {
    Resource::new(CLUSTERS, "default", id, serde_json::json!({}))
}

async fn stop(cancel: CancellationToken, handle: tokio::task::JoinHandle<()>) {
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("runtime stops")
        .unwrap();
}

#[tokio::test]
async fn reconciles_on_start_on_input_change_and_retries_errors() {
    let state = State::memory();
    let rec = Arc::new(Recorder {
        fail_first: 1,
        ..Recorder::default()
    });
    let mut rt = Runtime::new(state.clone());
    rt.register(rec.clone()).unwrap();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(rt.run(cancel.clone()));
    // First call fails, the retry after backoff succeeds.
    eventually("retry", || rec.calls(SINGLETON) == 2).await;
    state.create(cluster("a")).await.unwrap();
    eventually("event", || rec.calls(SINGLETON) == 3).await;
    stop(cancel, handle).await;
}

/// In virtual time, so the delays compared are the runtime's own.
#[tokio::test(start_paused = true)]
async fn a_lost_compare_and_swap_is_retried_sooner_than_a_failure() {
    let mut gaps = Vec::new();
    for conflict in [true, false] {
        let rec = Arc::new(Recorder {
            fail_first: 2,
            conflict,
            ..Recorder::default()
        });
        let mut rt = Runtime::new(State::memory());
        rt.register(rec.clone()).unwrap();
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(rt.run(cancel.clone()));
        eventually("two retries", || rec.calls(SINGLETON) == 3).await;
        stop(cancel, handle).await;
        let at = rec.at.lock().unwrap().clone();
        gaps.push((at[1] - at[0], at[2] - at[1]));
    }
    let (conflict, failure) = (gaps[0], gaps[1]);
    assert!(conflict.0 < Duration::from_millis(100), "{conflict:?}");
    assert!(
        conflict.1 > conflict.0,
        "conflicts back off too: {conflict:?}"
    );
    assert!(failure.0 >= crate::BACKOFF_MIN, "{failure:?}");
}

#[tokio::test]
async fn an_event_reconciles_its_key_only_and_a_slow_key_blocks_no_other() {
    let state = State::memory();
    for id in ["a", "b", "slow"] {
        state.create(cluster(id)).await.unwrap();
    }
    let rec = Arc::new(Recorder {
        keyed: true,
        ..Recorder::default()
    });
    let mut rt = Runtime::new(state.clone());
    rt.set_drain_deadline(Duration::from_millis(100));
    rt.register(rec.clone()).unwrap();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(rt.run(cancel.clone()));
    eventually("start", || {
        rec.calls("a") == 1 && rec.calls("b") == 1 && rec.calls("slow") == 1
    })
    .await;
    let mut a = state.get(&cluster("a").key()).await.unwrap();
    a.metadata.labels.insert("x".into(), "y".into());
    state.update(a).await.unwrap();
    state.create(cluster("c")).await.unwrap();
    eventually("a again, c once", || {
        rec.calls("a") == 2 && rec.calls("c") == 1
    })
    .await;
    assert_eq!(rec.calls("b"), 1, "b did not change");
    // slow is still in its first reconcile: its events wait, not run twice.
    let mut slow = state.get(&cluster("slow").key()).await.unwrap();
    slow.metadata.labels.insert("x".into(), "y".into());
    state.update(slow).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rec.calls("slow"), 1);
    stop(cancel, handle).await;
}

#[tokio::test]
async fn a_panicking_reconcile_is_counted_retried_and_spares_the_others() {
    let state = State::memory();
    state.create(cluster("panic")).await.unwrap();
    let rec = Arc::new(Recorder {
        keyed: true,
        ..Recorder::default()
    });
    let mut rt = Runtime::new(state.clone());
    rt.set_health(Arc::new(Health::new(HealthSettings {
        threshold: 2,
        window: Duration::from_secs(60),
    })));
    let health = rt.health();
    rt.register(rec.clone()).unwrap();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(rt.run(cancel.clone()));
    assert!(health.healthy());
    eventually("crashes", || rec.calls("panic") >= 2).await;
    eventually("unhealthy", || !health.healthy()).await;
    assert_eq!(health.failing(), ["Recorder"]);
    assert!(health.loop_counts()[0].1.crashes >= 2);
    // The loop survived: other keys still reconcile.
    state.create(cluster("fine")).await.unwrap();
    eventually("fine", || rec.calls("fine") == 1).await;
    stop(cancel, handle).await;
}

#[tokio::test]
async fn shutdown_drains_jobs_up_to_the_deadline_then_aborts_them() {
    struct Jobs {
        started: Arc<AtomicUsize>,
        finished: Arc<AtomicUsize>,
        aborted: Arc<AtomicUsize>,
    }
    #[async_trait]
    impl Controller for Jobs {
        fn name(&self) -> &'static str {
            "Jobs"
        }
        fn inputs(&self) -> Vec<Input> {
            Vec::new()
        }
        fn outputs(&self) -> Vec<&'static str> {
            Vec::new()
        }
        async fn reconcile(&self, _key: &str, ctx: &Context) -> Result<Action, BoxError> {
            for wait in [Duration::from_millis(50), Duration::from_secs(3600)] {
                self.started.fetch_add(1, Ordering::SeqCst);
                let (finished, aborted, abort) = (
                    self.finished.clone(),
                    self.aborted.clone(),
                    ctx.abort.clone(),
                );
                ctx.tasks.spawn(async move {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => finished.fetch_add(1, Ordering::SeqCst),
                        _ = abort.cancelled() => aborted.fetch_add(1, Ordering::SeqCst),
                    };
                });
            }
            Ok(Action::AwaitChange)
        }
    }
    let (started, finished, aborted) = (Arc::default(), Arc::default(), Arc::default());
    let mut rt = Runtime::new(State::memory());
    rt.set_drain_deadline(Duration::from_millis(500));
    rt.register(Arc::new(Jobs {
        started: Arc::clone(&started),
        finished: Arc::clone(&finished),
        aborted: Arc::clone(&aborted),
    }))
    .unwrap();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(rt.run(cancel.clone()));
    eventually("jobs started", || started.load(Ordering::SeqCst) == 2).await;
    stop(cancel, handle).await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "the short job was waited for"
    );
    assert_eq!(
        aborted.load(Ordering::SeqCst),
        1,
        "the long one was aborted"
    );
}

#[test]
fn one_owner_per_output_kind() {
    let mut rt = Runtime::new(State::memory());
    rt.register(Arc::new(Recorder::default())).unwrap();
    let err = rt.register(Arc::new(Recorder::default())).err().unwrap();
    assert!(err.to_string().contains("has one owner"), "{err}");
}
