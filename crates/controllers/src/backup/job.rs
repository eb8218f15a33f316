//! One backup of one cluster, run as a background task.

use std::sync::Arc;
use std::time::Duration;

use omni_backup::{parse_recipient, BackupOptions, BackupStore, UploadJournal};
use omni_resources::specs::backup::{status, EtcdBackupStatusSpec};
use omni_resources::{Timestamp, NS_EPHEMERAL};
use omni_state::State;

use super::data;
use super::members::control_plane_members;
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
    pub async fn run(self) -> Option<i64> {
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
        let result = tokio::time::timeout(self.timeout, self.take()).await;
        let outcome = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!(
                "backup timed out after {}",
                omni_resources::duration::format_go_duration(self.timeout)
            )),
        };
        let recorded = set_status(&self.state, &self.cluster, |s| match &outcome {
            Ok(()) => {
                s.status = status::OK;
                s.error.clear();
                s.lastbackuptime = at;
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
            Ok(()) => {
                tracing::info!(cluster = %self.cluster, at = at.seconds, "backup done");
                Some(at.seconds)
            }
            Err(e) => {
                tracing::warn!(cluster = %self.cluster, error = %e, "backup failed");
                None
            }
        }
    }

    async fn take(&self) -> Result<(), String> {
        let data = data::ensure(&self.state, &self.cluster)
            .await
            .map_err(|e| e.to_string())?;
        let recipient = parse_recipient(&data.agerecipient).map_err(|e| e.to_string())?;
        let members = control_plane_members(&self.state, &self.cluster)
            .await
            .map_err(|e| e.to_string())?;
        if members.is_empty() {
            return Err(format!(
                "cluster {} has no control-plane machines with etcd endpoints",
                self.cluster
            ));
        }
        let journal: Arc<dyn UploadJournal> = Arc::new(StateJournal {
            state: self.state.clone(),
            cluster: self.cluster.clone(),
            at: self.at.seconds,
            run: self.run.clone(),
            bucket: self.store.bucket().unwrap_or_default().to_string(),
            endpoint: self.store.location().to_string(),
        });
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
        .map_err(|e| e.to_string())?;
        tracing::info!(cluster = %self.cluster, key = %outcome.key, member = %outcome.member,
            snapshot_bytes = outcome.snapshot_bytes, stored_bytes = outcome.size, "snapshot stored");
        Ok(())
    }
}
