//! Continuous backup's hook: a cluster whose delta chain ended (or never
//! began) gets a full backup now, after the usual backoff of failed
//! attempts, since a new chain can only start from a full backup.

use std::time::Duration;

use omni_resources::specs::backup::EtcdBackupStatusSpec;
use omni_resources::Timestamp;
use omni_runtime::{Action, BoxError, Context};

use super::{members, schedule, EtcdBackupController};

/// Longest wait between two failed full backups a chain asked for.
const RETRY_CAP: Duration = Duration::from_secs(300);

impl EtcdBackupController {
    /// Starts the full backup a chain waits for; `None` when there is
    /// none to start now (`next` then says when to look again).
    pub(super) async fn full_for_chain(
        &self,
        ctx: &Context,
        name: &str,
        st: &EtcdBackupStatusSpec,
        next: &mut Action,
    ) -> Result<Option<Action>, BoxError> {
        self.chains.set_backup_trigger(&ctx.trigger);
        if !self.chains.needs_full(name) {
            return Ok(None);
        }
        let failures = self.memory().failures.get(name).copied().unwrap_or(0);
        let at = schedule::retry_at(
            st.lastbackupattempt,
            failures,
            self.settings.retry_backoff,
            RETRY_CAP,
        );
        let wait = at - Timestamp::now().as_secs_f64();
        if wait > 0.0 {
            let wait = Duration::from_secs_f64(wait);
            *next = match *next {
                Action::Requeue(d) => Action::Requeue(d.min(wait)),
                Action::AwaitChange => Action::Requeue(wait),
            };
            return Ok(None);
        }
        if members::control_plane_members(&ctx.state, name)
            .await?
            .is_empty()
        {
            return Ok(None);
        }
        let started = self.start(ctx, name, true).await?;
        Ok(Some(self.after_start(started, *next)))
    }
}
