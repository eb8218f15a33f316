//! The restore drill controller: for each cluster that asks for drills
//! (`spec.backupconfiguration.restoredrill`, or every cluster with the
//! server flag), restores its newest backup into a throwaway etcd
//! ([`run::drill`]) once per backup, or on the drill's own schedule
//! whenever backups happen ([`due`]), and publishes the result in
//! `EtcdBackupDrillStatuses`, its only output. One drill runs at a time; the
//! backup being drilled is leased so retention leaves it alone.

pub mod due;
pub mod guard;
pub mod run;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use omni_backup::parse_identity;
use omni_resources::duration::{format_go_duration, ProtoDuration};
use omni_resources::specs::backup::{status, EtcdBackupStatusSpec};
use omni_resources::specs::backup_drill::EtcdBackupDrillStatusSpec;
use omni_resources::specs::cluster::ClusterSpec;
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Phase, Resource, Timestamp, NS_DEFAULT, NS_EPHEMERAL};
use omni_runtime::{Action, BoxError, Context, Controller, Input};
use omni_state::State;

use crate::backup::data;
use crate::continuous::pitr::{self, Chain, PitrError, PitrReport};
use crate::interest::Interest;
use crate::leases::BackupLeases;
use crate::retention::keep::backup_id;
use crate::store::Stores;
use crate::waitlist::WaitList;
use due::DrillMode;
pub use run::{DrillError, DrillReport, DrillSettings};

pub const NAME: &str = "EtcdBackupDrillController";

#[derive(Default)]
struct Memory {
    /// The cluster being drilled.
    running: Option<String>,
    recovered: bool,
    /// Clusters whose drill was due while another one ran.
    blocked: WaitList,
}

pub struct EtcdBackupDrillController {
    stores: Stores,
    leases: BackupLeases,
    settings: DrillSettings,
    memory: Arc<Mutex<Memory>>,
    /// Clusters that drill: only their backups wake us.
    drilled: Interest,
}

/// What a cluster's drill waits for.
enum Next {
    Start(Box<Due>),
    /// A scheduled drill, due after this long.
    Wait(Duration),
    /// Nothing to drill until something changes.
    Idle,
}

/// A drill to start: which backup, and what is needed to read it.
struct Due {
    cluster: String,
    backup: String,
    key: String,
    data: omni_resources::specs::backup::BackupDataSpec,
    /// The stores to read from, in order (primary, secondary).
    copies: Vec<(String, omni_backup::BackupStore)>,
    /// For a continuous cluster: the backup's delta chain, and which of
    /// `copies` holds it. The drill replays it to prove the newest point.
    chain: Option<(usize, Chain)>,
}

