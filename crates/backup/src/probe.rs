//! A health probe of one etcd member: connect (TLS when configured) and ask
//! for its `Maintenance.Status`, both bounded by a short timeout.
//!
//! Unlike the snapshot source this does not require a leader: a member that
//! answers but has lost quorum is reachable, and says so in its status.
//!
//! The question goes to etcd's JSON gateway on the client URL (one HTTP/1.1
//! request, see [`gateway`]); a member that serves gRPC only is asked over
//! gRPC instead.

mod gateway;

use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, Identity as TlsIdentity, StatusResponse, TlsOptions,
};

use crate::snapshot::{MemberEndpoint, SourceError};

/// What a member said about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberStatus {
    /// The answering member's id (from the response header).
    pub member_id: u64,
    /// The leader's member id as this member sees it; 0 when it has none.
    pub leader_id: u64,
    /// etcd server version, e.g. `3.5.16`.
    pub version: String,
    /// Size of the backend database in bytes.
    pub db_size: u64,
    /// Raft term.
    pub raft_term: u64,
    /// Errors the member reports (alarms, e.g. `NOSPACE`).
    pub errors: Vec<String>,
}

impl MemberStatus {
    /// Whether the answering member is the leader.
    pub fn is_leader(&self) -> bool {
        self.member_id != 0 && self.member_id == self.leader_id
    }

    /// Why the member is not healthy, in words; `None` when it is.
    pub fn problem(&self) -> Option<String> {
        if self.leader_id == 0 {
            Some("member has no leader (quorum lost?)".to_string())
        } else if !self.errors.is_empty() {
            Some(format!("member reports: {}", self.errors.join("; ")))
        } else {
            None
        }
    }
}

/// Probes members; holds what probes share (the HTTP client of members
/// without TLS), so one per controller, not one per probe.
#[derive(Clone)]
pub struct Prober {
    timeout: Duration,
    /// `None` when the HTTP client could not be built: probes use gRPC.
    plain: Option<reqwest::Client>,
}

impl Prober {
    /// A prober giving up after `timeout` to connect, and again to answer.
    pub fn new(timeout: Duration) -> Self {
        Prober {
            timeout,
            plain: gateway::plain_client(timeout),
        }
    }

    /// Asks `m` for its status: each client URL in turn through the
    /// gateway until one answers, over gRPC when none has a gateway.
    ///
    /// # Errors
    /// [`SourceError::NoUrls`], [`SourceError::Connect`] (bad TLS material,
    /// refused or timed-out connection) or [`SourceError::Status`] (the
    /// status call failed or timed out), for the last URL tried. Messages
    /// carry the underlying causes.
    pub async fn status(&self, m: &MemberEndpoint) -> Result<MemberStatus, SourceError> {
        let Some(plain) = &self.plain else {
            return grpc_status(m, self.timeout).await;
        };
        let mut last = SourceError::NoUrls {
            member: m.name.clone(),
        };
        let mut absent = false;
        for url in &m.urls {
            match gateway::status(plain, m, url, self.timeout).await {
                Ok(s) => return Ok(s),
                Err(gateway::GatewayError::Failed(e)) => last = e,
                Err(gateway::GatewayError::Absent) => absent = true,
            }
        }
        if absent {
            return grpc_status(m, self.timeout).await;
        }
        Err(last)
    }
}

/// Connects to `m` and asks for its status, giving up after `timeout` for
/// each of the two steps. A one-off [`Prober`]: a caller that probes again
/// and again keeps one.
///
/// # Errors
/// As [`Prober::status`].
pub async fn member_status(
    m: &MemberEndpoint,
    timeout: Duration,
) -> Result<MemberStatus, SourceError> {
    Prober::new(timeout).status(m).await
}

