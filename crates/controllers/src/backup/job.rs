//! One backup of one cluster, run as a background task.

use std::sync::Arc;
use std::time::Duration;

use omni_backup::{parse_recipient, BackupOptions, BackupStore, UploadJournal};
use omni_resources::specs::backup::{status, EtcdBackupStatusSpec};
use omni_resources::{Timestamp, NS_EPHEMERAL};
use omni_state::State;

use super::data;
use super::members::control_plane_members;
use super::metrics::{BackupMetrics, FailureReason, Trigger};
use super::uploads::StateJournal;

pub(super) struct Job {
    pub state: State,
    pub store: BackupStore,
    pub cluster: String,
    pub at: Timestamp,
    pub timeout: Duration,
    pub options: BackupOptions,
    /// This run of the server, for the upload journal.
    pub run: Arc<str>,
    pub trigger: Trigger,
    pub metrics: BackupMetrics,
    pub chains: crate::continuous::Chains,
}

/// Writes the cluster's status through the backup controller.
pub(super) async fn set_status(
    state: &State,
    cluster: &str,
    f: impl FnMut(&mut EtcdBackupStatusSpec),
) -> Result<(), omni_state::StateError> {
    state
        .modify::<EtcdBackupStatusSpec>(NS_EPHEMERAL, cluster, data::OWNER, f)
        .await
        .map(|_| ())
}

impl Job {
    /// Runs the backup and records the outcome. Returns the backup time on
    /// success.
    pub async fn run(self) -> Option<Timestamp> {
        let at = self.at;
        if let Err(e) = set_status(&self.state, &self.cluster, |s| {
            s.status = status::RUNNING;
            s.error.clear();
            s.lastbackupattempt = at;
        })
        .await
        {
            tracing::warn!(cluster = %self.cluster, error = %e, "cannot record backup start");
            return None;
        }
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.timeout, self.take()).await;
        let outcome = match result {
            Ok(Ok(stored)) => {
                self.metrics.succeeded(
                    self.trigger,
                    started.elapsed(),
                    stored.size,
                    stored.snapshot_bytes,
                );
                Ok(stored.size)
            }
            Ok(Err(e)) => {
                if e.may_have_landed {
                    self.sweep_late_object();
                }
                self.metrics.failed(self.trigger, e.reason);
                Err(e.message)
            }
            Err(_) => {
                self.sweep_late_object();
                self.metrics.failed(self.trigger, FailureReason::Timeout);
                Err(format!(
                    "backup timed out after {}",
                    omni_resources::duration::format_go_duration(self.timeout)
                ))
            }
        };
        let recorded = set_status(&self.state, &self.cluster, |s| match &outcome {
            Ok(size) => {
                s.status = status::OK;
                s.error.clear();
                s.lastbackuptime = at;
                s.lastbackupsize = *size;
            }
            Err(e) => {
                s.status = status::ERROR;
                s.error = e.clone();
            }
        })
        .await;
        if let Err(e) = recorded {
            tracing::warn!(cluster = %self.cluster, error = %e, "cannot record backup result");
        }
        match outcome {
            Ok(_) => {
                tracing::info!(cluster = %self.cluster, at = at.seconds, "backup done");
                Some(at)
            }
            Err(e) => {
                tracing::warn!(cluster = %self.cluster, error = %e, "backup failed");
                None
            }
        }
    }

    /// A request the store got whole but answered too late (or never) can
    /// still land after we gave up: the backup failed, so it must not be
    /// listed. Look for it now and again a little later, and remove it.
    fn sweep_late_object(&self) {
        let (state, store, cluster, at) = (
            self.state.clone(),
            self.store.clone(),
            self.cluster.clone(),
            self.at.seconds,
        );
        tokio::spawn(async move {
            let Ok(Some(data)) = data::find(&state, &cluster).await else {
                return;
            };
            let Ok(key) = omni_backup::keys::format_key(&data.clusteruuid, at) else {
                return;
            };
            for wait in [0, 3, 10, 30].map(Duration::from_secs) {
                tokio::time::sleep(wait).await;
                if let Ok(true) = store.exists(&key).await {
                    match store.delete(&key).await {
                        Ok(()) => {
                            tracing::warn!(%cluster, %key, "removed the object of a failed backup that landed late")
                        }
                        Err(e) => {
                            tracing::warn!(%cluster, %key, error = %e, "cannot remove the object of a failed backup")
                        }
                    }
                }
            }
        });
    }

    async fn take(&self) -> Result<omni_backup::BackupOutcome, TakeError> {
        let data = data::ensure(&self.state, &self.cluster)
            .await
            .map_err(TakeError::before)?;
        let recipient = parse_recipient(&data.agerecipient).map_err(TakeError::before)?;
        let members = control_plane_members(&self.state, &self.cluster)
            .await
            .map_err(TakeError::before)?;
        if members.is_empty() {
            return Err(TakeError {
                reason: FailureReason::SourceUnreachable,
                ..TakeError::before(format!(
                    "cluster {} has no control-plane machines with etcd endpoints",
                    self.cluster
                ))
            });
        }
        let journal: Arc<dyn UploadJournal> = Arc::new(StateJournal {
            state: self.state.clone(),
            cluster: self.cluster.clone(),
            at: self.at.seconds,
            run: self.run.clone(),
            bucket: self.store.bucket().unwrap_or_default().to_string(),
            endpoint: self.store.location().to_string(),
        });
        // A delta chain starts after the revision read before the snapshot.
        let base = match self.chains.is_continuous(&self.cluster) {
            true => omni_backup::delta::current_revision(&members)
                .await
                .inspect_err(|e| tracing::warn!(cluster = %self.cluster, error = %e, "cannot read the revision a delta chain would start after"))
                .ok(),
            false => None,
        };
        let outcome = omni_backup::take_backup_journaled(
            &self.options,
            &journal,
            &members,
            &self.store,
            &data.clusteruuid,
            &recipient,
            self.at.seconds,
        )
        .await
        .map_err(|e| TakeError {
            message: e.to_string(),
            may_have_landed: may_have_landed(&e),
            reason: FailureReason::of(&e),
        })?;
        tracing::info!(cluster = %self.cluster, key = %outcome.key, member = %outcome.member,
            snapshot_bytes = outcome.snapshot_bytes, stored_bytes = outcome.size, "snapshot stored");
        if let Some(rev) = base {
            self.chains.full_done(&self.cluster, self.at.seconds, rev);
        }
        Ok(outcome)
    }
}

/// Why a backup failed, and whether its object might exist anyway.
struct TakeError {
    message: String,
    may_have_landed: bool,
    reason: FailureReason,
}

impl TakeError {
    /// A failure before anything was sent to the store (reading the
    /// cluster's key or members from the state).
    fn before(e: impl ToString) -> Self {
        TakeError {
            message: e.to_string(),
            may_have_landed: false,
            reason: FailureReason::Other,
        }
    }
}

/// Only a store failure can leave an object behind; a refused duplicate
/// key names someone else's backup, which must stay.
fn may_have_landed(e: &omni_backup::Error) -> bool {
    match e {
        omni_backup::Error::Store(s) => !matches!(s, omni_backup::StoreError::AlreadyExists { .. }),
        _ => false,
    }
}
