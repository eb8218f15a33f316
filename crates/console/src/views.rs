//! Pages (GET): overview, cluster, store, tokens, the live event stream
//! and the embedded assets.

use std::convert::Infallible;

use axum::extract::{Path, Query, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use omni_api::auth::Role;
use omni_resources::specs::auth::{ApiTokenSpec, NS_AUTH};
use omni_resources::specs::backup::{
    EtcdBackupOverallStatusSpec, EtcdBackupS3ConfigSpec, OVERALL_STATUS_ID, S3_CONFIG_ID,
};
use omni_resources::specs::backup_retention::EtcdBackupRetentionStatusSpec;
use omni_resources::specs::cluster::ClusterSpec;
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Timestamp, NS_DEFAULT, NS_EPHEMERAL};
use serde::Deserialize;
use serde_json::json;

use crate::admin_pages::{self, StoreForm, StoreView, TokenRow};
use crate::cluster_page::{self, ClusterView, FormErrors, SettingsForm};
use crate::live::Update;
use crate::pages::{self, FleetQuery, StoreLine};
use crate::{html, viewer, Console};

fn now() -> i64 {
    Timestamp::now().seconds
}

fn internal(e: impl std::fmt::Display) -> Response {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        pages::message(None, "Error", &format!("reading the state failed: {e}")),
    )
}

pub(crate) async fn login_page() -> Response {
    html(StatusCode::OK, pages::login(None))
}

pub(crate) async fn store_line(c: &Console) -> StoreLine {
    match c
        .api
        .state()
        .get_spec::<EtcdBackupOverallStatusSpec>(NS_EPHEMERAL, OVERALL_STATUS_ID)
        .await
    {
        Ok(Some((_, s))) => StoreLine {
            name: s.configurationname,
            error: s.configurationerror,
        },
        _ => StoreLine {
            name: "unknown".into(),
            error: String::new(),
        },
    }
}

