use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use omni_resources::meta::ResourceKey;
use omni_resources::Resource;

use crate::backend::check_version;
use crate::{Backend, StateError};

/// In-memory backend, for tests and ephemeral use.
#[derive(Default)]
pub struct MemoryBackend {
    items: Mutex<BTreeMap<(String, String, String), Resource>>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }
}

fn tuple(key: &ResourceKey) -> (String, String, String) {
    (key.namespace.clone(), key.kind.clone(), key.id.clone())
}

fn poisoned<T>(_: T) -> StateError {
    StateError::Storage("memory state lock poisoned".into())
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>, StateError> {
        Ok(self
            .items
            .lock()
            .map_err(poisoned)?
            .get(&tuple(key))
            .cloned())
    }

    async fn list(&self, namespace: &str, kind: &str) -> Result<Vec<Resource>, StateError> {
        let items = self.items.lock().map_err(poisoned)?;
        let start = (namespace.to_string(), kind.to_string(), String::new());
        Ok(items
            .range(start..)
            .take_while(|((ns, k, _), _)| ns == namespace && k == kind)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn put(&self, resource: &Resource, expected_version: u64) -> Result<(), StateError> {
        let key = resource.key();
        let mut items = self.items.lock().map_err(poisoned)?;
        check_version(
            &key,
            items.get(&tuple(&key)).map(|r| r.metadata.version),
            expected_version,
        )?;
        items.insert(tuple(&key), resource.clone());
        Ok(())
    }

    async fn delete(&self, key: &ResourceKey, expected_version: u64) -> Result<(), StateError> {
        let mut items = self.items.lock().map_err(poisoned)?;
        let current = items.get(&tuple(key)).map(|r| r.metadata.version);
        if current.is_none() {
            return Err(StateError::NotFound(key.clone()));
        }
        check_version(key, current, expected_version)?;
        items.remove(&tuple(key));
        Ok(())
    }
}
