//! A replica's in-memory view of the state in etcd, fed by the shared watch.
//!
//! Controllers reconcile one cluster at a time and ask for that cluster's
//! machines and statuses with a label selector. etcd cannot filter by
//! label, so answering from etcd means reading and decoding every resource
//! of the type on each reconcile: O(fleet) per reconcile, O(fleet²) per
//! round. The view answers from the same label index as the embedded
//! backends.
//!
//! Reads from the view stay linearizable: a list first makes a tiny
//! quorum read of etcd (which fails without quorum, so the API still
//! answers 503 when the store is unavailable) to learn the store revision
//! R at that moment, then waits until the view is known to reflect R: an
//! event at R or later came in, or the watch reported progress past R
//! (asked for when needed, because writes outside our prefix move R too).
//! When that does not happen soon, or while the view is reloading after a
//! compaction, the list reads etcd itself as before.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd_client::{Client, GetOptions};
use omni_resources::meta::ResourceKey;
use omni_resources::{LabelSelector, Resource};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::{decode, etcd_error};
use crate::index::Index;
use crate::{Change, EventKind, StateError};

/// Longest a list waits for the view to catch up before reading etcd.
const CATCH_UP: Duration = Duration::from_secs(1);

pub(crate) struct Cache {
    inner: Mutex<Inner>,
    /// Newest store revision the view is known to reflect.
    seen: watch::Sender<i64>,
    /// Asks the watch for a progress report.
    pub(crate) want_progress: Arc<Notify>,
    /// A list waited in vain: until the view moves again, lists go to
    /// etcd at once rather than each waiting out [`CATCH_UP`] (the watch
    /// is reconnecting, say).
    lagging: AtomicBool,
    from_view: AtomicU64,
    from_etcd: AtomicU64,
}

struct Inner {
    index: Index,
    /// False from a compaction of the watch's history until the reload.
    valid: bool,
    /// Events at or below this revision are in the index already (it was
    /// loaded at this revision).
    floor: i64,
    /// Newest event revision the watch delivered.
    last_event: i64,
}

/// How many reads the view answered (lists, and the controllers' gets),
/// and how many went to etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadStats {
    pub from_view: u64,
    pub from_etcd: u64,
}

