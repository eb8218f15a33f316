//! The snapshot source: etcd v3 `Maintenance.Snapshot` from one member, with the
//! SHA-256 trailer verified while streaming.

use std::time::Duration;

#[cfg(test)]
use bytes::Bytes;
use etcd_client::{Client, ConnectOptions, SnapshotResponse, SnapshotStreaming};

use crate::digest::{DigestError, TrailerVerifier};
use crate::transform::{Pieces, CHUNK};

/// TLS material to reach a member (PEM). `Debug` redacts the private key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsMaterial {
    /// CA bundle that signed the member's server certificate.
    pub ca_pem: String,
    /// Client certificate, for client-cert auth.
    pub cert_pem: Option<String>,
    /// Client private key (goes with `cert_pem`).
    pub key_pem: Option<String>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca_pem", &format_args!("<{} bytes>", self.ca_pem.len()))
            .field(
                "cert_pem",
                &self
                    .cert_pem
                    .as_ref()
                    .map(|c| format!("<{} bytes>", c.len())),
            )
            .field("key_pem", &self.key_pem.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// One etcd member to take a snapshot from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEndpoint {
    /// Name used in logs, errors and [`crate::BackupOutcome::member`].
    pub name: String,
    /// Client URLs of this member (`http(s)://host:port`).
    pub urls: Vec<String>,
    /// TLS settings; plain connection when `None`.
    pub tls: Option<TlsMaterial>,
}

/// Timeouts of the snapshot source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOptions {
    /// Establishing the connection.
    pub connect_timeout: Duration,
    /// The status (health) call that precedes the snapshot.
    pub status_timeout: Duration,
    /// Longest wait for the next snapshot chunk.
    pub idle_timeout: Duration,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            status_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Why one member could not provide a verified snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The member has no URLs.
    #[error("member {member}: no client URLs")]
    NoUrls { member: String },
    /// Connecting (or building the TLS config) failed.
    #[error("member {member}: connect: {detail}")]
    Connect { member: String, detail: String },
    /// The status call failed or timed out.
    #[error("member {member}: status: {detail}")]
    Status { member: String, detail: String },
    /// The snapshot stream failed.
    #[error("member {member}: snapshot stream: {detail}")]
    Stream { member: String, detail: String },
    /// No chunk arrived for too long.
    #[error("member {member}: snapshot stream stalled for {after:?}")]
    Stalled { member: String, after: Duration },
    /// The stream did not end with a matching SHA-256.
    #[error("member {member}: {source}")]
    Digest {
        member: String,
        #[source]
        source: DigestError,
    },
}

/// A connected member and what its status said.
pub(crate) struct Probe {
    pub(crate) member: String,
    pub(crate) client: Client,
    /// `None` when healthy, else why not (e.g. no leader, alarms).
    pub(crate) unhealthy: Option<String>,
}

/// Connects to `m` and asks for its status.
pub(crate) async fn probe(m: &MemberEndpoint, opts: &SourceOptions) -> Result<Probe, SourceError> {
    let connect = ConnectOptions::new()
        .with_connect_timeout(opts.connect_timeout)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
    let (client, status) =
        crate::probe::connect_and_status(m, connect, opts.status_timeout).await?;
    let member = m.name.clone();
    let unhealthy = if status.leader() == 0 {
        Some("no leader".to_string())
    } else if !status.errors().is_empty() {
        Some(status.errors().join("; "))
    } else {
        None
    };
    Ok(Probe {
        member,
        client,
        unhealthy,
    })
}

/// Snapshot messages handed on as they came, [`CHUNK`] bytes or so at a
/// time: copying their blobs into one buffer was a memcpy of the whole
/// snapshot for nothing.
pub(crate) enum Batch {
    Etcd(Vec<SnapshotResponse>),
    /// From a canned source.
    #[cfg(test)]
    Canned(Bytes),
}

impl Pieces for Batch {
    fn each(&self, f: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
        match self {
            Batch::Etcd(msgs) => msgs.iter().try_for_each(|m| f(m.blob())),
            #[cfg(test)]
            Batch::Canned(b) => f(b),
        }
    }
}

enum Chunks {
    Etcd(SnapshotStreaming),
    /// Canned chunks, for tests of the pipeline without a server.
    #[cfg(test)]
    Canned(std::collections::VecDeque<Bytes>),
}

/// An open snapshot stream being verified chunk by chunk.
pub(crate) struct SnapshotSource {
    member: String,
    stream: Chunks,
    verifier: TrailerVerifier,
    idle: Duration,
}

impl SnapshotSource {
    /// Starts the snapshot on a probed member.
    pub(crate) async fn open(probe: &mut Probe, opts: &SourceOptions) -> Result<Self, SourceError> {
        let member = probe.member.clone();
        let stream = match tokio::time::timeout(opts.idle_timeout, probe.client.snapshot()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(SourceError::Stream {
                    member,
                    detail: crate::probe::describe(&e),
                })
            }
            Err(_) => {
                return Err(SourceError::Stalled {
                    member,
                    after: opts.idle_timeout,
                })
            }
        };
        Ok(Self {
            member,
            stream: Chunks::Etcd(stream),
            verifier: TrailerVerifier::new(),
            idle: opts.idle_timeout,
        })
    }

    /// A source replaying `chunks` as if `member` had sent them.
    #[cfg(test)]
    pub(crate) fn canned(member: &str, chunks: Vec<Bytes>) -> Self {
        Self {
            member: member.to_string(),
            stream: Chunks::Canned(chunks.into()),
            verifier: TrailerVerifier::new(),
            idle: Duration::from_secs(1),
        }
    }

    /// The next batch (trailer included), or `None` at the end of the stream.
    pub(crate) async fn next_chunk(&mut self) -> Result<Option<Batch>, SourceError> {
        // Only one variant outside tests.
        #[allow(clippy::infallible_destructuring_match)]
        let stream = match &mut self.stream {
            Chunks::Etcd(s) => s,
            #[cfg(test)]
            Chunks::Canned(c) => {
                let next = c.pop_front();
                if let Some(b) = &next {
                    self.verifier.update(b);
                }
                return Ok(next.map(Batch::Canned));
            }
        };
        // etcd sends 32 KiB messages; handing them on one by one costs a
        // channel hop and a wakeup each. Batch them.
        let mut out = Vec::new();
        let mut size = 0;
        loop {
            let msg = match tokio::time::timeout(self.idle, stream.message()).await {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    return Err(SourceError::Stream {
                        member: self.member.clone(),
                        detail: crate::probe::describe(&e),
                    })
                }
                Err(_) => {
                    return Err(SourceError::Stalled {
                        member: self.member.clone(),
                        after: self.idle,
                    })
                }
            };
            let Some(msg) = msg else { break };
            if msg.blob().is_empty() {
                continue;
            }
            self.verifier.update(msg.blob());
            size += msg.blob().len();
            out.push(msg);
            if size >= CHUNK {
                break;
            }
        }
        Ok((!out.is_empty()).then_some(Batch::Etcd(out)))
    }

    /// After the stream ended: `(bytes incl. trailer, db sha256 hex)` if the trailer matches.
    pub(crate) fn finish(self) -> Result<(u64, String), SourceError> {
        let total = self.verifier.total();
        self.verifier
            .finish()
            .map(|sha| (total, sha))
            .map_err(|source| SourceError::Digest {
                member: self.member,
                source,
            })
    }
}
