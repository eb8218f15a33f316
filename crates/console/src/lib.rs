//! The web console served by `omni` at `/`: a fleet overview, a page per
//! cluster, the store configuration and API tokens, updated live from the
//! state's watch over server-sent events.
//!
//! Server-rendered HTML (maud) plus one small hand-written script; assets
//! are compiled into the binary, so nothing is fetched at run time and no
//! JavaScript tool chain is needed to build it.
//!
//! The console signs users in with an API token kept in a server-side
//! session ([`session`]). Every change is made by calling the API's own
//! handlers with that token, so roles, validation and messages are the
//! API's; the console refuses, on top, what the role split of the console
//! reserves to admins (intervals and retention).

mod actions;
mod admin_pages;
mod cluster_page;
pub mod live;
pub mod model;
mod pages;
pub mod session;
mod views;

use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use omni_api::auth::{self, Role};
use omni_api::hooks::ExternalSource;
use omni_api::Api;
use serde_json::Value;
use tower::ServiceExt;

pub use live::Fleet;
use pages::Viewer;
use session::{Session, Sessions};

/// Everything the console's handlers share.
#[derive(Clone)]
pub struct Console {
    api: Api,
    /// The server's API router; console actions are requests to it.
    app: Router,
    fleet: Fleet,
    sessions: Sessions,
}

/// The app with the console merged in. `backups` lists a cluster's stored
/// backups (sizes, the backup list); `app` is the router of the API the
/// console acts through; `shutdown` is the server's stop signal.
pub fn router(
    api: Api,
    backups: Arc<dyn ExternalSource>,
    app: Router,
    shutdown: CancellationToken,
) -> Router {
    let console = Console::new(api, Some(backups), app.clone());
    tokio::spawn(console.fleet.clone().run());
    // Event streams never end by themselves, and a graceful shutdown waits
    // for open connections: on the server's stop signal they are closed.
    let fleet = console.fleet.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        fleet.close_streams();
    });
    app.merge(console.routes())
}

/// A console action the API refused, with the API's words.
#[derive(Debug)]
pub(crate) struct ApiFailure {
    pub status: StatusCode,
    pub message: String,
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        h.insert(header::AUTHORIZATION, v);
    }
    h
}

impl Console {
    pub fn new(api: Api, backups: Option<Arc<dyn ExternalSource>>, app: Router) -> Console {
        let fleet = Fleet::new(api.state().clone(), backups);
        Console {
            api,
            app,
            fleet,
            sessions: Sessions::default(),
        }
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The console's own routes (without the API).
    pub fn routes(self) -> Router {
        Router::new()
            .route("/", get(views::overview))
            .route("/ui/login", get(views::login_page).post(actions::login))
            .route("/ui/logout", post(actions::logout))
            .route("/ui/events", get(views::events))
            .route("/ui/clusters/{id}", get(views::cluster))
            .route("/ui/clusters/{id}/backups", get(views::backups_fragment))
            .route(
                "/ui/clusters/{id}/backups/{backup}/download",
                get(actions::download),
            )
            .route("/ui/clusters/{id}/backup", post(actions::backup_now))
            .route("/ui/clusters/{id}/settings", post(actions::settings))
            .route("/ui/clusters/{id}/drill", post(actions::drill))
            .route("/ui/clusters/{id}/key", post(actions::export_key))
            .route("/ui/store", get(views::store).post(actions::store))
            .route("/ui/tokens", get(views::tokens).post(actions::create_token))
            .route("/ui/tokens/{id}/revoke", post(actions::revoke_token))
            .route("/ui/assets/console.js", get(views::script))
            .route("/ui/assets/console.css", get(views::style))
            .layer(axum::middleware::map_response(security_headers))
            .with_state(self)
    }

    /// The signed-in user of a request, its token checked again (a revoked
    /// token ends its sessions). Without one: to the sign-in page.
    pub(crate) async fn session(&self, headers: &HeaderMap) -> Result<Arc<Session>, Response> {
        let to_login = || Redirect::to("/ui/login").into_response();
        let id = session::cookie_id(headers).ok_or_else(to_login)?;
        let s = self.sessions.get(&id).ok_or_else(to_login)?;
        if auth::authenticate(self.api.state(), &bearer(&s.token))
            .await
            .is_err()
        {
            self.sessions.remove(&id);
            return Err(to_login());
        }
        Ok(s)
    }

    /// The user of a state-changing request: signed in, sent from a page
    /// of this server (Origin/Referer) with the session's CSRF token, and
    /// holding `role`.
    pub(crate) async fn acting(
        &self,
        headers: &HeaderMap,
        csrf: Option<&str>,
        role: Role,
        what: &str,
    ) -> Result<Arc<Session>, Response> {
        if !session::same_origin(headers) {
            return Err(refused(
                None,
                "cross-site request refused: Origin does not name this server",
            ));
        }
        let s = self.session(headers).await?;
        if !s.csrf_ok(csrf.unwrap_or_default()) {
            return Err(refused(
                Some(&viewer(&s)),
                "request refused: missing or wrong CSRF token (reload the page and try again)",
            ));
        }
        if s.role < role {
            return Err(refused(
                Some(&viewer(&s)),
                &format!(
                    "{what} requires the {} role; you are signed in as {}",
                    role.as_str(),
                    s.role.as_str()
                ),
            ));
        }
        Ok(s)
    }

    /// Calls the API as the session's user.
    pub(crate) async fn call(
        &self,
        s: &Session,
        method: Method,
        uri: &str,
        body: Option<&Value>,
    ) -> Result<Response, ApiFailure> {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", s.token));
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let failure = |message: String| ApiFailure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message,
        };
        let req = req.body(body).map_err(|e| failure(e.to_string()))?;
        let resp = match self.app.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        Err(ApiFailure { status, message })
    }

    /// Calls the API and reads its JSON answer.
    pub(crate) async fn call_json(
        &self,
        s: &Session,
        method: Method,
        uri: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiFailure> {
        let resp = self.call(s, method, uri, body).await?;
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ApiFailure {
                status: StatusCode::BAD_GATEWAY,
                message: e.to_string(),
            })?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(|e| ApiFailure {
            status: StatusCode::BAD_GATEWAY,
            message: format!("unexpected API answer: {e}"),
        })
    }
}

pub(crate) fn viewer(s: &Session) -> Viewer<'_> {
    Viewer {
        role: s.role,
        csrf: &s.csrf,
    }
}

pub(crate) fn html(status: StatusCode, markup: maud::Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

pub(crate) fn refused(v: Option<&Viewer>, text: &str) -> Response {
    html(StatusCode::FORBIDDEN, pages::message(v, "Refused", text))
}

/// Pages are not cached, framed, sniffed, or allowed to load anything
/// from elsewhere.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::CACHE_CONTROL, "no-store");
    resp
}
