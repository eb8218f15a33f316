//! Store errors, classified into words a user can act on. Messages never contain
//! the secret access key or session token (they are scrubbed from any text taken
//! from the backend, e.g. an S3 error body).

use std::path::PathBuf;
use std::sync::Arc;

use crate::keys::KeyError;

/// An error of the backup store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The settings cannot work (e.g. empty bucket name).
    #[error("invalid store settings: {0}")]
    InvalidSettings(String),
    /// The endpoint rejected the credentials or signature.
    #[error("access denied by the S3 endpoint: wrong access key id or secret access key, or missing permission ({detail})")]
    AccessDenied { detail: String },
    /// The bucket does not exist.
    #[error("bucket {bucket:?} does not exist")]
    NoSuchBucket { bucket: String },
    /// The endpoint could not be reached at all.
    #[error("S3 endpoint {endpoint} is unreachable ({detail})")]
    Unreachable { endpoint: String, detail: String },
    /// No object under that key.
    #[error("backup object {key} not found")]
    NotFound { key: String },
    /// An object already exists under that key (two backups in the same second).
    #[error("backup object {key} already exists")]
    AlreadyExists { key: String },
    /// The key is not a valid backup key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Any other backend failure.
    #[error("{op} {key}: {detail}")]
    Backend {
        op: &'static str,
        key: String,
        detail: String,
    },
    /// The upload journal could not record a multipart upload (it was aborted).
    #[error("recording the upload of {key} in the journal failed: {detail}")]
    Journal { key: String, detail: String },
    /// Local file-system failure.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// Whether the settings or credentials are at fault (as opposed to a transient failure).
    pub fn is_config_error(&self) -> bool {
        matches!(
            self,
            StoreError::InvalidSettings(_)
                | StoreError::AccessDenied { .. }
                | StoreError::NoSuchBucket { .. }
        )
    }
}

/// What is needed to turn backend errors into [`StoreError`]s: where we talk to, and
/// which strings must never appear in a message.
#[derive(Clone, Default)]
pub(crate) struct ErrorContext {
    pub(crate) bucket: Option<String>,
    pub(crate) endpoint: String,
    secrets: Arc<Vec<String>>,
}

impl std::fmt::Debug for ErrorContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorContext")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

const MAX_DETAIL: usize = 400;

impl ErrorContext {
    pub(crate) fn new(bucket: Option<String>, endpoint: String, secrets: Vec<String>) -> Self {
        let secrets = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        Self {
            bucket,
            endpoint,
            secrets: Arc::new(secrets),
        }
    }

    /// `text` with every secret replaced and cut to a readable length.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secrets.iter() {
            out = out.replace(s.as_str(), "[redacted]");
        }
        let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
        if out.len() > MAX_DETAIL {
            let mut cut = MAX_DETAIL;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}…", &out[..cut])
        } else {
            out
        }
    }

    /// The error and its causes, one line, scrubbed.
    pub(crate) fn describe(&self, err: &(dyn std::error::Error + 'static)) -> String {
        let mut text = err.to_string();
        let mut cur = err.source();
        while let Some(e) = cur {
            let s = e.to_string();
            if !text.contains(&s) {
                text.push_str(": ");
                text.push_str(&s);
            }
            cur = e.source();
        }
        self.scrub(&text)
    }

    /// Classifies an `object_store` error from operation `op` on `key`.
    pub(crate) fn classify(
        &self,
        op: &'static str,
        key: &str,
        err: object_store::Error,
    ) -> StoreError {
        let detail = self.describe(&err);
        let has = |needles: &[&str]| needles.iter().any(|n| detail.contains(n));
        if has(&["NoSuchBucket", "specified bucket does not exist"]) {
            return StoreError::NoSuchBucket {
                bucket: self.bucket.clone().unwrap_or_default(),
            };
        }
        if matches!(
            err,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) || has(&[
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "403 Forbidden",
            "401 Unauthorized",
        ]) {
            return StoreError::AccessDenied { detail };
        }
        match err {
            object_store::Error::NotFound { .. } => {
                return StoreError::NotFound {
                    key: key.to_string(),
                };
            }
            object_store::Error::AlreadyExists { .. } => {
                return StoreError::AlreadyExists {
                    key: key.to_string(),
                };
            }
            _ => {}
        }
        if has(&[
            "Connection refused",
            "connection refused",
            "tcp connect error",
            "dns error",
            "error trying to connect",
            "client error (Connect)",
            "failed to lookup address",
        ]) {
            return StoreError::Unreachable {
                endpoint: self.endpoint.clone(),
                detail,
            };
        }
        StoreError::Backend {
            op,
            key: key.to_string(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_secrets_and_limits_length() {
        let ctx = ErrorContext::new(None, "e".into(), vec!["s3cr3t".into(), String::new()]);
        assert_eq!(
            ctx.scrub("bad s3cr3t and s3cr3t\n x"),
            "bad [redacted] and [redacted] x"
        );
        let long = "é".repeat(1000);
        assert!(ctx.scrub(&long).len() <= MAX_DETAIL + 4);
    }

    #[test]
    fn classifies_by_variant_and_text() {
        let ctx = ErrorContext::new(
            Some("b".into()),
            "http://x".into(),
            vec!["topsecret".into()],
        );
        let generic = |msg: &str| object_store::Error::Generic {
            store: "S3",
            source: msg.to_string().into(),
        };
        let e = ctx.classify(
            "list",
            "k",
            generic("403 Forbidden SignatureDoesNotMatch topsecret"),
        );
        assert!(matches!(e, StoreError::AccessDenied { .. }));
        assert!(!e.to_string().contains("topsecret"), "{e}");
        let e = ctx.classify("list", "k", generic("404 NoSuchBucket"));
        assert!(matches!(e, StoreError::NoSuchBucket { ref bucket } if bucket == "b"));
        let e = ctx.classify(
            "list",
            "k",
            generic("tcp connect error: Connection refused"),
        );
        assert!(matches!(e, StoreError::Unreachable { .. }));
        let e = ctx.classify(
            "get",
            "k",
            object_store::Error::NotFound {
                path: "k".into(),
                source: "gone".into(),
            },
        );
        assert!(e.is_not_found());
        let e = ctx.classify("get", "k", generic("boom"));
        assert!(matches!(e, StoreError::Backend { .. }));
    }
}
