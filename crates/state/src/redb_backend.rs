//! The embedded default: redb, a pure-Rust ACID B-tree with copy-on-write
//! commits (a torn write can never be read back; a commit is durable when
//! it returns).

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use omni_resources::meta::ResourceKey;
use omni_resources::Resource;
use redb::{Database, ReadableTable, TableDefinition};

use crate::backend::check_version;
use crate::feed::Feed;
use crate::{Backend, ChangeStream, EventKind, Fence, StateError};

const RESOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("resources");

type Publish = (EventKind, Resource, Option<Resource>);

/// Durable backend in one file.
pub struct RedbBackend {
    db: Arc<Database>,
    feed: Arc<Feed>,
    // redb serialises write transactions anyway; holding this across
    // commit and publish makes the feed's order the commit order.
    commits: Arc<Mutex<()>>,
}

fn storage(e: impl std::fmt::Display) -> StateError {
    StateError::Storage(e.to_string())
}

/// `namespace \0 type \0 id`: IDs and names never contain NUL, and the
/// separator sorts before every other byte, so a prefix range lists a type.
fn encode_key(namespace: &str, kind: &str, id: &str) -> String {
    format!("{namespace}\0{kind}\0{id}")
}

fn decode(bytes: &[u8]) -> Result<Resource, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt(e.to_string()))
}

/// The resource stored under `k`, if any.
fn stored(table: &redb::Table<&str, &[u8]>, k: &str) -> Result<Option<Resource>, StateError> {
    table
        .get(k)
        .map_err(storage)?
        .map(|v| decode(v.value()))
        .transpose()
}

impl RedbBackend {
    /// Opens (or creates) the database file; parent directories are created.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(storage)?;
        }
        let db = Database::create(path).map_err(storage)?;
        let tx = db.begin_write().map_err(storage)?;
        tx.open_table(RESOURCES).map_err(storage)?;
        tx.commit().map_err(storage)?;
        Ok(RedbBackend {
            db: Arc::new(db),
            feed: Arc::default(),
            commits: Arc::default(),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(storage)?
    }

    /// Runs one write transaction; `f` returns the event to publish.
    async fn write(
        &self,
        f: impl FnOnce(&mut redb::Table<&str, &[u8]>) -> Result<Publish, StateError> + Send + 'static,
    ) -> Result<(), StateError> {
        let feed = self.feed.clone();
        let commits = self.commits.clone();
        self.blocking(move |db| {
            let _order = commits.lock().unwrap_or_else(|p| p.into_inner());
            let tx = db.begin_write().map_err(storage)?;
            let publish = {
                let mut table = tx.open_table(RESOURCES).map_err(storage)?;
                f(&mut table)?
            };
            tx.commit().map_err(storage)?;
            feed.publish(publish.0, publish.1, publish.2);
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl Backend for RedbBackend {
    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>, StateError> {
        let k = encode_key(&key.namespace, &key.kind, &key.id);
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(storage)?;
            let table = tx.open_table(RESOURCES).map_err(storage)?;
            let value = table.get(k.as_str()).map_err(storage)?;
            value.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn list(&self, namespace: &str, kind: &str) -> Result<Vec<Resource>, StateError> {
        let start = encode_key(namespace, kind, "");
        // '\u{1}' is the first byte after the NUL separator.
        let end = format!("{namespace}\0{kind}\u{1}");
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(storage)?;
            let table = tx.open_table(RESOURCES).map_err(storage)?;
            let mut out = Vec::new();
            for item in table.range(start.as_str()..end.as_str()).map_err(storage)? {
                let (_, v) = item.map_err(storage)?;
                out.push(decode(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn put(
        &self,
        resource: &Resource,
        expected_version: u64,
        _fence: Option<&Fence>,
    ) -> Result<(), StateError> {
        let key = resource.key();
        let bytes = serde_json::to_vec(resource).map_err(storage)?;
        let resource = resource.clone();
        self.write(move |table| {
            let k = encode_key(&key.namespace, &key.kind, &key.id);
            let previous = stored(table, &k)?;
            check_version(
                &key,
                previous.as_ref().map(|r| r.metadata.version),
                expected_version,
            )?;
            table
                .insert(k.as_str(), bytes.as_slice())
                .map_err(storage)?;
            let kind = EventKind::of_write(previous.is_some());
            Ok((kind, resource, previous))
        })
        .await
    }

    async fn delete(
        &self,
        key: &ResourceKey,
        expected_version: u64,
        _fence: Option<&Fence>,
    ) -> Result<(), StateError> {
        let key = key.clone();
        self.write(move |table| {
            let k = encode_key(&key.namespace, &key.kind, &key.id);
            let Some(current) = stored(table, &k)? else {
                return Err(StateError::NotFound(key.clone()));
            };
            check_version(&key, Some(current.metadata.version), expected_version)?;
            table.remove(k.as_str()).map_err(storage)?;
            Ok((EventKind::Destroyed, current.clone(), Some(current)))
        })
        .await
    }

    fn subscribe(&self) -> ChangeStream {
        self.feed.subscribe()
    }

    async fn subscribe_from(&self, after: u64) -> Result<ChangeStream, StateError> {
        Ok(self.feed.subscribe_from(after))
    }
}
