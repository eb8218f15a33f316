//! The etcd backup controller: decides which clusters are due (manual
//! request, interval or cron schedule), runs at most N backups at once and one per
//! cluster, and records each cluster's status.

mod chain_full;
pub mod data;
mod job;
pub mod members;
pub mod metrics;
mod recovery;
mod recovery_point;
pub mod schedule;
mod start;
mod uploads;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use omni_backup::BackupOptions;
use omni_resources::meta::ResourceKey;
use omni_resources::specs::backup::{
    BackupDataSpec, EtcdBackupOverallStatusSpec, EtcdBackupStatusSpec, EtcdManualBackupSpec,
};
use omni_resources::specs::backup_upload::EtcdBackupUploadSpec;
use omni_resources::specs::cluster::{ClusterMachineSpec, ClusterSpec};
use omni_resources::specs::machine::MachineSpec;
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Phase, Timestamp, LABEL_CLUSTER, NS_DEFAULT, NS_EPHEMERAL};
use omni_runtime::{Action, BoxError, Context, Controller, Input, SINGLETON};

use crate::cluster_finalizer::destroy_if_present;
use crate::continuous::Chains;
use crate::store::Stores;
use crate::waitlist::WaitList;
pub use recovery::INTERRUPTED;
pub use schedule::ScheduleSettings;
use start::Started;

/// Knobs of the backup controller.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    pub schedule: ScheduleSettings,
    /// How often stale S3 uploads are looked for (each cluster's own
    /// timer, not a tick, decides when its backup is due).
    pub tick: Duration,
    /// Backups running at once across all clusters.
    pub max_concurrent: usize,
    /// Longest a single backup may take.
    pub timeout: Duration,
    /// First delay before retrying a failed automatic backup; doubles per
    /// failure, capped at the cluster's interval.
    pub retry_backoff: Duration,
    pub options: BackupOptions,
}

impl Default for BackupSettings {
    fn default() -> Self {
        BackupSettings {
            schedule: ScheduleSettings {
                min_interval: Duration::from_secs(3600),
                max_interval: Duration::from_secs(24 * 3600),
                max_jitter: Duration::from_secs(600),
            },
            tick: Duration::from_secs(60),
            max_concurrent: 5,
            timeout: Duration::from_secs(30 * 60),
            retry_backoff: Duration::from_secs(30),
            options: BackupOptions::default(),
        }
    }
}

#[derive(Default)]
struct Memory {
    running: HashSet<String>,
    /// Newest backup per cluster, as far as this process knows.
    newest: HashMap<String, Timestamp>,
    /// Failed attempts in a row per cluster.
    failures: HashMap<String, u32>,
    recovered: bool,
    /// Interrupted attempts whose object could not be looked for yet.
    unconfirmed: HashMap<String, Timestamp>,
    /// Uploads journaled for another store were reported.
    warned_elsewhere: bool,
    /// Clusters due while the limit of running backups was reached.
    blocked: WaitList,
    /// The store's configuration as last seen in the overall status.
    store_seen: Option<(String, String, u32)>,
}

pub struct EtcdBackupController {
    stores: Stores,
    settings: BackupSettings,
    memory: Arc<Mutex<Memory>>,
    /// Serialises the work done for all clusters at once.
    global: tokio::sync::Mutex<()>,
    /// This run of the server (random), marking its upload journal entries.
    run: Arc<str>,
    metrics: metrics::BackupMetrics,
    /// Continuous backup's chains, which start from full backups.
    chains: Chains,
}

const NAME: &str = data::OWNER;

impl EtcdBackupController {
    pub fn new(stores: Stores, settings: BackupSettings) -> Self {
        EtcdBackupController {
            stores,
            settings,
            memory: Arc::default(),
            global: tokio::sync::Mutex::new(()),
            run: Arc::from(uuid::Uuid::new_v4().simple().to_string()),
            metrics: metrics::BackupMetrics::default(),
            chains: Chains::default(),
        }
    }

    /// Shares `chains` with the continuous backup controller.
    pub fn with_chains(mut self, chains: Chains) -> Self {
        self.chains = chains;
        self
    }

