//! State on an external etcd cluster, for several `omni` replicas.
//!
//! Layout under the configured prefix: `<prefix>/r/<namespace>\0<type>\0<id>`
//! holds a resource as JSON; `<prefix>/leader` is the election key.
//! A resource's version is the etcd key's version (1 on create, +1 per
//! write), so compare-and-swap is one transaction comparing it; watch
//! positions are etcd store revisions. Each backend runs one etcd watch on
//! the resource prefix, keeps its in-memory view (`cache`) current with it
//! and fans it out to every local watcher; a watch that must resume runs
//! its own, from the requested revision.

mod cache;
mod election;
mod pump;
mod view_reads;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn,
    TxnOp,
};
use omni_resources::meta::ResourceKey;
use omni_resources::{LabelSelector, Resource};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::backend::check_version;
use crate::{Backend, Change, ChangeStream, Fence, StateError};

pub use cache::ReadStats;
pub use election::Leadership;
pub use view_reads::ViewReads;

use cache::Cache;
use pump::Pumped;

/// Client TLS material, PEM-encoded. The key is never logged.
#[derive(Clone, Default)]
pub struct EtcdTls {
    pub ca_pem: Option<Vec<u8>>,
    pub cert_pem: Option<Vec<u8>>,
    pub key_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca", &self.ca_pem.is_some())
            .field("cert", &self.cert_pem.is_some())
            .field("key", &self.key_pem.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// How to reach the state etcd.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    pub endpoints: Vec<String>,
    /// Every key lives under this prefix, so one etcd can hold several
    /// independent states.
    pub prefix: String,
    pub tls: Option<EtcdTls>,
    /// Longest a single request may take before the store counts as unavailable.
    pub request_timeout: Duration,
}

impl EtcdOptions {
    pub fn new(endpoints: Vec<String>, prefix: impl Into<String>) -> Self {
        EtcdOptions {
            endpoints,
            prefix: prefix.into(),
            tls: None,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// How long a request is retried while the store is unavailable.
const RETRY_FOR: Duration = Duration::from_secs(3);

/// State backend on etcd.
pub struct EtcdBackend {
    client: Client,
    prefix: String,
    feed: broadcast::Sender<Change>,
    cache: Arc<Cache>,
    /// Store revision of this process's newest successful write: what its
    /// view reads must reflect to read their own writes.
    own_writes: Arc<AtomicI64>,
    // Stops the shared watch when the backend goes.
    _pump: DropGuard,
}

fn storage(e: impl std::fmt::Display) -> StateError {
    StateError::Storage(e.to_string())
}

/// Transport failures, timeouts and a lost quorum all mean "try later"; the
/// API answers them with 503.
pub(crate) fn etcd_error(e: etcd_client::Error) -> StateError {
    use etcd_client::Error as E;
    match &e {
        E::GRpcStatus(s)
            if matches!(
                s.code(),
                tonic::Code::InvalidArgument
                    | tonic::Code::PermissionDenied
                    | tonic::Code::Unauthenticated
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::FailedPrecondition
            ) =>
        {
            StateError::Storage(format!("etcd: {}", s.message()))
        }
        E::GRpcStatus(s) => StateError::Unavailable(format!("etcd: {}", s.message())),
        E::TransportError(_) | E::IoError(_) | E::WatchError(_) | E::LeaseKeepAliveError(_) => {
            StateError::Unavailable(format!("etcd: {e}"))
        }
        _ => StateError::Storage(format!("etcd: {e}")),
    }
}

pub(crate) fn decode(bytes: &[u8], version: i64) -> Result<Resource, StateError> {
    let mut r: Resource =
        serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt(e.to_string()))?;
    // The key's own version is authoritative.
    r.metadata.version = u64::try_from(version).unwrap_or(0);
    Ok(r)
}

fn tls_options(tls: &EtcdTls) -> Result<TlsOptions, StateError> {
    let mut t = TlsOptions::new();
    if let Some(ca) = &tls.ca_pem {
        t = t.ca_certificate(Certificate::from_pem(ca));
    }
    match (&tls.cert_pem, &tls.key_pem) {
        (Some(cert), Some(key)) => t = t.identity(Identity::from_pem(cert, key)),
        (None, None) => {}
        _ => {
            return Err(StateError::Storage(
                "etcd TLS: a client certificate needs its key and the other way round".into(),
            ))
        }
    }
    Ok(t)
}

impl EtcdBackend {
    /// Connects and starts the shared watch at the current revision.
    pub async fn connect(opts: EtcdOptions) -> Result<Self, StateError> {
        if opts.endpoints.is_empty() {
            return Err(StateError::Storage("no etcd endpoints given".into()));
        }
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(opts.request_timeout)
            .with_timeout(opts.request_timeout)
            .with_keep_alive(Duration::from_secs(2), opts.request_timeout)
            // Without a leader, fail at once instead of waiting out the timeout.
            .with_require_leader(true);
        if let Some(tls) = &opts.tls {
            connect = connect.with_tls(tls_options(tls)?);
        }
        let mut client = Client::connect(&opts.endpoints, Some(connect))
            .await
            .map_err(etcd_error)?;
        let prefix = opts.prefix.trim_end_matches('/').to_string();
        let resources = format!("{prefix}/r/");
        let (index, rev) = cache::load(&mut client, &resources).await?;
        let cache = Arc::new(Cache::new(index, rev));
        let (feed, _) = broadcast::channel(4096);
        let cancel = CancellationToken::new();
        let sink = feed.clone();
        let view = cache.clone();
        let (reload_client, reload_cancel) = (client.clone(), cancel.clone());
        let reload_prefix = resources.clone();
        tokio::spawn(pump::run(
            client.clone(),
            resources,
            rev + 1,
            cancel.clone(),
            Some(cache.want_progress.clone()),
            move |p| {
                match p {
                    Pumped::Progress(r) => view.progress(r),
                    Pumped::Change(c) => {
                        if view.apply(&c) {
                            tokio::spawn(cache::reload(
                                view.clone(),
                                reload_client.clone(),
                                reload_prefix.clone(),
                                reload_cancel.clone(),
                            ));
                        }
                        let _ = sink.send(c);
                    }
                }
                true
            },
        ));
        Ok(EtcdBackend {
            client,
            prefix,
            feed,
            cache,
            own_writes: Arc::default(),
            _pump: cancel.drop_guard(),
        })
    }

    fn key(&self, namespace: &str, kind: &str, id: &str) -> String {
        format!("{}/r/{namespace}\0{kind}\0{id}", self.prefix)
    }

    fn fence_key(&self, fence: &Fence) -> String {
        format!("{}/{}", self.prefix, fence.key)
    }

    /// Runs `op`, retrying for a moment while the store is unavailable: a
    /// member just went away and the client has not moved to another yet.
    /// A retried compare-and-swap is safe: if the first try committed, the
    /// retry's compare fails and the caller sees a conflict.
    async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T, StateError>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + RETRY_FOR;
        let mut wait = Duration::from_millis(50);
        loop {
            let err = match op(self.client.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) => etcd_error(e),
            };
            if !err.is_unavailable() || tokio::time::Instant::now() + wait > deadline {
                return Err(err);
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(500));
        }
    }

