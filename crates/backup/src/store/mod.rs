//! The backup store: one interface over a local directory or an S3 bucket.

mod copy;
mod deltas;
mod error;
mod journal;
mod ranged;
mod remote;
mod sink;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};

pub use deltas::DeltaObject;
pub use error::StoreError;
pub use journal::{JournalError, NoJournal, OpenUpload, UploadJournal};
pub use ranged::{RANGES_IN_FLIGHT, RANGE_PART};
pub(crate) use sink::ObjectSink;
pub use sink::{MAX_PARTS_IN_FLIGHT, PART_SIZE, TEMP_PREFIX, TEMP_SUFFIX};

use crate::keys::{parse_key, validate_cluster_id};
use error::ErrorContext;

/// Region used when the settings leave it empty.
pub const DEFAULT_REGION: &str = "us-east-1";

/// S3 connection settings (the fields of `EtcdBackupS3Configs`). Empty strings count
/// as unset. `Debug` redacts the secret access key and the session token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// Bucket name (required).
    pub bucket: String,
    /// Region; [`DEFAULT_REGION`] when empty.
    pub region: String,
    /// Custom endpoint (`http://host:port` or `https://…`); AWS when unset. A custom
    /// endpoint is addressed path-style; `http://` is allowed.
    pub endpoint: Option<String>,
    /// Access key id; when unset, ambient credentials (env, profile, instance role) are used.
    pub access_key_id: Option<String>,
    /// Secret access key (goes with `access_key_id`).
    pub secret_access_key: Option<String>,
    /// Session token for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |v: &Option<String>| nonempty(v).map(|_| "[redacted]");
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redact(&self.secret_access_key))
            .field("session_token", &redact(&self.session_token))
            .finish()
    }
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// One backup object as listed from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupObject {
    /// Object key, `<cluster-uuid>/<inverted-ts>.snapshot`.
    pub key: String,
    /// Cluster the backup belongs to.
    pub cluster_uuid: String,
    /// When the backup was taken (the `at_unix` given to `take_backup`).
    pub created_at_unix: i64,
    /// Stored (compressed, encrypted) size in bytes.
    pub size: u64,
}

#[derive(Clone)]
enum Backend {
    Local { root: PathBuf },
    S3 { multipart: Arc<dyn MultipartStore> },
}

/// Where backups live. Cheap to clone. `Debug` shows the location, never credentials.
#[derive(Clone)]
pub struct BackupStore {
    store: Arc<dyn ObjectStore>,
    backend: Backend,
    ctx: ErrorContext,
}

impl std::fmt::Debug for BackupStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupStore")
            .field("kind", &self.kind())
            .field("bucket", &self.ctx.bucket)
            .field("location", &self.ctx.endpoint)
            .finish()
    }
}

