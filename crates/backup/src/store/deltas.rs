//! Delta segments in the store, beside the full backups. Segments are
//! small (a few MiB at most) so each is one `put`, which both backends
//! make visible only whole.

use bytes::Bytes;
use futures::stream::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

use super::{BackupStore, StoreError};
use crate::delta::keys::{chain_prefix, cluster_prefix, parse_segment_key, SegmentName};

/// One stored segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaObject {
    pub key: String,
    pub name: SegmentName,
    pub size: u64,
}

impl BackupStore {
    /// Stores segment `key` whole.
    ///
    /// # Errors
    /// Not a segment key, or the store failing.
    pub async fn put_delta(&self, key: &str, data: Vec<u8>) -> Result<(), StoreError> {
        parse_segment_key(key)?;
        self.store
            .put(&ObjectPath::from(key), PutPayload::from(data))
            .await
            .map(drop)
            .map_err(|e| self.ctx.classify("put", key, e))
    }

    /// The stored bytes of segment `key`.
    ///
    /// # Errors
    /// Not a segment key, [`StoreError::NotFound`], or the store failing.
    pub async fn get_delta(&self, key: &str) -> Result<Bytes, StoreError> {
        parse_segment_key(key)?;
        let res = self
            .store
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| self.ctx.classify("get", key, e))?;
        res.bytes()
            .await
            .map_err(|e| self.ctx.classify("read", key, e))
    }

    /// Every segment of `cluster_uuid` (all chains), in chain order.
    ///
    /// # Errors
    /// An invalid cluster id, or the listing failing.
    pub async fn list_deltas(&self, cluster_uuid: &str) -> Result<Vec<DeltaObject>, StoreError> {
        self.list_segments(&cluster_prefix(cluster_uuid)?, cluster_uuid)
            .await
    }

    /// The segments of the chain based on the full backup at `full_unix`.
    ///
    /// # Errors
    /// As [`BackupStore::list_deltas`].
    pub async fn list_chain(
        &self,
        cluster_uuid: &str,
        full_unix: i64,
    ) -> Result<Vec<DeltaObject>, StoreError> {
        self.list_segments(&chain_prefix(cluster_uuid, full_unix)?, cluster_uuid)
            .await
    }

    async fn list_segments(
        &self,
        prefix: &str,
        cluster_uuid: &str,
    ) -> Result<Vec<DeltaObject>, StoreError> {
        let path = ObjectPath::from(prefix.trim_end_matches('/'));
        let mut stream = self.store.list(Some(&path));
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| self.ctx.classify("list", cluster_uuid, e))?;
            let key = meta.location.to_string();
            match parse_segment_key(&key) {
                Ok((c, name)) if c == cluster_uuid => out.push(DeltaObject {
                    name,
                    size: meta.size,
                    key,
                }),
                _ => tracing::debug!(%key, "skipping non-segment object"),
            }
        }
        out.sort_by_key(|a| a.name);
        Ok(out)
    }

    /// Deletes every segment of the chain based on the full backup at
    /// `full_unix` (a chain is worthless without its base). Returns how
    /// many went.
    ///
    /// # Errors
    /// The listing or a delete failing (what was deleted stays deleted).
    pub async fn delete_chain(
        &self,
        cluster_uuid: &str,
        full_unix: i64,
    ) -> Result<usize, StoreError> {
        let segments = self.list_chain(cluster_uuid, full_unix).await?;
        for s in &segments {
            match self.store.delete(&ObjectPath::from(s.key.as_str())).await {
                Ok(()) => {}
                Err(e) => match self.ctx.classify("delete", &s.key, e) {
                    StoreError::NotFound { .. } => {}
                    e => return Err(e),
                },
            }
        }
        Ok(segments.len())
    }
}
