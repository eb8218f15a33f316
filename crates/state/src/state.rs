use std::sync::Arc;

use omni_resources::meta::ResourceKey;
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Phase, Resource, Timestamp};
use tokio::sync::{broadcast, Mutex};

use crate::{Backend, MemoryBackend, StateError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Updated,
    Destroyed,
}

/// A change committed to the state.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub resource: Resource,
}

/// Typed resource state with optimistic versions, finalizers and watch.
#[derive(Clone)]
pub struct State {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Box<dyn Backend>,
    events: broadcast::Sender<Arc<Event>>,
    // Orders commits and their events, so watchers see commit order.
    writes: Mutex<()>,
}

/// A stream of events of one type in one namespace. When the watcher falls
/// too far behind, `next` returns `Err(missed)`; the watcher must re-list.
pub struct Watch {
    rx: broadcast::Receiver<Arc<Event>>,
    namespace: Option<String>,
    kind: String,
}

impl Watch {
    /// The next matching event; `Err(n)` when `n` events were missed, or
    /// `Err(0)` when the state is gone.
    pub async fn next(&mut self) -> Result<Arc<Event>, u64> {
        loop {
            match self.rx.recv().await {
                Ok(ev) => {
                    let m = &ev.resource.metadata;
                    if m.kind == self.kind
                        && self.namespace.as_ref().is_none_or(|ns| *ns == m.namespace)
                    {
                        return Ok(ev);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => return Err(n),
                Err(broadcast::error::RecvError::Closed) => return Err(0),
            }
        }
    }
}

impl State {
    pub fn new(backend: impl Backend) -> Self {
        let (events, _) = broadcast::channel(4096);
        State {
            inner: Arc::new(Inner {
                backend: Box::new(backend),
                events,
                writes: Mutex::new(()),
            }),
        }
    }

    /// A fresh in-memory state.
    pub fn memory() -> Self {
        Self::new(MemoryBackend::new())
    }

    pub async fn get(&self, key: &ResourceKey) -> Result<Resource, StateError> {
        self.inner
            .backend
            .get(key)
            .await?
            .ok_or_else(|| StateError::NotFound(key.clone()))
    }

    pub async fn get_opt(&self, key: &ResourceKey) -> Result<Option<Resource>, StateError> {
        self.inner.backend.get(key).await
    }

    /// Resources of one type in one namespace that match the selector.
    pub async fn list(
        &self,
        namespace: &str,
        kind: &str,
        selector: &LabelSelector,
    ) -> Result<Vec<Resource>, StateError> {
        let mut all = self.inner.backend.list(namespace, kind).await?;
        all.retain(|r| selector.matches(&r.metadata.labels));
        Ok(all)
    }

    /// Creates a resource at version 1.
    pub async fn create(&self, mut resource: Resource) -> Result<Resource, StateError> {
        let now = Timestamp::now();
        let m = &mut resource.metadata;
        m.version = 1;
        m.phase = Phase::Running;
        m.created = Some(now);
        m.updated = Some(now);
        let _guard = self.inner.writes.lock().await;
        self.inner.backend.put(&resource, 0).await?;
        self.publish(EventKind::Created, &resource);
        Ok(resource)
    }

    /// Replaces a resource; `resource.metadata.version` must be the stored
    /// version. Keeps `created` and `phase` as stored.
    pub async fn update(&self, mut resource: Resource) -> Result<Resource, StateError> {
        let _guard = self.inner.writes.lock().await;
        let key = resource.key();
        let current = self.get(&key).await?;
        if current.metadata.version != resource.metadata.version {
            return Err(StateError::Conflict {
                key,
                expected: resource.metadata.version,
                found: current.metadata.version,
            });
        }
        let m = &mut resource.metadata;
        m.created = current.metadata.created;
        m.phase = current.metadata.phase;
        m.updated = Some(Timestamp::now());
        m.version = current.metadata.version + 1;
        self.inner
            .backend
            .put(&resource, current.metadata.version)
            .await?;
        self.publish(EventKind::Updated, &resource);
        Ok(resource)
    }

    /// Starts destroying a resource: it goes to `tearingDown`, and is
    /// destroyed at once if it has no finalizers (else when the last one is
    /// removed). Returns whether it is gone.
    pub async fn teardown(&self, key: &ResourceKey) -> Result<bool, StateError> {
        let _guard = self.inner.writes.lock().await;
        let mut current = self.get(key).await?;
        if current.metadata.finalizers.is_empty() {
            self.inner
                .backend
                .delete(key, current.metadata.version)
                .await?;
            self.publish(EventKind::Destroyed, &current);
            return Ok(true);
        }
        if current.metadata.phase != Phase::TearingDown {
            let expected = current.metadata.version;
            current.metadata.phase = Phase::TearingDown;
            current.metadata.version += 1;
            current.metadata.updated = Some(Timestamp::now());
            self.inner.backend.put(&current, expected).await?;
            self.publish(EventKind::Updated, &current);
        }
        Ok(false)
    }

    /// Destroys a resource; refused while finalizers remain.
    pub async fn destroy(&self, key: &ResourceKey) -> Result<(), StateError> {
        let _guard = self.inner.writes.lock().await;
        let current = self.get(key).await?;
        if !current.metadata.finalizers.is_empty() {
            return Err(StateError::FinalizersPending {
                key: key.clone(),
                finalizers: current.metadata.finalizers.join(", "),
            });
        }
        self.inner
            .backend
            .delete(key, current.metadata.version)
            .await?;
        self.publish(EventKind::Destroyed, &current);
        Ok(())
    }

    /// Adds a finalizer (no-op when present). Refused on a resource being
    /// torn down: clean-up must not be re-armed.
    pub async fn add_finalizer(
        &self,
        key: &ResourceKey,
        finalizer: &str,
    ) -> Result<(), StateError> {
        let _guard = self.inner.writes.lock().await;
        let mut current = self.get(key).await?;
        if current.metadata.finalizers.iter().any(|f| f == finalizer) {
            return Ok(());
        }
        if current.metadata.phase == Phase::TearingDown {
            return Err(StateError::TearingDown(key.clone()));
        }
        let expected = current.metadata.version;
        current.metadata.finalizers.push(finalizer.to_string());
        current.metadata.version += 1;
        current.metadata.updated = Some(Timestamp::now());
        self.inner.backend.put(&current, expected).await?;
        self.publish(EventKind::Updated, &current);
        Ok(())
    }

    /// Removes a finalizer; a torn-down resource whose last finalizer goes is
    /// destroyed.
    pub async fn remove_finalizer(
        &self,
        key: &ResourceKey,
        finalizer: &str,
    ) -> Result<(), StateError> {
        let _guard = self.inner.writes.lock().await;
        let Some(mut current) = self.get_opt(key).await? else {
            return Ok(());
        };
        if !current.metadata.finalizers.iter().any(|f| f == finalizer) {
            return Ok(());
        }
        let expected = current.metadata.version;
        current.metadata.finalizers.retain(|f| f != finalizer);
        if current.metadata.finalizers.is_empty() && current.metadata.phase == Phase::TearingDown {
            self.inner.backend.delete(key, expected).await?;
            self.publish(EventKind::Destroyed, &current);
            return Ok(());
        }
        current.metadata.version += 1;
        current.metadata.updated = Some(Timestamp::now());
        self.inner.backend.put(&current, expected).await?;
        self.publish(EventKind::Updated, &current);
        Ok(())
    }

    /// Watches one type, in one namespace or all (`None`). Subscribe before
    /// listing so nothing between the two is missed.
    pub fn watch(&self, namespace: Option<&str>, kind: &str) -> Watch {
        Watch {
            rx: self.inner.events.subscribe(),
            namespace: namespace.map(str::to_string),
            kind: kind.to_string(),
        }
    }

    /// Reads a typed spec; `None` when the resource does not exist.
    pub async fn get_spec<K: Kind>(
        &self,
        namespace: &str,
        id: &str,
    ) -> Result<Option<(Resource, K)>, StateError> {
        let key = ResourceKey::new(namespace, K::TYPE, id);
        let Some(res) = self.get_opt(&key).await? else {
            return Ok(None);
        };
        let spec = res
            .spec_as::<K>()
            .map_err(|e| StateError::Corrupt(format!("{key}: {e}")))?;
        Ok(Some((res, spec)))
    }

    /// Creates or updates a controller-owned resource through `f`, retrying
    /// on conflicts; writes nothing when `f` leaves the spec as it was.
    /// Returns the resource as stored.
    pub async fn modify<K: Kind + PartialEq + Clone>(
        &self,
        namespace: &str,
        id: &str,
        owner: &str,
        mut f: impl FnMut(&mut K),
    ) -> Result<Resource, StateError> {
        loop {
            let result = match self.get_spec::<K>(namespace, id).await? {
                None => {
                    let mut spec = K::default();
                    f(&mut spec);
                    let mut res = Resource::from_spec(K::TYPE, namespace, id, &spec);
                    res.metadata.owner = owner.to_string();
                    self.create(res).await
                }
                Some((mut res, spec)) => {
                    let mut new_spec = spec.clone();
                    f(&mut new_spec);
                    if new_spec == spec && res.metadata.owner == owner {
                        return Ok(res);
                    }
                    res.spec = serde_json::to_value(&new_spec)
                        .map_err(|e| StateError::Storage(e.to_string()))?;
                    res.metadata.owner = owner.to_string();
                    self.update(res).await
                }
            };
            match result {
                Err(e) if e.is_conflict() => continue,
                other => return other,
            }
        }
    }

    fn publish(&self, kind: EventKind, resource: &Resource) {
        // No receivers is fine: nobody is watching.
        let _ = self.inner.events.send(Arc::new(Event {
            kind,
            resource: resource.clone(),
        }));
    }
}
