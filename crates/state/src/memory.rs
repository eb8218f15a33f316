use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use omni_resources::meta::ResourceKey;
use omni_resources::Resource;

use crate::backend::check_version;
use crate::feed::Feed;
use crate::{Backend, ChangeStream, EventKind, Fence, StateError};

type Items = BTreeMap<(String, String, String), Resource>;

/// In-memory backend, for tests and ephemeral use. Clones share the data,
/// so two [`crate::State`] handles can race on one backend.
#[derive(Default, Clone)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    items: Mutex<Items>,
    feed: Feed,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn items(&self) -> Result<std::sync::MutexGuard<'_, Items>, StateError> {
        self.shared
            .items
            .lock()
            .map_err(|_| StateError::Storage("memory state lock poisoned".into()))
    }
}

fn tuple(key: &ResourceKey) -> (String, String, String) {
    (key.namespace.clone(), key.kind.clone(), key.id.clone())
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>, StateError> {
        Ok(self.items()?.get(&tuple(key)).cloned())
    }

    async fn list(&self, namespace: &str, kind: &str) -> Result<Vec<Resource>, StateError> {
        let items = self.items()?;
        let start = (namespace.to_string(), kind.to_string(), String::new());
        Ok(items
            .range(start..)
            .take_while(|((ns, k, _), _)| ns == namespace && k == kind)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn put(
        &self,
        resource: &Resource,
        expected_version: u64,
        _fence: Option<&Fence>,
    ) -> Result<(), StateError> {
        let key = resource.key();
        let mut items = self.items()?;
        let previous = items.get(&tuple(&key)).cloned();
        check_version(
            &key,
            previous.as_ref().map(|r| r.metadata.version),
            expected_version,
        )?;
        items.insert(tuple(&key), resource.clone());
        let kind = EventKind::of_write(previous.is_some());
        // Under the items lock: feed order is commit order.
        self.shared.feed.publish(kind, resource.clone(), previous);
        Ok(())
    }

    async fn delete(
        &self,
        key: &ResourceKey,
        expected_version: u64,
        _fence: Option<&Fence>,
    ) -> Result<(), StateError> {
        let mut items = self.items()?;
        let Some(current) = items.get(&tuple(key)) else {
            return Err(StateError::NotFound(key.clone()));
        };
        check_version(key, Some(current.metadata.version), expected_version)?;
        if let Some(gone) = items.remove(&tuple(key)) {
            self.shared
                .feed
                .publish(EventKind::Destroyed, gone.clone(), Some(gone));
        }
        Ok(())
    }

    fn subscribe(&self) -> ChangeStream {
        self.shared.feed.subscribe()
    }

    async fn subscribe_from(&self, after: u64) -> Result<ChangeStream, StateError> {
        Ok(self.shared.feed.subscribe_from(after))
    }
}
