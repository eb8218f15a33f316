//! The retention controller: applies each cluster's retention policy (its
//! own, or the server default) to the backups in the store after backups
//! change and periodically, and records what it deleted in
//! `EtcdBackupRetentionStatuses`, its only output.
//!
//! Safety rules, in order: only listed (committed) objects are considered;
//! nothing is done for a cluster while its backup status is `running`; the
//! newest backup is never deleted; backups marked to keep ([`keep`]) and
//! backups in use ([`BackupLeases`]) are left alone. Backups of clusters
//! that no longer exist are not touched.

pub mod keep;

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use omni_resources::retention::{plan, RetentionPolicy};
use omni_resources::specs::backup::{
    status, BackupDataSpec, EtcdBackupStatusSpec, EtcdManualBackupSpec,
};
use omni_resources::specs::backup_retention::{
    source, DeletedBackup, EtcdBackupRetentionStatusSpec, DELETED_HISTORY,
};
use omni_resources::specs::cluster::ClusterSpec;
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Phase, Resource, Timestamp, NS_DEFAULT, NS_EPHEMERAL};
use omni_runtime::{Action, BoxError, Context, Controller, Input};

use crate::backup::data;
use crate::continuous::Chains;
use crate::leases::BackupLeases;
use crate::store::Stores;
use keep::{backup_id, backup_time, KeepMarks, Request};

/// Knobs of the retention controller.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// The policy of clusters that set none (empty: keep everything).
    pub default_policy: RetentionPolicy,
    /// Longest time between two runs. A plan depends only on the stored
    /// backups, the policy and the keep marks, and each of those wakes the
    /// cluster when it changes; this run only catches deletions that failed
    /// and objects changed behind omni's back, so it can be slow: at 10,000
    /// clusters every 10 minutes would be 17 store listings a second.
    pub interval: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            default_policy: RetentionPolicy::default(),
            interval: Duration::from_secs(3600),
        }
    }
}

pub const NAME: &str = "EtcdBackupRetentionController";

pub struct EtcdBackupRetentionController {
    stores: Stores,
    leases: BackupLeases,
    settings: RetentionSettings,
    /// The chains being written; without them no orphaned chain is deleted.
    chains: Option<Chains>,
}

impl EtcdBackupRetentionController {
    pub fn new(stores: Stores, leases: BackupLeases, settings: RetentionSettings) -> Self {
        EtcdBackupRetentionController {
            stores,
            leases,
            settings,
            chains: None,
        }
    }

    /// Also deletes delta chains whose full backup is gone, except the
    /// chains `chains` is writing.
    pub fn with_chains(mut self, chains: Chains) -> Self {
        self.chains = Some(chains);
        self
    }

    /// The policy a cluster gets, and where it comes from.
    pub fn effective_policy(&self, spec: &ClusterSpec) -> (RetentionPolicy, &'static str) {
        match spec.retention_policy() {
            Some(p) => (p, source::CLUSTER),
            None => (self.settings.default_policy, source::SERVER),
        }
    }