    /// Records into `metrics` (the server's, shared across leadership terms).
    pub fn with_metrics(mut self, metrics: metrics::BackupMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Newest backup time of a cluster: from the status, else the store.
    async fn newest_backup(
        &self,
        state: &omni_state::State,
        cluster: &str,
        st: &EtcdBackupStatusSpec,
    ) -> Result<Option<Timestamp>, String> {
        let known = self.memory().newest.get(cluster).copied();
        let from_status = (!st.lastbackuptime.is_zero()).then_some(st.lastbackuptime);
        if let Some(t) = known.max(from_status) {
            return Ok(Some(t));
        }
        let store = self
            .stores
            .of_cluster(state, cluster)
            .await
            .map_err(|e| e.to_string())?
            .primary
            .store?;
        let Some(data) = data::find(state, cluster)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let newest = store
            .list(&data.clusteruuid)
            .await
            .map_err(|e| e.to_string())?
            .first()
            .map(|o| Timestamp::from_unix(o.created_at_unix));
        if let Some(t) = newest {
            self.memory().newest.insert(cluster.to_string(), t);
        }
        Ok(newest)
    }
}

#[async_trait]
impl Controller for EtcdBackupController {
    fn name(&self) -> &'static str {
        NAME
    }

    fn inputs(&self) -> Vec<Input> {
        let memory = self.memory.clone();
        vec![
            Input::by_id(ClusterSpec::TYPE),
            Input::by_id(EtcdManualBackupSpec::TYPE),
            // Rare: a named store was added or changed.
            Input::every_key(omni_resources::specs::backup_store::EtcdBackupStoreSpec::TYPE),
            // A drill proves a backup restorable: the status says so.
            Input::by_id(omni_resources::specs::backup_drill::EtcdBackupDrillStatusSpec::TYPE),
            Input::by_label(ClusterMachineSpec::TYPE, LABEL_CLUSTER),
            Input::lookup(MachineSpec::TYPE, |state, machine| {
                Box::pin(async move { cluster_of_machine(&state, &machine.metadata.id).await })
            }),
            // The overall status changes with every backup; only a change
            // of the store's configuration concerns every cluster.
            Input::lookup(EtcdBackupOverallStatusSpec::TYPE, move |state, r| {
                let memory = memory.clone();
                Box::pin(async move {
                    let Ok(s) = r.spec_as::<EtcdBackupOverallStatusSpec>() else {
                        return Vec::new();
                    };
                    let seen = (
                        s.configurationname,
                        s.configurationerror,
                        s.configurationattempt,
                    );
                    {
                        let mut mem = memory.lock().unwrap_or_else(|e| e.into_inner());
                        if mem.store_seen.as_ref() == Some(&seen) {
                            return Vec::new();
                        }
                        mem.store_seen = Some(seen);
                    }
                    let mut keys = cluster_ids(&state).await.unwrap_or_default();
                    keys.push(SINGLETON.to_string());
                    keys
                })
            }),
        ]
    }

