use std::sync::Arc;

use omni_resources::meta::ResourceKey;
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Phase, Resource, Timestamp};

use crate::{Backend, Change, ChangeStream, Fence, MemoryBackend, StateError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Updated,
    Destroyed,
}

impl EventKind {
    /// The kind of a stored write: an update when the key held a resource.
    pub fn of_write(existed: bool) -> Self {
        if existed {
            EventKind::Updated
        } else {
            EventKind::Created
        }
    }
}

/// A change committed to the state.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub resource: Resource,
    /// The resource as it was before this change (none for a creation).
    pub previous: Option<Resource>,
    /// Store-wide revision of the change: a watch can resume after it.
    pub revision: u64,
}

/// Typed resource state with optimistic versions, finalizers, owners and
/// watch. Clones share one backend. Writes are not serialised here: two
/// writers of one resource race to the backend's compare-and-swap, and the
/// loser gets a conflict.
#[derive(Clone)]
pub struct State {
    backend: Arc<dyn Backend>,
    fence: Option<Arc<Fence>>,
}

/// A stream of events of one type in one namespace. When the watcher falls
/// behind (or the store compacted the history it needed), `next` returns
/// `Err(missed)` with `missed > 0`; the watcher must re-list.
pub struct Watch {
    stream: ChangeStream,
    namespace: Option<String>,
    kind: String,
    selector: Option<LabelSelector>,
}

impl Watch {
    /// Only resources matching `selector`. A resource that stops matching
    /// is reported as destroyed, one that starts matching as created.
    pub fn with_selector(mut self, selector: LabelSelector) -> Self {
        self.selector = Some(selector);
        self
    }

    /// The next matching event; `Err(n)` when at least `n` events were
    /// missed, or `Err(0)` when the state is gone.
    pub async fn next(&mut self) -> Result<Arc<Event>, u64> {
        loop {
            let ev = match self.stream.recv().await {
                None => return Err(0),
                Some(Change::Resync) => return Err(1),
                Some(Change::Event(ev)) => ev,
            };
            let m = &ev.resource.metadata;
            if m.kind != self.kind || self.namespace.as_ref().is_some_and(|ns| *ns != m.namespace) {
                continue;
            }
            let Some(selector) = &self.selector else {
                return Ok(ev);
            };
            let now = selector.matches(&m.labels) && ev.kind != EventKind::Destroyed;
            let before = ev
                .previous
                .as_ref()
                .is_some_and(|p| selector.matches(&p.metadata.labels));
            let kind = match (before, now) {
                (false, false) => continue,
                (true, false) => EventKind::Destroyed,
                (false, true) => EventKind::Created,
                (true, true) => ev.kind,
            };
            if kind == ev.kind {
                return Ok(ev);
            }
            return Ok(Arc::new(Event {
                kind,
                ..(*ev).clone()
            }));
        }
    }
}

impl State {
    pub fn new(backend: impl Backend) -> Self {
        Self::shared(Arc::new(backend))
    }

    /// A handle on a backend other handles may share.
    pub fn shared(backend: Arc<dyn Backend>) -> Self {
        State {
            backend,
            fence: None,
        }
    }

    /// A handle whose writes carry `fence`: they fail with
    /// [`StateError::Fenced`] once the leadership term it names has ended.
    /// Reads and watches are unchanged.
    pub fn fenced(&self, fence: Fence) -> Self {
        State {
            backend: self.backend.clone(),
            fence: Some(Arc::new(fence)),
        }
    }

    fn fence(&self) -> Option<&Fence> {
        self.fence.as_deref()
    }

    /// A fresh in-memory state.
    pub fn memory() -> Self {
        Self::new(MemoryBackend::new())
    }

    pub async fn get(&self, key: &ResourceKey) -> Result<Resource, StateError> {
        self.backend
            .get(key)
            .await?
            .ok_or_else(|| StateError::NotFound(key.clone()))
    }

    pub async fn get_opt(&self, key: &ResourceKey) -> Result<Option<Resource>, StateError> {
        self.backend.get(key).await
    }

    /// Resources of one type in one namespace that match the selector.
    pub async fn list(
        &self,
        namespace: &str,
        kind: &str,
        selector: &LabelSelector,
    ) -> Result<Vec<Resource>, StateError> {
        self.backend.list(namespace, kind, selector).await
    }

    /// Creates a resource at version 1.
    pub async fn create(&self, mut resource: Resource) -> Result<Resource, StateError> {
        let now = Timestamp::now();
        let m = &mut resource.metadata;
        m.version = 1;
        m.phase = Phase::Running;
        m.created = Some(now);
        m.updated = Some(now);
        self.backend.put(&resource, 0, self.fence()).await?;
        Ok(resource)
    }