impl EtcdBackupDrillController {
    pub fn new(stores: Stores, leases: BackupLeases, settings: DrillSettings) -> Self {
        EtcdBackupDrillController {
            stores,
            leases,
            settings,
            memory: Arc::default(),
            drilled: Interest::default(),
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a restart: a `running` status was interrupted, and a temp dir
    /// left behind is stale.
    async fn recover(&self, ctx: &Context) -> Result<(), BoxError> {
        if self.memory().recovered {
            return Ok(());
        }
        let swept = guard::sweep_stale(&self.settings.work_dir);
        if swept > 0 {
            tracing::warn!(
                dirs = swept,
                "removed drill dirs left by an interrupted drill"
            );
        }
        for r in list(&ctx.state, EtcdBackupDrillStatusSpec::TYPE, NS_EPHEMERAL).await? {
            if r.spec_as::<EtcdBackupDrillStatusSpec>()
                .is_ok_and(|s| s.status == status::RUNNING)
            {
                write(&ctx.state, &r.metadata.id, |s| {
                    s.status = status::ERROR;
                    s.error = "drill interrupted: the server stopped while it ran".into();
                })
                .await?;
            }
        }
        self.memory().recovered = true;
        Ok(())
    }

    /// The cluster's newest backup, if a drill of it is due now: a new
    /// backup (after-each-backup mode), or the drill's scheduled time.
    async fn due(
        &self,
        ctx: &Context,
        cluster: &Resource,
        mode: &DrillMode,
    ) -> Result<Next, BoxError> {
        let name = &cluster.metadata.id;
        let prev = ctx
            .state
            .get_spec::<EtcdBackupDrillStatusSpec>(NS_EPHEMERAL, name)
            .await?
            .map(|(_, s)| s);
        let scheduled = matches!(mode, DrillMode::Scheduled(_));
        match mode {
            DrillMode::Off => return Ok(Next::Idle),
            DrillMode::Scheduled(cadence) => {
                let last = prev.as_ref().map(|s| s.startedat).unwrap_or_default();
                let Some(at) = due::next_drill(cadence, last) else {
                    return Ok(Next::Idle);
                };
                let wait = due::wait_until(at, Timestamp::now());
                if !wait.is_zero() {
                    return Ok(Next::Wait(wait));
                }
            }
            DrillMode::AfterEachBackup => {
                let backing_up = ctx
                    .state
                    .get_spec::<EtcdBackupStatusSpec>(NS_EPHEMERAL, name)
                    .await?
                    .is_some_and(|(_, s)| s.status == status::RUNNING);
                if backing_up {
                    return Ok(Next::Idle); // a newer backup is coming; drill that one
                }
            }
        }
        let Some(data) = data::find(&ctx.state, name).await? else {
            return Ok(Next::Idle);
        };
        let spec = cluster.spec_as::<omni_resources::specs::cluster::ClusterSpec>()?;
        let stores = self.stores.for_cluster(&ctx.state, Some(&spec)).await;
        let copies: Vec<(String, omni_backup::BackupStore)> = stores
            .all()
            .filter_map(|n| Some((n.name.clone(), n.store.clone().ok()?)))
            .collect();
        let mut newest = None;
        let mut failed = None;
        let mut listed_in = 0;
        for (i, (_, store)) in copies.iter().enumerate() {
            match store.list(&data.clusteruuid).await {
                Ok(list) => {
                    newest = list.into_iter().next();
                    failed = None;
                    listed_in = i;
                    break;
                }
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            return Err(e.into()); // retried with the runtime's backoff
        }
        let Some(newest) = newest else {
            return Ok(Next::Idle);
        };

        let backup = backup_id(name, newest.created_at_unix);
        // After each backup: once per backup (ok or not: no retry loop).
        // On a schedule: the newest backup again, however often drilled.
        if !scheduled && prev.is_some_and(|p| p.backup == backup) {
            return Ok(Next::Idle);
        }
        let mut chain = None;
        if let Some(interval) = spec
            .backupconfiguration
            .as_ref()
            .and_then(|b| b.delta_interval())
        {
            let store = &copies[listed_in].1;
            let segments = store
                .list_chain(&data.clusteruuid, newest.created_at_unix)
                .await?;
            let found = pitr::chains(std::slice::from_ref(&newest), segments).pop();
            let has_segments = found.as_ref().is_some_and(|c| !c.segments.is_empty());
            let now = Timestamp::now();
            if let Some(wait) =
                due::chain_wait(has_segments, mode, interval, newest.created_at_unix, now)
            {
                return Ok(Next::Wait(wait));
            }
            chain = found.map(|c| (listed_in, c));
        }
        Ok(Next::Start(Box::new(Due {
            cluster: name.clone(),
            backup,
            key: newest.key,
            data,
            copies,
            chain,
        })))
    }

    async fn start(&self, ctx: &Context, due: Due) -> Result<(), BoxError> {
        let started = Timestamp::now();
        let backup = due.backup.clone();
        write(&ctx.state, &due.cluster, |s| {
            *s = EtcdBackupDrillStatusSpec {
                status: status::RUNNING,
                backup: backup.clone(),
                startedat: started,
                ..EtcdBackupDrillStatusSpec::default()
            };
        })
        .await?;
        {
            let mut mem = self.memory();
            mem.running = Some(due.cluster.clone());
            mem.blocked.remove(&due.cluster);
        }
        let lease = self.leases.lease(&due.key);
        let settings = self.settings.clone();
        let state = ctx.state.clone();
        let trigger = ctx.trigger.clone();
        let abort = ctx.abort.clone();
        let memory = self.memory.clone();
        ctx.tasks.spawn(async move {
            let clock = Instant::now();
            tracing::info!(cluster = %due.cluster, backup = %due.backup, "restore drill started");
            let result = tokio::select! {
                r = tokio::time::timeout(settings.timeout, drill_one(&due, &settings)) => {
                    r.unwrap_or_else(|_| Err(DrillError::Timeout(format_go_duration(settings.timeout))))
                }
                // Past the shutdown deadline: dropping the drill cleans up;
                // the status stays `running` and is marked interrupted at
                // the next start.
                _ = abort.cancelled() => return,
            };
            drop(lease);
            let took = clock.elapsed();
            match &result {
                Ok((r, point, store)) => {
                    tracing::info!(cluster = %due.cluster, backup = %due.backup, keys = r.keys,
                    revision = r.revision, db_size = r.db_size, took = ?took, %store,
                    segments = point.as_ref().map_or(0, |p| p.segments_read), "restore drill ok")
                }
                Err(e) => {
                    tracing::warn!(cluster = %due.cluster, backup = %due.backup, error = %e, "restore drill failed")
                }
            }
            let recorded = write(&state, &due.cluster, |s| {
                s.duration = ProtoDuration::from_std(took);
                s.finishedat = Timestamp::now();
                match &result {
                    Ok((r, point, store)) => {
                        s.status = status::OK;
                        if let Some(p) = point {
                            s.pointrevision = p.revision;
                            s.pointat = Timestamp::from_unix_ms(p.point_ms);
                            s.segments = p.segments_read;
                        }
                        s.error.clear();
                        if due.copies.len() > 1 {
                            s.store = store.clone();
                        }
                        s.keys = r.keys;
                        s.revision = r.revision;
                        s.dbsize = r.db_size;
                    }
                    Err(e) => {
                        s.status = status::ERROR;
                        s.error = e.to_string();
                    }
                }
            })
            .await;
            if let Err(e) = recorded {
                tracing::warn!(cluster = %due.cluster, error = %e, "cannot record drill result");
            }
            let blocked = {
                let mut mem = memory.lock().unwrap_or_else(|e| e.into_inner());
                mem.running = None;
                mem.blocked.take(1)
            };
            trigger.poke_key(&due.cluster);
            for c in blocked {
                trigger.poke_key(&c);
            }
        });
        Ok(())
    }
}

/// Drills the first copy that downloads intact; returns the point proven
/// (for a chain) and the store used.
async fn drill_one(
    due: &Due,
    settings: &DrillSettings,
) -> Result<(DrillReport, Option<PitrReport>, String), DrillError> {
    let identity = parse_identity(&data::identity_secret(&due.data))
        .map_err(|e| DrillError::Check(format!("backup key of the cluster is unusable: {e}")))?;
    let mut result = Err(DrillError::Check("no store holds the backup".into()));
    for (i, (name, store)) in due.copies.iter().enumerate() {
        result = match &due.chain {
            Some((at, chain)) if *at == i && !chain.segments.is_empty() => {
                pitr::drill_chain(store, chain, &identity, settings)
                    .await
                    .map(|(r, point)| (r, Some(point), name.clone()))
                    .map_err(|e| match e {
                        PitrError::Drill(d) => d,
                        other => DrillError::Chain(other.to_string()),
                    })
            }
            _ => run::drill(store, &due.key, &identity, settings)
                .await
                .map(|r| (r, None, name.clone())),
        };
        match &result {
            // Only a copy that is missing or broken is worth another try.
            Err(DrillError::Download(e)) if due.copies.len() > 1 => {
                tracing::warn!(cluster = %due.cluster, store = %name, error = %e, "drill: copy unusable; trying the next store");
            }
            _ => break,
        }
    }
    result
}

async fn list(state: &State, kind: &str, ns: &str) -> Result<Vec<Resource>, BoxError> {
    Ok(state.list(ns, kind, &LabelSelector::default()).await?)
}

async fn write(
    state: &State,
    cluster: &str,
    f: impl FnMut(&mut EtcdBackupDrillStatusSpec),
) -> Result<(), omni_state::StateError> {
    state
        .modify::<EtcdBackupDrillStatusSpec>(NS_EPHEMERAL, cluster, NAME, f)
        .await
        .map(|_| ())
}

#[async_trait]
impl Controller for EtcdBackupDrillController {
    fn name(&self) -> &'static str {
        NAME
    }

    fn inputs(&self) -> Vec<Input> {
        vec![
            Input::by_id(ClusterSpec::TYPE),
            self.drilled.by_id(EtcdBackupStatusSpec::TYPE),
        ]
    }

    fn outputs(&self) -> Vec<&'static str> {
        vec![EtcdBackupDrillStatusSpec::TYPE]
    }

    /// Clusters, and statuses whose cluster may be gone.
    async fn keys(&self, state: &State) -> Result<Vec<String>, BoxError> {
        let mut keys: HashSet<String> = HashSet::new();
        for (kind, ns) in [
            (ClusterSpec::TYPE, NS_DEFAULT),
            (EtcdBackupDrillStatusSpec::TYPE, NS_EPHEMERAL),
        ] {
            keys.extend(
                list(state, kind, ns)
                    .await?
                    .into_iter()
                    .map(|r| r.metadata.id),
            );
        }
        Ok(keys.into_iter().collect())
    }

    /// One drill at a time: keys run one by one, so the check of the
    /// running drill and its start cannot race.
    fn concurrency(&self) -> usize {
        1
    }

    async fn reconcile(&self, name: &str, ctx: &Context) -> Result<Action, BoxError> {
        self.recover(ctx).await?;
        let running = self.memory().running.clone();
        let busy = running.as_deref() == Some(name);
        // A deleted cluster waits for its drill to end and its status to go.
        crate::cluster_finalizer::guard_cluster(&ctx.state, NAME, name, |c| {
            let state = ctx.state.clone();
            async move {
                if busy {
                    return Ok(false);
                }
                let kind = EtcdBackupDrillStatusSpec::TYPE;
                crate::cluster_finalizer::destroy_if_present(
                    &state,
                    NS_EPHEMERAL,
                    kind,
                    &c.metadata.id,
                )
                .await?;
                Ok(true)
            }
        })
        .await?;
        let cluster = ctx
            .state
            .get_opt(&omni_resources::meta::ResourceKey::new(
                NS_DEFAULT,
                ClusterSpec::TYPE,
                name,
            ))
            .await?;
        let mode = cluster
            .as_ref()
            .and_then(|c| c.spec_as::<ClusterSpec>().ok())
            .map(|s| DrillMode::of(&s, self.settings.all_clusters))
            .unwrap_or(DrillMode::Off);
        self.drilled.mark(name, !mode.is_off());
        let Some(cluster) = cluster else {
            if !busy {
                let kind = EtcdBackupDrillStatusSpec::TYPE;
                crate::cluster_finalizer::destroy_if_present(&ctx.state, NS_EPHEMERAL, kind, name)
                    .await?;
            }
            return Ok(Action::AwaitChange);
        };
        if cluster.metadata.phase != Phase::Running {
            return Ok(Action::AwaitChange);
        }
        if mode.is_off() {
            return Ok(Action::AwaitChange);
        }
        if busy {
            // Its drill pokes it when it ends.
            return Ok(Action::AwaitChange);
        }
        let mut next = self.settings.tick;
        match self.due(ctx, &cluster, &mode).await {
            // One drill at a time: the running one wakes the cluster that
            // waited longest when it ends (the tick covers a lost wake-up).
            Ok(Next::Start(_)) if running.is_some() => self.memory().blocked.push(name),
            Ok(Next::Start(due)) => self.start(ctx, *due).await?,
            Ok(Next::Wait(wait)) => next = next.min(wait),
            Ok(Next::Idle) => {}
            Err(e) => {
                tracing::warn!(cluster = %name, error = %e, "cannot look for a backup to drill")
            }
        }
        // New backups wake us through the backup status; the tick covers
        // a store that became usable, and a scheduled drill's time.
        Ok(Action::Requeue(next))
    }
}
