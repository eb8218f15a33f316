//! Controller runtime.
//!
//! A controller declares the kinds it reads (inputs) and the kinds it alone
//! writes (outputs). Its `reconcile` is level-triggered: it is called when
//! any input changes, when it asked to be requeued, or when one of its own
//! background jobs pokes it; it looks at the whole state and converges.
//! Errors are retried with exponential backoff. One cancellation token
//! stops every loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use omni_state::State;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What to do after a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reconcile again after this long even if nothing changes.
    Requeue(Duration),
    /// Reconcile again only when an input changes.
    AwaitChange,
}

impl Action {
    pub fn requeue(d: Duration) -> Self {
        Action::Requeue(d)
    }
}

/// An input: a kind, in one namespace or all.
#[derive(Debug, Clone)]
pub struct Input {
    pub kind: &'static str,
    pub namespace: Option<&'static str>,
}

impl Input {
    pub fn kind(kind: &'static str) -> Self {
        Input {
            kind,
            namespace: None,
        }
    }
}

/// A handle that makes a controller reconcile soon; given to its jobs.
#[derive(Clone, Default)]
pub struct Trigger(Arc<Notify>);

impl Trigger {
    pub fn poke(&self) {
        self.0.notify_one();
    }
}

/// What a reconcile gets.
pub struct Context {
    pub state: State,
    pub trigger: Trigger,
    pub cancel: CancellationToken,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[async_trait]
pub trait Controller: Send + Sync + 'static {
    /// Name, also the owner written on outputs.
    fn name(&self) -> &'static str;
    fn inputs(&self) -> Vec<Input>;
    /// Kinds this controller alone writes.
    fn outputs(&self) -> Vec<&'static str>;
    async fn reconcile(&self, ctx: &Context) -> Result<Action, BoxError>;
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("kind {kind} is an output of both {first} and {second}: a kind has one owner")]
    DuplicateOwner {
        kind: String,
        first: String,
        second: String,
    },
}

/// Backoff bounds for failing reconciles.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

pub struct Runtime {
    state: State,
    controllers: Vec<Arc<dyn Controller>>,
}

impl Runtime {
    pub fn new(state: State) -> Self {
        Runtime {
            state,
            controllers: Vec::new(),
        }
    }

    /// Registers a controller; refuses a second owner for an output kind.
    pub fn register(&mut self, controller: Arc<dyn Controller>) -> Result<(), RuntimeError> {
        let mut owners: HashMap<&str, &str> = HashMap::new();
        for c in &self.controllers {
            for kind in c.outputs() {
                owners.insert(kind, c.name());
            }
        }
        for kind in controller.outputs() {
            if let Some(first) = owners.get(kind) {
                return Err(RuntimeError::DuplicateOwner {
                    kind: kind.to_string(),
                    first: first.to_string(),
                    second: controller.name().to_string(),
                });
            }
        }
        self.controllers.push(controller);
        Ok(())
    }

    /// Runs every controller until `cancel` fires; returns when all loops
    /// have stopped.
    pub async fn run(self, cancel: CancellationToken) {
        let mut tasks = JoinSet::new();
        for controller in self.controllers {
            tasks.spawn(run_controller(
                controller,
                self.state.clone(),
                cancel.clone(),
            ));
        }
        while tasks.join_next().await.is_some() {}
    }
}

async fn run_controller(controller: Arc<dyn Controller>, state: State, cancel: CancellationToken) {
    let trigger = Trigger::default();
    // Forward input events into the trigger; a lagged watch is just a poke,
    // since reconcile reads the whole state anyway.
    let mut forwarders = JoinSet::new();
    for input in controller.inputs() {
        let mut watch = state.watch(input.namespace, input.kind);
        let trigger = trigger.clone();
        forwarders.spawn(async move {
            loop {
                match watch.next().await {
                    Ok(_) => trigger.poke(),
                    Err(0) => break,
                    Err(_) => trigger.poke(),
                }
            }
        });
    }
    let ctx = Context {
        state,
        trigger: trigger.clone(),
        cancel: cancel.clone(),
    };
    let mut backoff = BACKOFF_MIN;
    let mut next: Option<Duration> = Some(Duration::ZERO);
    loop {
        let wait = async {
            match next {
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = trigger.0.notified() => {}
                    }
                }
                None => trigger.0.notified().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = wait => {}
        }
        match controller.reconcile(&ctx).await {
            Ok(Action::Requeue(d)) => {
                backoff = BACKOFF_MIN;
                next = Some(d);
            }
            Ok(Action::AwaitChange) => {
                backoff = BACKOFF_MIN;
                next = None;
            }
            Err(e) => {
                tracing::warn!(controller = controller.name(), error = %e, retry_in = ?backoff, "reconcile failed");
                next = Some(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    forwarders.abort_all();
    tracing::debug!(controller = controller.name(), "controller stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counter {
        calls: Arc<AtomicUsize>,
        fail_first: usize,
    }

    #[async_trait]
    impl Controller for Counter {
        fn name(&self) -> &'static str {
            "Counter"
        }
        fn inputs(&self) -> Vec<Input> {
            vec![Input::kind("Clusters.omni.sidero.dev")]
        }
        fn outputs(&self) -> Vec<&'static str> {
            vec!["EtcdBackupStatuses.omni.sidero.dev"]
        }
        async fn reconcile(&self, _ctx: &Context) -> Result<Action, BoxError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.fail_first {
                return Err("boom".into());
            }
            Ok(Action::AwaitChange)
        }
    }

    async fn eventually(mut f: impl FnMut() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test]
    async fn reconciles_on_start_on_input_change_and_retries_errors() {
        let state = State::memory();
        let calls = Arc::new(AtomicUsize::new(0));
        let mut rt = Runtime::new(state.clone());
        rt.register(Arc::new(Counter {
            calls: calls.clone(),
            fail_first: 1,
        }))
        .unwrap();
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(rt.run(cancel.clone()));
        // First call fails, the retry after backoff succeeds.
        eventually(|| calls.load(Ordering::SeqCst) == 2).await;
        let r = omni_resources::Resource::new(
            "Clusters.omni.sidero.dev",
            "default",
            "a",
            serde_json::json!({}),
        );
        state.create(r).await.unwrap();
        eventually(|| calls.load(Ordering::SeqCst) == 3).await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn one_owner_per_output_kind() {
        let mut rt = Runtime::new(State::memory());
        let calls = Arc::new(AtomicUsize::new(0));
        rt.register(Arc::new(Counter {
            calls: calls.clone(),
            fail_first: 0,
        }))
        .unwrap();
        let err = rt
            .register(Arc::new(Counter {
                calls,
                fail_first: 0,
            }))
            .err()
            .unwrap();
        assert!(err.to_string().contains("has one owner"), "{err}");
    }
}
