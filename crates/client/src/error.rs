//! Client errors. None of them ever carries the API token.

use serde::Deserialize;
use thiserror::Error;

/// What can go wrong talking to the omni API.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The endpoint is not an `http://` or `https://` URL.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },

    /// The token contains characters that cannot go into an HTTP header.
    #[error("invalid token: it contains characters not allowed in an HTTP header")]
    InvalidToken,

    /// The CA certificate file given for TLS cannot be used.
    #[error("invalid CA certificate: {reason}")]
    InvalidCaCert { reason: String },

    /// The TLS handshake failed: an untrusted or mismatched certificate, or
    /// a server that does not speak TLS.
    #[error("TLS handshake with omni at {endpoint} failed: {reason}")]
    Tls { endpoint: String, reason: String },

    /// The server could not be reached (refused, DNS, ...).
    #[error("cannot reach omni at {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },

    /// The server did not answer in time.
    #[error("request to omni at {endpoint} timed out")]
    Timeout {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },

    /// The connection broke while sending or reading a body.
    #[error("request to omni at {endpoint} failed")]
    Transport {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },

    /// The server answered with an error status.
    #[error("{message} ({code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },

    /// The server answered with a body this client does not understand.
    #[error("unexpected answer from omni at {endpoint}")]
    Decode {
        endpoint: String,
        #[source]
        source: serde_json::Error,
    },

    /// The server ended a watch because this client fell behind; watch again.
    #[error("watch interrupted by the server: {message}")]
    WatchInterrupted { message: String },

    /// A watch line exceeded the size limit.
    #[error("watch event larger than {limit} bytes")]
    WatchLineTooLong { limit: usize },
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API error code (`not_found`, `conflict`, `invalid`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some("not_found") || self.status() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.code() == Some("conflict") || self.status() == Some(409)
    }

    pub fn is_unauthenticated(&self) -> bool {
        self.code() == Some("unauthenticated") || self.status() == Some(401)
    }

    pub fn is_forbidden(&self) -> bool {
        self.code() == Some("forbidden") || self.status() == Some(403)
    }

    /// Classifies a reqwest error; the URL is dropped since the endpoint is named.
    pub(crate) fn from_reqwest(endpoint: &str, e: reqwest::Error) -> Self {
        let endpoint = endpoint.to_string();
        let source = e.without_url();
        if let Some(reason) = tls_reason(&source) {
            return ClientError::Tls { endpoint, reason };
        }
        if source.is_connect() {
            ClientError::Connect { endpoint, source }
        } else if source.is_timeout() {
            ClientError::Timeout { endpoint, source }
        } else {
            ClientError::Transport { endpoint, source }
        }
    }

    /// Builds an API error from a status and the body the server sent.
    pub(crate) fn from_body(status: u16, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Envelope {
            error: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            code: String,
            message: String,
        }
        if let Ok(Envelope { error }) = serde_json::from_slice::<Envelope>(body) {
            return ClientError::Api {
                status,
                code: error.code,
                message: error.message,
            };
        }
        // Not our JSON (a proxy, a panic page): keep a short, printable excerpt.
        let text = String::from_utf8_lossy(body);
        let mut message: String = text
            .trim()
            .chars()
            .take(200)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if message.is_empty() {
            message = format!("HTTP {status}");
        }
        ClientError::Api {
            status,
            code: code_for_status(status).to_string(),
            message,
        }
    }
}

/// A readable reason for a rustls failure somewhere in `e`'s causes,
/// rather than the raw rustls enum dump.
fn tls_reason(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rustls::{CertificateError, Error as Tls};
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(tls) = rustls_error(c) {
            let reason = match tls {
                // A CA with the issuer's name but another key: BadSignature.
                Tls::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature,
                ) => "the server's certificate is not signed by a trusted CA \
                     (give the CA that signed it with --ca-cert)"
                    .to_string(),
                Tls::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                ) => "the server's certificate is not valid for this host name".to_string(),
                Tls::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. },
                ) => "the server's certificate has expired".to_string(),
                Tls::InvalidMessage(_) | Tls::InappropriateMessage { .. } => {
                    "the server did not answer with TLS (does it serve plain http://?)".to_string()
                }
                other => other.to_string(),
            };
            return Some(reason);
        }
        cause = c.source();
    }
    None
}

/// `e` as a rustls error, looking inside (nested) io::Errors, which hide
/// their payload from `source()`.
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    rustls_error(inner)
}

fn code_for_status(status: u16) -> &'static str {
    match status {
        400 => "invalid",
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        413 => "too_large",
        503 => "unavailable",
        _ => "internal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_from_json_body() {
        let e = ClientError::from_body(404, br#"{"error":{"code":"not_found","message":"Clusters.omni.sidero.dev(default/x) not found"}}"#);
        assert!(e.is_not_found());
        assert!(!e.is_conflict());
        assert_eq!(
            e.to_string(),
            "Clusters.omni.sidero.dev(default/x) not found (not_found)"
        );
    }

    #[test]
    fn api_error_from_foreign_body() {
        let e = ClientError::from_body(409, b"<html>\nbusy</html>");
        assert!(e.is_conflict());
        assert_eq!(e.to_string(), "<html> busy</html> (conflict)");
        let e = ClientError::from_body(502, b"");
        assert_eq!(e.to_string(), "HTTP 502 (internal)");
    }
}
