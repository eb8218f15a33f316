//! Continuous backup: for each cluster with `backupconfiguration.continuous`,
//! a chain of delta segments after each full backup (see
//! [`omni_backup::delta`]), and point-in-time restore from them ([`pitr`]).
//!
//! The backup controller reads the cluster's revision just before each of
//! its full snapshots and hands it here ([`Chains::full_done`]); this
//! controller then ends the previous chain and starts the new one. A chain
//! that breaks, or whose member set changed, asks the backup controller
//! for a full backup ([`Chains::needs_full`]) and a new chain starts from
//! that. A cluster without `continuous` costs nothing here: no entry, no
//! task, no connection.

mod chains;
pub mod pitr;

use std::time::Duration;

use async_trait::async_trait;
use omni_backup::delta::{run_chain, ChainProgress, ChainSettings, MAX_SEGMENT_BYTES};
use omni_backup::{parse_recipient, BackupStore, MemberEndpoint};
use omni_resources::meta::ResourceKey;
use omni_resources::specs::cluster::{ClusterMachineSpec, ClusterSpec};
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Phase, LABEL_CLUSTER, NS_DEFAULT};
use omni_runtime::{Action, BoxError, Context, Controller, Input};
use tokio::sync::{oneshot, watch};

use chains::{member_set, Running};
pub use chains::{Base, ChainStatus, Chains};

use crate::backup::data;
use crate::backup::members::control_plane_members;
use crate::store::Stores;

const NAME: &str = "EtcdContinuousBackupController";

/// Runs one chain per continuously backed-up cluster.
pub struct ContinuousBackupController {
    stores: Stores,
    chains: Chains,
}

impl ContinuousBackupController {
    pub fn new(stores: Stores, chains: Chains) -> Self {
        ContinuousBackupController { stores, chains }
    }
}

/// What to do for one cluster.
enum Plan {
    Nothing,
    Start(Base, Option<oneshot::Sender<()>>),
    WantFull(Option<oneshot::Sender<()>>),
}

#[async_trait]
impl Controller for ContinuousBackupController {
    fn name(&self) -> &'static str {
        NAME
    }

    fn inputs(&self) -> Vec<Input> {
        vec![
            Input::by_id(ClusterSpec::TYPE),
            // A member added or removed ends the chain.
            Input::by_label(ClusterMachineSpec::TYPE, LABEL_CLUSTER),
        ]
    }

    fn outputs(&self) -> Vec<&'static str> {
        Vec::new()
    }

    async fn keys(&self, state: &omni_state::State) -> Result<Vec<String>, BoxError> {
        let all = state
            .list(NS_DEFAULT, ClusterSpec::TYPE, &LabelSelector::default())
            .await?;
        Ok(all.into_iter().map(|c| c.metadata.id).collect())
    }

    fn concurrency(&self) -> usize {
        4
    }

    async fn reconcile(&self, name: &str, ctx: &Context) -> Result<Action, BoxError> {
        self.chains.lock().own = ctx.trigger.clone();
        let cluster = ctx
            .state
            .get_opt(&ResourceKey::new(NS_DEFAULT, ClusterSpec::TYPE, name))
            .await?;
        let interval = match &cluster {
            Some(c) if c.metadata.phase == Phase::Running && !ctx.cancel.is_cancelled() => c
                .spec_as::<ClusterSpec>()?
                .backupconfiguration
                .and_then(|b| b.delta_interval()),
            _ => None,
        };
        let Some(interval) = interval else {
            // Off: the running chain stores what it has and ends.
            if let Some(mut e) = self.chains.lock().clusters.remove(name) {
                if let Some(stop) = e.running.as_mut().and_then(|r| r.stop.take()) {
                    let _ = stop.send(());
                }
            }
            return Ok(Action::AwaitChange);
        };
        let members = control_plane_members(&ctx.state, name).await?;
        let plan = self.plan(name, &members);
        match plan {
            Plan::Nothing => {}
            Plan::WantFull(stop) => {
                if let Some(stop) = stop {
                    tracing::info!(cluster = %name, "etcd members changed: the chain ends, a full backup starts a new one");
                    let _ = stop.send(());
                }
                self.chains.lock().backup.poke_key(name);
            }
            Plan::Start(base, stop) => {
                if let Some(stop) = stop {
                    let _ = stop.send(());
                }
                if let Err(e) = self.start(ctx, name, base, interval, members).await {
                    tracing::warn!(cluster = %name, error = %e, "cannot start a delta chain");
                    let mut inner = self.chains.lock();
                    if let Some(entry) = inner.clusters.get_mut(name) {
                        entry.last_error = Some(e.clone());
                        entry.needs_full = true;
                    }
                    inner.backup.poke_key(name);
                }
            }
        }
        Ok(Action::AwaitChange)
    }
}

impl ContinuousBackupController {
    fn plan(&self, name: &str, members: &[MemberEndpoint]) -> Plan {
        let mut inner = self.chains.lock();
        let entry = inner.clusters.entry(name.to_string()).or_default();
        if let Some(base) = entry.pending.take() {
            if let Some(r) = &entry.running {
                entry.last = Some(*r.progress.borrow());
            }
            let stop = entry.running.take().and_then(|mut r| r.stop.take());
            return Plan::Start(base, stop);
        }
        match &mut entry.running {
            Some(r) if r.members != member_set(members) => {
                let stop = r.stop.take();
                entry.running = None;
                entry.needs_full = true;
                Plan::WantFull(stop)
            }
            Some(_) => Plan::Nothing,
            None => {
                entry.needs_full = true;
                Plan::WantFull(None)
            }
        }
    }

