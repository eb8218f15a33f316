//! One chain: watch a cluster's etcd from the revision after its full
//! snapshot's base and write the events into delta segments, every
//! `interval` or when the buffer reaches its limit, whichever comes first.
//!
//! Memory is bounded: while a segment is sealed and stored the watch
//! stream is not read, so gRPC flow control holds etcd back (etcd keeps a
//! slow watcher's events in its own history, not in our memory).

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use age::x25519::Recipient;
use etcd_client::{Client, ConnectOptions, EventType, GetOptions, WatchOptions, WatchResponse};
use tokio::sync::watch;

use super::format::{Builder, Op, Revision};
use super::keys::{segment_key, SegmentName};
use crate::snapshot::MemberEndpoint;
use crate::store::{BackupStore, StoreError};

/// Flush a segment at this many buffered bytes even before its interval.
pub const MAX_SEGMENT_BYTES: usize = 8 << 20;

/// What a chain starts from and how it writes.
#[derive(Debug, Clone)]
pub struct ChainSettings {
    pub cluster_uuid: String,
    /// Time of the full backup the chain extends (its key).
    pub full_unix: i64,
    /// Revision read just before that snapshot started; the watch starts
    /// after it.
    pub base_rev: i64,
    pub interval: Duration,
    pub max_bytes: usize,
}

/// How far a chain is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChainProgress {
    /// Every revision up to here is stored.
    pub through_rev: i64,
    /// ... and the cluster had no later one at this time (unix ms).
    pub until_ms: i64,
    pub segments: u64,
    pub stored_bytes: u64,
    pub events: u64,
}

/// Why a chain ended (a stop request ends it with `Ok`).
#[derive(Debug, thiserror::Error)]
pub enum ChainEnd {
    #[error("no member reachable to watch: {0}")]
    Connect(String),
    #[error("etcd compacted past the chain (compact revision {0}): a new full backup starts a new chain")]
    Compacted(i64),
    #[error("watch failed: {0}")]
    Watch(String),
    #[error("storing a delta segment: {0}")]
    Store(#[from] StoreError),
    #[error("sealing a delta segment: {0}")]
    Seal(std::io::Error),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Connects to the first member of `members` that answers.
async fn connect(members: &[MemberEndpoint]) -> Result<Client, String> {
    let mut errors = Vec::new();
    for m in members {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5));
        match crate::probe::connect_and_status(m, opts, Duration::from_secs(5)).await {
            Ok((client, _)) => return Ok(client),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(if errors.is_empty() {
        "no control-plane members".to_string()
    } else {
        errors.join("; ")
    })
}

/// The cluster's current revision (a linearizable read), taken just
/// before a full snapshot so that its chain can start after it.
///
/// # Errors
/// No member answering.
pub async fn current_revision(members: &[MemberEndpoint]) -> Result<i64, String> {
    let mut client = connect(members).await?;
    let get = client.get(vec![0u8], Some(GetOptions::new().with_count_only()));
    let resp = tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .map_err(|_| "reading the revision timed out".to_string())?
        .map_err(|e| crate::probe::describe(&e))?;
    resp.header()
        .map(|h| h.revision())
        .ok_or_else(|| "etcd sent no header".to_string())
}

struct Chain<'a> {
    settings: &'a ChainSettings,
    store: &'a BackupStore,
    recipient: &'a Recipient,
    progress: &'a watch::Sender<ChainProgress>,
    builder: Builder,
    /// First revision not yet in a stored segment.
    from: i64,
    /// Every revision up to here is received.
    through: i64,
    /// When `through` was last confirmed as the newest revision.
    until_ms: i64,
    last_until: i64,
}

/// Runs the chain until `stop` resolves (then stores what it has and
/// returns `Ok`) or it breaks (having stored what it received in order).
///
/// # Errors
/// [`ChainEnd`]: why the chain cannot go on.
pub async fn run_chain(
    settings: &ChainSettings,
    members: &[MemberEndpoint],
    store: &BackupStore,
    recipient: &Recipient,
    progress: &watch::Sender<ChainProgress>,
    stop: impl Future<Output = ()>,
) -> Result<(), ChainEnd> {
    let mut client = connect(members).await.map_err(ChainEnd::Connect)?;
    let opts = WatchOptions::new()
        .with_all_keys()
        .with_start_revision(settings.base_rev + 1);
    let mut ws = client
        .watch("", Some(opts))
        .await
        .map_err(|e| ChainEnd::Watch(crate::probe::describe(&e)))?;
    let mut chain = Chain {
        settings,
        store,
        recipient,
        progress,
        builder: Builder::default(),
        from: settings.base_rev + 1,
        through: settings.base_rev,
        until_ms: 0,
        last_until: 0,
    };
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    // A progress request is outstanding since this tick; a second tick
    // without its answer flushes anyway.
    let mut asked = false;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => {
                chain.flush().await?;
                return Ok(());
            }
            _ = ticker.tick() => {
                if asked {
                    chain.flush().await?;
                }
                ws.request_progress()
                    .await
                    .map_err(|e| ChainEnd::Watch(crate::probe::describe(&e)))?;
                asked = true;
            }
            msg = ws.message() => {
                let resp = match msg {
                    Ok(Some(r)) => r,
                    Ok(None) => return chain.fail(ChainEnd::Watch("the watch stream ended".into())).await,
                    Err(e) => return chain.fail(ChainEnd::Watch(crate::probe::describe(&e))).await,
                };
                if chain.take(&resp).await? && asked {
                    asked = false;
                    chain.flush().await?;
                }
            }
        }
    }
}

