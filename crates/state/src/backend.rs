use async_trait::async_trait;
use omni_resources::meta::ResourceKey;
use omni_resources::{LabelSelector, Resource};

use crate::{ChangeStream, StateError};

/// A condition a write must meet besides its version: the writer still
/// holds leadership. For etcd, the leader key must still exist with the
/// create revision it had when this writer won the election, checked in the
/// same transaction as the write, so a deposed leader's write fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The leader key, relative to the backend's prefix.
    pub key: String,
    /// The leader key's create revision for this leadership term.
    pub revision: i64,
}

/// What a storage engine must provide. Every write is a compare-and-swap on
/// the stored version, atomic and durable when it returns, and published to
/// the backend's change feed in commit order.
///
/// Fences are checked by backends shared by several processes (etcd). The
/// embedded backends have exactly one writing process, which is always the
/// leader, so they accept every fence.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>, StateError>;

    /// The resources of one type in one namespace that `selector` matches,
    /// ordered by ID. Backends with a label index answer without looking
    /// at the others.
    async fn list(
        &self,
        namespace: &str,
        kind: &str,
        selector: &LabelSelector,
    ) -> Result<Vec<Resource>, StateError>;

    /// Stores `resource` if the stored version is `expected_version`
    /// (0: the resource must not exist).
    async fn put(
        &self,
        resource: &Resource,
        expected_version: u64,
        fence: Option<&Fence>,
    ) -> Result<(), StateError>;

    /// Removes the resource if the stored version is `expected_version`.
    async fn delete(
        &self,
        key: &ResourceKey,
        expected_version: u64,
        fence: Option<&Fence>,
    ) -> Result<(), StateError>;

    /// Every change committed from now on, by any writer.
    fn subscribe(&self) -> ChangeStream;

    /// Changes committed after store revision `after`, then live ones.
    async fn subscribe_from(&self, after: u64) -> Result<ChangeStream, StateError>;
}

/// Shared compare step of the backends' `put`.
pub(crate) fn check_version(
    key: &ResourceKey,
    current: Option<u64>,
    expected: u64,
) -> Result<(), StateError> {
    match (current, expected) {
        (None, 0) => Ok(()),
        (Some(_), 0) => Err(StateError::AlreadyExists(key.clone())),
        (None, _) => Err(StateError::NotFound(key.clone())),
        (Some(found), expected) if found == expected => Ok(()),
        (Some(found), expected) => Err(StateError::Conflict {
            key: key.clone(),
            expected,
            found,
        }),
    }
}
