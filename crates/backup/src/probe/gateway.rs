//! `Maintenance.Status` through etcd's JSON gateway: one HTTP/1.1 POST.
//!
//! A gRPC probe builds a tonic channel per call (HTTP/2 handshake, a
//! balancing worker, eight service clients) to send one message; the
//! gateway answers the same request on the same client URL for a third of
//! the CPU. Connections are not kept between probes: a machine of a large
//! fleet is probed minutes apart, and a pool would only ever help the one
//! shared etcd of a benchmark.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::MemberStatus;
use crate::snapshot::{MemberEndpoint, SourceError, TlsMaterial};

/// Why the gateway could not answer: some failures end the probe, others
/// mean the member serves gRPC only and the caller should ask over gRPC.
pub(super) enum GatewayError {
    Failed(SourceError),
    /// No gateway here (disabled, or HTTP served on another port).
    Absent,
}

/// A client for members without TLS, built once (its connector and
/// resolver are shared); a TLS member gets its own client per probe, since
/// CA and client certificate differ from machine to machine.
pub(super) fn plain_client(timeout: Duration) -> Option<reqwest::Client> {
    match builder(timeout).build() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %root_cause(&e), "no HTTP client for member probes; probing over gRPC");
            None
        }
    }
}

fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(0)
        .connect_timeout(timeout)
        .timeout(timeout)
        .no_proxy()
}

fn tls_client(tls: &TlsMaterial, timeout: Duration) -> Result<reqwest::Client, String> {
    let ca = reqwest::Certificate::from_pem(tls.ca_pem.as_bytes())
        .map_err(|e| format!("CA certificate: {}", root_cause(&e)))?;
    let mut b = builder(timeout)
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca);
    match (&tls.cert_pem, &tls.key_pem) {
        (Some(cert), Some(key)) => {
            let pem = format!("{}\n{}", cert.trim_end(), key);
            let id = reqwest::Identity::from_pem(pem.as_bytes())
                // The key's text never goes into the message.
                .map_err(|_| "client certificate or key is not valid PEM".to_string())?;
            b = b.identity(id);
        }
        (None, None) => {}
        _ => return Err("client certificate and key must be given together".into()),
    }
    b.build()
        .map_err(|e| format!("TLS setup: {}", root_cause(&e)))
}

/// Asks the member at `url` for its status through the gateway.
pub(super) async fn status(
    plain: &reqwest::Client,
    m: &MemberEndpoint,
    url: &str,
    timeout: Duration,
) -> Result<MemberStatus, GatewayError> {
    let member = || m.name.clone();
    let own;
    let client = match &m.tls {
        None => plain,
        Some(tls) => {
            own = tls_client(tls, timeout).map_err(|detail| {
                GatewayError::Failed(SourceError::Connect {
                    member: member(),
                    detail,
                })
            })?;
            &own
        }
    };
    let endpoint = format!("{}/v3/maintenance/status", url.trim_end_matches('/'));
    let sent = client
        .post(&endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body("{}")
        .send()
        .await;
    let failed = |e: reqwest::Error| {
        let detail = if e.is_timeout() {
            format!("timed out after {timeout:?} (member down?)")
        } else {
            chain(&e)
        };
        if e.is_connect() {
            let detail = if e.is_timeout() {
                format!("timed out after {timeout:?}")
            } else {
                detail
            };
            GatewayError::Failed(SourceError::Connect {
                member: member(),
                detail,
            })
        } else if e.is_timeout() {
            GatewayError::Failed(SourceError::Status {
                member: member(),
                detail,
            })
        } else {
            // Not HTTP/1.1 on this port (a gRPC-only listener resets or
            // answers in HTTP/2): gRPC may still work.
            GatewayError::Absent
        }
    };
    let resp = sent.map_err(failed)?;
    let code = resp.status();
    let body = resp.bytes().await.map_err(failed)?;
    if code == reqwest::StatusCode::NOT_FOUND {
        return Err(GatewayError::Absent);
    }
    if !code.is_success() {
        let detail = serde_json::from_slice::<GatewayFailure>(&body)
            .ok()
            .map(|f| f.message)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("HTTP {code}"));
        return Err(GatewayError::Failed(SourceError::Status {
            member: member(),
            detail,
        }));
    }
    let s: StatusJson = serde_json::from_slice(&body).map_err(|_| GatewayError::Absent)?;
    Ok(MemberStatus {
        member_id: s.header.member_id,
        leader_id: s.leader,
        version: s.version,
        db_size: s.db_size,
        raft_term: s.raft_term,
        errors: s.errors,
    })
}

/// The gateway's JSON (protobuf's JSON mapping: 64-bit integers are
/// strings, absent when zero).
#[derive(Deserialize)]
struct StatusJson {
    #[serde(default)]
    header: HeaderJson,
    #[serde(default)]
    version: String,
    #[serde(
        default,
        rename = "dbSize",
        alias = "db_size",
        deserialize_with = "int"
    )]
    db_size: u64,
    #[serde(default, deserialize_with = "int")]
    leader: u64,
    #[serde(
        default,
        rename = "raftTerm",
        alias = "raft_term",
        deserialize_with = "int"
    )]
    raft_term: u64,
    #[serde(default)]
    errors: Vec<String>,
}

#[derive(Deserialize, Default)]
struct HeaderJson {
    #[serde(default, alias = "memberId", deserialize_with = "int")]
    member_id: u64,
}

#[derive(Deserialize)]
struct GatewayFailure {
    #[serde(default)]
    message: String,
}

fn int<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Number(u64),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// The causes under reqwest's own message (which repeats the URL the
/// caller already names), skipping hyper's "client error (Connect)".
fn chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty()
            && !text.starts_with("client error (")
            && !parts.iter().any(|p| p.contains(&text))
        {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        last = cause.to_string();
        source = cause.source();
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_gateway_json_of_etcd_3_5() {
        let body = br#"{"header":{"cluster_id":"15118495548433857066", "member_id":"13668033151171901709", "revision":"1", "raft_term":"2"}, "version":"3.5.16", "dbSize":"24576", "leader":"13668033151171901709", "raftIndex":"4", "raftTerm":"2", "raftAppliedIndex":"4", "dbSizeInUse":"24576", "errors":["NOSPACE"]}"#;
        let s: StatusJson = serde_json::from_slice(body).unwrap();
        assert_eq!(s.header.member_id, 13668033151171901709);
        assert_eq!(s.leader, s.header.member_id);
        assert_eq!(
            (s.version.as_str(), s.db_size, s.raft_term),
            ("3.5.16", 24576, 2)
        );
        assert_eq!(s.errors, ["NOSPACE"]);
        // Zero values are left out; numbers may come unquoted.
        let s: StatusJson = serde_json::from_slice(br#"{"dbSize":7}"#).unwrap();
        assert_eq!((s.header.member_id, s.leader, s.db_size), (0, 0, 7));
        assert!(serde_json::from_slice::<StatusJson>(br#"{"leader":"x"}"#).is_err());
    }
}