impl Chain<'_> {
    /// Stores what arrived in order, then reports why the chain ended.
    async fn fail(&mut self, end: ChainEnd) -> Result<(), ChainEnd> {
        self.flush().await?;
        Err(end)
    }

    /// Takes one response; `true` when it was a progress notification.
    async fn take(&mut self, resp: &WatchResponse) -> Result<bool, ChainEnd> {
        if resp.compact_revision() > 0 {
            return self
                .fail(ChainEnd::Compacted(resp.compact_revision()))
                .await
                .map(|_| false);
        }
        if resp.canceled() {
            let why = format!("canceled by etcd: {}", resp.cancel_reason());
            return self.fail(ChainEnd::Watch(why)).await.map(|_| false);
        }
        let at_ms = now_ms();
        let header_rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        if resp.events().is_empty() {
            if resp.created() {
                return Ok(false);
            }
            // Progress: every revision up to the header's was sent.
            if header_rev >= self.through {
                self.through = header_rev;
                self.until_ms = at_ms;
            }
            return Ok(true);
        }
        let mut current: Option<Revision> = None;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let rev = kv.mod_revision();
            if current.as_ref().is_some_and(|c| c.rev != rev) {
                if let Some(done) = current.take() {
                    self.push(done).await?;
                }
            }
            let cur = current.get_or_insert_with(|| Revision {
                rev,
                at_ms,
                ops: Vec::new(),
            });
            cur.ops.push(match ev.event_type() {
                EventType::Put => Op::Put {
                    key: kv.key().to_vec(),
                    value: kv.value().to_vec(),
                    lease: kv.lease(),
                },
                EventType::Delete => Op::Delete {
                    key: kv.key().to_vec(),
                },
            });
        }
        if let Some(done) = current {
            self.push(done).await?;
        }
        Ok(false)
    }

    async fn push(&mut self, rev: Revision) -> Result<(), ChainEnd> {
        if rev.rev <= self.through {
            let why = format!(
                "revision {} arrived after revision {} (out of order)",
                rev.rev, self.through
            );
            return self.fail(ChainEnd::Watch(why)).await;
        }
        self.through = rev.rev;
        self.until_ms = rev.at_ms;
        self.builder.push(&rev);
        if self.builder.len() >= self.settings.max_bytes {
            self.flush().await?;
        }
        Ok(())
    }

    /// Seals and stores everything received, as one segment.
    async fn flush(&mut self) -> Result<(), ChainEnd> {
        let s = self.settings;
        // Names must differ even when nothing moved: time always advances.
        let until = self.until_ms.max(self.last_until + 1);
        if self.builder.is_empty() && self.through < self.from && self.until_ms <= self.last_until {
            return Ok(());
        }
        let events = self.builder_events();
        let plain =
            self.builder
                .finish(&s.cluster_uuid, s.base_rev, self.from, self.through, until);
        let name = SegmentName {
            full_unix: s.full_unix,
            from_rev: self.from,
            to_rev: self.through,
            until_ms: until,
        };
        let key = segment_key(&s.cluster_uuid, &name).map_err(StoreError::from)?;
        let sealed = super::seal(plain, self.recipient.clone(), &key)
            .await
            .map_err(ChainEnd::Seal)?;
        let size = sealed.len() as u64;
        self.store.put_delta(&key, sealed).await?;
        self.from = self.through + 1;
        self.last_until = until;
        self.progress.send_modify(|p| {
            p.through_rev = self.through;
            p.until_ms = until;
            p.segments += 1;
            p.stored_bytes += size;
            p.events += events;
        });
        tracing::debug!(%key, bytes = size, "delta segment stored");
        Ok(())
    }

    fn builder_events(&self) -> u64 {
        self.builder.events() as u64
    }
}
