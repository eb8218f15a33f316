use omni_resources::meta::ResourceKey;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StateError {
    #[error("resource {0} doesn't exist")]
    NotFound(ResourceKey),
    #[error("resource {0} already exists")]
    AlreadyExists(ResourceKey),
    #[error("resource {key} version conflict: expected {expected}, found {found}")]
    Conflict {
        key: ResourceKey,
        expected: u64,
        found: u64,
    },
    #[error("resource {key} has pending finalizers: {finalizers}")]
    FinalizersPending {
        key: ResourceKey,
        finalizers: String,
    },
    #[error("resource {0} is being torn down")]
    TearingDown(ResourceKey),
    #[error("state storage failed: {0}")]
    Storage(String),
    #[error("stored resource is corrupt: {0}")]
    Corrupt(String),
    #[error("resource {key} is owned by {owner:?}; {writer:?} may not write it")]
    OwnerConflict {
        key: ResourceKey,
        owner: String,
        writer: String,
    },
    /// The writer is no longer the leader: its leadership term has ended.
    #[error("write to {0} refused: this replica is no longer the leader")]
    Fenced(ResourceKey),
    /// The state store cannot be reached or has no quorum; retry later.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
}

impl StateError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StateError::NotFound(_))
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, StateError::Unavailable(_))
    }

    pub fn is_fenced(&self) -> bool {
        matches!(self, StateError::Fenced(_))
    }

    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            StateError::Conflict { .. } | StateError::AlreadyExists(_)
        )
    }
}
