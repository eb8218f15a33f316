//! The embedded default: redb, a pure-Rust ACID B-tree with copy-on-write
//! commits (a torn write can never be read back; a commit is durable when
//! it returns).
//!
//! Reads are answered from an in-memory [`Index`] of every resource, kept
//! equal to the file. Writes go to one writer thread that commits whatever
//! has queued up meanwhile in one transaction (group commit): a commit
//! costs an fsync, and with one commit per write a fleet's backups would
//! queue behind the disk. Each write is still checked on its own (its
//! compare-and-swap sees the writes before it in the batch), and is
//! durable, indexed and published before its caller hears back.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use omni_resources::meta::ResourceKey;
use omni_resources::{LabelSelector, Resource};
use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use crate::backend::check_version;
use crate::feed::Feed;
use crate::index::Index;
use crate::{Backend, ChangeStream, EventKind, Fence, StateError};

const RESOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("resources");

/// Most writes committed together.
const BATCH: usize = 256;

/// Durable backend in one file.
pub struct RedbBackend {
    feed: Arc<Feed>,
    index: Arc<Mutex<Index>>,
    writes: Option<mpsc::UnboundedSender<Write>>,
    writer: Option<JoinHandle<()>>,
}

enum Op {
    Put {
        resource: Box<Resource>,
        bytes: Vec<u8>,
    },
    Delete,
}

struct Write {
    key: ResourceKey,
    expected: u64,
    op: Op,
    done: oneshot::Sender<Result<(), StateError>>,
}

fn storage(e: impl std::fmt::Display) -> StateError {
    StateError::Storage(e.to_string())
}

/// `namespace \0 type \0 id`: IDs and names never contain NUL, and the
/// separator sorts before every other byte, so a prefix range lists a type.
fn encode_key(key: &ResourceKey) -> String {
    format!("{}\0{}\0{}", key.namespace, key.kind, key.id)
}

fn decode(bytes: &[u8]) -> Result<Resource, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt(e.to_string()))
}

/// redb's page cache.
const REDB_CACHE_BYTES: usize = 16 << 20;

fn lock(index: &Mutex<Index>) -> std::sync::MutexGuard<'_, Index> {
    index.lock().unwrap_or_else(|p| p.into_inner())
}

impl RedbBackend {
    /// Opens (or creates) the database file; parent directories are created.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(storage)?;
        }
        // Reads are answered by the index, so redb's page cache only serves
        // writes; its 1 GiB default would keep most of the file in memory
        // for nothing (135 MB at 10,000 clusters).
        let db = redb::Builder::new()
            .set_cache_size(REDB_CACHE_BYTES)
            .create(path)
            .map_err(storage)?;
        let tx = db.begin_write().map_err(storage)?;
        tx.open_table(RESOURCES).map_err(storage)?;
        tx.commit().map_err(storage)?;
        let mut index = Index::default();
        {
            let tx = db.begin_read().map_err(storage)?;
            let table = tx.open_table(RESOURCES).map_err(storage)?;
            for item in table.iter().map_err(storage)? {
                let (_, v) = item.map_err(storage)?;
                index.put(decode(v.value())?);
            }
        }
        let index = Arc::new(Mutex::new(index));
        let feed = Arc::new(Feed::default());
        let (writes, queue) = mpsc::unbounded_channel();
        let writer = Writer {
            db,
            index: index.clone(),
            feed: feed.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("omni-redb-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(storage)?;
        Ok(RedbBackend {
            feed,
            index,
            writes: Some(writes),
            writer: Some(writer),
        })
    }

    async fn write(&self, key: ResourceKey, expected: u64, op: Op) -> Result<(), StateError> {
        let (done, result) = oneshot::channel();
        let write = Write {
            key,
            expected,
            op,
            done,
        };
        let gone = || StateError::Storage("the state database is closed".into());
        self.writes
            .as_ref()
            .ok_or_else(gone)?
            .send(write)
            .map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }
}

impl Drop for RedbBackend {
    /// Closes the file before returning, so that it can be opened again.
    fn drop(&mut self) {
        self.writes.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The one thread that writes the file.
struct Writer {
    db: Database,
    index: Arc<Mutex<Index>>,
    feed: Arc<Feed>,
}

/// A write that passed its check, waiting for the batch's commit.
struct Applied {
    kind: EventKind,
    resource: Resource,
    previous: Option<Resource>,
    done: oneshot::Sender<Result<(), StateError>>,
}

impl Writer {
    fn run(self, mut queue: mpsc::UnboundedReceiver<Write>) {
        while let Some(first) = queue.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match queue.try_recv() {
                    Ok(w) => batch.push(w),
                    Err(_) => break,
                }
            }
            self.commit(batch);
        }
    }

