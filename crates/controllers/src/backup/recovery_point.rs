//! The recovery point fields of a cluster's status: when the next
//! automatic backup is due, and the newest backup a restore drill proved
//! restorable (with how long that restore took). The drill controller owns
//! the drill statuses; this controller owns the backup status and copies
//! the proof over, keeping it when a later drill fails.

use omni_resources::specs::backup::{status, EtcdBackupStatusSpec};
use omni_resources::specs::backup_drill::EtcdBackupDrillStatusSpec;
use omni_resources::{Timestamp, NS_EPHEMERAL};
use omni_runtime::{BoxError, Context};

use super::{job, EtcdBackupController};
use crate::retention::keep::backup_time;

impl EtcdBackupController {
    /// Records the due time of the next automatic backup (`None`: none is
    /// scheduled). Writes only on a change, and never creates a status
    /// just to say that nothing is due.
    pub(super) async fn record_next_due(
        &self,
        ctx: &Context,
        cluster: &str,
        st: &EtcdBackupStatusSpec,
        at_unix: Option<f64>,
    ) -> Result<(), BoxError> {
        let due = at_unix.map(timestamp_of).unwrap_or_default();
        if st.nextbackuptime == due {
            return Ok(());
        }
        job::set_status(&ctx.state, cluster, |s| s.nextbackuptime = due).await?;
        Ok(())
    }

    /// Takes the outcome of the cluster's latest drill into its status when
    /// it proved a newer backup restorable.
    pub(super) async fn record_drill(
        &self,
        ctx: &Context,
        cluster: &str,
        st: &EtcdBackupStatusSpec,
    ) -> Result<(), BoxError> {
        let drill = ctx
            .state
            .get_spec::<EtcdBackupDrillStatusSpec>(NS_EPHEMERAL, cluster)
            .await?;
        let Some((_, drill)) = drill else {
            return Ok(());
        };
        let Some((proven, took)) = proven_by(cluster, &drill) else {
            return Ok(());
        };
        let newer = proven > st.lastprovenrestorable;
        let same_but_remeasured =
            proven == st.lastprovenrestorable && took != st.lastdrillrestoreduration;
        if !(newer || same_but_remeasured) {
            return Ok(());
        }
        job::set_status(&ctx.state, cluster, |s| {
            if proven >= s.lastprovenrestorable {
                s.lastprovenrestorable = proven;
                s.lastdrillrestoreduration = took;
            }
        })
        .await?;
        Ok(())
    }
}

/// The backup time a successful drill proved restorable, and the drill's
/// duration; `None` for a drill that failed or runs.
fn proven_by(
    cluster: &str,
    drill: &EtcdBackupDrillStatusSpec,
) -> Option<(Timestamp, omni_resources::duration::ProtoDuration)> {
    if drill.status != status::OK {
        return None;
    }
    let at = backup_time(cluster, &drill.backup)?;
    Some((Timestamp::from_unix(at), drill.duration))
}

/// Seconds with a fraction as a timestamp.
fn timestamp_of(secs: f64) -> Timestamp {
    let seconds = secs.floor();
    Timestamp {
        seconds: seconds as i64,
        nanos: ((secs - seconds) * 1e9) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omni_resources::duration::ProtoDuration;

    fn drill(code: i32, backup: &str) -> EtcdBackupDrillStatusSpec {
        EtcdBackupDrillStatusSpec {
            status: code,
            backup: backup.into(),
            duration: ProtoDuration {
                seconds: 3,
                nanos: 0,
            },
            ..Default::default()
        }
    }

    #[test]
    fn only_a_successful_drill_proves_a_backup() {
        let (at, took) = proven_by("c-1", &drill(status::OK, "c-1-1702166400")).unwrap();
        assert_eq!(at, Timestamp::from_unix(1702166400));
        assert_eq!(took.seconds, 3);
        assert!(proven_by("c-1", &drill(status::ERROR, "c-1-1702166400")).is_none());
        assert!(proven_by("c-1", &drill(status::RUNNING, "c-1-1702166400")).is_none());
        // A backup id of another cluster proves nothing here.
        assert!(proven_by("c-1", &drill(status::OK, "c-2-1702166400")).is_none());
    }

    #[test]
    fn fractional_due_times_keep_their_nanos() {
        let t = timestamp_of(1702166400.25);
        assert_eq!((t.seconds, t.nanos), (1702166400, 250_000_000));
        assert!((t.as_secs_f64() - 1702166400.25).abs() < 1e-6);
    }
}
