use async_trait::async_trait;
use omni_resources::meta::ResourceKey;
use omni_resources::Resource;

use crate::StateError;

/// What a storage engine must provide. Every write is a compare-and-swap on
/// the stored version, atomic and durable when it returns.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>, StateError>;

    /// All resources of one type in one namespace, ordered by ID.
    async fn list(&self, namespace: &str, kind: &str) -> Result<Vec<Resource>, StateError>;

    /// Stores `resource` if the stored version is `expected_version`
    /// (0: the resource must not exist).
    async fn put(&self, resource: &Resource, expected_version: u64) -> Result<(), StateError>;

    /// Removes the resource if the stored version is `expected_version`.
    async fn delete(&self, key: &ResourceKey, expected_version: u64) -> Result<(), StateError>;
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
