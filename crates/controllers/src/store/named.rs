//! Named stores (`EtcdBackupStores`) and which of them a cluster uses.
//!
//! A named store is built from its resource when first needed and rebuilt
//! when the resource changes; its S3 settings were tried by admission when
//! the resource was written, so nothing is listed here.

use std::collections::HashMap;

use omni_backup::BackupStore;
use omni_resources::specs::backup_store::{EtcdBackupStoreSpec, DEFAULT_STORE};
use omni_resources::specs::cluster::ClusterSpec;
use omni_resources::specs::Kind;
use omni_resources::NS_DEFAULT;
use omni_state::State;

use super::{s3_settings, Stores};

/// One store a cluster uses: its name and the store, or why it is unusable.
#[derive(Debug, Clone)]
pub struct NamedStore {
    pub name: String,
    pub store: Result<BackupStore, String>,
}

/// The stores of one cluster: where backups go, and where copies go.
#[derive(Debug, Clone)]
pub struct ClusterStores {
    pub primary: NamedStore,
    pub secondary: Option<NamedStore>,
}

impl ClusterStores {
    /// Primary then secondary.
    pub fn all(&self) -> impl Iterator<Item = &NamedStore> {
        std::iter::once(&self.primary).chain(self.secondary.iter())
    }
}

/// Builds the store a resource describes.
pub fn build(spec: &EtcdBackupStoreSpec) -> Result<BackupStore, String> {
    match (&spec.local, &spec.s3) {
        (Some(local), None) => BackupStore::local(&local.path).map_err(|e| e.to_string()),
        (None, Some(s3)) => BackupStore::s3(&s3_settings(s3)).map_err(|e| e.to_string()),
        _ => Err("set spec.local or spec.s3".into()),
    }
}

pub(super) type Built = HashMap<String, (EtcdBackupStoreSpec, Result<BackupStore, String>)>;

impl Stores {
    /// The store called `name`: `default` is the server's own; any other
    /// is the `EtcdBackupStores` resource of that name.
    pub async fn named(&self, state: &State, name: &str) -> Result<BackupStore, String> {
        if name == DEFAULT_STORE {
            return self.current();
        }
        let spec = state
            .get_spec::<EtcdBackupStoreSpec>(NS_DEFAULT, name)
            .await
            .map_err(|e| format!("reading backup store {name:?}: {e}"))?
            .map(|(_, s)| s);
        let Some(spec) = spec else {
            self.built().remove(name);
            return Err(format!(
                "backup store {name:?} does not exist (no EtcdBackupStores resource of that name)"
            ));
        };
        if let Some((seen, store)) = self.built().get(name) {
            if *seen == spec {
                return store.clone();
            }
        }
        let store = build(&spec).map_err(|e| format!("backup store {name:?}: {e}"));
        self.built().insert(name.to_string(), (spec, store.clone()));
        store
    }

    /// The names of the stores `spec` asks for: its own choices, else
    /// `default` and the server's default secondary.
    pub fn names(&self, spec: Option<&ClusterSpec>) -> (String, Option<String>) {
        let (primary, own_secondary) = spec
            .map(ClusterSpec::backup_stores)
            .unwrap_or_else(|| (DEFAULT_STORE.to_string(), None));
        let secondary = own_secondary
            .or_else(|| self.default_secondary.clone())
            .filter(|s| *s != primary);
        (primary, secondary)
    }

    /// The stores [`Stores::names`] names.
    pub async fn for_cluster(&self, state: &State, spec: Option<&ClusterSpec>) -> ClusterStores {
        let (primary, secondary) = self.names(spec);
        let primary = NamedStore {
            store: self.named(state, &primary).await,
            name: primary,
        };
        let secondary = match secondary {
            Some(name) => Some(NamedStore {
                store: self.named(state, &name).await,
                name,
            }),
            None => None,
        };
        ClusterStores { primary, secondary }
    }

    /// The stores of the cluster called `cluster` (as [`Stores::for_cluster`];
    /// a cluster that is gone has the server's defaults).
    pub async fn of_cluster(
        &self,
        state: &State,
        cluster: &str,
    ) -> Result<ClusterStores, omni_state::StateError> {
        let spec = state
            .get_spec::<ClusterSpec>(NS_DEFAULT, cluster)
            .await?
            .map(|(_, s)| s);
        Ok(self.for_cluster(state, spec.as_ref()).await)
    }

    /// Names of the named stores that are local directories.
    pub async fn local_names(&self, state: &State) -> Result<Vec<String>, omni_state::StateError> {
        let all = state
            .list(NS_DEFAULT, EtcdBackupStoreSpec::TYPE, &Default::default())
            .await?;
        Ok(all
            .into_iter()
            .filter(|r| {
                r.spec_as::<EtcdBackupStoreSpec>()
                    .is_ok_and(|s| s.local.is_some())
            })
            .map(|r| r.metadata.id)
            .collect())
    }

    fn built(&self) -> std::sync::MutexGuard<'_, Built> {
        self.named.lock().unwrap_or_else(|e| e.into_inner())
    }
}