    /// How many lists the in-memory view answered, and how many read etcd.
    pub fn read_stats(&self) -> ReadStats {
        self.cache.stats()
    }

    /// The store revision now, by a quorum read of one key: fails while
    /// the store has no quorum.
    async fn current_revision(&self) -> Result<i64, StateError> {
        let k = format!("{}/sync", self.prefix);
        let resp = self
            .retry(|mut c| {
                let k = k.clone();
                async move { c.get(k, None).await }
            })
            .await?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// One compare-and-swap transaction; on failure, finds out why.
    async fn cas(
        &self,
        key: &ResourceKey,
        expected_version: u64,
        fence: Option<&Fence>,
        op: TxnOp,
    ) -> Result<(), StateError> {
        let k = self.key(&key.namespace, &key.kind, &key.id);
        let expected = i64::try_from(expected_version).map_err(storage)?;
        let mut when = vec![Compare::version(k.clone(), CompareOp::Equal, expected)];
        if let Some(f) = fence {
            when.push(Compare::create_revision(
                self.fence_key(f),
                CompareOp::Equal,
                f.revision,
            ));
        }
        let txn = Txn::new().when(when).and_then([op]);
        let resp = self
            .retry(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        if resp.succeeded() {
            if let Some(h) = resp.header() {
                self.own_writes.fetch_max(h.revision(), Ordering::Relaxed);
            }
            return Ok(());
        }
        if let Some(f) = fence {
            let fk = self.fence_key(f);
            let leader = self
                .retry(|mut c| {
                    let fk = fk.clone();
                    async move { c.get(fk, None).await }
                })
                .await?;
            if leader.kvs().first().map(|kv| kv.create_revision()) != Some(f.revision) {
                return Err(StateError::Fenced(key.clone()));
            }
        }
        let current = self
            .retry(|mut c| {
                let k = k.clone();
                async move { c.get(k, None).await }
            })
            .await?;
        let found = current
            .kvs()
            .first()
            .map(|kv| u64::try_from(kv.version()).unwrap_or(0));
        check_version(key, found, expected_version)?;
        // The compare failed but now holds: a concurrent writer came and went.
        Err(StateError::Conflict {
            key: key.clone(),
            expected: expected_version,
            found: found.unwrap_or(0),
        })
    }
}

#[async_trait]
impl Backend for EtcdBackend {
    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>, StateError> {
        let k = self.key(&key.namespace, &key.kind, &key.id);
        let resp = self
            .retry(|mut c| {
                let k = k.clone();
                async move { c.get(k, None).await }
            })
            .await?;
        resp.kvs()
            .first()
            .map(|kv| decode(kv.value(), kv.version()))
            .transpose()
    }

    async fn list(
        &self,
        namespace: &str,
        kind: &str,
        selector: &LabelSelector,
    ) -> Result<Vec<Resource>, StateError> {
        let revision = self.current_revision().await?;
        if let Some(found) = self.cache.list(namespace, kind, selector, revision).await {
            self.cache.count(true);
            return Ok(found);
        }
        self.cache.count(false);
        let k = self.key(namespace, kind, "");
        let resp = self
            .retry(|mut c| {
                let k = k.clone();
                async move { c.get(k, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        // etcd returns keys in byte order, which is ID order.
        let mut all = resp
            .kvs()
            .iter()
            .map(|kv| decode(kv.value(), kv.version()))
            .collect::<Result<Vec<_>, _>>()?;
        all.retain(|r| selector.matches(&r.metadata.labels));
        Ok(all)
    }

    async fn put(
        &self,
        resource: &Resource,
        expected_version: u64,
        fence: Option<&Fence>,
    ) -> Result<(), StateError> {
        let key = resource.key();
        let bytes = serde_json::to_vec(resource).map_err(storage)?;
        let k = self.key(&key.namespace, &key.kind, &key.id);
        self.cas(&key, expected_version, fence, TxnOp::put(k, bytes, None))
            .await
    }

    async fn delete(
        &self,
        key: &ResourceKey,
        expected_version: u64,
        fence: Option<&Fence>,
    ) -> Result<(), StateError> {
        if expected_version == 0 {
            return Err(StateError::NotFound(key.clone()));
        }
        let k = self.key(&key.namespace, &key.kind, &key.id);
        self.cas(key, expected_version, fence, TxnOp::delete(k, None))
            .await
    }

    fn subscribe(&self) -> ChangeStream {
        ChangeStream::live(self.feed.subscribe())
    }

    async fn subscribe_from(&self, after: u64) -> Result<ChangeStream, StateError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let start = i64::try_from(after).map_err(storage)? + 1;
        let cancel = CancellationToken::new();
        let closed = tx.clone();
        let stop = cancel.clone();
        // The watch ends when its reader goes.
        tokio::spawn(async move {
            closed.closed().await;
            stop.cancel();
        });
        tokio::spawn(pump::run(
            self.client.clone(),
            format!("{}/r/", self.prefix),
            start,
            cancel,
            None,
            move |p| match p {
                Pumped::Change(c) => tx.send(c).is_ok(),
                Pumped::Progress(_) => true,
            },
        ));
        Ok(ChangeStream::own(rx))
    }
}
