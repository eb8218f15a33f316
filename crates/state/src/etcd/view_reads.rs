//! The controllers' reads of an etcd state: answered by this replica's
//! view, without a round trip to etcd.
//!
//! The backend's own reads are linearizable: a get is a quorum read, a
//! list first learns the store revision by one. That is what the API owes
//! its callers, but a controller reconcile makes several reads, and at
//! fleet scale those round trips were most of the CPU a backup cost. The
//! controllers do not need them, for the reason informer caches work in
//! Kubernetes: a controller is woken by a watch event, and the view
//! applies each event before any watcher sees it, so the view already
//! holds the write that woke it. What the view must add is the process's
//! own writes (a reconcile that writes and then reads must see its
//! write) and, when a leadership term starts, everything written before
//! it. A read that still sees an older version than the store has loses
//! nothing: a write based on it fails its compare-and-swap, and the
//! event of the newer version wakes the controller again.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use omni_resources::meta::ResourceKey;
use omni_resources::{LabelSelector, Resource};

use super::EtcdBackend;
use crate::{Backend, ChangeStream, Fence, StateError};

/// An [`EtcdBackend`] whose reads come from its view; writes and watches
/// are the backend's own.
pub struct ViewReads {
    etcd: Arc<EtcdBackend>,
    /// The store revision when this handle was made: reads reflect at
    /// least that.
    floor: i64,
}

impl EtcdBackend {
    /// A handle for controllers whose reads come from the view; it reflects
    /// everything committed before this call (one quorum read).
    ///
    /// # Errors
    /// [`StateError::Unavailable`] when the store has no quorum.
    pub async fn view_reads(self: &Arc<Self>) -> Result<ViewReads, StateError> {
        Ok(ViewReads {
            floor: self.current_revision().await?,
            etcd: self.clone(),
        })
    }
}

impl ViewReads {
    fn at_least(&self) -> i64 {
        self.floor.max(self.etcd.own_writes.load(Ordering::Relaxed))
    }
}

#[async_trait]
impl Backend for ViewReads {
    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>, StateError> {
        if let Some(found) = self.etcd.cache.get(key, self.at_least()).await {
            self.etcd.cache.count(true);
            return Ok(found);
        }
        self.etcd.cache.count(false);
        self.etcd.get(key).await
    }

    async fn list(
        &self,
        namespace: &str,
        kind: &str,
        selector: &LabelSelector,
    ) -> Result<Vec<Resource>, StateError> {
        let at_least = self.at_least();
        if let Some(found) = self
            .etcd
            .cache
            .list(namespace, kind, selector, at_least)
            .await
        {
            self.etcd.cache.count(true);
            return Ok(found);
        }
        // The backend counts this list itself.
        self.etcd.list(namespace, kind, selector).await
    }

    async fn put(
        &self,
        resource: &Resource,
        expected_version: u64,
        fence: Option<&Fence>,
    ) -> Result<(), StateError> {
        self.etcd.put(resource, expected_version, fence).await
    }

    async fn delete(
        &self,
        key: &ResourceKey,
        expected_version: u64,
        fence: Option<&Fence>,
    ) -> Result<(), StateError> {
        self.etcd.delete(key, expected_version, fence).await
    }

    fn subscribe(&self) -> ChangeStream {
        self.etcd.subscribe()
    }

    async fn subscribe_from(&self, after: u64) -> Result<ChangeStream, StateError> {
        self.etcd.subscribe_from(after).await
    }
}
