//! An async client for the omni HTTP API (see `docs/api.md`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), omni_client::ClientError> {
//! let client = omni_client::Client::new("http://127.0.0.1:8099", Some("token".into()))?;
//! let clusters = client.list("Clusters.omni.sidero.dev", "default", None).await?;
//! # Ok(()) }
//! ```
//!
//! Type names are full names; resolve aliases with `omni_resources::kinds::lookup`.

mod error;
mod watch;

use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use omni_resources::Resource;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, RequestBuilder, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use error::ClientError;
pub use watch::{WatchEvent, WatchStream, MAX_LINE};

/// Time allowed to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a whole non-streaming request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// First wait after a 429 without `Retry-After`; doubles per retry.
const RETRY_FIRST_DELAY: Duration = Duration::from_millis(50);
/// Longest single wait after a 429, whatever `Retry-After` says.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);
/// Retries of one request answered 429 before giving up.
const MAX_RETRIES: u32 = 12;

/// `Retry-After` in seconds (the HTTP-date form is not used by omni).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let value = resp.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs: f64 = value.to_str().ok()?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// How the client trusts an `https://` endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM CA certificate(s) to trust instead of the system roots.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// Accept any server certificate (testing only: anyone on the path can
    /// read the token).
    pub insecure_skip_verify: bool,
}

/// What `apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyOutcome {
    Created,
    Updated,
    Unchanged,
}

impl ApplyOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Updated => "updated",
            ApplyOutcome::Unchanged => "unchanged",
        }
    }
}

impl std::fmt::Display for ApplyOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer of `POST /api/v1/apply`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ApplyResult {
    pub result: ApplyOutcome,
    pub resource: Resource,
}

