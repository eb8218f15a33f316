//! Controller runtime, in the shape of kube-runtime's `Controller`.
//!
//! A controller declares the kinds it reads (inputs, each with a mapper
//! from an event to the keys it concerns) and the kinds it alone writes
//! (outputs). `reconcile(key)` is level-triggered for one key (a cluster,
//! a machine; or [`SINGLETON`] for controllers that look at everything):
//! it runs when an event maps to the key, when the key's requeue timer
//! fires, or when a background job pokes it. Each controller has one keyed
//! queue: a key is never reconciled twice at once, at most
//! [`Controller::concurrency`] keys run together, and each key has its own
//! timer and error backoff, so one slow or failing key delays no other. A
//! watch that fell behind re-lists: every key is enqueued once.
//!
//! A panicking reconcile is caught, counted in [`Health`], logged with the
//! controller's name, and its key retried with backoff. One cancellation
//! token stops every loop; background jobs started through
//! [`Context::tasks`] are then drained up to a deadline, and after it
//! [`Context::abort`] fires so that they record themselves as interrupted.

mod health;
mod input;
mod queue;
mod runner;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use omni_state::State;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use health::{Health, HealthSettings, LoopCounts};
pub use input::{Input, KeyFuture};

/// The one key of a controller that reconciles the whole state per call.
pub const SINGLETON: &str = "";

/// What to do after a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reconcile this key again after this long even if nothing changes.
    Requeue(Duration),
    /// Reconcile this key again only when an input changes.
    AwaitChange,
}

impl Action {
    pub fn requeue(d: Duration) -> Self {
        Action::Requeue(d)
    }
}

pub(crate) enum Poke {
    Key(String),
    All,
}

/// A handle that makes a controller reconcile soon; given to its jobs. A
/// detached trigger (the default, for tests) goes nowhere.
#[derive(Clone, Default)]
pub struct Trigger(Option<mpsc::UnboundedSender<Poke>>);

impl Trigger {
    /// Reconciles every key (re-lists).
    pub fn poke(&self) {
        self.send(Poke::All);
    }

    /// Reconciles one key.
    pub fn poke_key(&self, key: &str) {
        self.send(Poke::Key(key.to_string()));
    }

    fn send(&self, p: Poke) {
        if let Some(tx) = &self.0 {
            // The controller stopped: nothing left to wake.
            let _ = tx.send(p);
        }
    }
}

/// What a reconcile gets.
#[derive(Clone)]
pub struct Context {
    pub state: State,
    pub trigger: Trigger,
    /// Fires at shutdown: start nothing new.
    pub cancel: CancellationToken,
    /// Background jobs (backups, drills) spawned here are waited for at
    /// shutdown, up to the runtime's drain deadline.
    pub tasks: TaskTracker,
    /// Fires when the drain deadline has passed: jobs still running stop
    /// and record that they were interrupted.
    pub abort: CancellationToken,
}

impl Context {
    /// A context outside any runtime (unit tests): a detached trigger,
    /// tokens that never fire unless the caller cancels them.
    pub fn new(state: State) -> Self {
        Context {
            state,
            trigger: Trigger::default(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            abort: CancellationToken::new(),
        }
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[async_trait]
pub trait Controller: Send + Sync + 'static {
    /// Name, also the owner written on outputs.
    fn name(&self) -> &'static str;
    fn inputs(&self) -> Vec<Input>;
    /// Kinds this controller alone writes.
    fn outputs(&self) -> Vec<&'static str>;
    /// Every key there is: reconciled at start and after a watch fell
    /// behind. Keys whose object is gone must be listed too while they
    /// have outputs to clean up.
    async fn keys(&self, _state: &State) -> Result<Vec<String>, BoxError> {
        Ok(vec![SINGLETON.to_string()])
    }
    /// Keys reconciled at once.
    fn concurrency(&self) -> usize {
        1
    }
    async fn reconcile(&self, key: &str, ctx: &Context) -> Result<Action, BoxError>;
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

/// Backoff bounds for failing reconciles and crashed loops.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(500);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// First retry after a lost compare-and-swap (see `Queue::conflict`).
pub(crate) const CONFLICT_BACKOFF_MIN: Duration = Duration::from_millis(20);

pub struct Runtime {
    state: State,
    controllers: Vec<Arc<dyn Controller>>,
    health: Arc<Health>,
    drain: Duration,
}

impl Runtime {
    pub fn new(state: State) -> Self {
        Runtime {
            state,
            controllers: Vec::new(),
            health: Arc::default(),
            drain: Duration::from_secs(30),
        }
    }

    /// How long shutdown waits for running jobs before aborting them.
    pub fn set_drain_deadline(&mut self, d: Duration) {
        self.drain = d;
    }

    /// Replaces the crash accounting (its thresholds).
    pub fn set_health(&mut self, health: Arc<Health>) {
        self.health = health;
    }

    /// Crash counts and readiness, to report.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
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
        self.health.register(controller.name());
        self.controllers.push(controller);
        Ok(())
    }

    /// Runs every controller until `cancel` fires, then drains their jobs
    /// up to the deadline and aborts the rest; returns when all is stopped.
    pub async fn run(self, cancel: CancellationToken) {
        let tasks = TaskTracker::new();
        let abort = CancellationToken::new();
        let mut loops = JoinSet::new();
        for controller in self.controllers {
            let ctx = runner::Shared {
                state: self.state.clone(),
                cancel: cancel.clone(),
                tasks: tasks.clone(),
                abort: abort.clone(),
                health: self.health.clone(),
            };
            loops.spawn(runner::supervise(controller, ctx));
        }
        cancel.cancelled().await;
        tasks.close();
        let drained = tokio::time::timeout(self.drain, async {
            while loops.join_next().await.is_some() {}
            tasks.wait().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(jobs = tasks.len(), deadline = ?self.drain,
                "shutdown deadline passed; aborting what still runs");
            abort.cancel();
            // Aborted jobs only record that they were interrupted.
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while loops.join_next().await.is_some() {}
                tasks.wait().await;
            })
            .await;
        }
    }
}
