//! What a controller watches, and how an event of that kind turns into the
//! keys to reconcile.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use omni_resources::Resource;
use omni_state::State;

use crate::SINGLETON;

/// Keys computed from an event by looking at other resources.
pub type KeyFuture = Pin<Box<dyn Future<Output = Vec<String>> + Send>>;

type Lookup = Arc<dyn Fn(State, Resource) -> KeyFuture + Send + Sync>;

#[derive(Clone)]
enum Map {
    Singleton,
    Id,
    Label(&'static str),
    All,
    Lookup(Lookup),
}

/// An input: a kind, in one namespace or all, and the keys its events
/// reconcile.
#[derive(Clone)]
pub struct Input {
    pub kind: &'static str,
    pub namespace: Option<&'static str>,
    map: Map,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("kind", &self.kind)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Where an event sends the controller.
pub(crate) enum Keys {
    Some(Vec<String>),
    All,
}

impl Input {
    fn with(kind: &'static str, map: Map) -> Self {
        Input {
            kind,
            namespace: None,
            map,
        }
    }

    /// Any event reconciles the controller's one key, [`SINGLETON`]: for
    /// controllers that look at the whole state at once.
    pub fn kind(kind: &'static str) -> Self {
        Self::with(kind, Map::Singleton)
    }

    /// An event reconciles the key equal to the resource's id.
    pub fn by_id(kind: &'static str) -> Self {
        Self::with(kind, Map::Id)
    }

    /// An event reconciles the key found in the resource's `label` (none
    /// when the label is absent).
    pub fn by_label(kind: &'static str, label: &'static str) -> Self {
        Self::with(kind, Map::Label(label))
    }

    /// An event reconciles every key: for rare, global changes (the store
    /// became usable).
    pub fn every_key(kind: &'static str) -> Self {
        Self::with(kind, Map::All)
    }

    /// An event reconciles the keys `f` finds, given the state and the
    /// resource (a machine → the cluster it is a member of).
    pub fn lookup(
        kind: &'static str,
        f: impl Fn(State, Resource) -> KeyFuture + Send + Sync + 'static,
    ) -> Self {
        Self::with(kind, Map::Lookup(Arc::new(f)))
    }

    /// Only events in `namespace`.
    pub fn in_namespace(mut self, namespace: &'static str) -> Self {
        self.namespace = Some(namespace);
        self
    }

    pub(crate) async fn keys(&self, state: &State, resource: &Resource) -> Keys {
        match &self.map {
            Map::Singleton => Keys::Some(vec![SINGLETON.to_string()]),
            Map::Id => Keys::Some(vec![resource.metadata.id.clone()]),
            Map::Label(label) => Keys::Some(
                resource
                    .metadata
                    .labels
                    .get(*label)
                    .map(|v| vec![v.clone()])
                    .unwrap_or_default(),
            ),
            Map::All => Keys::All,
            Map::Lookup(f) => Keys::Some(f(state.clone(), resource.clone()).await),
        }
    }
}