    /// Applies the policy to one cluster and records the outcome.
    async fn apply(&self, ctx: &Context, cluster: &Resource) -> Result<(), BoxError> {
        let name = cluster.metadata.id.as_str();
        let spec: ClusterSpec = cluster.spec_as()?;
        let Some(data) = data::find(&ctx.state, name).await? else {
            return Ok(()); // no backups yet
        };
        let backup_status = ctx
            .state
            .get_spec::<EtcdBackupStatusSpec>(NS_EPHEMERAL, name)
            .await?
            .map(|(_, s)| s.status);
        if backup_status == Some(status::RUNNING) {
            // The status changing back wakes us (it is an input).
            tracing::debug!(cluster = name, "retention waits for the running backup");
            return Ok(());
        }
        let stores = self.stores.for_cluster(&ctx.state, Some(&spec)).await;
        let Ok(store) = stores.primary.store.clone() else {
            return Ok(()); // no store yet; the periodic run retries
        };
        let (policy, policy_source) = self.effective_policy(&spec);
        let prev = ctx
            .state
            .get_spec::<EtcdBackupRetentionStatusSpec>(NS_EPHEMERAL, name)
            .await?
            .map(|(_, s)| s)
            .unwrap_or_default();
        let (objects, has_chains) = match store.list_level(&data.clusteruuid).await {
            Ok(o) => o,
            Err(e) => {
                let msg = format!("listing backups: {e}");
                self.write(ctx, name, |s| s.error = msg.clone()).await?;
                return Ok(());
            }
        };
        let request = ctx
            .state
            .get_spec::<EtcdManualBackupSpec>(NS_EPHEMERAL, name)
            .await?
            .map(|(res, s)| Request {
                keep: s.keep,
                stored: res.metadata.updated.unwrap_or_default(),
            });
        let times: Vec<i64> = objects.iter().map(|o| o.created_at_unix).collect();
        let prev_marks = KeepMarks {
            kept: prev
                .kept
                .iter()
                .filter_map(|id| backup_time(name, id))
                .collect(),
            pending: prev.pendingkeep,
            last_request: prev.lastkeeprequest,
        };
        let marks = keep::update(prev_marks, request, &times);
        let pinned: HashSet<i64> = marks.kept.iter().copied().collect();

        let now = Timestamp::now();
        let (deleted, mut errors) = self
            .prune(&store, name, &objects, &policy, &pinned, now)
            .await;
        // Chains live in the primary store only; a cluster that never had
        // one costs no listing more.
        if let (Some(chains), true) = (&self.chains, has_chains) {
            let live = chains.live_bases(name);
            if let Err(e) = store.delete_orphan_chains(&data.clusteruuid, &live).await {
                errors.push(format!(
                    "deleting delta chains whose full backup is gone: {e}"
                ));
            }
        }
        // The secondary store gets the same policy and keep marks, applied
        // to its own listing; the status counts the primary's backups.
        if let Some(secondary) = &stores.secondary {
            let pruned = match &secondary.store {
                Ok(to) => match to.list(&data.clusteruuid).await {
                    Ok(copies) => Ok(self.prune(to, name, &copies, &policy, &pinned, now).await.1),
                    Err(e) => Err(format!("listing backups: {e}")),
                },
                Err(e) => Err(e.clone()),
            };
            match pruned {
                Ok(errs) => errors.extend(
                    errs.into_iter()
                        .map(|e| format!("store {:?}: {e}", secondary.name)),
                ),
                Err(e) => errors.push(format!("store {:?}: {e}", secondary.name)),
            }
        }
        let left = (objects.len() - deleted.len()) as u32;
        let error = errors.join("; ");
        self.write(ctx, name, |s| {
            s.policy = policy;
            s.summary = policy.to_string();
            s.policysource = policy_source.to_string();
            s.lastrun = now;
            s.backups = left;
            s.deletedtotal += deleted.len() as u64;
            let mut history: Vec<DeletedBackup> = deleted.clone();
            history.append(&mut s.deleted);
            history.truncate(DELETED_HISTORY);
            s.deleted = history;
            s.kept = marks.kept.iter().map(|t| backup_id(name, *t)).collect();
            s.pendingkeep = marks.pending;
            s.lastkeeprequest = marks.last_request;
            s.error = error.clone();
        })
        .await
    }

    /// Deletes what the plan does not keep of `objects` (one store's
    /// listing, newest first). Returns what was deleted and the errors.
    async fn prune(
        &self,
        store: &omni_backup::BackupStore,
        name: &str,
        objects: &[omni_backup::BackupObject],
        policy: &RetentionPolicy,
        pinned: &HashSet<i64>,
        now: Timestamp,
    ) -> (Vec<DeletedBackup>, Vec<String>) {
        let times: Vec<i64> = objects.iter().map(|o| o.created_at_unix).collect();
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        let newest = objects.first().map(|o| o.key.clone());
        for decision in plan(&times, policy, pinned) {
            if decision.keep() {
                continue;
            }
            let Some(obj) = objects.iter().find(|o| o.created_at_unix == decision.at) else {
                continue;
            };
            // Belt and braces: the plan always keeps the newest.
            if Some(&obj.key) == newest.as_ref() || self.leases.is_leased(&obj.key) {
                continue;
            }
            let id = backup_id(name, obj.created_at_unix);
            // Its delta chain first: a chain is worthless without its base.
            if let Err(e) = store
                .delete_chain(&obj.cluster_uuid, obj.created_at_unix)
                .await
            {
                errors.push(format!("deleting the delta chain of {id}: {e}"));
                continue;
            }
            match store.delete(&obj.key).await {
                Ok(()) => {
                    tracing::info!(cluster = name, backup = %id, policy = %policy, location = %store.location(), "retention deleted backup");
                    deleted.push(DeletedBackup {
                        id,
                        createdat: Timestamp::from_unix(obj.created_at_unix),
                        deletedat: now,
                    });
                }
                Err(e) => errors.push(format!("deleting {id}: {e}")),
            }
        }
        (deleted, errors)
    }

