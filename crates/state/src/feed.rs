//! Change feeds: how every write reaches every watcher.
//!
//! A backend publishes each committed write, in commit order, tagged with a
//! store-wide revision. The embedded backends keep an in-process [`Feed`]
//! with a bounded history (so a watch can resume from a recent revision);
//! the etcd backend feeds from etcd's own watch, so every replica sees
//! every other replica's writes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use omni_resources::Resource;
use tokio::sync::{broadcast, mpsc};

use crate::{Event, EventKind};

/// One item of a change stream.
#[derive(Debug, Clone)]
pub enum Change {
    Event(Arc<Event>),
    /// Events were lost (the watcher lagged, or the store compacted its
    /// history): the watcher must re-list.
    Resync,
}

enum Source {
    Live(broadcast::Receiver<Change>),
    Own(mpsc::UnboundedReceiver<Change>),
}

/// Changes in commit order; duplicates (by revision) are dropped, so a
/// backlog and a live feed can overlap.
pub struct ChangeStream {
    backlog: VecDeque<Change>,
    source: Source,
    last: u64,
}

impl ChangeStream {
    pub(crate) fn live(rx: broadcast::Receiver<Change>) -> Self {
        ChangeStream {
            backlog: VecDeque::new(),
            source: Source::Live(rx),
            last: 0,
        }
    }

    pub(crate) fn own(rx: mpsc::UnboundedReceiver<Change>) -> Self {
        ChangeStream {
            backlog: VecDeque::new(),
            source: Source::Own(rx),
            last: 0,
        }
    }

    /// The next change; `None` when the backend is gone.
    pub async fn recv(&mut self) -> Option<Change> {
        loop {
            let change = match self.backlog.pop_front() {
                Some(c) => c,
                None => match &mut self.source {
                    Source::Live(rx) => match rx.recv().await {
                        Ok(c) => c,
                        Err(broadcast::error::RecvError::Lagged(_)) => Change::Resync,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    Source::Own(rx) => rx.recv().await?,
                },
            };
            if let Change::Event(ev) = &change {
                if ev.revision <= self.last {
                    continue;
                }
                self.last = ev.revision;
            }
            return Some(change);
        }
    }
}

/// How many past events an in-process feed keeps for resuming watches.
const HISTORY: usize = 4096;

/// The in-process feed of the embedded backends. `publish` must be called
/// under the backend's commit lock, so revisions follow commit order.
pub(crate) struct Feed {
    inner: Mutex<FeedInner>,
    tx: broadcast::Sender<Change>,
}

struct FeedInner {
    revision: u64,
    history: VecDeque<Arc<Event>>,
}

impl Default for Feed {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(HISTORY);
        Feed {
            inner: Mutex::new(FeedInner {
                revision: 0,
                history: VecDeque::new(),
            }),
            tx,
        }
    }
}

impl Feed {
    pub(crate) fn publish(&self, kind: EventKind, resource: Resource, previous: Option<Resource>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.revision += 1;
        let ev = Arc::new(Event {
            kind,
            resource,
            previous,
            revision: inner.revision,
        });
        if inner.history.len() == HISTORY {
            inner.history.pop_front();
        }
        inner.history.push_back(ev.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(Change::Event(ev));
    }

    pub(crate) fn subscribe(&self) -> ChangeStream {
        ChangeStream::live(self.tx.subscribe())
    }

    /// Events after revision `after`, then live ones; starts with a
    /// [`Change::Resync`] when the history no longer reaches back that far.
    pub(crate) fn subscribe_from(&self, after: u64) -> ChangeStream {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut stream = ChangeStream::live(self.tx.subscribe());
        let oldest = inner
            .history
            .front()
            .map_or(inner.revision + 1, |e| e.revision);
        if after + 1 < oldest {
            stream.backlog.push_back(Change::Resync);
        }
        stream.backlog.extend(
            inner
                .history
                .iter()
                .filter(|e| e.revision > after)
                .map(|e| Change::Event(e.clone())),
        );
        stream
    }
}
