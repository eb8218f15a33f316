//! The copy controller: every backup in a cluster's primary store gets a
//! copy in its secondary store, bytes as stored (no second run of the
//! pipeline), newest first.
//!
//! Crash safety comes from the stores and from comparing listings rather
//! than remembering work: a copy is visible only once complete (temp file
//! renamed, or S3 multipart upload completed), so a copy cut short by a
//! crash or a dead store is simply missing from the secondary's listing
//! and is made again on the next pass. Failures are retried with a
//! doubling backoff; retention leaves an object alone while it is copied.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use omni_backup::{NoJournal, UploadJournal};
use omni_resources::specs::backup::{status, BackupDataSpec, EtcdBackupStatusSpec};
use omni_resources::specs::backup_store::{
    EtcdBackupCopyStatusSpec, EtcdBackupStoreSpec, COPY_CONTROLLER,
};
use omni_resources::specs::cluster::ClusterSpec;
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Phase, Timestamp, NS_DEFAULT, NS_EPHEMERAL};
use omni_runtime::{Action, BoxError, Context, Controller, Input};

use super::Stores;
use crate::backup::data;
use crate::cluster_finalizer::destroy_if_present;
use crate::interest::Interest;
use crate::leases::BackupLeases;

/// Knobs of the copy controller.
#[derive(Debug, Clone)]
pub struct CopySettings {
    /// First retry delay after a failed copy; doubles, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Longest one object's copy may take.
    pub timeout: Duration,
    /// How often a cluster whose copies are complete is looked at again
    /// (catches objects removed from the secondary behind omni's back).
    pub recheck: Duration,
}

impl Default for CopySettings {
    fn default() -> Self {
        CopySettings {
            backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(600),
            timeout: Duration::from_secs(30 * 60),
            recheck: Duration::from_secs(3600),
        }
    }
}

pub struct EtcdBackupCopyController {
    stores: Stores,
    leases: BackupLeases,
    settings: CopySettings,
    /// Clusters with a secondary store: only their backups wake us.
    copied: Interest,
}

impl EtcdBackupCopyController {
    pub fn new(stores: Stores, leases: BackupLeases, settings: CopySettings) -> Self {
        EtcdBackupCopyController {
            stores,
            leases,
            settings,
            copied: Interest::default(),
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
        self.settings
            .backoff
            .saturating_mul(factor)
            .min(self.settings.max_backoff)
    }

    /// Records a failure and schedules the retry.
    async fn failed(
        &self,
        ctx: &Context,
        cluster: &str,
        error: String,
    ) -> Result<Action, BoxError> {
        tracing::warn!(%cluster, %error, "backup copy failed; will retry");
        let st = write(ctx, cluster, |s| {
            s.status = status::ERROR;
            s.error = error.clone();
            s.attempts = s.attempts.saturating_add(1);
        })
        .await?;
        Ok(Action::Requeue(self.backoff(st.attempts)))
    }

    async fn copy_missing(
        &self,
        ctx: &Context,
        cluster: &str,
        spec: &ClusterSpec,
    ) -> Result<Action, BoxError> {
        let stores = self.stores.for_cluster(&ctx.state, Some(spec)).await;
        let Some(secondary) = stores.secondary else {
            destroy_if_present(
                &ctx.state,
                NS_EPHEMERAL,
                EtcdBackupCopyStatusSpec::TYPE,
                cluster,
            )
            .await?;
            return Ok(Action::AwaitChange);
        };
        let Some(data) = data::find(&ctx.state, cluster).await? else {
            return Ok(Action::AwaitChange); // no backups yet
        };
        let (from_name, to_name) = (stores.primary.name.clone(), secondary.name.clone());
        write(ctx, cluster, |s| {
            s.store = from_name.clone();
            s.secondarystore = to_name.clone();
        })
        .await?;
        let from = match stores.primary.store {
            Ok(s) => s,
            Err(e) => return self.failed(ctx, cluster, e).await,
        };
        let to = match secondary.store {
            Ok(s) => s,
            Err(e) => return self.failed(ctx, cluster, e).await,
        };
        let listed = async {
            let have = from.list(&data.clusteruuid).await?;
            let there = to.list(&data.clusteruuid).await?;
            Ok::<_, omni_backup::StoreError>((have, there))
        };
        let (have, there) = match listed.await {
            Ok(l) => l,
            Err(e) => {
                return self
                    .failed(ctx, cluster, format!("listing backups: {e}"))
                    .await
            }
        };
        let there: HashSet<&str> = there.iter().map(|o| o.key.as_str()).collect();
        let missing: Vec<_> = have
            .iter()
            .filter(|o| !there.contains(o.key.as_str()))
            .collect();
        let journal: Arc<dyn UploadJournal> = Arc::new(NoJournal);
        for (i, obj) in missing.iter().enumerate() {
            if ctx.cancel.is_cancelled() {
                return Ok(Action::AwaitChange);
            }
            let id = format!("{cluster}-{}", obj.created_at_unix);
            let pending = (missing.len() - i) as u32;
            write(ctx, cluster, |s| {
                s.status = status::RUNNING;
                s.backup = id.clone();
                s.pending = pending;
            })
            .await?;
            // Retention leaves the object alone while it is read.
            let _lease = self.leases.lease(&obj.key);
            let clock = std::time::Instant::now();
            let copied = tokio::select! {
                r = tokio::time::timeout(self.settings.timeout, to.copy_from(&from, &obj.key, &journal)) => r,
                // Dropping the copy discards what it wrote; the next run redoes it.
                _ = ctx.abort.cancelled() => return Ok(Action::AwaitChange),
            };
            match copied {
                Ok(Ok(bytes)) => {
                    tracing::info!(%cluster, backup = %id, from = %from_name, to = %to_name, bytes, took = ?clock.elapsed(), "backup copied");
                    write(ctx, cluster, |s| {
                        s.pending = pending - 1;
                        s.lastcopytime = Timestamp::now();
                        s.copiedtotal += 1;
                    })
                    .await?;
                }
                // Already there (copied by a run that crashed before recording it).
                Ok(Err(omni_backup::StoreError::AlreadyExists { .. })) => {}
                Ok(Err(e)) => {
                    let msg = format!("copying {id} to store {to_name:?}: {e}");
                    return self.failed(ctx, cluster, msg).await;
                }
                Err(_) => {
                    let msg = format!("copying {id} to store {to_name:?}: timed out");
                    return self.failed(ctx, cluster, msg).await;
                }
            }
        }
        write(ctx, cluster, |s| {
            s.status = status::OK;
            s.error.clear();
            s.pending = 0;
            s.attempts = 0;
        })
        .await?;
        Ok(Action::Requeue(self.settings.recheck))
    }
}

async fn write(
    ctx: &Context,
    cluster: &str,
    f: impl FnMut(&mut EtcdBackupCopyStatusSpec),
) -> Result<EtcdBackupCopyStatusSpec, BoxError> {
    let r = ctx
        .state
        .modify::<EtcdBackupCopyStatusSpec>(NS_EPHEMERAL, cluster, COPY_CONTROLLER, f)
        .await?;
    Ok(r.spec_as()?)
}

#[async_trait]
impl Controller for EtcdBackupCopyController {
    fn name(&self) -> &'static str {
        COPY_CONTROLLER
    }