/// A freshly created API token. `token` is shown once; it is redacted in `Debug`.
#[derive(Clone, Deserialize)]
pub struct CreatedToken {
    pub id: String,
    pub role: String,
    pub token: String,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// A streamed response body, for downloads.
pub struct ByteStream {
    /// `Content-Length`, when the server sent one.
    pub content_length: Option<u64>,
    /// `Content-Type`, when the server sent one.
    pub content_type: Option<String>,
    /// Every response header, for endpoints that say more than the body.
    pub headers: reqwest::header::HeaderMap,
    pub body: BoxStream<'static, Result<Bytes, ClientError>>,
}

impl std::fmt::Debug for ByteStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteStream")
            .field("content_length", &self.content_length)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Items {
    items: Vec<Resource>,
}

#[derive(Deserialize)]
struct Destroyed {
    destroyed: bool,
}

/// A handle to one omni server. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    /// The endpoint as given, for messages.
    endpoint: String,
    auth: Option<HeaderValue>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("token", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// A client for `endpoint` (`http://host:port`, optionally with a path
    /// prefix), authenticating with `token` when given.
    ///
    /// # Errors
    /// [`ClientError::InvalidEndpoint`] for a malformed URL or a scheme other
    /// than http(s); [`ClientError::InvalidToken`] for a token that cannot be
    /// sent in a header.
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Self, ClientError> {
        Self::with_tls(endpoint, token, &TlsOptions::default())
    }

    /// Like [`Client::new`], with the TLS trust of `tls`.
    ///
    /// # Errors
    /// As [`Client::new`]; [`ClientError::InvalidCaCert`] for a CA file
    /// without a usable PEM certificate.
    pub fn with_tls(
        endpoint: &str,
        token: Option<String>,
        tls: &TlsOptions,
    ) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            reason,
        };
        let mut base = Url::parse(endpoint).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".into()));
        }
        if base.cannot_be_a_base() || base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("expected a URL like http://host:port".into()));
        }
        if let Ok(mut segments) = base.path_segments_mut() {
            segments.pop_if_empty();
        }
        let auth = token
            .map(|t| {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| ClientError::InvalidToken)?;
                v.set_sensitive(true);
                Ok::<_, ClientError>(v)
            })
            .transpose()?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("omnictl/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &tls.ca_cert_pem {
            let bad = |reason: String| ClientError::InvalidCaCert { reason };
            let certs =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no PEM certificate in it".into()));
            }
            // Like curl --cacert and kubectl: the given CA replaces the system's.
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if tls.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| invalid(e.to_string()))?;
        let endpoint = endpoint.trim_end_matches('/').to_string();
        Ok(Client {
            http,
            base,
            endpoint,
            auth,
        })
    }

    /// The endpoint this client talks to, as given.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Reads one resource.
    pub async fn get(
        &self,
        kind: &str,
        namespace: &str,
        id: &str,
    ) -> Result<Resource, ClientError> {
        let url = self.url(&["api", "v1", "resources", kind, namespace, id], &[]);
        self.call(self.request(Method::GET, url)).await
    }

    /// Lists resources, optionally filtered by a label selector (`k=v,...`).
    pub async fn list(
        &self,
        kind: &str,
        namespace: &str,
        selector: Option<&str>,
    ) -> Result<Vec<Resource>, ClientError> {
        let query: Vec<_> = selector.map(|s| ("selector", s)).into_iter().collect();
        let url = self.url(&["api", "v1", "resources", kind, namespace], &query);
        let items: Items = self.call(self.request(Method::GET, url)).await?;
        Ok(items.items)
    }

    /// Creates a resource; it comes back at version 1.
    pub async fn create(&self, resource: &Resource) -> Result<Resource, ClientError> {
        let url = self.url(&["api", "v1", "resources"], &[]);
        self.call(self.request(Method::POST, url).json(resource))
            .await
    }

    /// Updates a resource; `metadata.version` must be the version read.
    pub async fn update(&self, resource: &Resource) -> Result<Resource, ClientError> {
        let m = &resource.metadata;
        let url = self.url(
            &["api", "v1", "resources", &m.kind, &m.namespace, &m.id],
            &[],
        );
        self.call(self.request(Method::PUT, url).json(resource))
            .await
    }

    /// Creates or updates a resource; when `metadata.version` is set it must match.
    pub async fn apply(&self, resource: &Resource) -> Result<ApplyResult, ClientError> {
        let url = self.url(&["api", "v1", "apply"], &[]);
        self.call(self.request(Method::POST, url).json(resource))
            .await
    }

    /// Creates or updates several resources in one request, in order. The
    /// server checks them all before writing any; an error names the first
    /// bad one as `items[i]`.
    pub async fn apply_batch(
        &self,
        resources: &[Resource],
    ) -> Result<Vec<ApplyResult>, ClientError> {
        #[derive(Serialize)]
        struct Batch<'a> {
            items: &'a [Resource],
        }
        #[derive(Deserialize)]
        struct Results {
            results: Vec<ApplyResult>,
        }
        let url = self.url(&["api", "v1", "apply", "batch"], &[]);
        let answer: Results = self
            .call(
                self.request(Method::POST, url)
                    .json(&Batch { items: resources }),
            )
            .await?;
        Ok(answer.results)
    }

    /// Destroys a resource. `false` means it is tearing down, waiting for
    /// its finalizers.
    pub async fn delete(&self, kind: &str, namespace: &str, id: &str) -> Result<bool, ClientError> {
        let url = self.url(&["api", "v1", "resources", kind, namespace, id], &[]);
        let answer: Destroyed = self.call(self.request(Method::DELETE, url)).await?;
        Ok(answer.destroyed)
    }

    /// Watches resources: first the current items as `Created`, then
    /// `Bootstrapped`, then every change. Optionally filtered by a label
    /// selector or one id.
    pub async fn watch(
        &self,
        kind: &str,
        namespace: &str,
        selector: Option<&str>,
        id: Option<&str>,
    ) -> Result<WatchStream, ClientError> {
        let mut query = Vec::new();
        query.extend(selector.map(|s| ("selector", s)));
        query.extend(id.map(|i| ("id", i)));
        let url = self.url(&["api", "v1", "watch", kind, namespace], &query);
        let body = self.open(self.stream_request(Method::GET, url)).await?.body;
        Ok(watch::events(self.endpoint.clone(), body))
    }

    /// Creates an API token with a role (`reader`, `operator`, `admin`).
    pub async fn create_token(
        &self,
        role: &str,
        description: &str,
    ) -> Result<CreatedToken, ClientError> {
        let url = self.url(&["api", "v1", "tokens"], &[]);
        let body = serde_json::json!({"role": role, "description": description});
        self.call(self.request(Method::POST, url).json(&body)).await
    }

    /// Revokes an API token by id.
    pub async fn revoke_token(&self, id: &str) -> Result<(), ClientError> {
        let url = self.url(&["api", "v1", "tokens", id], &[]);
        let _: serde_json::Value = self.call(self.request(Method::DELETE, url)).await?;
        Ok(())
    }

    /// GETs `path` (absolute, e.g. `/api/v1/...?x=y`, relative to the
    /// endpoint) and streams the body, for downloads.
    pub async fn get_stream(&self, path: &str) -> Result<ByteStream, ClientError> {
        let path = path.strip_prefix('/').unwrap_or(path);
        let joined = format!("{}/{}", self.base.as_str().trim_end_matches('/'), path);
        let url = Url::parse(&joined).map_err(|e| ClientError::InvalidEndpoint {
            endpoint: joined,
            reason: e.to_string(),
        })?;
        self.open(self.stream_request(Method::GET, url)).await
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// A request with auth and the whole-request timeout.
    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.stream_request(method, url).timeout(REQUEST_TIMEOUT)
    }

    /// A request with auth and no overall timeout (streams run long).
    fn stream_request(&self, method: Method, url: Url) -> RequestBuilder {
        let req = self.http.request(method, url);
        match &self.auth {
            Some(v) => req.header(AUTHORIZATION, v.clone()),
            None => req,
        }
    }

    /// Sends `req`; a 429 is retried after the server's `Retry-After`, or
    /// after a doubling delay, a bounded number of times.
    async fn send(&self, req: RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let mut req = req;
        let mut backoff = RETRY_FIRST_DELAY;
        let mut retries = 0;
        loop {
            // Streaming bodies cannot be cloned; they are sent once.
            let again = (retries < MAX_RETRIES).then(|| req.try_clone()).flatten();
            let resp = req
                .send()
                .await
                .map_err(|e| ClientError::from_reqwest(&self.endpoint, e))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                if let Some(next) = again {
                    let wait = retry_after(&resp).unwrap_or(backoff).min(MAX_RETRY_DELAY);
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(MAX_RETRY_DELAY);
                    retries += 1;
                    req = next;
                    continue;
                }
            }
            let body = resp.bytes().await.unwrap_or_default();
            return Err(ClientError::from_body(status.as_u16(), &body));
        }
    }

    async fn call<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ClientError> {
        let resp = self.send(req).await?;
        let body = resp
            .bytes()
            .await
            .map_err(|e| ClientError::from_reqwest(&self.endpoint, e))?;
        serde_json::from_slice(&body).map_err(|source| ClientError::Decode {
            endpoint: self.endpoint.clone(),
            source,
        })
    }

    async fn open(&self, req: RequestBuilder) -> Result<ByteStream, ClientError> {
        let resp = self.send(req).await?;
        let content_length = resp.content_length();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let endpoint = self.endpoint.clone();
        let headers = resp.headers().clone();
        let body = resp
            .bytes_stream()
            .map_err(move |e| ClientError::from_reqwest(&endpoint, e))
            .boxed();
        Ok(ByteStream {
            content_length,
            content_type,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests;
