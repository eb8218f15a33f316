//! Delta segments in the store, beside the full backups. Segments are
//! small (a few MiB at most) so each is one `put`, which both backends
//! make visible only whole.

use bytes::Bytes;
use futures::stream::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

use std::collections::HashSet;

use super::{Backend, BackupStore, StoreError};
use crate::delta::keys::{chain_prefix, cluster_prefix, parse_segment_key, SegmentName};
use crate::keys::{parse_key, SNAPSHOT_SUFFIX};

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
        if let Backend::Local { root } = &self.backend {
            // A local store keeps the emptied directory, which would be
            // listed as a chain again; S3 has no directories. Not empty
            // (a segment written meanwhile): it stays, and so does that.
            let _ = std::fs::remove_dir(root.join(chain_prefix(cluster_uuid, full_unix)?));
        }
        Ok(segments.len())
    }

    /// The full-backup times that have a chain directory, from one
    /// listing of the `deltas` level (not of the segments).
    ///
    /// # Errors
    /// An invalid cluster id, or the listing failing.
    pub async fn list_chain_bases(&self, cluster_uuid: &str) -> Result<Vec<i64>, StoreError> {
        let prefix = cluster_prefix(cluster_uuid)?;
        let listed = self
            .store
            .list_with_delimiter(Some(&ObjectPath::from(prefix.trim_end_matches('/'))))
            .await
            .map_err(|e| self.ctx.classify("list", cluster_uuid, e))?;
        let mut out: Vec<i64> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| {
                let stem = p.filename()?;
                let (_, at) = parse_key(&format!("{cluster_uuid}/{stem}{SNAPSHOT_SUFFIX}")).ok()?;
                // Only the spelling omni writes is a chain of omni's.
                (chain_prefix(cluster_uuid, at).ok()? == format!("{prefix}{stem}/")).then_some(at)
            })
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Deletes the chains whose full backup is gone (deleted by hand, or
    /// by a bucket lifecycle rule): a chain is worthless without its base.
    /// Never a chain based at one of `live` (being written), and nothing
    /// at all when a listing fails: a store error is not a missing base.
    /// Returns the bases whose chains were deleted.
    ///
    /// The chain directories are listed before the full backups: a chain
    /// is only written after its full backup was stored, so any chain
    /// seen has a base that a later listing shows unless it was deleted.
    ///
    /// # Errors
    /// A listing or a delete failing (what was deleted stays deleted).
    pub async fn delete_orphan_chains(
        &self,
        cluster_uuid: &str,
        live: &[i64],
    ) -> Result<Vec<i64>, StoreError> {
        let bases = self.list_chain_bases(cluster_uuid).await?;
        if bases.iter().all(|b| live.contains(b)) {
            return Ok(Vec::new());
        }
        let fulls: HashSet<i64> = self
            .list(cluster_uuid)
            .await?
            .iter()
            .map(|o| o.created_at_unix)
            .collect();
        let mut deleted = Vec::new();
        for base in bases {
            if fulls.contains(&base) || live.contains(&base) {
                continue;
            }
            let n = self.delete_chain(cluster_uuid, base).await?;
            tracing::info!(
                cluster = cluster_uuid,
                base,
                segments = n,
                "deleted a delta chain whose full backup is gone"
            );
            deleted.push(base);
        }
        Ok(deleted)
    }
}