    fn commit(&self, batch: Vec<Write>) {
        let mut applied: Vec<Applied> = Vec::with_capacity(batch.len());
        let outcome = (|| {
            let tx = self.db.begin_write().map_err(storage)?;
            {
                let mut table = tx.open_table(RESOURCES).map_err(storage)?;
                // What earlier writes of this batch left under a key.
                let mut overlay: HashMap<ResourceKey, Option<Resource>> = HashMap::new();
                for w in batch {
                    let current = match overlay.get(&w.key) {
                        Some(c) => c.clone(),
                        None => lock(&self.index).get(&w.key).cloned(),
                    };
                    match apply(&mut table, &w, current)? {
                        Ok((kind, resource, previous)) => {
                            let after = (kind != EventKind::Destroyed).then(|| resource.clone());
                            overlay.insert(w.key, after);
                            applied.push(Applied {
                                kind,
                                resource,
                                previous,
                                done: w.done,
                            });
                        }
                        Err(refused) => {
                            let _ = w.done.send(Err(refused));
                        }
                    }
                }
            }
            tx.commit().map_err(storage)
        })();
        if let Err(e) = outcome {
            tracing::error!(error = %e, writes = applied.len(), "state commit failed");
            for a in applied {
                let _ = a.done.send(Err(StateError::Storage(e.to_string())));
            }
            return;
        }
        for a in applied {
            {
                let mut index = lock(&self.index);
                match a.kind {
                    EventKind::Destroyed => {
                        index.remove(&a.resource.key());
                    }
                    _ => index.put(a.resource.clone()),
                }
            }
            self.feed.publish(a.kind, a.resource, a.previous);
            let _ = a.done.send(Ok(()));
        }
    }
}

type Checked = Result<(EventKind, Resource, Option<Resource>), StateError>;

/// Checks one write against what is stored and writes it into the table.
/// The outer error fails the whole transaction; the inner one only this
/// write (a stale version, a missing resource), which then changed nothing.
fn apply(
    table: &mut redb::Table<&str, &[u8]>,
    w: &Write,
    current: Option<Resource>,
) -> Result<Checked, StateError> {
    let version = current.as_ref().map(|r| r.metadata.version);
    if let Err(refused) = check_version(&w.key, version, w.expected) {
        return Ok(Err(refused));
    }
    let k = encode_key(&w.key);
    Ok(match &w.op {
        Op::Put { resource, bytes } => {
            table
                .insert(k.as_str(), bytes.as_slice())
                .map_err(storage)?;
            let kind = EventKind::of_write(current.is_some());
            Ok((kind, (**resource).clone(), current))
        }
        Op::Delete => {
            let Some(current) = current else {
                return Ok(Err(StateError::NotFound(w.key.clone())));
            };
            table.remove(k.as_str()).map_err(storage)?;
            Ok((EventKind::Destroyed, current.clone(), Some(current)))
        }
    })
}

#[async_trait]
impl Backend for RedbBackend {
    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>, StateError> {
        Ok(lock(&self.index).get(key).cloned())
    }

    async fn list(
        &self,
        namespace: &str,
        kind: &str,
        selector: &LabelSelector,
    ) -> Result<Vec<Resource>, StateError> {
        Ok(lock(&self.index).list(namespace, kind, selector))
    }

    async fn put(
        &self,
        resource: &Resource,
        expected_version: u64,
        _fence: Option<&Fence>,
    ) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(resource).map_err(storage)?;
        let op = Op::Put {
            resource: Box::new(resource.clone()),
            bytes,
        };
        self.write(resource.key(), expected_version, op).await
    }

    async fn delete(
        &self,
        key: &ResourceKey,
        expected_version: u64,
        _fence: Option<&Fence>,
    ) -> Result<(), StateError> {
        self.write(key.clone(), expected_version, Op::Delete).await
    }

    fn subscribe(&self) -> ChangeStream {
        self.feed.subscribe()
    }

    async fn subscribe_from(&self, after: u64) -> Result<ChangeStream, StateError> {
        Ok(self.feed.subscribe_from(after))
    }
}
