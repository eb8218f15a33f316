//! `EtcdBackups`, listed from the backup store on demand.

use async_trait::async_trait;
use omni_api::hooks::ExternalSource;
use omni_api::ApiError;
use omni_backup::BackupObject;
use omni_resources::meta::ResourceKey;
use omni_resources::specs::backup::{BackupDataSpec, EtcdBackupSpec};
use omni_resources::specs::cluster::ClusterSpec;
use omni_resources::specs::Kind;
use omni_resources::{
    LabelSelector, Resource, Timestamp, LABEL_CLUSTER, LABEL_CLUSTER_UUID, NS_DEFAULT, NS_EXTERNAL,
};
use omni_state::State;

use crate::backup::data;
use crate::store::Stores;
use copies::list_all;
pub use copies::Copy;

#[path = "external_copies.rs"]
mod copies;

pub struct EtcdBackupSource {
    pub state: State,
    pub stores: Stores,
}

/// The resource for one stored backup, held by `stores` (primary first).
pub fn backup_resource(cluster: &str, obj: &BackupObject, stores: Vec<String>) -> Resource {
    let spec = EtcdBackupSpec {
        createdat: Timestamp::from_unix(obj.created_at_unix),
        snapshot: obj.key.rsplit('/').next().unwrap_or(&obj.key).to_string(),
        size: obj.size,
        stores,
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

/// The cluster a listing asks for. Like the reference, exactly one kind of
/// term is understood, `omni.sidero.dev/cluster=<cluster>`; anything else
/// is refused rather than silently matching nothing.
pub fn cluster_of(selector: &LabelSelector) -> Result<&str, ApiError> {
    let mut cluster = None;
    for (key, op, value) in selector.terms() {
        match (key, op, value) {
            (LABEL_CLUSTER, "=", Some("")) => {
                return Err(ApiError::Invalid(format!(
                    "empty value for {LABEL_CLUSTER:?} is not supported"
                )))
            }
            (LABEL_CLUSTER, "=", Some(v)) if cluster.is_none_or(|c| c == v) => cluster = Some(v),
            _ => {
                let term = match value {
                    Some(v) => format!("{key}{op}{v}"),
                    None if op == "exists" => key.to_string(),
                    None => format!("!{key}"),
                };
                return Err(ApiError::Invalid(format!(
                    "unsupported label query term {term:?}: only {LABEL_CLUSTER}=<cluster> is supported"
                )));
            }
        }
    }
    cluster.ok_or_else(|| {
        ApiError::Invalid(format!(
            "cluster ID must be specified in query: use --selector {LABEL_CLUSTER}=<cluster>"
        ))
    })
}

impl EtcdBackupSource {
    /// The object key of a backup ID and the store of its first copy (see
    /// [`EtcdBackupSource::copies`]).
    pub async fn locate(
        &self,
        id: &str,
    ) -> Result<(String, BackupDataSpec, omni_backup::BackupStore), ApiError> {
        let (data, mut copies) = self.copies(id).await?;
        let first = copies.remove(0);
        Ok((first.key, data, first.store))
    }
}

#[async_trait]
impl ExternalSource for EtcdBackupSource {
    async fn list(&self, _kind: &str, selector: &LabelSelector) -> Result<Vec<Resource>, ApiError> {
        let cluster = cluster_of(selector)?;
        let Some(data) = data::find(&self.state, cluster).await? else {
            // An empty table would make a typo look like "no backups".
            let key = ResourceKey::new(NS_DEFAULT, ClusterSpec::TYPE, cluster);
            if self.state.get_opt(&key).await?.is_none() {
                return Err(ApiError::NotFound(format!(
                    "cluster {cluster:?} does not exist"
                )));
            }
            return Ok(Vec::new());
        };
        let stores = self.stores.of_cluster(&self.state, cluster).await?;
        let listed = list_all(&stores, &data.clusteruuid).await?;
        Ok(listed
            .into_iter()
            .map(|(o, names)| backup_resource(cluster, &o, names))
            .filter(|r| selector.matches(&r.metadata.labels))
            .collect())
    }

    async fn get(&self, _kind: &str, id: &str) -> Result<Resource, ApiError> {
        let (cluster, secs) = parse_backup_id(id)?;
        let (data, copies) = self.copies(id).await?;
        let first = &copies[0];
        let objects = first
            .store
            .list(&data.clusteruuid)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let obj = objects
            .into_iter()
            .find(|o| o.key == first.key && o.created_at_unix == secs)
            .ok_or_else(|| ApiError::NotFound(format!("etcd backup {id:?} doesn't exist")))?;
        let names = copies.iter().map(|c| c.name.clone()).collect();
        Ok(backup_resource(cluster, &obj, names))
    }

    /// Deletes every copy.
    async fn delete(&self, _kind: &str, id: &str) -> Result<(), ApiError> {
        let (_, copies) = self.copies(id).await?;
        for c in copies {
            c.store
                .delete(&c.key)
                .await
                .map_err(|e| ApiError::Unavailable(format!("store {:?}: {e}", c.name)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_takes_exactly_one_cluster_term() {
        let cluster = |s: &str| {
            cluster_of(&LabelSelector::parse(s).unwrap())
                .map(str::to_string)
                .map_err(|e| e.to_string())
        };
        assert_eq!(cluster("omni.sidero.dev/cluster=c1"), Ok("c1".into()));
        assert_eq!(
            cluster("omni.sidero.dev/cluster=c1,omni.sidero.dev/cluster==c1"),
            Ok("c1".into())
        );
        assert_eq!(
            cluster("omni.sidero.dev/cluster="),
            Err("empty value for \"omni.sidero.dev/cluster\" is not supported".into())
        );
        for (sel, term) in [
            ("omni.sidero.dev/cluster=c1,foo", "foo"),
            ("omni.sidero.dev/cluster=c1,!foo", "!foo"),
            ("omni.sidero.dev/cluster!=c1", "omni.sidero.dev/cluster!=c1"),
            (
                "omni.sidero.dev/cluster=c1,omni.sidero.dev/cluster=c2",
                "omni.sidero.dev/cluster=c2",
            ),
            ("cluster=c1", "cluster=c1"),
        ] {
            let err = cluster(sel).unwrap_err();
            assert!(
                err.starts_with(&format!("unsupported label query term {term:?}")),
                "{sel}: {err}"
            );
        }
        assert!(cluster("")
            .unwrap_err()
            .starts_with("cluster ID must be specified in query"));
    }

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
