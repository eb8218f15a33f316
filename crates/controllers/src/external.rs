//! `EtcdBackups`, listed from the backup store on demand.

use async_trait::async_trait;
use omni_api::hooks::ExternalSource;
use omni_api::ApiError;
use omni_backup::keys::candidate_keys;
use omni_backup::BackupObject;
use omni_resources::specs::backup::EtcdBackupSpec;
use omni_resources::specs::Kind;
use omni_resources::{
    LabelSelector, Resource, Timestamp, LABEL_CLUSTER, LABEL_CLUSTER_UUID, NS_EXTERNAL,
};
use omni_state::State;

use crate::backup::data;
use crate::store::Stores;

pub struct EtcdBackupSource {
    pub state: State,
    pub stores: Stores,
}

/// The resource for one stored backup.
pub fn backup_resource(cluster: &str, obj: &BackupObject) -> Resource {
    let spec = EtcdBackupSpec {
        createdat: Timestamp::from_unix(obj.created_at_unix),
        snapshot: obj.key.rsplit('/').next().unwrap_or(&obj.key).to_string(),
        size: obj.size,
    };
    let id = format!("{cluster}-{}", obj.created_at_unix);
    let mut r = Resource::from_spec(EtcdBackupSpec::TYPE, NS_EXTERNAL, &id, &spec);
    r.metadata
        .labels
        .insert(LABEL_CLUSTER.into(), cluster.into());
    r.metadata
        .labels
        .insert(LABEL_CLUSTER_UUID.into(), obj.cluster_uuid.clone());
    r
}

/// Splits `<cluster>-<unix seconds>`.
pub fn parse_backup_id(id: &str) -> Result<(&str, i64), ApiError> {
    id.rsplit_once('-')
        .and_then(|(c, t)| Some((c, t.parse::<i64>().ok()?)))
        .filter(|(c, t)| !c.is_empty() && *t >= 0)
        .ok_or_else(|| {
            ApiError::Invalid(format!(
                "etcd backup id {id:?} must be <cluster>-<unix seconds>"
            ))
        })
}

impl EtcdBackupSource {
    /// The object key of a backup ID, checked against the store: the
    /// reference's spelling, else the one earlier versions wrote.
    pub async fn locate(
        &self,
        id: &str,
    ) -> Result<
        (
            String,
            omni_resources::specs::backup::BackupDataSpec,
            omni_backup::BackupStore,
        ),
        ApiError,
    > {
        let (cluster, secs) = parse_backup_id(id)?;
        let not_found = || ApiError::NotFound(format!("etcd backup {id:?} doesn't exist"));
        let data = data::find(&self.state, cluster)
            .await?
            .ok_or_else(not_found)?;
        let store = self.stores.current().map_err(ApiError::Unavailable)?;
        let keys = candidate_keys(&data.clusteruuid, secs)
            .map_err(|e| ApiError::Invalid(e.to_string()))?;
        for key in keys {
            if store
                .exists(&key)
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?
            {
                return Ok((key, data, store));
            }
        }
        Err(not_found())
    }
}

#[async_trait]
impl ExternalSource for EtcdBackupSource {
    async fn list(&self, _kind: &str, selector: &LabelSelector) -> Result<Vec<Resource>, ApiError> {
        let cluster = selector.required_value(LABEL_CLUSTER).ok_or_else(|| {
            ApiError::Invalid(format!(
                "cluster ID must be specified in query: use --selector {LABEL_CLUSTER}=<cluster>"
            ))
        })?;
        let Some(data) = data::find(&self.state, cluster).await? else {
            return Ok(Vec::new());
        };
        let store = self.stores.current().map_err(ApiError::Unavailable)?;
        let objects = store
            .list(&data.clusteruuid)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        Ok(objects
            .iter()
            .map(|o| backup_resource(cluster, o))
            .filter(|r| selector.matches(&r.metadata.labels))
            .collect())
    }

    async fn get(&self, _kind: &str, id: &str) -> Result<Resource, ApiError> {
        let (cluster, secs) = parse_backup_id(id)?;
        let (key, data, store) = self.locate(id).await?;
        let objects = store
            .list(&data.clusteruuid)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let obj = objects
            .into_iter()
            .find(|o| o.key == key && o.created_at_unix == secs)
            .ok_or_else(|| ApiError::NotFound(format!("etcd backup {id:?} doesn't exist")))?;
        Ok(backup_resource(cluster, &obj))
    }

    async fn delete(&self, _kind: &str, id: &str) -> Result<(), ApiError> {
        let (key, _, store) = self.locate(id).await?;
        store
            .delete(&key)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_ids_split_at_the_last_dash() {
        assert_eq!(
            parse_backup_id("talos-default-1702166400").unwrap(),
            ("talos-default", 1702166400)
        );
        assert!(parse_backup_id("talos").is_err());
        assert!(parse_backup_id("-5").is_err());
        assert!(parse_backup_id("c-x").is_err());
    }
}