    /// Replaces a resource; `resource.metadata.version` must be the stored
    /// version. Keeps `created` and `phase` as stored. Refused while the
    /// resource is torn down, and when it has an owner other than
    /// `resource.metadata.owner` (a controller's output is its alone).
    pub async fn update(&self, mut resource: Resource) -> Result<Resource, StateError> {
        let key = resource.key();
        let current = self.get(&key).await?;
        if current.metadata.version != resource.metadata.version {
            return Err(StateError::Conflict {
                key,
                expected: resource.metadata.version,
                found: current.metadata.version,
            });
        }
        if current.metadata.phase == Phase::TearingDown {
            return Err(StateError::TearingDown(key));
        }
        if !current.metadata.owner.is_empty() && current.metadata.owner != resource.metadata.owner {
            return Err(StateError::OwnerConflict {
                key,
                owner: current.metadata.owner,
                writer: resource.metadata.owner,
            });
        }
        let m = &mut resource.metadata;
        m.created = current.metadata.created;
        m.phase = current.metadata.phase;
        m.updated = Some(Timestamp::now());
        m.version = current.metadata.version + 1;
        self.backend
            .put(&resource, current.metadata.version, self.fence())
            .await?;
        Ok(resource)
    }

    /// Starts destroying a resource: it goes to `tearingDown`, and is
    /// destroyed at once if it has no finalizers (else when the last one is
    /// removed). Returns whether it is gone.
    pub async fn teardown(&self, key: &ResourceKey) -> Result<bool, StateError> {
        let mut current = self.get(key).await?;
        if current.metadata.finalizers.is_empty() {
            self.backend
                .delete(key, current.metadata.version, self.fence())
                .await?;
            return Ok(true);
        }
        if current.metadata.phase != Phase::TearingDown {
            let expected = current.metadata.version;
            current.metadata.phase = Phase::TearingDown;
            current.metadata.version += 1;
            current.metadata.updated = Some(Timestamp::now());
            self.backend.put(&current, expected, self.fence()).await?;
        }
        Ok(false)
    }

    /// Destroys a resource; refused while finalizers remain.
    pub async fn destroy(&self, key: &ResourceKey) -> Result<(), StateError> {
        let current = self.get(key).await?;
        if !current.metadata.finalizers.is_empty() {
            return Err(StateError::FinalizersPending {
                key: key.clone(),
                finalizers: current.metadata.finalizers.join(", "),
            });
        }
        self.backend
            .delete(key, current.metadata.version, self.fence())
            .await?;
        Ok(())
    }

    /// Adds a finalizer (no-op when present). Refused on a resource being
    /// torn down: clean-up must not be re-armed.
    pub async fn add_finalizer(
        &self,
        key: &ResourceKey,
        finalizer: &str,
    ) -> Result<(), StateError> {
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
        self.backend.put(&current, expected, self.fence()).await?;
        Ok(())
    }

    /// Removes a finalizer; a torn-down resource whose last finalizer goes is
    /// destroyed.
    pub async fn remove_finalizer(
        &self,
        key: &ResourceKey,
        finalizer: &str,
    ) -> Result<(), StateError> {
        let Some(mut current) = self.get_opt(key).await? else {
            return Ok(());
        };
        if !current.metadata.finalizers.iter().any(|f| f == finalizer) {
            return Ok(());
        }
        let expected = current.metadata.version;
        current.metadata.finalizers.retain(|f| f != finalizer);
        if current.metadata.finalizers.is_empty() && current.metadata.phase == Phase::TearingDown {
            self.backend.delete(key, expected, self.fence()).await?;
            return Ok(());
        }
        current.metadata.version += 1;
        current.metadata.updated = Some(Timestamp::now());
        self.backend.put(&current, expected, self.fence()).await?;
        Ok(())
    }

    /// Watches one type, in one namespace or all (`None`). Subscribe before
    /// listing so nothing between the two is missed. Sees every writer's
    /// changes, other processes' included when the backend is shared.
    pub fn watch(&self, namespace: Option<&str>, kind: &str) -> Watch {
        Watch {
            stream: self.backend.subscribe(),
            namespace: namespace.map(str::to_string),
            kind: kind.to_string(),
            selector: None,
        }
    }

    /// Like [`State::watch`], resumed after store revision `after` (an
    /// [`Event::revision`] seen earlier): changes committed since then come
    /// first. Starts with `Err(missed)` when that history is gone.
    pub async fn watch_from(
        &self,
        namespace: Option<&str>,
        kind: &str,
        after: u64,
    ) -> Result<Watch, StateError> {
        Ok(Watch {
            stream: self.backend.subscribe_from(after).await?,
            namespace: namespace.map(str::to_string),
            kind: kind.to_string(),
            selector: None,
        })
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
}