impl Cache {
    /// A view of `index`, read at store revision `revision`.
    pub(crate) fn new(index: Index, revision: i64) -> Self {
        Cache {
            inner: Mutex::new(Inner {
                index,
                valid: true,
                floor: revision,
                last_event: revision,
            }),
            seen: watch::channel(revision).0,
            want_progress: Arc::new(Notify::new()),
            lagging: AtomicBool::new(false),
            from_view: AtomicU64::new(0),
            from_etcd: AtomicU64::new(0),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn saw(&self, revision: i64) {
        let moved = self.seen.send_if_modified(|s| {
            let newer = revision > *s;
            if newer {
                *s = revision;
            }
            newer
        });
        if moved {
            self.lagging.store(false, Ordering::Relaxed);
        }
    }

    /// Applies one change from the watch, before it reaches watchers, so a
    /// watcher that lists on an event sees that event's write. Returns
    /// whether the view must be reloaded.
    pub(crate) fn apply(&self, change: &Change) -> bool {
        let ev = match change {
            Change::Resync => {
                self.inner().valid = false;
                return true;
            }
            Change::Event(ev) => ev,
        };
        let revision = i64::try_from(ev.revision).unwrap_or(i64::MAX);
        {
            let mut inner = self.inner();
            inner.last_event = inner.last_event.max(revision);
            if revision > inner.floor {
                match ev.kind {
                    EventKind::Destroyed => {
                        inner.index.remove(&ev.resource.key());
                    }
                    _ => inner.index.put(ev.resource.clone()),
                }
            }
        }
        self.saw(revision);
        false
    }

    /// The watch is synced up to `revision`: nothing at or below it is
    /// still to come.
    pub(crate) fn progress(&self, revision: i64) {
        self.saw(revision);
    }

    /// Replaces the view with `index`, read at `revision`, unless the watch
    /// already delivered something newer (the caller reads again).
    fn install(&self, index: Index, revision: i64) -> bool {
        let mut inner = self.inner();
        if inner.last_event > revision {
            return false;
        }
        *inner = Inner {
            index,
            valid: true,
            floor: revision,
            last_event: revision,
        };
        drop(inner);
        self.saw(revision);
        true
    }

    /// Waits until the view reflects store revision `revision`; false when
    /// that does not happen soon (the caller reads etcd).
    async fn caught_up(&self, revision: i64) -> bool {
        let mut seen = self.seen.subscribe();
        if *seen.borrow() >= revision {
            return true;
        }
        self.want_progress.notify_one();
        if self.lagging.load(Ordering::Relaxed) {
            return false;
        }
        let caught_up = seen.wait_for(|s| *s >= revision);
        if matches!(tokio::time::timeout(CATCH_UP, caught_up).await, Ok(Ok(_))) {
            return true;
        }
        self.lagging.store(true, Ordering::Relaxed);
        false
    }

    /// The matching resources as of `revision` or later; `None` when the
    /// view cannot tell soon (the caller reads etcd).
    pub(crate) async fn list(
        &self,
        namespace: &str,
        kind: &str,
        selector: &LabelSelector,
        revision: i64,
    ) -> Option<Vec<Resource>> {
        if !self.caught_up(revision).await {
            return None;
        }
        let inner = self.inner();
        inner
            .valid
            .then(|| inner.index.list(namespace, kind, selector))
    }

    /// The resource under `key` as of `revision` or later (`Some(None)`:
    /// there is none); `None` when the view cannot tell soon.
    pub(crate) async fn get(&self, key: &ResourceKey, revision: i64) -> Option<Option<Resource>> {
        if !self.caught_up(revision).await {
            return None;
        }
        let inner = self.inner();
        inner.valid.then(|| inner.index.get(key).cloned())
    }

    pub(crate) fn count(&self, from_view: bool) {
        let counter = if from_view {
            &self.from_view
        } else {
            &self.from_etcd
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> ReadStats {
        ReadStats {
            from_view: self.from_view.load(Ordering::Relaxed),
            from_etcd: self.from_etcd.load(Ordering::Relaxed),
        }
    }
}

/// Reads every resource under `prefix`: the index and the revision it was
/// read at.
pub(crate) async fn load(client: &mut Client, prefix: &str) -> Result<(Index, i64), StateError> {
    let resp = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .map_err(etcd_error)?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let mut index = Index::default();
    for kv in resp.kvs() {
        match decode(kv.value(), kv.version()) {
            Ok(r) => index.put(r),
            Err(e) => tracing::warn!(error = %e, "state view: undecodable value skipped"),
        }
    }
    Ok((index, revision))
}

/// Reloads the view after the watch lost history, until it holds or the
/// backend goes.
pub(crate) async fn reload(
    cache: Arc<Cache>,
    mut client: Client,
    prefix: String,
    cancel: CancellationToken,
) {
    let mut wait = Duration::from_millis(100);
    loop {
        let loaded = tokio::select! {
            _ = cancel.cancelled() => return,
            l = load(&mut client, &prefix) => l,
        };
        match loaded {
            Ok((index, revision)) => {
                if cache.install(index, revision) {
                    tracing::info!(revision, "state view reloaded");
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "state view: reload failed; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;

    const KIND: &str = "Things";

    fn thing(id: &str, cluster: &str) -> Resource {
        let mut r = Resource::new(KIND, "default", id, serde_json::json!({}));
        r.metadata.labels.insert("cluster".into(), cluster.into());
        r
    }

    fn event(kind: EventKind, r: Resource, revision: u64) -> Change {
        Change::Event(Arc::new(Event {
            kind,
            previous: None,
            resource: r,
            revision,
        }))
    }

    fn ids(v: Option<Vec<Resource>>) -> Option<Vec<String>> {
        v.map(|v| v.into_iter().map(|r| r.metadata.id).collect())
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap()
    }

    #[tokio::test]
    async fn events_the_load_already_holds_are_skipped() {
        let mut index = Index::default();
        index.put(thing("a", "c1"));
        let cache = Cache::new(index, 10);
        // A late event at the load's revision or before must not undo it.
        assert!(!cache.apply(&event(EventKind::Destroyed, thing("a", "c1"), 9)));
        cache.apply(&event(EventKind::Created, thing("b", "c1"), 11));
        let got = cache.list("default", KIND, &sel("cluster=c1"), 11).await;
        assert_eq!(ids(got), Some(vec!["a".into(), "b".into()]));
        cache.apply(&event(EventKind::Destroyed, thing("a", "c1"), 12));
        cache.apply(&event(EventKind::Updated, thing("b", "c2"), 13));
        let got = cache.list("default", KIND, &sel("cluster=c2"), 13).await;
        assert_eq!(ids(got), Some(vec!["b".into()]));
        let got = cache.list("default", KIND, &sel("cluster=c1"), 13).await;
        assert_eq!(ids(got), Some(vec![]));
    }

    #[tokio::test]
    async fn a_list_waits_for_its_revision_then_answers_with_it() {
        let cache = Arc::new(Cache::new(Index::default(), 5));
        let reader = cache.clone();
        let list = tokio::spawn(async move { reader.list("default", KIND, &sel(""), 7).await });
        // The list asked the watch for progress and is waiting.
        tokio::time::timeout(Duration::from_secs(1), cache.want_progress.notified())
            .await
            .expect("progress asked for");
        assert!(!list.is_finished());
        cache.apply(&event(EventKind::Created, thing("a", "c1"), 6));
        // A write outside the view's prefix moved the store to 7: only a
        // progress report can say the view is there.
        cache.progress(7);
        assert_eq!(ids(list.await.unwrap()), Some(vec!["a".into()]));
        // Nothing comes: the caller reads etcd instead, and the next list
        // does so without waiting, until the view moves again.
        assert_eq!(cache.list("default", KIND, &sel(""), 8).await, None);
        let everything = sel("");
        let next = tokio::time::timeout(
            Duration::from_millis(200),
            cache.list("default", KIND, &everything, 8),
        );
        assert_eq!(next.await.expect("no second wait"), None);
        cache.progress(8);
        let got = cache.list("default", KIND, &sel(""), 8).await;
        assert_eq!(ids(got), Some(vec!["a".into()]));
    }

    #[tokio::test]
    async fn after_lost_history_only_a_load_newer_than_every_event_is_installed() {
        let cache = Cache::new(Index::default(), 5);
        assert!(cache.apply(&Change::Resync), "a resync asks for a reload");
        assert_eq!(cache.list("default", KIND, &sel(""), 5).await, None);
        // The watch, resumed from the oldest revision, runs ahead of a load.
        cache.apply(&event(EventKind::Created, thing("a", "c1"), 9));
        let mut stale = Index::default();
        stale.put(thing("old", "c1"));
        assert!(!cache.install(stale, 8));
        assert_eq!(cache.list("default", KIND, &sel(""), 9).await, None);
        let mut fresh = Index::default();
        fresh.put(thing("a", "c1"));
        assert!(cache.install(fresh, 9));
        let got = cache.list("default", KIND, &sel(""), 9).await;
        assert_eq!(ids(got), Some(vec!["a".into()]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_reads_the_store_from_etcd() {
        let etcd = omni_testkit::EtcdCluster::start(1).await.unwrap();
        let value = serde_json::to_vec(&thing("a", "c1")).unwrap();
        etcd.put("/p/r/default\0Things\0a", value).await.unwrap();
        let cache = Arc::new(Cache::new(Index::default(), 1));
        cache.apply(&Change::Resync);
        let client = etcd.client().await.unwrap();
        let run = reload(
            cache.clone(),
            client,
            "/p/r/".into(),
            CancellationToken::new(),
        );
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("reloaded");
        let now = *cache.seen.borrow();
        let got = cache.list("default", KIND, &sel("cluster=c1"), now).await;
        let got = got.expect("the view answers again");
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].metadata.version, 1,
            "the key's version is the resource's"
        );
    }
}
