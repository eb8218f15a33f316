//! Leader election on an etcd lease, with fencing.
//!
//! A replica leads while the leader key exists with the create revision it
//! had when this replica's transaction made it; the key is bound to a lease
//! the replica keeps alive. The term counts as lost once no renewal has
//! been acknowledged for two thirds of the TTL — before etcd can expire the
//! lease and let another replica win — so controllers stop first. Writes
//! made under the term carry a [`Fence`] on that create revision, so a
//! deposed leader that did not notice yet (e.g. paused by SIGSTOP) cannot
//! write.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn,
    TxnOp, WatchOptions,
};
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;

use super::{etcd_error, EtcdBackend};
use crate::{Fence, StateError};

/// The leader key, relative to the state prefix.
pub const LEADER_KEY: &str = "leader";

/// Longest wait between two looks at a held leader key (a watch normally
/// reports its deletion at once).
const RECHECK: Duration = Duration::from_secs(1);

/// One leadership term. Dropping it does not resign; call [`Leadership::resign`].
pub struct Leadership {
    fence: Fence,
    lease: i64,
    lost: CancellationToken,
    client: Client,
}

impl Leadership {
    /// What controller writes of this term must carry.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Fires when the term ends (lease not renewed in time, or resigned).
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Ends the term at once and frees the leader key for another replica.
    pub async fn resign(mut self) {
        self.lost.cancel();
        if let Err(e) = self.client.lease_revoke(self.lease).await {
            tracing::debug!(error = %e, "resign: lease revoke failed; it expires by itself");
        }
    }
}

impl EtcdBackend {
    /// Waits until this replica becomes the leader; `None` when `cancel`
    /// fires first. Store failures are retried, not returned.
    pub async fn campaign(
        &self,
        id: &str,
        ttl: Duration,
        cancel: &CancellationToken,
    ) -> Option<Leadership> {
        let key = format!("{}/{LEADER_KEY}", self.prefix());
        let mut client = self.client();
        loop {
            let attempt = tokio::select! {
                _ = cancel.cancelled() => return None,
                r = try_lead(&mut client, &key, id, ttl) => r,
            };
            match attempt {
                Ok(Ok(term)) => return Some(term),
                Ok(Err(held_at)) => {
                    tokio::select! {
                        _ = cancel.cancelled() => return None,
                        _ = wait_deleted(&client, &key, held_at) => {}
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "campaign: state store unavailable; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return None,
                        _ = sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        }
    }
}

/// `Ok(Ok(term))` when elected, `Ok(Err(revision))` when another replica
/// holds the key (as of that revision).
async fn try_lead(
    client: &mut Client,
    key: &str,
    id: &str,
    ttl: Duration,
) -> Result<Result<Leadership, i64>, StateError> {
    let held = client.get(key, None).await.map_err(etcd_error)?;
    if !held.kvs().is_empty() {
        return Ok(Err(held.header().map_or(0, |h| h.revision())));
    }
    let secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(15);
    let grant = client.lease_grant(secs, None).await.map_err(etcd_error)?;
    let granted_at = Instant::now();
    let lease = grant.id();
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            id,
            Some(PutOptions::new().with_lease(lease)),
        )]);
    let resp = match client.txn(txn).await {
        Ok(r) => r,
        Err(e) => {
            let _ = client.lease_revoke(lease).await;
            return Err(etcd_error(e));
        }
    };
    let revision = resp.header().map_or(0, |h| h.revision());
    if !resp.succeeded() {
        let _ = client.lease_revoke(lease).await;
        return Ok(Err(revision));
    }
    // etcd may raise a TTL below its minimum; plan with what it granted.
    let ttl = Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(1).max(1));
    let lost = CancellationToken::new();
    tokio::spawn(keep_alive(
        client.clone(),
        lease,
        ttl,
        granted_at,
        lost.clone(),
    ));
    tracing::info!(id, revision, ttl = ?ttl, "elected leader");
    Ok(Ok(Leadership {
        fence: Fence {
            key: LEADER_KEY.to_string(),
            revision,
        },
        lease,
        lost,
        client: client.clone(),
    }))
}

/// Returns once the key is deleted after `after`, or after [`RECHECK`].
async fn wait_deleted(client: &Client, key: &str, after: i64) {
    let opts = WatchOptions::new().with_start_revision(after + 1);
    let wait = async {
        let Ok(mut stream) = client.watch_client().watch(key, Some(opts)).await else {
            return;
        };
        while let Ok(Some(resp)) = stream.message().await {
            if resp.canceled()
                || resp
                    .events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete)
            {
                return;
            }
        }
    };
    let _ = timeout(RECHECK, wait).await;
}

/// Renews the lease every quarter TTL; cancels `lost` when no renewal was
/// acknowledged within two thirds of the TTL of being sent, or etcd says
/// the lease is gone.
async fn keep_alive(
    mut client: Client,
    lease: i64,
    ttl: Duration,
    granted_at: Instant,
    lost: CancellationToken,
) {
    let safe = ttl * 2 / 3;
    let every = ttl / 4;
    let mut deadline = granted_at + safe;
    let mut keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
    loop {
        let sent = Instant::now();
        if sent >= deadline {
            break;
        }
        let renewed = tokio::select! {
            biased;
            _ = lost.cancelled() => return,
            _ = sleep_until(deadline) => break,
            r = renew(&mut client, lease, &mut keeper) => r,
        };
        match renewed {
            Ok(remaining) if remaining > 0 => deadline = sent + safe,
            Ok(_) => {
                tracing::warn!("leader lease expired");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "leader lease renewal failed");
                keeper = None;
            }
        }
        tokio::select! {
            biased;
            _ = lost.cancelled() => return,
            _ = sleep_until(deadline) => break,
            _ = sleep(every) => {}
        }
    }
    tracing::warn!("leadership lost: stopping controllers");
    lost.cancel();
    let _ = client.lease_revoke(lease).await;
}

async fn renew(
    client: &mut Client,
    lease: i64,
    keeper: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
) -> Result<i64, etcd_client::Error> {
    if keeper.is_none() {
        *keeper = Some(client.lease_keep_alive(lease).await?);
    }
    let Some((k, stream)) = keeper.as_mut() else {
        return Err(etcd_client::Error::LeaseKeepAliveError("no keeper".into()));
    };
    k.keep_alive().await?;
    match stream.message().await? {
        Some(resp) => Ok(resp.ttl()),
        None => Err(etcd_client::Error::LeaseKeepAliveError(
            "keep-alive stream closed".into(),
        )),
    }
}