/// The status over a fresh gRPC channel.
///
/// # Errors
/// As [`Prober::status`].
pub async fn grpc_status(
    m: &MemberEndpoint,
    timeout: Duration,
) -> Result<MemberStatus, SourceError> {
    let connect = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(timeout);
    let (_, status) = connect_and_status(m, connect, timeout).await?;
    Ok(MemberStatus {
        member_id: status.header().map(|h| h.member_id()).unwrap_or(0),
        leader_id: status.leader(),
        version: status.version().to_string(),
        db_size: u64::try_from(status.db_size()).unwrap_or(0),
        raft_term: status.raft_term(),
        errors: status.errors().to_vec(),
    })
}

/// Connects to `m` (TLS when configured, on top of `connect`) and asks for
/// its status, each step bounded by `timeout`. Shared by the health probe
/// and the snapshot source.
pub(crate) async fn connect_and_status(
    m: &MemberEndpoint,
    mut connect: ConnectOptions,
    timeout: Duration,
) -> Result<(Client, StatusResponse), SourceError> {
    let member = m.name.clone();
    if m.urls.is_empty() {
        return Err(SourceError::NoUrls { member });
    }
    if let Some(tls) = &m.tls {
        let mut t = TlsOptions::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
        match (&tls.cert_pem, &tls.key_pem) {
            (Some(cert), Some(key)) => t = t.identity(TlsIdentity::from_pem(cert, key)),
            (None, None) => {}
            _ => {
                return Err(SourceError::Connect {
                    member,
                    detail: "client certificate and key must be given together".into(),
                })
            }
        }
        connect = connect.with_tls(t);
    }
    let mut client =
        match tokio::time::timeout(timeout, Client::connect(&m.urls, Some(connect))).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(SourceError::Connect {
                    member,
                    detail: describe(&e),
                })
            }
            Err(_) => {
                return Err(SourceError::Connect {
                    member,
                    detail: format!("timed out after {timeout:?}"),
                })
            }
        };
    let status = match tokio::time::timeout(timeout, client.status()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(SourceError::Status {
                member,
                detail: describe(&e),
            })
        }
        Err(_) => {
            return Err(SourceError::Status {
                member,
                detail: format!("timed out after {timeout:?} (member down?)"),
            })
        }
    };
    Ok((client, status))
}

/// An etcd client error in words: for a gRPC status its message and root
/// cause (`tcp connect error: Connection refused (os error 111)`), not the
/// status' debug dump.
pub(crate) fn describe(e: &etcd_client::Error) -> String {
    let etcd_client::Error::GRpcStatus(status) = e else {
        return with_causes(e);
    };
    let mut msg = status.message().to_string();
    let mut root = None;
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        root = Some(cause.to_string());
        source = cause.source();
    }
    match root {
        Some(r) if !msg.contains(&r) => {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&r);
        }
        _ => {}
    }
    if msg.is_empty() {
        msg = format!("{:?}", status.code());
    }
    msg
}

/// An error and its sources on one line, skipping repeats.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = cause.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_and_problems_in_words() {
        let mut s = MemberStatus {
            member_id: 7,
            leader_id: 7,
            ..MemberStatus::default()
        };
        assert!(s.is_leader());
        assert_eq!(s.problem(), None);
        s.leader_id = 0;
        assert!(!s.is_leader());
        assert_eq!(
            s.problem().as_deref(),
            Some("member has no leader (quorum lost?)")
        );
        s.leader_id = 3;
        s.errors = vec!["NOSPACE".into()];
        assert_eq!(s.problem().as_deref(), Some("member reports: NOSPACE"));
    }

    #[tokio::test]
    async fn a_closed_port_is_an_error_in_words() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let m = MemberEndpoint {
            name: "m0".into(),
            urls: vec![format!("http://127.0.0.1:{port}")],
            tls: None,
        };
        let err = member_status(&m, Duration::from_millis(500))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("member m0: "), "{err}");
        assert!(err.ends_with("Connection refused (os error 111)"), "{err}");
        let none = MemberEndpoint { urls: vec![], ..m };
        let err = member_status(&none, Duration::from_millis(500))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "member m0: no client URLs");
    }
}
