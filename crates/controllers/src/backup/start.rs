//! Starting backups: the work done once for all clusters before any
//! starts, and one cluster's backup as a tracked background job.

use omni_resources::specs::backup::status;
use omni_resources::Timestamp;
use omni_runtime::{Action, BoxError, Context};

use super::metrics::{FailureReason, Trigger};
use super::{job, EtcdBackupController, INTERRUPTED};

impl EtcdBackupController {
    /// Recovery of what an earlier run left, once, before this run's
    /// first backup (serialised: clusters reconcile concurrently).
    pub(super) async fn recover_once(&self, ctx: &Context) -> Result<(), BoxError> {
        if self.memory().recovered {
            return Ok(());
        }
        let _one = self.global.lock().await;
        self.recover_interrupted(ctx).await
    }

    /// The work for all clusters at once, on the singleton key: recovery,
    /// then stale uploads settled every tick (and when the store changed).
    pub(super) async fn global(&self, ctx: &Context) -> Result<Action, BoxError> {
        self.recover_once(ctx).await?;
        let _one = self.global.lock().await;
        self.settle(ctx).await?;
        Ok(Action::Requeue(self.settings.tick))
    }

    /// Starts a backup of `cluster` unless one runs or the limit is reached.
    pub(super) async fn start(
        &self,
        ctx: &Context,
        cluster: &str,
        automatic: bool,
    ) -> Result<Started, BoxError> {
        if ctx.cancel.is_cancelled() {
            return Ok(Started::No);
        }
        let stores = self.stores.of_cluster(&ctx.state, cluster).await?;
        let store = match stores.primary.store {
            Ok(s) => s,
            Err(e) => {
                if !automatic {
                    // Consume the manual request with a clear error.
                    self.metrics
                        .failed(Trigger::Manual, FailureReason::StoreError);
                    let at = Timestamp::now();
                    job::set_status(&ctx.state, cluster, |s| {
                        s.status = status::ERROR;
                        s.error = e.clone();
                        s.lastbackupattempt = at;
                    })
                    .await?;
                }
                return Ok(Started::No);
            }
        };
        let at = {
            let mut mem = self.memory();
            if mem.running.contains(cluster) {
                return Ok(Started::No);
            }
            if mem.running.len() >= self.settings.max_concurrent {
                // A backup that ends wakes the cluster that waited longest.
                mem.blocked.push(cluster);
                return Ok(Started::Blocked);
            }
            mem.running.insert(cluster.to_string());
            mem.blocked.remove(cluster);
            // Two backups in one second would share a key: step past the last.
            let mut at = Timestamp::now();
            if let Some(last) = mem.newest.get(cluster) {
                if at.seconds <= last.seconds {
                    at = Timestamp::from_unix(last.seconds + 1);
                }
            }
            at
        };
        let job = job::Job {
            state: ctx.state.clone(),
            store,
            cluster: cluster.to_string(),
            at,
            timeout: self.settings.timeout,
            options: self.settings.options.clone(),
            run: self.run.clone(),
            trigger: Trigger::of(automatic),
            metrics: self.metrics.clone(),
            chains: self.chains.clone(),
        };
        let memory = self.memory.clone();
        let slots = self.settings.max_concurrent;
        let metrics = self.metrics.clone();
        let trigger = ctx.trigger.clone();
        let abort = ctx.abort.clone();
        let state = ctx.state.clone();
        let cluster = cluster.to_string();
        ctx.tasks.spawn(async move {
            let result = tokio::select! {
                r = job.run() => Some(r),
                // Past the shutdown deadline: dropping the job aborts its
                // upload; the status says interrupted.
                _ = abort.cancelled() => None,
            };
            if result.is_none() {
                tracing::warn!(%cluster, "backup aborted at shutdown");
                metrics.failed(Trigger::of(automatic), FailureReason::Interrupted);
                let marked = job::set_status(&state, &cluster, |s| {
                    s.status = status::ERROR;
                    s.error = INTERRUPTED.into();
                })
                .await;
                if let Err(e) = marked {
                    tracing::warn!(%cluster, error = %e, "cannot record the interrupted backup");
                }
            }
            let blocked = {
                let mut mem = memory.lock().unwrap_or_else(|e| e.into_inner());
                mem.running.remove(&cluster);
                match result {
                    Some(Some(t)) => {
                        mem.failures.remove(&cluster);
                        let newest = mem.newest.entry(cluster.clone()).or_insert(t);
                        *newest = (*newest).max(t);
                    }
                    Some(None) => *mem.failures.entry(cluster.clone()).or_insert(0) += 1,
                    None => {}
                }
                let free = slots.saturating_sub(mem.running.len());
                mem.blocked.take(free)
            };
            trigger.poke_key(&cluster);
            for c in blocked {
                trigger.poke_key(&c);
            }
        });
        Ok(Started::Yes)
    }
}

/// What [`EtcdBackupController::start`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Started {
    Yes,
    /// Nothing to do (already running, no store, shutting down).
    No,
    /// Every slot is taken: the cluster waits its turn.
    Blocked,
}
