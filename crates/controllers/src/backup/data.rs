//! Per-cluster backup identity: a store prefix (UUID) and an age key pair,
//! made once and kept even after the cluster is gone.

use omni_backup::secrecy::{ExposeSecret, SecretString};
use omni_resources::specs::backup::BackupDataSpec;
use omni_resources::NS_DEFAULT;
use omni_state::{State, StateError};

pub const OWNER: &str = "EtcdBackupController";

/// The cluster's backup data, created on first use.
pub async fn ensure(state: &State, cluster: &str) -> Result<BackupDataSpec, StateError> {
    if let Some((_, spec)) = state
        .get_spec::<BackupDataSpec>(NS_DEFAULT, cluster)
        .await?
    {
        if !spec.clusteruuid.is_empty() && !spec.ageidentity.is_empty() {
            return Ok(spec);
        }
    }
    let res = state
        .modify::<BackupDataSpec>(NS_DEFAULT, cluster, OWNER, |s| {
            if s.clusteruuid.is_empty() {
                s.clusteruuid = uuid::Uuid::new_v4().to_string();
            }
            if s.ageidentity.is_empty() {
                let (identity, recipient) = omni_backup::generate_identity();
                s.ageidentity = identity.expose_secret().to_string();
                s.agerecipient = recipient;
            }
        })
        .await?;
    res.spec_as()
        .map_err(|e| StateError::Corrupt(e.to_string()))
}

/// Reads a cluster's backup data without creating it.
pub async fn find(state: &State, cluster: &str) -> Result<Option<BackupDataSpec>, StateError> {
    Ok(state
        .get_spec::<BackupDataSpec>(NS_DEFAULT, cluster)
        .await?
        .map(|(_, s)| s))
}

/// The secret identity as the backup crate wants it.
pub fn identity_secret(data: &BackupDataSpec) -> SecretString {
    SecretString::from(data.ageidentity.clone())
}
