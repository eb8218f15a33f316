//! The etcd backup controller: decides which clusters are due (manual
//! request or interval), runs at most N backups at once and one per
//! cluster, and records each cluster's status.

pub mod data;
mod job;
pub mod members;
mod recovery;
pub mod schedule;
mod uploads;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use omni_backup::BackupOptions;
use omni_resources::specs::backup::{
    status, BackupDataSpec, EtcdBackupStatusSpec, EtcdManualBackupSpec,
};
use omni_resources::specs::backup_upload::EtcdBackupUploadSpec;
use omni_resources::specs::cluster::{ClusterMachineSpec, ClusterSpec};
use omni_resources::specs::machine::MachineSpec;
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Phase, Timestamp, NS_DEFAULT, NS_EPHEMERAL};
use omni_runtime::{Action, BoxError, Context, Controller, Input};

use crate::store::Stores;
pub use recovery::INTERRUPTED;
pub use schedule::ScheduleSettings;

/// Knobs of the backup controller.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    pub schedule: ScheduleSettings,
    /// Longest sleep between two looks at the schedule.
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
    newest: HashMap<String, i64>,
    /// Failed attempts in a row per cluster.
    failures: HashMap<String, u32>,
    recovered: bool,
    /// Interrupted attempts whose object could not be looked for yet.
    unconfirmed: HashMap<String, Timestamp>,
    /// Uploads journaled for another store were reported.
    warned_elsewhere: bool,
}

pub struct EtcdBackupController {
    stores: Stores,
    settings: BackupSettings,
    memory: Arc<Mutex<Memory>>,
    /// This run of the server (random), marking its upload journal entries.
    run: Arc<str>,
}

const NAME: &str = data::OWNER;

impl EtcdBackupController {
    pub fn new(stores: Stores, settings: BackupSettings) -> Self {
        EtcdBackupController {
            stores,
            settings,
            memory: Arc::default(),
            run: Arc::from(uuid::Uuid::new_v4().simple().to_string()),
        }
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
    ) -> Result<Option<i64>, String> {
        let known = self.memory().newest.get(cluster).copied();
        let from_status = (!st.lastbackuptime.is_zero()).then_some(st.lastbackuptime.seconds);
        if let Some(t) = known.max(from_status) {
            return Ok(Some(t));
        }
        let store = self.stores.current()?;
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
            .map(|o| o.created_at_unix);
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
        vec![
            Input::kind(ClusterSpec::TYPE),
            Input::kind(EtcdManualBackupSpec::TYPE),
            Input::kind(ClusterMachineSpec::TYPE),
            Input::kind(MachineSpec::TYPE),
            Input::kind(omni_resources::specs::backup::EtcdBackupOverallStatusSpec::TYPE),
        ]
    }

