//! The loop of one controller: events and timers feed its keyed queue,
//! reconciles run as tasks (so a panic is caught as a `JoinError`), and a
//! supervisor restarts the loop itself should it ever panic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use omni_state::{State, StateError};
use tokio::sync::mpsc;
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::input::Keys;
use crate::queue::Queue;
use crate::{
    Action, BoxError, Context, Controller, Health, Poke, Trigger, BACKOFF_MAX, BACKOFF_MIN,
};

/// What every controller loop shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub state: State,
    pub cancel: CancellationToken,
    pub tasks: TaskTracker,
    pub abort: CancellationToken,
    pub health: Arc<Health>,
}

/// Runs the controller's loop until cancelled, restarting it with backoff
/// if it panics.
pub(crate) async fn supervise(controller: Arc<dyn Controller>, shared: Shared) {
    let name = controller.name();
    let mut backoff = BACKOFF_MIN;
    loop {
        let run = tokio::spawn(run_loop(controller.clone(), shared.clone()));
        match run.await {
            Ok(()) => break,
            Err(e) if e.is_panic() => {
                shared.health.crashed(name);
                tracing::error!(controller = name, panic = %panic_text(e.into_panic()),
                    restart_in = ?backoff, "controller loop panicked; restarting");
            }
            Err(_) => break,
        }
        tokio::select! {
            _ = shared.cancel.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    tracing::debug!(controller = name, "controller stopped");
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    match p.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "(not a string)".into()),
    }
}

type Outcome = Result<Action, BoxError>;

async fn run_loop(controller: Arc<dyn Controller>, shared: Shared) {
    let name = controller.name();
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Watch before the first listing, so nothing in between is missed.
    let mut forwarders = JoinSet::new();
    for input in controller.inputs() {
        let mut watch = shared.state.watch(input.namespace, input.kind);
        let (tx, state) = (tx.clone(), shared.state.clone());
        forwarders.spawn(async move {
            loop {
                let poke = match watch.next().await {
                    Ok(ev) => match input.keys(&state, &ev.resource).await {
                        Keys::Some(keys) => {
                            for k in keys {
                                let _ = tx.send(Poke::Key(k));
                            }
                            continue;
                        }
                        Keys::All => Poke::All,
                    },
                    Err(0) => break,
                    // Fell behind: only a re-list knows what changed.
                    Err(_) => Poke::All,
                };
                let _ = tx.send(poke);
            }
        });
    }
    let _ = tx.send(Poke::All);
    let ctx = Arc::new(Context {
        state: shared.state.clone(),
        trigger: Trigger(Some(tx.clone())),
        cancel: shared.cancel.clone(),
        tasks: shared.tasks.clone(),
        abort: shared.abort.clone(),
    });
    let mut queue = Queue::default();
    let mut running: JoinSet<Outcome> = JoinSet::new();
    let mut keys_of: HashMap<Id, String> = HashMap::new();
    let mut relist_backoff = BACKOFF_MIN;
    let limit = controller.concurrency().max(1);
    loop {
        while queue.running() < limit {
            let Some(key) = queue.start_next() else { break };
            shared.health.reconciled(name);
            let (c, ctx, k) = (controller.clone(), ctx.clone(), key.clone());
            let handle = running.spawn(async move { c.reconcile(&k, &ctx).await });
            keys_of.insert(handle.id(), key);
        }
        tokio::select! {
            _ = shared.cancel.cancelled() => break,
            Some(poke) = rx.recv() => match poke {
                Poke::Key(k) => queue.enqueue(k),
                Poke::All => match relist(name, &controller, &shared).await {
                    Ok(keys) => {
                        relist_backoff = BACKOFF_MIN;
                        keys.into_iter().for_each(|k| queue.enqueue(k));
                    }
                    Err(e) => {
                        tracing::warn!(controller = name, error = %e, retry_in = ?relist_backoff, "listing keys failed");
                        let tx = tx.clone();
                        let wait = relist_backoff;
                        tokio::spawn(async move {
                            tokio::time::sleep(wait).await;
                            let _ = tx.send(Poke::All);
                        });
                        relist_backoff = (relist_backoff * 2).min(BACKOFF_MAX);
                    }
                },
            },
            _ = std::future::poll_fn(|cx| queue.poll_timers(cx)), if queue.has_timers() => {}
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                let (id, outcome) = match done {
                    Ok((id, outcome)) => (id, Ok(outcome)),
                    Err(e) => (e.id(), Err(e)),
                };
                let Some(key) = keys_of.remove(&id) else { continue };
                finished(name, &shared.health, &mut queue, &key, outcome);
            }
        }
    }
    forwarders.abort_all();
    // Reconciles in flight finish (they are short) unless shutdown aborts.
    tokio::select! {
        _ = async { while running.join_next().await.is_some() {} } => {}
        _ = shared.abort.cancelled() => running.abort_all(),
    }
}

async fn relist(
    name: &'static str,
    controller: &Arc<dyn Controller>,
    shared: &Shared,
) -> Result<Vec<String>, BoxError> {
    shared.health.relisted(name);
    controller.keys(&shared.state).await
}

fn finished(
    name: &'static str,
    health: &Health,
    queue: &mut Queue,
    key: &str,
    outcome: Result<Outcome, tokio::task::JoinError>,
) {
    match outcome {
        Ok(Ok(Action::Requeue(d))) => queue.succeed(key, Some(d)),
        Ok(Ok(Action::AwaitChange)) => queue.succeed(key, None),
        // Optimistic concurrency at work, not a fault: another writer got
        // there first.
        Ok(Err(e)) if matches!(e.downcast_ref(), Some(StateError::Conflict { .. })) => {
            let retry_in = queue.conflict(key);
            tracing::debug!(controller = name, key, error = %e, ?retry_in, "reconcile lost a race; retrying");
        }
        Ok(Err(e)) => {
            let retry_in = queue.fail(key);
            tracing::warn!(controller = name, key, error = %e, ?retry_in, "reconcile failed");
        }
        Err(e) if e.is_panic() => {
            health.crashed(name);
            let retry_in = queue.fail(key);
            tracing::error!(controller = name, key, panic = %panic_text(e.into_panic()),
                ?retry_in, "reconcile panicked; retrying");
        }
        // Aborted: shutting down.
        Err(_) => queue.finish(key, None::<Duration>),
    }
}
