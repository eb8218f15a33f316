//! The console's view of the fleet: rows computed from the state, a little
//! memory of what the console saw happen (sizes of newest backups, backup
//! durations, drill results), and one watcher that turns state changes
//! into row updates for every open page.
//!
//! The memory lives in the process: after a restart sizes come back from
//! the backup statuses (which carry the newest backup's size), and the
//! duration and drill histories start empty.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use omni_api::hooks::ExternalSource;
use omni_resources::specs::backup::{status, EtcdBackupSpec, EtcdBackupStatusSpec};
use omni_resources::specs::backup_drill::EtcdBackupDrillStatusSpec;
use omni_resources::specs::cluster::ClusterSpec;
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Timestamp, LABEL_CLUSTER, NS_DEFAULT, NS_EPHEMERAL};
use omni_state::{EventKind, State, StateError};
use tokio::sync::broadcast;

use crate::model::Row;

/// Backup durations and drill results remembered per cluster.
const HISTORY: usize = 50;

/// A change the open pages should show.
#[derive(Debug, Clone)]
pub enum Update {
    Row(Arc<Row>),
    Gone(String),
    /// The watcher fell behind: pages reload.
    Reload,
    /// The server is stopping: event streams end, so a graceful shutdown
    /// does not wait for open pages.
    Closing,
}

/// One drill result as the console saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillEntry {
    pub status: i32,
    pub backup: String,
    pub error: String,
    pub finished: i64,
    pub seconds: f64,
}

#[derive(Default)]
struct Memory {
    sizes: HashMap<String, u64>,
    /// backup time → seconds from attempt to stored.
    durations: HashMap<String, BTreeMap<i64, i64>>,
    drills: HashMap<String, VecDeque<DrillEntry>>,
}

#[derive(Clone)]
pub struct Fleet {
    state: State,
    backups: Option<Arc<dyn ExternalSource>>,
    memory: Arc<Mutex<Memory>>,
    updates: broadcast::Sender<Update>,
}

fn now() -> i64 {
    Timestamp::now().seconds
}