    async fn write(
        &self,
        ctx: &Context,
        cluster: &str,
        f: impl FnMut(&mut EtcdBackupRetentionStatusSpec),
    ) -> Result<(), BoxError> {
        ctx.state
            .modify::<EtcdBackupRetentionStatusSpec>(NS_EPHEMERAL, cluster, NAME, f)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Controller for EtcdBackupRetentionController {
    fn name(&self) -> &'static str {
        NAME
    }

    fn inputs(&self) -> Vec<Input> {
        vec![
            Input::by_id(ClusterSpec::TYPE),
            // A backup ended; one that began has nothing for us (`apply`
            // waits for it to end), and is a third of a backup's events.
            Input::lookup(EtcdBackupStatusSpec::TYPE, |_, r| {
                let running = r
                    .spec_as::<EtcdBackupStatusSpec>()
                    .is_ok_and(|s| s.status == status::RUNNING);
                let keys = if running {
                    Vec::new()
                } else {
                    vec![r.metadata.id]
                };
                Box::pin(std::future::ready(keys))
            }),
            Input::by_id(EtcdManualBackupSpec::TYPE),
            Input::by_id(BackupDataSpec::TYPE),
            // A copy landed in the secondary store: its retention is due.
            Input::by_id(omni_resources::specs::backup_store::EtcdBackupCopyStatusSpec::TYPE),
        ]
    }

    fn outputs(&self) -> Vec<&'static str> {
        vec![EtcdBackupRetentionStatusSpec::TYPE]
    }

    /// Clusters, and statuses whose backup data may be gone.
    async fn keys(&self, state: &omni_state::State) -> Result<Vec<String>, BoxError> {
        let all = LabelSelector::default();
        let mut keys: HashSet<String> = HashSet::new();
        for (ns, kind) in [
            (NS_DEFAULT, ClusterSpec::TYPE),
            (NS_EPHEMERAL, EtcdBackupRetentionStatusSpec::TYPE),
        ] {
            let list = state.list(ns, kind, &all).await?;
            keys.extend(list.into_iter().map(|r| r.metadata.id));
        }
        Ok(keys.into_iter().collect())
    }

    fn concurrency(&self) -> usize {
        4
    }

    async fn reconcile(&self, name: &str, ctx: &Context) -> Result<Action, BoxError> {
        // A status goes only with the cluster's backup data: it holds the
        // keep marks, which outlive the cluster like its backups do.
        if data::find(&ctx.state, name).await?.is_none() {
            crate::cluster_finalizer::destroy_if_present(
                &ctx.state,
                NS_EPHEMERAL,
                EtcdBackupRetentionStatusSpec::TYPE,
                name,
            )
            .await?;
        }
        let cluster = ctx
            .state
            .get_opt(&omni_resources::meta::ResourceKey::new(
                NS_DEFAULT,
                ClusterSpec::TYPE,
                name,
            ))
            .await?;
        let Some(cluster) = cluster.filter(|c| c.metadata.phase == Phase::Running) else {
            return Ok(Action::AwaitChange);
        };
        if let Err(e) = self.apply(ctx, &cluster).await {
            tracing::warn!(cluster = %name, error = %e, "retention failed");
            let msg = e.to_string();
            self.write(ctx, name, |s| s.error = msg.clone()).await?;
        }
        // A policy keeping everything has nothing to redo until backups
        // change; the others look again now and then (see the interval).
        // A continuous cluster is looked at again too: a chain whose full
        // backup vanished behind omni's back changes no input.
        let keeps_all = cluster
            .spec_as::<ClusterSpec>()
            .map(|spec| {
                let continuous = spec
                    .backupconfiguration
                    .as_ref()
                    .is_some_and(|b| b.continuous);
                self.effective_policy(&spec).0.is_empty() && !continuous
            })
            .unwrap_or(false);
        Ok(if keeps_all {
            Action::AwaitChange
        } else {
            Action::Requeue(self.settings.interval)
        })
    }
}

#[cfg(test)]
mod tests;