pub(crate) async fn overview(
    AxState(c): AxState<Console>,
    headers: HeaderMap,
    Query(q): Query<FleetQuery>,
) -> Response {
    let s = match c.session(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let all = match c.fleet.rows().await {
        Ok(rows) => rows,
        Err(e) => return internal(e),
    };
    let mut shown = all.clone();
    q.apply(&mut shown);
    let store = store_line(&c).await;
    html(
        StatusCode::OK,
        pages::overview(&viewer(&s), &all, &shown, &q, &store, now()),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Saved {
    saved: String,
}

fn saved_notice(what: &str) -> Option<String> {
    match what {
        "settings" => Some("Settings saved.".into()),
        "drill" => Some("Restore drill setting saved.".into()),
        "backup" => Some("Backup requested; the row turns ok when it is stored.".into()),
        "store" => Some("Store configuration saved: the bucket was listed.".into()),
        _ => None,
    }
}

/// Renders the cluster page with `form`/`errors` (after a failed save) or
/// the stored settings.
pub(crate) async fn render_cluster(
    c: &Console,
    s: &crate::session::Session,
    id: &str,
    form: Option<SettingsForm>,
    errors: FormErrors,
    notice: Option<String>,
) -> Response {
    let state = c.api.state();
    let row = match c.fleet.row(id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return html(
                StatusCode::NOT_FOUND,
                pages::message(
                    Some(&viewer(s)),
                    "Not found",
                    &format!("cluster {id} doesn't exist"),
                ),
            )
        }
        Err(e) => return internal(e),
    };
    let spec = match state.get_spec::<ClusterSpec>(NS_DEFAULT, id).await {
        Ok(spec) => spec.map(|(_, s)| s).unwrap_or_default(),
        Err(e) => return internal(e),
    };
    let config = spec.backupconfiguration.clone();
    let backups = c.fleet.list_backups(id).await;
    let kept = state
        .get_spec::<EtcdBackupRetentionStatusSpec>(NS_EPHEMERAL, id)
        .await
        .ok()
        .flatten()
        .map(|(_, r)| r.kept)
        .unwrap_or_default();
    let store = store_line(c).await;
    let durations = c.fleet.durations(id);
    let drills = c.fleet.drills(id);
    let status = if errors.fields.is_empty() && errors.general.is_none() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let view = ClusterView {
        row: &row,
        form: form.unwrap_or_else(|| {
            config
                .as_ref()
                .map(SettingsForm::from_config)
                .unwrap_or_default()
        }),
        config: config.as_ref(),
        errors,
        notice,
        backups: &backups,
        kept: &kept,
        store: &store.name,
        durations: &durations,
        drills: &drills,
        now: now(),
    };
    html(status, cluster_page::page(&viewer(s), &view))
}

pub(crate) async fn cluster(
    AxState(c): AxState<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Saved>,
) -> Response {
    match c.session(&headers).await {
        Ok(s) => {
            render_cluster(
                &c,
                &s,
                &id,
                None,
                FormErrors::default(),
                saved_notice(&q.saved),
            )
            .await
        }
        Err(r) => r,
    }
}

pub(crate) async fn backups_fragment(
    AxState(c): AxState<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let s = match c.session(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(Some(row)) = c.fleet.row(&id).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let backups = c.fleet.list_backups(&id).await;
    let kept = c
        .api
        .state()
        .get_spec::<EtcdBackupRetentionStatusSpec>(NS_EPHEMERAL, &id)
        .await
        .ok()
        .flatten()
        .map(|(_, r)| r.kept)
        .unwrap_or_default();
    let store = store_line(&c).await;
    let durations = c.fleet.durations(&id);
    let view = ClusterView {
        row: &row,
        config: None,
        form: SettingsForm::default(),
        errors: FormErrors::default(),
        notice: None,
        backups: &backups,
        kept: &kept,
        store: &store.name,
        durations: &durations,
        drills: &[],
        now: now(),
    };
    html(StatusCode::OK, cluster_page::backups(&viewer(&s), &view))
}

pub(crate) async fn store_view(
    c: &Console,
    s: &crate::session::Session,
    form: Option<StoreForm>,
    errors: FormErrors,
    notice: Option<String>,
) -> Response {
    let stored = stored_s3_config(c).await;
    let line = store_line(c).await;
    let status = if errors.fields.is_empty() && errors.general.is_none() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let view = StoreView {
        name: line.name,
        error: line.error,
        has_secret: stored
            .as_ref()
            .is_some_and(|s| !s.secretaccesskey.is_empty()),
        form: form.unwrap_or_else(|| {
            stored
                .as_ref()
                .map(StoreForm::from_spec)
                .unwrap_or_default()
        }),
        errors,
        notice,
    };
    html(status, admin_pages::store(&viewer(s), &view))
}

pub(crate) async fn store(
    AxState(c): AxState<Console>,
    headers: HeaderMap,
    Query(q): Query<Saved>,
) -> Response {
    match c.session(&headers).await {
        Ok(s) => store_view(&c, &s, None, FormErrors::default(), saved_notice(&q.saved)).await,
        Err(r) => r,
    }
}

pub(crate) async fn token_rows(c: &Console) -> Vec<TokenRow> {
    let list = c
        .api
        .state()
        .list(NS_AUTH, ApiTokenSpec::TYPE, &LabelSelector::default())
        .await
        .unwrap_or_default();
    list.into_iter()
        .filter_map(|r| {
            let spec: ApiTokenSpec = r.spec_as().ok()?;
            Some(TokenRow {
                id: r.metadata.id,
                role: spec.role,
                description: spec.description,
            })
        })
        .collect()
}

pub(crate) async fn tokens(AxState(c): AxState<Console>, headers: HeaderMap) -> Response {
    let s = match c.session(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if s.role < Role::Admin {
        return crate::refused(Some(&viewer(&s)), "managing tokens requires the admin role");
    }
    let rows = token_rows(&c).await;
    html(
        StatusCode::OK,
        admin_pages::tokens(&viewer(&s), &rows, None, None, &s.token_id),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EventsQuery {
    cluster: String,
}

/// Row updates as server-sent events: `row` (the row's new markup),
/// `gone` (a cluster was deleted), `reload` (the watcher fell behind).
/// The stream ends when the session does.
pub(crate) async fn events(
    AxState(c): AxState<Console>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    let Some(id) = crate::session::cookie_id(&headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    if c.session(&headers).await.is_err() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Sse::new(event_stream(c, id, q.cluster))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn event_stream(
    c: Console,
    session_id: String,
    only: String,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let rx = c.fleet.subscribe();
    stream::unfold(Some(rx), move |rx| {
        let c = c.clone();
        let session_id = session_id.clone();
        let only = only.clone();
        async move {
            let mut rx = rx?;
            loop {
                let update = match rx.recv().await {
                    Ok(u) => u,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Update::Reload,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                };
                c.sessions.get(&session_id)?;
                let event = match update {
                    Update::Row(row) if only.is_empty() || only == row.cluster => {
                        let data = json!({
                            "cluster": row.cluster,
                            "health": row.health,
                            "status": crate::model::status_word(row.status),
                            "last": row.last_backup,
                            "html": pages::row(&row, now()).into_string(),
                        });
                        Event::default().event("row").data(data.to_string())
                    }
                    Update::Gone(cluster) if only.is_empty() || only == cluster => {
                        Event::default().event("gone").data(cluster)
                    }
                    Update::Reload => Event::default().event("reload").data("behind"),
                    Update::Closing => return None,
                    _ => continue,
                };
                return Some((Ok(event), Some(rx)));
            }
        }
    })
}

pub(crate) async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../assets/console.js"),
    )
}

pub(crate) async fn style() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../assets/console.css"),
    )
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// The stored S3 configuration, if any (a failed read shows as none: the
/// page then offers an empty form, and saving goes through the API's checks).
pub(crate) async fn stored_s3_config(c: &Console) -> Option<EtcdBackupS3ConfigSpec> {
    c.api
        .state()
        .get_spec::<EtcdBackupS3ConfigSpec>(NS_DEFAULT, S3_CONFIG_ID)
        .await
        .ok()
        .flatten()
        .map(|(_, s)| s)
}
