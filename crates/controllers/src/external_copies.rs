//! Where the copies of a backup are, and which one to read: the cluster's
//! primary store first, its secondary when the primary's copy is missing,
//! unreadable or fails its checks.

use std::collections::BTreeMap;

use omni_api::ApiError;
use omni_backup::keys::candidate_keys;
use omni_backup::{BackupObject, BackupStore, DownloadInfo, Identity};
use omni_resources::specs::backup::BackupDataSpec;

use super::{parse_backup_id, EtcdBackupSource};
use crate::backup::data;
use crate::store::named::{ClusterStores, NamedStore};

/// One stored copy of a backup.
#[derive(Debug, Clone)]
pub struct Copy {
    /// The store's name (`default` or an `EtcdBackupStores` id).
    pub name: String,
    pub store: BackupStore,
    pub key: String,
}

/// What reading one copy end to end found.
#[derive(Debug)]
pub struct CopyCheck {
    pub copy: Copy,
    pub result: Result<DownloadInfo, String>,
}

/// Every backup of the cluster in any of its stores, newest first, each
/// with the names of the stores holding it (primary first). A store that
/// cannot be listed is left out while another one answers.
pub(super) async fn list_all(
    stores: &ClusterStores,
    cluster_uuid: &str,
) -> Result<Vec<(BackupObject, Vec<String>)>, ApiError> {
    let list = |named: &crate::store::named::NamedStore| {
        let (name, store) = (named.name.clone(), named.store.clone());
        async move {
            let listed = match store {
                Ok(store) => store.list(cluster_uuid).await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            (name, listed)
        }
    };
    // Both stores at once, as in `copies`.
    let (primary, secondary) = tokio::join!(list(&stores.primary), async {
        match &stores.secondary {
            Some(s) => Some(list(s).await),
            None => None,
        }
    });
    let mut by_time: BTreeMap<i64, (BackupObject, Vec<String>)> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut answered = false;
    for (name, listed) in std::iter::once(primary).chain(secondary) {
        match listed {
            Ok(objects) => {
                answered = true;
                for o in objects {
                    by_time
                        .entry(o.created_at_unix)
                        .or_insert_with(|| (o, Vec::new()))
                        .1
                        .push(name.clone());
                }
            }
            Err(e) => errors.push((name, e)),
        }
    }
    if answered {
        for (name, e) in &errors {
            tracing::warn!(store = %name, error = %e, "cannot list a backup store; listing the other");
        }
    }
    let errors: Vec<String> = errors.into_iter().map(|(_, e)| e).collect();
    if !answered {
        return Err(ApiError::Unavailable(errors.join("; ")));
    }
    Ok(by_time.into_values().rev().collect())
}

/// The copy of a backup (under one of `keys`) in one store, if it has one.
async fn find(named: &NamedStore, keys: &[String]) -> Result<Option<Copy>, String> {
    let store = named.store.as_ref().map_err(Clone::clone)?;
    for key in keys {
        match store.exists(key).await {
            Ok(true) => {
                return Ok(Some(Copy {
                    name: named.name.clone(),
                    store: store.clone(),
                    key: key.clone(),
                }))
            }
            Ok(false) => {}
            Err(e) => return Err(format!("store {:?}: {e}", named.name)),
        }
    }
    Ok(None)
}

impl EtcdBackupSource {
    /// The copies of backup `id`, primary first. A store that is down or
    /// unusable is skipped when another holds a copy.
    ///
    /// # Errors
    /// `NotFound` when no store holds it, `Unavailable` when no store could
    /// be asked.
    pub async fn copies(&self, id: &str) -> Result<(BackupDataSpec, Vec<Copy>), ApiError> {
        let (cluster, secs) = parse_backup_id(id)?;
        let not_found = || ApiError::NotFound(format!("etcd backup {id:?} doesn't exist"));
        let data = data::find(&self.state, cluster)
            .await?
            .ok_or_else(not_found)?;
        let keys = candidate_keys(&data.clusteruuid, secs)
            .map_err(|e| ApiError::Invalid(e.to_string()))?;
        let stores = self.stores.of_cluster(&self.state, cluster).await?;
        // Both stores at once: a secondary that is down costs its timeout
        // once, not on top of the primary's answer.
        let (primary, secondary) = tokio::join!(find(&stores.primary, &keys), async {
            match &stores.secondary {
                Some(s) => Some(find(s, &keys).await),
                None => None,
            }
        });
        let mut copies = Vec::new();
        let mut errors = Vec::new();
        for found in std::iter::once(primary).chain(secondary) {
            match found {
                Ok(Some(copy)) => copies.push(copy),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        if copies.is_empty() {
            if errors.is_empty() {
                return Err(not_found());
            }
            // Alone, the default store's error reads as before (`not initialized`).
            return Err(ApiError::Unavailable(errors.join("; ")));
        }
        Ok((data, copies))
    }

    /// Reads copies of `id` end to end (decrypt, decompress, digest) in
    /// order until one is intact. The last entry is the intact one, if any.
    pub async fn check_copies(
        &self,
        id: &str,
        identity: &Identity,
    ) -> Result<Vec<CopyCheck>, ApiError> {
        let (_, copies) = self.copies(id).await?;
        let mut out = Vec::new();
        for copy in copies {
            let mut sink = tokio::io::sink();
            let result = omni_backup::download(&copy.store, &copy.key, identity, &mut sink)
                .await
                .map_err(|e| e.to_string());
            let ok = result.is_ok();
            if let Err(e) = &result {
                tracing::warn!(backup = %id, store = %copy.name, error = %e, "backup copy failed its check");
            }
            out.push(CopyCheck { copy, result });
            if ok {
                break;
            }
        }
        Ok(out)
    }

    /// The copy of `id` to read. With one copy, that one; with several, the
    /// first whose check passes (each is read once before: a response
    /// already streaming cannot switch copies), else the first.
    pub async fn choose(&self, id: &str, identity: &Identity) -> Result<Copy, ApiError> {
        let (_, mut copies) = self.copies(id).await?;
        if copies.len() == 1 {
            return Ok(copies.remove(0));
        }
        let checks = self.check_copies(id, identity).await?;
        let intact = checks.iter().rev().find(|c| c.result.is_ok());
        let chosen = intact
            .map(|c| c.copy.clone())
            .unwrap_or_else(|| copies.remove(0));
        if chosen.name != checks[0].copy.name {
            tracing::warn!(backup = %id, store = %chosen.name, "reading the backup from its secondary copy");
        }
        Ok(chosen)
    }
}