impl BackupStore {
    /// A store in local directory `dir` (created if missing).
    ///
    /// # Errors
    /// The directory cannot be created or opened.
    pub fn local(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        let io = |op| {
            move |source| StoreError::Io {
                op,
                path: dir.to_path_buf(),
                source,
            }
        };
        std::fs::create_dir_all(dir).map_err(io("create"))?;
        let root = dir.canonicalize().map_err(io("open"))?;
        let fs = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| StoreError::InvalidSettings(e.to_string()))?;
        Ok(Self {
            store: Arc::new(fs),
            ctx: ErrorContext::new(None, root.display().to_string(), Vec::new()),
            backend: Backend::Local { root },
        })
    }

    /// A store in an S3 bucket. No request is made; see [`BackupStore::validate`].
    ///
    /// # Errors
    /// [`StoreError::InvalidSettings`] for an empty bucket, a secret without a key id, or
    /// an endpoint that is not a URL.
    pub fn s3(settings: &S3Settings) -> Result<Self, StoreError> {
        let bucket = settings.bucket.trim();
        if bucket.is_empty() {
            return Err(StoreError::InvalidSettings("bucket must be set".into()));
        }
        let region = match settings.region.trim() {
            "" => DEFAULT_REGION,
            r => r,
        };
        let key_id = nonempty(&settings.access_key_id);
        let secret = nonempty(&settings.secret_access_key);
        let token = nonempty(&settings.session_token);
        let mut b = match (key_id, secret) {
            (Some(id), Some(secret)) => {
                let b = AmazonS3Builder::new()
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
                match token {
                    Some(t) => b.with_token(t),
                    None => b,
                }
            }
            (None, None) => AmazonS3Builder::from_env(),
            _ => {
                return Err(StoreError::InvalidSettings(
                    "access key id and secret access key must be set together".into(),
                ))
            }
        };
        b = b.with_bucket_name(bucket).with_region(region);
        // No overall request timeout: a large download is one long request. Stalls are
        // caught by the pipeline's idle timeouts instead.
        let mut client = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout_disabled();
        let endpoint = match nonempty(&settings.endpoint) {
            Some(ep) => {
                if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                    return Err(StoreError::InvalidSettings(format!(
                        "endpoint {ep:?} must start with http:// or https://"
                    )));
                }
                b = b.with_endpoint(ep).with_virtual_hosted_style_request(false);
                client = client.with_allow_http(ep.starts_with("http://"));
                ep.to_string()
            }
            None => format!("https://s3.{region}.amazonaws.com"),
        };
        b = b.with_unsigned_payload(!sign_payload(&endpoint));
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
        };
        let s3 = Arc::new(
            b.with_retry(retry)
                .with_client_options(client)
                .build()
                .map_err(|e| StoreError::InvalidSettings(ErrorContext::default().describe(&e)))?,
        );
        let secrets = [secret, token]
            .into_iter()
            .flatten()
            .map(str::to_string)
            .collect();
        Ok(Self {
            store: s3.clone(),
            backend: Backend::S3 { multipart: s3 },
            ctx: ErrorContext::new(Some(bucket.to_string()), endpoint, secrets),
        })
    }

    /// `"local"` or `"s3"`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Local { .. } => "local",
            Backend::S3 { .. } => "s3",
        }
    }

    /// The bucket, for an S3 store.
    pub fn bucket(&self) -> Option<&str> {
        self.ctx.bucket.as_deref()
    }

    /// Where the store is: the S3 endpoint, or the local directory.
    pub fn location(&self) -> &str {
        &self.ctx.endpoint
    }

    /// Removes what a killed process left of unfinished writes, and returns it. For
    /// a local store these are the sink's temp files (`.tmp-*.partial` in the root
    /// and the cluster directories; nothing else is touched); an S3 store keeps
    /// nothing partial that it could list (its open uploads are journaled instead,
    /// see [`BackupStore::abort_upload`]). Call it before this process starts a
    /// backup: it would remove that backup's temp file too.
    ///
    /// # Errors
    /// A directory cannot be listed or a temp file cannot be removed.
    pub async fn remove_incomplete(&self) -> Result<Vec<String>, StoreError> {
        let Backend::Local { root } = &self.backend else {
            return Ok(Vec::new());
        };
        let dir = root.clone();
        let removed = tokio::task::spawn_blocking(move || sink::remove_temp_files(&dir))
            .await
            .map_err(|e| StoreError::Io {
                op: "clean up",
                path: root.clone(),
                source: std::io::Error::other(e),
            })??;
        Ok(removed
            .iter()
            .map(|p| p.strip_prefix(root).unwrap_or(p).display().to_string())
            .collect())
    }

    /// Aborts a multipart upload left open by a process that was killed (as
    /// recorded by its [`UploadJournal`]). An upload that is already gone
    /// (completed or aborted) counts as aborted.
    ///
    /// # Errors
    /// [`StoreError::InvalidSettings`] for a local store; otherwise the store failing,
    /// e.g. [`StoreError::Unreachable`] (worth retrying) or
    /// [`StoreError::AccessDenied`].
    pub async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), StoreError> {
        let Backend::S3 { multipart } = &self.backend else {
            return Err(StoreError::InvalidSettings(
                "a local store has no multipart uploads".into(),
            ));
        };
        let path = ObjectPath::from(upload.key.as_str());
        match multipart.abort_multipart(&path, &upload.upload_id).await {
            Ok(()) => Ok(()),
            Err(e) => match self.ctx.classify("abort upload of", &upload.key, e) {
                StoreError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Proves the store is usable by listing (one page of) it: for S3 this checks the
    /// endpoint, the credentials and the bucket.
    ///
    /// # Errors
    /// [`StoreError::AccessDenied`], [`StoreError::NoSuchBucket`],
    /// [`StoreError::Unreachable`] or another backend error, in words and without secrets.
    pub async fn validate(&self) -> Result<(), StoreError> {
        self.store
            .list_with_delimiter(None)
            .await
            .map(drop)
            .map_err(|e| self.ctx.classify("list", "", e))
    }

    /// The backups of `cluster_uuid`, newest first. Follows pagination to the end.
    /// Objects whose names are not backup keys (e.g. temp files) are skipped.
    ///
    /// Only the cluster's own level is read (S3: `ListObjectsV2` with delimiter
    /// `/`; local: the one directory): a continuous cluster keeps thousands of
    /// delta segments a day below `deltas/`, and listing its backups must not
    /// page through them.
    ///
    /// # Errors
    /// An invalid cluster id, or the listing failing.
    pub async fn list(&self, cluster_uuid: &str) -> Result<Vec<BackupObject>, StoreError> {
        Ok(self.list_level(cluster_uuid).await?.0)
    }

    /// As [`BackupStore::list`], and whether the cluster has any delta
    /// chain (its `deltas/` level holds something), from the same listing.
    ///
    /// # Errors
    /// As [`BackupStore::list`].
    pub async fn list_level(
        &self,
        cluster_uuid: &str,
    ) -> Result<(Vec<BackupObject>, bool), StoreError> {
        validate_cluster_id(cluster_uuid)?;
        let prefix = ObjectPath::from(cluster_uuid);
        let listed = self
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| self.ctx.classify("list", cluster_uuid, e))?;
        let deltas = format!("{cluster_uuid}/{}", crate::delta::keys::DELTA_DIR);
        let has_chains = listed.common_prefixes.iter().any(|p| p.as_ref() == deltas);
        let mut out = Vec::new();
        for meta in listed.objects {
            let key = meta.location.to_string();
            match parse_key(&key) {
                Ok((cluster, created)) if cluster == cluster_uuid => out.push(BackupObject {
                    cluster_uuid: cluster.to_string(),
                    created_at_unix: created,
                    size: meta.size,
                    key,
                }),
                _ => tracing::debug!(%key, "skipping non-backup object"),
            }
        }
        // By time, not by name: a bucket may hold both spellings (see `keys`),
        // and upper-case names sort before lower-case ones whatever their time.
        out.sort_by(|a, b| {
            b.created_at_unix
                .cmp(&a.created_at_unix)
                .then_with(|| a.key.cmp(&b.key))
        });
        Ok((out, has_chains))
    }

    /// Whether an object exists under `key`.
    ///
    /// # Errors
    /// The store failing (other than "not found").
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.store.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(e) => match self.ctx.classify("head", key, e) {
                StoreError::NotFound { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    /// Deletes the backup `key`.
    ///
    /// # Errors
    /// An invalid key, [`StoreError::NotFound`] (local store only: S3 deletes are idempotent),
    /// or the store failing.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        parse_key(key)?;
        self.store
            .delete(&ObjectPath::from(key))
            .await
            .map_err(|e| self.ctx.classify("delete", key, e))
    }

    /// The stored bytes of `key`, as a stream of chunks.
    ///
    /// # Errors
    /// An invalid key, [`StoreError::NotFound`], or the store failing (also per chunk).
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        parse_key(key)?;
        let res = self
            .store
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| self.ctx.classify("get", key, e))?;
        let ctx = self.ctx.clone();
        let key = key.to_string();
        Ok(res
            .into_stream()
            .map_err(move |e| ctx.classify("read", &key, e))
            .boxed())
    }

    /// Opens a sink for `key`; the object appears only on commit. An S3 multipart
    /// upload is recorded in `journal` while it is open.
    pub(crate) async fn sink(
        &self,
        key: &str,
        journal: &Arc<dyn UploadJournal>,
    ) -> Result<ObjectSink, StoreError> {
        parse_key(key)?;
        match &self.backend {
            Backend::Local { root } => ObjectSink::local(key, root.join(key)).await,
            Backend::S3 { multipart } => Ok(ObjectSink::remote(
                self.store.clone(),
                multipart.clone(),
                journal.clone(),
                key,
                self.ctx.clone(),
            )),
        }
    }
}

