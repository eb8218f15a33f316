//! What the backup controller and the continuous controller share about
//! each cluster's chain: whether it is wanted, whether a full backup must
//! start one, and the running chain's progress. A cluster without
//! `continuous` has no entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use omni_backup::delta::ChainProgress;
use omni_backup::MemberEndpoint;
use omni_runtime::Trigger;
use tokio::sync::{oneshot, watch};

/// A full backup a chain can start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    pub full_unix: i64,
    pub base_rev: i64,
}

pub(super) struct Running {
    pub id: u64,
    pub base: Base,
    pub members: Vec<(String, Vec<String>)>,
    pub stop: Option<oneshot::Sender<()>>,
    pub progress: watch::Receiver<ChainProgress>,
}

#[derive(Default)]
pub(super) struct Entry {
    pub needs_full: bool,
    pub pending: Option<Base>,
    pub running: Option<Running>,
    pub last_error: Option<String>,
    /// How far the newest chain got, also after it ended: the recovery
    /// point keeps ageing until a new chain stores something.
    pub last: Option<ChainProgress>,
}

#[derive(Default)]
pub(super) struct Inner {
    pub clusters: HashMap<String, Entry>,
    pub backup: Trigger,
    pub own: Trigger,
    pub next_id: u64,
}

/// Shared between the backup controller (which takes the full backups a
/// chain starts from) and the continuous controller (which runs chains).
#[derive(Clone, Default)]
pub struct Chains(pub(super) Arc<Mutex<Inner>>);

impl std::fmt::Debug for Chains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chains")
            .field("clusters", &self.lock().clusters.len())
            .finish()
    }
}

/// A chain as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStatus {
    pub base: Option<Base>,
    pub progress: ChainProgress,
    pub last_error: Option<String>,
}

impl Chains {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The backup controller's trigger, to ask it for a full backup.
    pub fn set_backup_trigger(&self, trigger: &Trigger) {
        self.lock().backup = trigger.clone();
    }

    /// Whether `cluster` backs up continuously (its full backups read the
    /// revision a chain starts after).
    pub fn is_continuous(&self, cluster: &str) -> bool {
        self.lock().clusters.contains_key(cluster)
    }

    /// Whether `cluster` needs a full backup to start a chain.
    pub fn needs_full(&self, cluster: &str) -> bool {
        self.lock()
            .clusters
            .get(cluster)
            .is_some_and(|e| e.needs_full && e.pending.is_none())
    }

    /// A full backup of `cluster` at `full_unix` is stored; its snapshot
    /// began after revision `base_rev`. Starts a chain from it.
    pub fn full_done(&self, cluster: &str, full_unix: i64, base_rev: i64) {
        let mut inner = self.lock();
        let Some(e) = inner.clusters.get_mut(cluster) else {
            return;
        };
        e.pending = Some(Base {
            full_unix,
            base_rev,
        });
        e.needs_full = false;
        inner.own.poke_key(cluster);
    }

    /// The chain of `cluster`, if it backs up continuously.
    pub fn status(&self, cluster: &str) -> Option<ChainStatus> {
        let inner = self.lock();
        let e = inner.clusters.get(cluster)?;
        Some(ChainStatus {
            base: e.running.as_ref().map(|r| r.base),
            progress: e
                .running
                .as_ref()
                .map(|r| *r.progress.borrow())
                .unwrap_or_default(),
            last_error: e.last_error.clone(),
        })
    }

    /// The full backups that `cluster`'s chain is based on while it is
    /// written or about to start: retention leaves those chains alone even
    /// when their base is gone.
    pub fn live_bases(&self, cluster: &str) -> Vec<i64> {
        let inner = self.lock();
        let Some(e) = inner.clusters.get(cluster) else {
            return Vec::new();
        };
        let running = e.running.as_ref().map(|r| r.base.full_unix);
        running
            .into_iter()
            .chain(e.pending.map(|b| b.full_unix))
            .collect()
    }

    /// Every continuously backed-up cluster with the newest point its
    /// chains stored (running or ended), for the metrics.
    pub fn points(&self) -> Vec<(String, ChainProgress)> {
        let inner = self.lock();
        inner
            .clusters
            .iter()
            .filter_map(|(c, e)| {
                let running = e.running.as_ref().map(|r| *r.progress.borrow());
                // A new chain that stored nothing yet covers less than
                // the one it replaced.
                let p = match (running, e.last) {
                    (Some(r), Some(l)) if r.segments == 0 => l,
                    (r, l) => r.or(l)?,
                };
                Some((c.clone(), p))
            })
            .collect()
    }
}

/// A member set compared without its order (the backup source ranks
/// members by health, which moves).
pub(super) fn member_set(members: &[MemberEndpoint]) -> Vec<(String, Vec<String>)> {
    let mut v: Vec<_> = members
        .iter()
        .map(|m| {
            let mut urls = m.urls.clone();
            urls.sort();
            (m.name.clone(), urls)
        })
        .collect();
    v.sort();
    v
}
