//! What an earlier run of the server left behind when it was killed: statuses
//! stuck at `running`, temp files in the local store, and S3 multipart uploads
//! still open (see [`super::uploads`]). Handled before this run starts a backup
//! (temp files, statuses) or as soon as the store is available (uploads).

use omni_backup::keys::candidate_keys;
use omni_backup::BackupStore;
use omni_resources::specs::backup::{status, EtcdBackupStatusSpec};
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Timestamp, NS_EPHEMERAL};
use omni_runtime::{BoxError, Context};
use omni_state::State;

use super::{data, job, uploads, EtcdBackupController};

/// The status error of a backup cut short by a server stop.
pub const INTERRUPTED: &str = "backup interrupted: the server stopped while it was running";

impl EtcdBackupController {
    /// On the first reconcile, before any backup of this run starts: removes the
    /// local store's temp files, and settles each status left `running`. A
    /// backup whose object is in the store finished (only its status write was
    /// lost): ok. Otherwise it was interrupted: an error, retried after the
    /// backoff like any failure. With the store not available yet (S3 still
    /// being configured) the status says interrupted now and is corrected later
    /// should the object turn up ([`Self::settle`]).
    pub(super) async fn recover_interrupted(&self, ctx: &Context) -> Result<(), BoxError> {
        if self.memory().recovered {
            return Ok(());
        }
        let store = self.stores.current().ok();
        // The default store, and the named local ones (backups and copies).
        let mut local = Vec::from_iter(store.clone());
        for name in self.stores.local_names(&ctx.state).await? {
            if let Ok(s) = self.stores.named(&ctx.state, &name).await {
                local.push(s);
            }
        }
        for store in &local {
            match store.remove_incomplete().await {
                Ok(removed) if removed.is_empty() => {}
                Ok(removed) => tracing::info!(files = ?removed, location = %store.location(),
                    "removed temp files of backups cut short by a server stop"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot remove temp files of cut-short backups")
                }
            }
        }
        for r in ctx
            .state
            .list(
                NS_EPHEMERAL,
                EtcdBackupStatusSpec::TYPE,
                &LabelSelector::default(),
            )
            .await?
        {
            let Ok(spec) = r.spec_as::<EtcdBackupStatusSpec>() else {
                continue;
            };
            if spec.status != status::RUNNING {
                continue;
            }
            let cluster = r.metadata.id.as_str();
            let at = spec.lastbackupattempt;
            let primary = self.stores.of_cluster(&ctx.state, cluster).await?.primary;
            match stored(&ctx.state, primary.store.ok().as_ref(), cluster, at).await {
                Some(true) => self.mark_completed(&ctx.state, cluster, at).await?,
                known => {
                    tracing::warn!(%cluster, at = at.seconds, "backup was interrupted by a server stop");
                    job::set_status(&ctx.state, cluster, |s| {
                        s.status = status::ERROR;
                        s.error = INTERRUPTED.into();
                    })
                    .await?;
                    let mut mem = self.memory();
                    mem.failures.insert(cluster.to_string(), 1);
                    if known.is_none() {
                        mem.unconfirmed.insert(cluster.to_string(), at);
                    }
                }
            }
        }
        self.memory().recovered = true;
        Ok(())
    }

    /// Whenever the store is available: aborts stale S3 uploads (an earlier
    /// run's, or this run's whose abort failed), and, once, corrects the
    /// interrupted statuses whose backup did complete.
    pub(super) async fn settle(&self, ctx: &Context) -> Result<(), BoxError> {
        let Ok(store) = self.stores.current() else {
            return Ok(());
        };
        let unconfirmed: Vec<(String, Timestamp)> = self
            .memory()
            .unconfirmed
            .iter()
            .map(|(c, t)| (c.clone(), *t))
            .collect();
        for (cluster, at) in unconfirmed {
            match stored(&ctx.state, Some(&store), &cluster, at).await {
                None => continue,
                Some(true) => {
                    let st = ctx
                        .state
                        .get_spec::<EtcdBackupStatusSpec>(NS_EPHEMERAL, &cluster)
                        .await?
                        .map(|(_, s)| s)
                        .unwrap_or_default();
                    // Only while nothing newer was attempted.
                    if st.status == status::ERROR
                        && st.error == INTERRUPTED
                        && st.lastbackupattempt == at
                    {
                        self.mark_completed(&ctx.state, &cluster, at).await?;
                    }
                }
                Some(false) => {}
            }
            self.memory().unconfirmed.remove(&cluster);
        }
        let memory = self.memory.clone();
        let running = move |cluster: &str| {
            memory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .running
                .contains(cluster)
        };
        let pass = uploads::abort_stale(&ctx.state, &store, &self.run, running).await?;
        if pass.aborted + pass.dropped > 0 {
            tracing::info!(
                aborted = pass.aborted,
                dropped = pass.dropped,
                "stale multipart uploads cleaned up"
            );
        }
        if !pass.elsewhere.is_empty() && !self.memory().warned_elsewhere {
            tracing::warn!(entries = ?pass.elsewhere,
                "open multipart uploads of an earlier run went to another bucket or endpoint; left for a run using that store");
            self.memory().warned_elsewhere = true;
        }
        Ok(())
    }

    /// The backup attempted at `at` is in the store: the status says so.
    async fn mark_completed(
        &self,
        state: &State,
        cluster: &str,
        at: Timestamp,
    ) -> Result<(), BoxError> {
        tracing::info!(%cluster, at = at.seconds,
            "backup had been stored completely when the server stopped; recording it");
        job::set_status(state, cluster, |s| {
            s.status = status::OK;
            s.error.clear();
            if at > s.lastbackuptime {
                s.lastbackuptime = at;
                // Not measured by this run: unknown rather than the size
                // of an older backup.
                s.lastbackupsize = 0;
            }
        })
        .await?;
        let mut mem = self.memory();
        mem.failures.remove(cluster);
        let newest = mem.newest.entry(cluster.to_string()).or_insert(at);
        *newest = (*newest).max(at);
        Ok(())
    }
}

/// Whether the backup of `cluster` attempted at `at` is in the store; `None`
/// when that cannot be told (no store, or it failed).
async fn stored(
    state: &State,
    store: Option<&BackupStore>,
    cluster: &str,
    at: Timestamp,
) -> Option<bool> {
    let store = store?;
    if at.is_zero() {
        return Some(false);
    }
    let data = data::find(state, cluster).await.ok()??;
    // The run that was killed may have been an earlier version, with the other spelling.
    for key in candidate_keys(&data.clusteruuid, at.seconds).ok()? {
        if store.exists(&key).await.ok()? {
            return Some(true);
        }
    }
    Some(false)
}