/// Whether requests to `endpoint` carry the SHA-256 of their body in the
/// signature. Over TLS it adds nothing TLS does not already guarantee; to a
/// server on the loopback interface the body crosses no network at all. In
/// both cases it only costs a hash of every byte on both ends (a quarter of
/// a backup's hashing). Over plain HTTP to another host it is what keeps the
/// body from being swapped on the way, so it stays.
fn sign_payload(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return !endpoint.starts_with("https://");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_signed_unless_tls_or_loopback_protects_it() {
        for ep in [
            "https://s3.example.com",
            "http://127.0.0.1:9000",
            "http://127.3.4.5",
            "http://localhost:9000/",
            "http://LOCALHOST",
            "http://[::1]:9000",
            "http://user@127.0.0.1:9000/x",
        ] {
            assert!(!sign_payload(ep), "{ep}");
        }
        for ep in [
            "http://10.0.0.1:9000",
            "http://s3.example.com",
            "http://127.0.0.1.example.com",
            "http://localhost.example.com:9000",
            "http://[::2]:9000",
            "http://example.com/127.0.0.1",
            "http://127.0.0.1@evil.example.com",
        ] {
            assert!(sign_payload(ep), "{ep}");
        }
    }

    #[test]
    fn settings_debug_redacts_secrets() {
        let s = S3Settings {
            bucket: "b".into(),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("wJalrXUtnFEMI".into()),
            session_token: Some("FwoGZXIvYXdzE".into()),
            ..S3Settings::default()
        };
        let shown = format!("{s:?}");
        assert!(
            shown.contains("AKIDEXAMPLE") && shown.contains("[redacted]"),
            "{shown}"
        );
        assert!(
            !shown.contains("wJalrXUtnFEMI") && !shown.contains("FwoGZXIvYXdzE"),
            "{shown}"
        );
    }

    #[test]
    fn s3_settings_are_checked() {
        let base = S3Settings {
            bucket: "b".into(),
            ..S3Settings::default()
        };
        assert!(BackupStore::s3(&S3Settings::default()).is_err());
        let half = S3Settings {
            secret_access_key: Some("x".into()),
            ..base.clone()
        };
        assert!(matches!(
            BackupStore::s3(&half),
            Err(StoreError::InvalidSettings(_))
        ));
        let bad_ep = S3Settings {
            endpoint: Some("localhost:9000".into()),
            ..base.clone()
        };
        assert!(matches!(
            BackupStore::s3(&bad_ep),
            Err(StoreError::InvalidSettings(_))
        ));
        let ok = S3Settings {
            endpoint: Some("http://127.0.0.1:1".into()),
            access_key_id: Some("k".into()),
            secret_access_key: Some("very-secret-value".into()),
            ..base
        };
        let store = BackupStore::s3(&ok).expect("valid");
        assert_eq!(store.kind(), "s3");
        let shown = format!("{store:?}");
        assert!(
            shown.contains("http://127.0.0.1:1") && !shown.contains("very-secret-value"),
            "{shown}"
        );
    }
}

#[cfg(test)]
#[path = "list_tests.rs"]
mod list_tests;
