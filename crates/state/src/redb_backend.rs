//! The embedded default: redb, a pure-Rust ACID B-tree with copy-on-write
//! commits (a torn write can never be read back; a commit is durable when
//! it returns).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use omni_resources::meta::ResourceKey;
use omni_resources::Resource;
use redb::{Database, ReadableTable, TableDefinition};

use crate::backend::check_version;
use crate::{Backend, StateError};

const RESOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("resources");

/// Durable backend in one file.
pub struct RedbBackend {
    db: Arc<Database>,
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

/// The version stored under `k`, if any.
fn stored_version(table: &redb::Table<&str, &[u8]>, k: &str) -> Result<Option<u64>, StateError> {
    table
        .get(k)
        .map_err(storage)?
        .map(|v| decode(v.value()).map(|r| r.metadata.version))
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
        Ok(RedbBackend { db: Arc::new(db) })
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

    async fn put(&self, resource: &Resource, expected_version: u64) -> Result<(), StateError> {
        let key = resource.key();
        let bytes = serde_json::to_vec(resource).map_err(storage)?;
        self.blocking(move |db| {
            let k = encode_key(&key.namespace, &key.kind, &key.id);
            let tx = db.begin_write().map_err(storage)?;
            {
                let mut table = tx.open_table(RESOURCES).map_err(storage)?;
                let current = stored_version(&table, &k)?;
                check_version(&key, current, expected_version)?;
                table
                    .insert(k.as_str(), bytes.as_slice())
                    .map_err(storage)?;
            }
            tx.commit().map_err(storage)
        })
        .await
    }

    async fn delete(&self, key: &ResourceKey, expected_version: u64) -> Result<(), StateError> {
        let key = key.clone();
        self.blocking(move |db| {
            let k = encode_key(&key.namespace, &key.kind, &key.id);
            let tx = db.begin_write().map_err(storage)?;
            {
                let mut table = tx.open_table(RESOURCES).map_err(storage)?;
                let current = stored_version(&table, &k)?;
                if current.is_none() {
                    return Err(StateError::NotFound(key.clone()));
                }
                check_version(&key, current, expected_version)?;
                table.remove(k.as_str()).map_err(storage)?;
            }
            tx.commit().map_err(storage)
        })
        .await
    }
}