    async fn start(
        &self,
        ctx: &Context,
        name: &str,
        base: Base,
        interval: Duration,
        members: Vec<MemberEndpoint>,
    ) -> Result<(), String> {
        // The chain lives beside its full backup, in the cluster's primary store.
        let store: BackupStore = self
            .stores
            .of_cluster(&ctx.state, name)
            .await
            .map_err(|e| e.to_string())?
            .primary
            .store?;
        let data = data::find(&ctx.state, name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the cluster has no backup key yet")?;
        let recipient = parse_recipient(&data.agerecipient).map_err(|e| e.to_string())?;
        let settings = ChainSettings {
            cluster_uuid: data.clusteruuid.clone(),
            full_unix: base.full_unix,
            base_rev: base.base_rev,
            interval,
            max_bytes: MAX_SEGMENT_BYTES,
        };
        let (progress_tx, progress_rx) = watch::channel(ChainProgress {
            through_rev: base.base_rev,
            until_ms: base.full_unix * 1000,
            ..ChainProgress::default()
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let id = {
            let mut inner = self.chains.lock();
            inner.next_id += 1;
            let id = inner.next_id;
            let entry = inner.clusters.entry(name.to_string()).or_default();
            entry.running = Some(Running {
                id,
                base,
                members: member_set(&members),
                stop: Some(stop_tx),
                progress: progress_rx,
            });
            entry.last_error = None;
            id
        };
        tracing::info!(cluster = %name, full = base.full_unix, base_rev = base.base_rev, "delta chain starts");
        let chains = self.chains.clone();
        let cancel = ctx.cancel.clone();
        let abort = ctx.abort.clone();
        let cluster = name.to_string();
        ctx.tasks.spawn(async move {
            let stop = async move {
                tokio::select! {
                    _ = stop_rx => {}
                    () = cancel.cancelled() => {}
                }
            };
            let run = run_chain(&settings, &members, &store, &recipient, &progress_tx, stop);
            let result = tokio::select! {
                r = run => r.map_err(|e| e.to_string()),
                () = abort.cancelled() => Err("interrupted at shutdown".to_string()),
            };
            let mut inner = chains.lock();
            let progress = *progress_tx.borrow();
            let Some(entry) = inner.clusters.get_mut(&cluster) else {
                return;
            };
            let current = entry.running.as_ref().is_some_and(|r| r.id == id);
            if current {
                // A chain stopped at shutdown leaves none behind: the next
                // leadership term starts its own.
                entry.running = None;
                entry.last = Some(progress);
            }
            match result {
                Ok(()) => tracing::info!(%cluster, "delta chain stopped"),
                Err(e) => {
                    tracing::warn!(%cluster, error = %e, "delta chain ended; a full backup starts a new one");
                    entry.last_error = Some(e);
                    if current {
                        entry.needs_full = true;
                        inner.backup.poke_key(&cluster);
                    }
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreChoice;

    fn member(name: &str) -> MemberEndpoint {
        MemberEndpoint {
            name: name.into(),
            urls: vec![format!("http://{name}:2379")],
            tls: None,
        }
    }

    #[test]
    fn a_chain_is_asked_for_started_and_ended_by_a_member_change() {
        let dir = tempfile::tempdir().unwrap();
        let stores = Stores::new(StoreChoice::Local(dir.path().to_path_buf())).unwrap();
        let chains = Chains::default();
        let c = ContinuousBackupController::new(stores, chains.clone());
        let ms = vec![member("a"), member("b")];
        assert!(!chains.is_continuous("c1"));
        assert!(matches!(c.plan("c1", &ms), Plan::WantFull(None)));
        assert!(chains.is_continuous("c1") && chains.needs_full("c1"));

        chains.full_done("c1", 100, 7);
        assert!(!chains.needs_full("c1"));
        let Plan::Start(base, None) = c.plan("c1", &ms) else {
            panic!("a stored full backup starts a chain");
        };
        assert_eq!(
            base,
            Base {
                full_unix: 100,
                base_rev: 7
            }
        );
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let (_progress_tx, progress) = watch::channel(ChainProgress::default());
        chains.lock().clusters.get_mut("c1").unwrap().running = Some(Running {
            id: 1,
            base,
            members: member_set(&ms),
            stop: Some(stop_tx),
            progress,
        });
        // The same members, ranked otherwise: the chain goes on.
        let reordered: Vec<_> = ms.iter().rev().cloned().collect();
        assert!(matches!(c.plan("c1", &reordered), Plan::Nothing));
        // A member gone: the chain stops, a full backup is wanted.
        let Plan::WantFull(Some(stop)) = c.plan("c1", &ms[..1]) else {
            panic!("a member change ends the chain");
        };
        stop.send(()).unwrap();
        assert!(stop_rx.try_recv().is_ok());
        assert!(chains.needs_full("c1"));
        assert_eq!(chains.status("c1").unwrap().base, None);
    }
}