    fn outputs(&self) -> Vec<&'static str> {
        vec![
            EtcdBackupStatusSpec::TYPE,
            BackupDataSpec::TYPE,
            EtcdBackupUploadSpec::TYPE,
        ]
    }

    /// Clusters, and statuses whose cluster may be gone.
    async fn keys(&self, state: &omni_state::State) -> Result<Vec<String>, BoxError> {
        let mut keys: HashSet<String> = cluster_ids(state).await?.into_iter().collect();
        // The singleton key does the work for all clusters at once.
        keys.insert(SINGLETON.to_string());
        let statuses = state
            .list(
                NS_EPHEMERAL,
                EtcdBackupStatusSpec::TYPE,
                &LabelSelector::default(),
            )
            .await?;
        keys.extend(statuses.into_iter().map(|r| r.metadata.id));
        Ok(keys.into_iter().collect())
    }

    fn concurrency(&self) -> usize {
        8
    }

    async fn reconcile(&self, name: &str, ctx: &Context) -> Result<Action, BoxError> {
        if name == SINGLETON {
            return self.global(ctx).await;
        }
        self.recover_once(ctx).await?;
        // A deleted cluster waits for its running backup to end; then its
        // status goes (its backups and backup key stay).
        crate::cluster_finalizer::guard_cluster(&ctx.state, NAME, name, |c| {
            let (state, busy) = (
                ctx.state.clone(),
                self.memory().running.contains(&c.metadata.id),
            );
            async move {
                if busy {
                    return Ok(false);
                }
                destroy_if_present(
                    &state,
                    NS_EPHEMERAL,
                    EtcdBackupStatusSpec::TYPE,
                    &c.metadata.id,
                )
                .await?;
                Ok(true)
            }
        })
        .await?;
        let cluster = ctx
            .state
            .get_opt(&ResourceKey::new(NS_DEFAULT, ClusterSpec::TYPE, name))
            .await?;
        let Some(cluster) = cluster else {
            // Its status goes too (its backups stay); a running backup
            // pokes this key when it ends.
            if !self.memory().running.contains(name) {
                destroy_if_present(&ctx.state, NS_EPHEMERAL, EtcdBackupStatusSpec::TYPE, name)
                    .await?;
            }
            return Ok(Action::AwaitChange);
        };
        if cluster.metadata.phase != Phase::Running {
            return Ok(Action::AwaitChange);
        }
        let spec: ClusterSpec = cluster.spec_as()?;
        data::ensure(&ctx.state, name).await?;
        let st = ctx
            .state
            .get_spec::<EtcdBackupStatusSpec>(NS_EPHEMERAL, name)
            .await?
            .map(|(_, s)| s)
            .unwrap_or_default();
        self.record_drill(ctx, name, &st).await?;
        let manual = ctx
            .state
            .get_spec::<EtcdManualBackupSpec>(NS_EPHEMERAL, name)
            .await?
            .map(|(_, s)| s.backupat)
            .unwrap_or_default();
        let now = Timestamp::now();
        let mut next = Action::AwaitChange;
        match schedule::manual_wait(manual, &st, now) {
            Some(wait) if wait.is_zero() => {
                let started = self.start(ctx, name, false).await?;
                return Ok(self.after_start(started, next));
            }
            Some(wait) => next = Action::Requeue(wait),
            None => {}
        }
        if let Some(action) = self.full_for_chain(ctx, name, &st, &mut next).await? {
            return Ok(action);
        }
        let Some(cadence) = spec.backup_cadence() else {
            self.record_next_due(ctx, name, &st, None).await?;
            return Ok(next);
        };
        let newest = match self.newest_backup(&ctx.state, name, &st).await {
            Ok(newest) => newest,
            // No store yet: the store's status change wakes every cluster.
            Err(e) => {
                tracing::debug!(cluster = %name, error = %e, "automatic backup waits for the store");
                return Ok(next);
            }
        };
        let failures = self.memory().failures.get(name).copied().unwrap_or(0);
        let sched = &self.settings.schedule;
        let Some(due) = schedule::next_due(name, newest, &cadence, sched) else {
            tracing::debug!(cluster = %name, "backup schedule never fires again");
            self.record_next_due(ctx, name, &st, None).await?;
            return Ok(next);
        };
        let at = due.as_secs_f64().max(schedule::retry_at(
            st.lastbackupattempt,
            failures,
            self.settings.retry_backoff,
            schedule::retry_cap(&cadence, sched),
        ));
        self.record_next_due(ctx, name, &st, Some(at)).await?;
        let wait = at - now.as_secs_f64();
        if wait > 0.0 {
            let wait = Duration::from_secs_f64(wait);
            return Ok(match next {
                Action::Requeue(d) => Action::Requeue(d.min(wait)),
                Action::AwaitChange => Action::Requeue(wait),
            });
        }
        // A cluster whose members are still being created waits for them
        // (their events wake it) instead of failing its first backup.
        if members::control_plane_members(&ctx.state, name)
            .await?
            .is_empty()
        {
            tracing::debug!(cluster = %name, "automatic backup waits for control-plane members");
            return Ok(next);
        }
        let started = self.start(ctx, name, true).await?;
        Ok(self.after_start(started, next))
    }
}

impl EtcdBackupController {
    /// A cluster that waits for a slot is woken by a backup that ends; a
    /// tick later it looks again anyway, should the one woken before it
    /// have had nothing to start.
    fn after_start(&self, started: Started, next: Action) -> Action {
        match (started, next) {
            (Started::Blocked, Action::Requeue(d)) => Action::Requeue(d.min(self.settings.tick)),
            (Started::Blocked, Action::AwaitChange) => Action::Requeue(self.settings.tick),
            (_, next) => next,
        }
    }
}

/// The cluster a machine is a member of, if any.
async fn cluster_of_machine(state: &omni_state::State, machine: &str) -> Vec<String> {
    let key = ResourceKey::new(NS_DEFAULT, ClusterMachineSpec::TYPE, machine);
    match state.get_opt(&key).await {
        Ok(Some(cm)) => cm
            .metadata
            .labels
            .get(LABEL_CLUSTER)
            .cloned()
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

async fn cluster_ids(state: &omni_state::State) -> Result<Vec<String>, omni_state::StateError> {
    let all = state
        .list(NS_DEFAULT, ClusterSpec::TYPE, &LabelSelector::default())
        .await?;
    Ok(all.into_iter().map(|c| c.metadata.id).collect())
}
