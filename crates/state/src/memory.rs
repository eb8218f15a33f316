use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use omni_resources::meta::ResourceKey;
use omni_resources::{LabelSelector, Resource};

use crate::backend::check_version;
use crate::feed::Feed;
use crate::index::Index;
use crate::{Backend, ChangeStream, EventKind, Fence, StateError};

/// In-memory backend, for tests and ephemeral use. Clones share the data,
/// so two [`crate::State`] handles can race on one backend.
#[derive(Default, Clone)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    items: Mutex<Index>,
    feed: Feed,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn items(&self) -> Result<std::sync::MutexGuard<'_, Index>, StateError> {
        self.shared
            .items
            .lock()
            .map_err(|_| StateError::Storage("memory state lock poisoned".into()))
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>, StateError> {
        Ok(self.items()?.get(key).cloned())
    }

    async fn list(
        &self,
        namespace: &str,
        kind: &str,
        selector: &LabelSelector,
    ) -> Result<Vec<Resource>, StateError> {
        Ok(self.items()?.list(namespace, kind, selector))
    }

    async fn put(
        &self,
        resource: &Resource,
        expected_version: u64,
        _fence: Option<&Fence>,
    ) -> Result<(), StateError> {
        let key = resource.key();
        let mut items = self.items()?;
        let previous = items.get(&key).cloned();
        check_version(
            &key,
            previous.as_ref().map(|r| r.metadata.version),
            expected_version,
        )?;
        items.put(resource.clone());
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
        let Some(current) = items.get(key) else {
            return Err(StateError::NotFound(key.clone()));
        };
        check_version(key, Some(current.metadata.version), expected_version)?;
        if let Some(gone) = items.remove(key) {
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