    fn inputs(&self) -> Vec<Input> {
        vec![
            Input::by_id(ClusterSpec::TYPE),
            // A backup ended (or began): its status changed.
            self.copied.by_id(EtcdBackupStatusSpec::TYPE),
            self.copied.by_id(BackupDataSpec::TYPE),
            // Rare: a store was added or changed.
            Input::every_key(EtcdBackupStoreSpec::TYPE),
        ]
    }

    fn outputs(&self) -> Vec<&'static str> {
        vec![EtcdBackupCopyStatusSpec::TYPE]
    }

    async fn keys(&self, state: &omni_state::State) -> Result<Vec<String>, BoxError> {
        let all = LabelSelector::default();
        let mut keys = HashSet::new();
        for (ns, kind) in [
            (NS_DEFAULT, ClusterSpec::TYPE),
            (NS_EPHEMERAL, EtcdBackupCopyStatusSpec::TYPE),
        ] {
            keys.extend(
                state
                    .list(ns, kind, &all)
                    .await?
                    .into_iter()
                    .map(|r| r.metadata.id),
            );
        }
        Ok(keys.into_iter().collect())
    }

    fn concurrency(&self) -> usize {
        2
    }

    async fn reconcile(&self, name: &str, ctx: &Context) -> Result<Action, BoxError> {
        let cluster = ctx.state.get_spec::<ClusterSpec>(NS_DEFAULT, name).await?;
        let copied = cluster
            .as_ref()
            .is_some_and(|(_, spec)| self.stores.names(Some(spec)).1.is_some());
        self.copied.mark(name, copied);
        let Some((res, spec)) = cluster else {
            destroy_if_present(
                &ctx.state,
                NS_EPHEMERAL,
                EtcdBackupCopyStatusSpec::TYPE,
                name,
            )
            .await?;
            return Ok(Action::AwaitChange);
        };
        if res.metadata.phase != Phase::Running {
            return Ok(Action::AwaitChange);
        }
        let backing_up = ctx
            .state
            .get_spec::<EtcdBackupStatusSpec>(NS_EPHEMERAL, name)
            .await?
            .is_some_and(|(_, s)| s.status == status::RUNNING);
        if backing_up {
            return Ok(Action::AwaitChange); // its end wakes us
        }
        self.copy_missing(ctx, name, &spec).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = EtcdBackupCopyController::new(
            Stores::new(super::super::StoreChoice::S3).unwrap(),
            BackupLeases::default(),
            CopySettings {
                backoff: Duration::from_secs(2),
                max_backoff: Duration::from_secs(10),
                ..CopySettings::default()
            },
        );
        let secs: Vec<u64> = (1..=5).map(|n| c.backoff(n).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 10, 10]);
    }
}