impl Fleet {
    pub fn new(state: State, backups: Option<Arc<dyn ExternalSource>>) -> Fleet {
        Fleet {
            state,
            backups,
            memory: Arc::default(),
            updates: broadcast::channel(1024).0,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Ends every open event stream (the server is stopping).
    pub fn close_streams(&self) {
        let _ = self.updates.send(Update::Closing);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.updates.subscribe()
    }

    fn mem(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers the size of a cluster's newest backup (the benchmark and
    /// the cluster page feed it too).
    pub fn set_size(&self, cluster: &str, size: u64) {
        self.mem().sizes.insert(cluster.to_string(), size);
    }

    pub fn durations(&self, cluster: &str) -> BTreeMap<i64, i64> {
        self.mem()
            .durations
            .get(cluster)
            .cloned()
            .unwrap_or_default()
    }

    pub fn drills(&self, cluster: &str) -> Vec<DrillEntry> {
        self.mem()
            .drills
            .get(cluster)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every cluster's row, by name.
    pub async fn rows(&self) -> Result<Vec<Row>, StateError> {
        let all = LabelSelector::default();
        let clusters = self.state.list(NS_DEFAULT, ClusterSpec::TYPE, &all).await?;
        let statuses = specs::<EtcdBackupStatusSpec>(&self.state, &all).await?;
        let drills = specs::<EtcdBackupDrillStatusSpec>(&self.state, &all).await?;
        let sizes = self.mem().sizes.clone();
        let t = now();
        let mut rows: Vec<Row> = clusters
            .iter()
            .map(|c| {
                let id = &c.metadata.id;
                let spec = c.spec_as::<ClusterSpec>().ok();
                Row::build(
                    id,
                    spec.as_ref(),
                    statuses.get(id),
                    drills.get(id),
                    sizes.get(id).copied(),
                    t,
                )
            })
            .collect();
        rows.sort_by(|a, b| a.cluster.cmp(&b.cluster));
        Ok(rows)
    }

    /// One cluster's row; `None` when the cluster does not exist.
    pub async fn row(&self, cluster: &str) -> Result<Option<Row>, StateError> {
        let Some((_, spec)) = self
            .state
            .get_spec::<ClusterSpec>(NS_DEFAULT, cluster)
            .await?
        else {
            return Ok(None);
        };
        let backup = self
            .state
            .get_spec::<EtcdBackupStatusSpec>(NS_EPHEMERAL, cluster)
            .await?
            .map(|(_, s)| s);
        let drill = self
            .state
            .get_spec::<EtcdBackupDrillStatusSpec>(NS_EPHEMERAL, cluster)
            .await?
            .map(|(_, s)| s);
        let size = self.mem().sizes.get(cluster).copied();
        Ok(Some(Row::build(
            cluster,
            Some(&spec),
            backup.as_ref(),
            drill.as_ref(),
            size,
            now(),
        )))
    }

    /// The cluster's stored backups, newest first, straight from the store.
    pub async fn list_backups(
        &self,
        cluster: &str,
    ) -> Result<Vec<(String, EtcdBackupSpec)>, String> {
        let Some(source) = &self.backups else {
            return Ok(Vec::new());
        };
        let selector = LabelSelector::equals(LABEL_CLUSTER, cluster);
        let list = source
            .list(EtcdBackupSpec::TYPE, &selector)
            .await
            .map_err(|e| e.to_string())?;
        let mut out: Vec<(String, EtcdBackupSpec)> = list
            .into_iter()
            .filter_map(|r| Some((r.metadata.id.clone(), r.spec_as().ok()?)))
            .collect();
        out.sort_by_key(|b| std::cmp::Reverse(b.1.createdat.seconds));
        if let Some((_, newest)) = out.first() {
            self.set_size(cluster, newest.size);
        }
        Ok(out)
    }

    async fn publish(&self, cluster: &str) {
        match self.row(cluster).await {
            Ok(Some(row)) => {
                let _ = self.updates.send(Update::Row(Arc::new(row)));
            }
            Ok(None) => {
                let _ = self.updates.send(Update::Gone(cluster.to_string()));
            }
            Err(e) => tracing::warn!(cluster, error = %e, "console: reading a row failed"),
        }
    }

    /// Folds a status change into the memory; true for a new backup whose
    /// size the status does not carry (the store has to be asked).
    fn remember(&self, event: &omni_state::Event) -> bool {
        let r = &event.resource;
        let cluster = r.metadata.id.clone();
        if event.kind == EventKind::Destroyed {
            return false;
        }
        let mut new_backup = false;
        if r.metadata.kind == EtcdBackupStatusSpec::TYPE {
            if let Ok(s) = r.spec_as::<EtcdBackupStatusSpec>() {
                let (at, attempt) = (s.lastbackuptime.seconds, s.lastbackupattempt.seconds);
                if s.status == status::OK && at > 0 {
                    let mut mem = self.mem();
                    let d = mem.durations.entry(cluster.clone()).or_default();
                    new_backup = !d.contains_key(&at);
                    d.insert(at, (at - attempt).max(0));
                    while d.len() > HISTORY {
                        d.pop_first();
                    }
                    if s.lastbackupsize > 0 {
                        mem.sizes.insert(cluster, s.lastbackupsize);
                        new_backup = false;
                    } else if new_backup {
                        // Better no size than the size of an older backup.
                        mem.sizes.remove(&cluster);
                    }
                }
            }
        } else if r.metadata.kind == EtcdBackupDrillStatusSpec::TYPE {
            if let Ok(s) = r.spec_as::<EtcdBackupDrillStatusSpec>() {
                if s.status != status::RUNNING && !s.finishedat.is_zero() {
                    let entry = DrillEntry {
                        status: s.status,
                        backup: s.backup.clone(),
                        error: s.error.clone(),
                        finished: s.finishedat.seconds,
                        seconds: s.duration.to_std().map_or(0.0, |d| d.as_secs_f64()),
                    };
                    let mut mem = self.mem();
                    let h = mem.drills.entry(cluster).or_default();
                    if h.front() != Some(&entry) {
                        h.push_front(entry);
                        h.truncate(HISTORY);
                    }
                }
            }
        }
        new_backup
    }

    /// Watches clusters, backup and drill statuses until the state goes,
    /// publishing each changed cluster's row. A new backup refreshes the
    /// cluster's size from the store first.
    pub async fn run(self) {
        let kinds = [
            (NS_DEFAULT, ClusterSpec::TYPE),
            (NS_EPHEMERAL, EtcdBackupStatusSpec::TYPE),
            (NS_EPHEMERAL, EtcdBackupDrillStatusSpec::TYPE),
        ];
        let mut watches: Vec<_> = kinds
            .iter()
            .map(|(ns, kind)| self.state.watch(Some(ns), kind))
            .collect();
        self.warm_up().await;
        let sizes = self.clone();
        tokio::spawn(async move { sizes.warm_up_sizes().await });
        loop {
            let next = select_next(&mut watches).await;
            match next {
                Ok(event) => {
                    let cluster = event.resource.metadata.id.clone();
                    let unsized_backup = self.remember(&event);
                    // Rows are built for open pages only: with none open, a
                    // fleet's every status change would cost a row (and,
                    // for a backup of unknown size, a store listing).
                    if self.updates.receiver_count() == 0 {
                        continue;
                    }
                    if unsized_backup {
                        let _ = self.list_backups(&cluster).await;
                    }
                    self.publish(&cluster).await;
                }
                Err(0) => return,
                Err(missed) => {
                    tracing::warn!(missed, "console watcher fell behind; pages reload");
                    let _ = self.updates.send(Update::Reload);
                }
            }
        }
    }

    /// Learns the current backup and drill statuses.
    async fn warm_up(&self) {
        let all = LabelSelector::default();
        for kind in [EtcdBackupStatusSpec::TYPE, EtcdBackupDrillStatusSpec::TYPE] {
            let Ok(list) = self.state.list(NS_EPHEMERAL, kind, &all).await else {
                continue;
            };
            for r in list {
                let event = omni_state::Event {
                    kind: EventKind::Created,
                    resource: r,
                    previous: None,
                    revision: 0,
                };
                self.remember(&event);
            }
        }
    }

    /// Learns from the store the size of each cluster's newest backup that
    /// its status does not carry (statuses written by older versions).
    async fn warm_up_sizes(&self) {
        let all = LabelSelector::default();
        let Ok(clusters) = self.state.list(NS_DEFAULT, ClusterSpec::TYPE, &all).await else {
            return;
        };
        for c in clusters {
            if self.mem().sizes.contains_key(&c.metadata.id) {
                continue;
            }
            if let Err(e) = self.list_backups(&c.metadata.id).await {
                tracing::debug!(cluster = %c.metadata.id, error = %e, "console: no backup listing");
            }
        }
    }
}

async fn specs<K: Kind + serde::de::DeserializeOwned>(
    state: &State,
    all: &LabelSelector,
) -> Result<HashMap<String, K>, StateError> {
    Ok(state
        .list(NS_EPHEMERAL, K::TYPE, all)
        .await?
        .into_iter()
        .filter_map(|r| Some((r.metadata.id.clone(), r.spec_as::<K>().ok()?)))
        .collect())
}

/// The next event of any of the watches (`Watch::next` is cancel-safe).
async fn select_next(watches: &mut [omni_state::Watch]) -> Result<Arc<omni_state::Event>, u64> {
    let futs = watches.iter_mut().map(|w| Box::pin(w.next()));
    futures::future::select_all(futs).await.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use omni_resources::Resource;

    fn status_event(cluster: &str, at: i64, size: u64) -> omni_state::Event {
        let spec = EtcdBackupStatusSpec {
            status: status::OK,
            lastbackuptime: Timestamp::from_unix(at),
            lastbackupattempt: Timestamp::from_unix(at),
            lastbackupsize: size,
            ..Default::default()
        };
        omni_state::Event {
            kind: EventKind::Updated,
            resource: Resource::from_spec(EtcdBackupStatusSpec::TYPE, NS_EPHEMERAL, cluster, &spec),
            previous: None,
            revision: 1,
        }
    }

    fn size(fleet: &Fleet, cluster: &str) -> Option<u64> {
        fleet.mem().sizes.get(cluster).copied()
    }

    /// The size column comes from the status: a backup that says its size
    /// needs no store listing; one that does not drops the older size
    /// rather than show it as the newest one's.
    #[test]
    fn a_status_with_its_size_needs_no_listing() {
        let fleet = Fleet::new(State::memory(), None);
        assert!(!fleet.remember(&status_event("c1", 100, 4096)));
        assert_eq!(size(&fleet, "c1"), Some(4096));
        // The same backup seen again changes nothing.
        assert!(!fleet.remember(&status_event("c1", 100, 4096)));
        assert!(!fleet.remember(&status_event("c1", 200, 8192)));
        assert_eq!(size(&fleet, "c1"), Some(8192));
        // A newer backup of unknown size: ask the store, show no stale size.
        assert!(fleet.remember(&status_event("c1", 300, 0)));
        assert_eq!(size(&fleet, "c1"), None);
        assert_eq!(fleet.durations("c1").len(), 3);
    }
}
