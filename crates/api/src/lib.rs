//! The omni HTTP/JSON API. See `docs/api.md` for the contract.

pub mod auth;
mod batch;
mod error;
pub mod hooks;
mod openapi;
mod ratelimit;
mod resources;
mod tokens;
mod watch;
mod write;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Router;
use omni_resources::specs::ValidationContext;
use omni_state::State;

pub use error::{json_errors, ApiError};
pub use ratelimit::RateLimit;

/// Largest request body accepted; resources are small.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Settings the API needs from the server configuration.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub min_backup_interval: std::time::Duration,
    pub max_backup_interval: std::time::Duration,
    pub rate_limit: RateLimit,
}

impl Default for ApiSettings {
    fn default() -> Self {
        let ctx = ValidationContext::default();
        ApiSettings {
            min_backup_interval: ctx.min_backup_interval,
            max_backup_interval: ctx.max_backup_interval,
            rate_limit: RateLimit::default(),
        }
    }
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct Api {
    pub(crate) state: State,
    pub(crate) settings: ApiSettings,
    pub(crate) admission: Vec<(&'static str, Arc<dyn hooks::Admission>)>,
    pub(crate) external: Vec<(&'static str, Arc<dyn hooks::ExternalSource>)>,
    ready: Arc<AtomicBool>,
    limiter: Arc<ratelimit::Limiter>,
    /// Fires at shutdown: open watch streams end.
    pub(crate) shutdown: tokio_util::sync::CancellationToken,
}

impl Api {
    pub fn new(state: State, settings: ApiSettings) -> Self {
        Api {
            state,
            settings,
            admission: Vec::new(),
            external: Vec::new(),
            ready: Arc::new(AtomicBool::new(false)),
            limiter: Arc::default(),
            shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Runs `hook` before writes of `kind`.
    pub fn with_admission(mut self, kind: &'static str, hook: Arc<dyn hooks::Admission>) -> Self {
        self.admission.push((kind, hook));
        self
    }

    /// Serves `kind` from `source` instead of the state.
    pub fn with_external(
        mut self,
        kind: &'static str,
        source: Arc<dyn hooks::ExternalSource>,
    ) -> Self {
        self.external.push((kind, source));
        self
    }

    /// Ends open watch streams when `token` fires, so that a graceful
    /// shutdown is not held up by them.
    pub fn with_shutdown(mut self, token: tokio_util::sync::CancellationToken) -> Self {
        self.shutdown = token;
        self
    }

    /// A handle to flip readiness once the server is fully up.
    pub fn readiness(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    /// Authenticates a request and charges it to its token's rate limit.
    pub async fn caller(&self, headers: &axum::http::HeaderMap) -> Result<auth::Caller, ApiError> {
        let caller = auth::authenticate(&self.state, headers).await?;
        if !self.limiter.allow(
            &caller.token_id,
            self.settings.rate_limit,
            std::time::Instant::now(),
        ) {
            let per_second = self.settings.rate_limit.per_second;
            return Err(ApiError::TooManyRequests {
                message: format!(
                    "token {} exceeded {per_second} requests per second; slow down",
                    caller.token_id
                ),
                // An empty bucket holds a fraction of a token: one more
                // refills within 1/rate seconds.
                retry_after: (1.0 / per_second).ceil().clamp(1.0, 3600.0) as u64,
            });
        }
        Ok(caller)
    }

    /// The state the API serves.
    pub fn state(&self) -> &State {
        &self.state
    }

    pub(crate) fn validation_context(&self) -> ValidationContext {
        ValidationContext {
            now: omni_resources::Timestamp::now(),
            min_backup_interval: self.settings.min_backup_interval,
            max_backup_interval: self.settings.max_backup_interval,
        }
    }

    pub(crate) fn external_source(&self, kind: &str) -> Option<&Arc<dyn hooks::ExternalSource>> {
        self.external
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, s)| s)
    }

    /// The router with every endpoint.
    pub fn router(self) -> Router {
        let ready = self.ready.clone();
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(move || {
                    let ready = ready.load(Ordering::SeqCst);
                    async move {
                        if ready {
                            (StatusCode::OK, "ready")
                        } else {
                            (StatusCode::SERVICE_UNAVAILABLE, "starting")
                        }
                    }
                }),
            )
            .route("/openapi.json", get(openapi::document))
            .route("/api/v1/resources", post(write::create))
            .route("/api/v1/apply", post(write::apply))
            .route("/api/v1/apply/batch", post(batch::apply_batch))
            .route("/api/v1/resources/{kind}/{namespace}", get(resources::list))
            .route(
                "/api/v1/resources/{kind}/{namespace}/{id}",
                get(resources::get)
                    .put(write::update)
                    .delete(write::destroy),
            )
            .route("/api/v1/watch/{kind}/{namespace}", get(watch::watch))
            .route("/api/v1/tokens", post(tokens::create))
            .route("/api/v1/tokens/{id}", delete(tokens::revoke))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(axum::middleware::map_response(json_errors))
            .with_state(self)
    }
}