    fn outputs(&self) -> Vec<&'static str> {
        vec![
            EtcdBackupStatusSpec::TYPE,
            BackupDataSpec::TYPE,
            EtcdBackupUploadSpec::TYPE,
        ]
    }

    async fn reconcile(&self, ctx: &Context) -> Result<Action, BoxError> {
        self.recover_interrupted(ctx).await?;
        self.settle(ctx).await?;
        // A deleted cluster waits for its running backup to end; then its
        // status goes (its backups and backup key stay).
        crate::cluster_finalizer::guard_with_status(
            &ctx.state,
            NAME,
            EtcdBackupStatusSpec::TYPE,
            |c| self.memory().running.contains(c),
        )
        .await?;
        let now = Timestamp::now();
        let mut next_wake = self.settings.tick;
        let clusters = ctx
            .state
            .list(NS_DEFAULT, ClusterSpec::TYPE, &LabelSelector::default())
            .await?;
        let names: HashSet<String> = clusters.iter().map(|c| c.metadata.id.clone()).collect();
        // Statuses of clusters that are gone go too (their backups stay).
        for r in ctx
            .state
            .list(
                NS_EPHEMERAL,
                EtcdBackupStatusSpec::TYPE,
                &LabelSelector::default(),
            )
            .await?
        {
            if !names.contains(&r.metadata.id) && !self.memory().running.contains(&r.metadata.id) {
                ctx.state.destroy(&r.key()).await?;
            }
        }
        for cluster in clusters {
            if cluster.metadata.phase != Phase::Running {
                continue;
            }
            let name = cluster.metadata.id.clone();
            let spec: ClusterSpec = cluster.spec_as()?;
            data::ensure(&ctx.state, &name).await?;
            let st = ctx
                .state
                .get_spec::<EtcdBackupStatusSpec>(NS_EPHEMERAL, &name)
                .await?
                .map(|(_, s)| s)
                .unwrap_or_default();
            let manual = ctx
                .state
                .get_spec::<EtcdManualBackupSpec>(NS_EPHEMERAL, &name)
                .await?
                .map(|(_, s)| s.backupat)
                .unwrap_or_default();
            let manual_due = match schedule::manual_wait(manual, &st, now) {
                Some(wait) if wait.is_zero() => true,
                Some(wait) => {
                    next_wake = next_wake.min(wait);
                    false
                }
                None => false,
            };
            let mut due = manual_due;
            if !due {
                if let Some(interval) = spec.backup_interval() {
                    match self.newest_backup(&ctx.state, &name, &st).await {
                        Ok(newest) => {
                            let failures = self.memory().failures.get(&name).copied().unwrap_or(0);
                            let at = schedule::next_automatic(
                                &name,
                                newest,
                                interval,
                                &self.settings.schedule,
                            )
                            .max(schedule::retry_at(
                                st.lastbackupattempt,
                                failures,
                                self.settings.retry_backoff,
                                interval,
                            ));
                            let wait = at - now.as_secs_f64();
                            if wait <= 0.0 {
                                due = true;
                            } else {
                                next_wake = next_wake.min(Duration::from_secs_f64(wait));
                            }
                        }
                        // No store yet: the store controller's status change wakes us.
                        Err(e) => {
                            tracing::debug!(cluster = %name, error = %e, "automatic backup waits for the store")
                        }
                    }
                }
            }
            if due {
                self.start(ctx, &name, !manual_due).await?;
            }
        }
        Ok(Action::Requeue(next_wake))
    }
}

impl EtcdBackupController {
    /// Starts a backup of `cluster` unless one runs or the limit is reached.
    async fn start(&self, ctx: &Context, cluster: &str, automatic: bool) -> Result<(), BoxError> {
        let store = match self.stores.current() {
            Ok(s) => s,
            Err(e) => {
                if !automatic {
                    // Consume the manual request with a clear error.
                    let at = Timestamp::now();
                    job::set_status(&ctx.state, cluster, |s| {
                        s.status = status::ERROR;
                        s.error = e.clone();
                        s.lastbackupattempt = at;
                    })
                    .await?;
                }
                return Ok(());
            }
        };
        let at = {
            let mut mem = self.memory();
            if mem.running.contains(cluster) || mem.running.len() >= self.settings.max_concurrent {
                return Ok(());
            }
            mem.running.insert(cluster.to_string());
            // Two backups in one second would share a key: step past the last.
            let mut at = Timestamp::now();
            if let Some(last) = mem.newest.get(cluster) {
                if at.seconds <= *last {
                    at = Timestamp::from_unix(last + 1);
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
        };
        let memory = self.memory.clone();
        let trigger = ctx.trigger.clone();
        let cancel = ctx.cancel.clone();
        let cluster = cluster.to_string();
        tokio::spawn(async move {
            let result = tokio::select! {
                r = job.run() => Some(r),
                // Dropping the job aborts its upload; the status stays
                // `running` and is marked interrupted at the next start.
                _ = cancel.cancelled() => None,
            };
            let mut mem = memory.lock().unwrap_or_else(|e| e.into_inner());
            mem.running.remove(&cluster);
            match result {
                Some(Some(t)) => {
                    mem.failures.remove(&cluster);
                    let newest = mem.newest.entry(cluster).or_insert(t);
                    *newest = (*newest).max(t);
                }
                Some(None) => *mem.failures.entry(cluster).or_insert(0) += 1,
                None => {}
            }
            drop(mem);
            trigger.poke();
        });
        Ok(())
    }
}
