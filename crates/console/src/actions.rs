//! Actions (POST, and the download): each one is checked for session,
//! origin, CSRF token and role, then carried out by the API as the user.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State as AxState};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use omni_api::auth::{self, Role};
use omni_resources::duration::{parse_go_duration, ProtoDuration};
use omni_resources::specs::backup::{
    BackupDataSpec, EtcdBackupS3ConfigSpec, EtcdManualBackupSpec, S3_CONFIG_ID,
};
use omni_resources::specs::cluster::{BackupConfiguration, ClusterSpec, RestoreDrill};
use omni_resources::specs::Kind;
use omni_resources::{Resource, Timestamp, NS_DEFAULT, NS_EPHEMERAL};
use serde_json::{json, Value};

use crate::admin_pages::{self, StoreForm};
use crate::cluster_page::{FormErrors, SettingsForm, KEEP_FIELDS};
use crate::session::{self, Session};
use crate::views::{render_cluster, store_view, stored_s3_config, token_rows};
use crate::{bearer, html, pages, refused, viewer, ApiFailure, Console};

fn form(body: &Bytes) -> HashMap<String, String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// A state-changing request's form and session, once it passed the
/// console's origin, CSRF and role checks; else the refusal to answer.
async fn acting_on_form(
    c: &Console,
    headers: &HeaderMap,
    body: &Bytes,
    role: Role,
    what: &str,
) -> Result<(HashMap<String, String>, std::sync::Arc<Session>), Response> {
    let f = form(body);
    let s = c
        .acting(headers, f.get("csrf").map(String::as_str), role, what)
        .await?;
    Ok((f, s))
}

fn parse<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> T {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

/// Whether the page's script sent the form (it wants a status, not a page).
fn is_async(headers: &HeaderMap) -> bool {
    headers.contains_key("x-console-async")
}

fn failed(s: &Session, f: ApiFailure) -> Response {
    html(
        f.status,
        pages::message(Some(&viewer(s)), "Refused", &f.message),
    )
}

pub(crate) async fn login(
    AxState(c): AxState<Console>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !session::same_origin(&headers) {
        return refused(None, "cross-site sign-in refused");
    }
    let f = form(&body);
    let token = f.get("token").map(|t| t.trim()).unwrap_or_default();
    let caller = match auth::authenticate(c.api.state(), &bearer(token)).await {
        Ok(caller) => caller,
        Err(_) => {
            return html(
                StatusCode::UNAUTHORIZED,
                pages::login(Some("That token is invalid or revoked.")),
            )
        }
    };
    let (id, _) = c
        .sessions
        .create(token.to_string(), caller.token_id.clone(), caller.role);
    tracing::info!(token_id = %caller.token_id, role = caller.role.as_str(), "console sign-in");
    let secure = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| o.starts_with("https://"));
    (
        [(header::SET_COOKIE, session::set_cookie(&id, secure))],
        Redirect::to("/"),
    )
        .into_response()
}

pub(crate) async fn logout(
    AxState(c): AxState<Console>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = acting_on_form(&c, &headers, &body, Role::Reader, "signing out").await {
        return r;
    }
    if let Some(id) = session::cookie_id(&headers) {
        c.sessions.remove(&id);
    }
    (
        [(header::SET_COOKIE, session::clear_cookie(false))],
        Redirect::to("/ui/login"),
    )
        .into_response()
}

pub(crate) async fn backup_now(
    AxState(c): AxState<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (_, s) =
        match acting_on_form(&c, &headers, &body, Role::Operator, "requesting a backup").await {
            Ok(v) => v,
            Err(r) => return r,
        };
    let spec = EtcdManualBackupSpec {
        backupat: Timestamp::from_unix(Timestamp::now().seconds),
        keep: false,
    };
    let res = Resource::from_spec(EtcdManualBackupSpec::TYPE, NS_EPHEMERAL, &id, &spec);
    let body = serde_json::to_value(&res).unwrap_or(Value::Null);
    let result = c.call(&s, Method::POST, "/api/v1/apply", Some(&body)).await;
    match (result, is_async(&headers)) {
        (Ok(_), true) => (StatusCode::ACCEPTED, "backup requested").into_response(),
        (Ok(_), false) => Redirect::to(&format!("/ui/clusters/{id}?saved=backup")).into_response(),
        (Err(f), true) => (f.status, f.message).into_response(),
        (Err(f), false) => failed(&s, f),
    }
}

/// Reads the cluster as stored, changes its backup configuration with
/// `change`, and writes it back through the API at the version read.
async fn update_cluster(
    c: &Console,
    s: &Session,
    id: &str,
    change: impl FnOnce(&mut BackupConfiguration),
) -> Result<(), ApiFailure> {
    let key = omni_resources::meta::ResourceKey::new(NS_DEFAULT, ClusterSpec::TYPE, id);
    let mut res = c.api.state().get(&key).await.map_err(|e| ApiFailure {
        status: StatusCode::NOT_FOUND,
        message: e.to_string(),
    })?;
    let mut spec: ClusterSpec = res.spec_as().map_err(|e| ApiFailure {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("stored cluster is unreadable: {e}"),
    })?;
    let mut conf = spec.backupconfiguration.take().unwrap_or_default();
    change(&mut conf);
    spec.backupconfiguration = (conf != BackupConfiguration::default()).then_some(conf);
    res.spec = serde_json::to_value(&spec).unwrap_or(Value::Null);
    let body = serde_json::to_value(&res).unwrap_or(Value::Null);
    let uri = format!("/api/v1/resources/{}/{NS_DEFAULT}/{id}", ClusterSpec::TYPE);
    c.call(s, Method::PUT, &uri, Some(&body)).await.map(|_| ())
}

/// Parses the settings form the way the API words its errors; the API
/// checks the result (bounds, limits) with its own messages.
fn parse_settings(f: &SettingsForm) -> Result<Settings, FormErrors> {
    let field = |name: &str| format!("spec.backupconfiguration.{name}");
    let interval = match f.interval.trim() {
        "" => None,
        text => Some(parse_go_duration(text).map_err(|e| {
            FormErrors::field(
                &field("interval"),
                format!("{text:?} is not a duration: {e}"),
            )
        })?),
    };
    let mut keep = [0i64; 5];
    for (i, (name, _)) in KEEP_FIELDS.iter().enumerate() {
        let text = f.get(name).trim();
        if !text.is_empty() {
            keep[i] = text.parse().map_err(|_| {
                FormErrors::field(&field(name), format!("{text:?} is not a whole number"))
            })?;
        }
    }
    let text = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    Ok(Settings {
        interval: interval.map(ProtoDuration::from_std),
        schedule: text(&f.schedule),
        timezone: text(&f.timezone),
        keep,
    })
}

/// The settings form, parsed.
#[derive(Debug)]
struct Settings {
    interval: Option<ProtoDuration>,
    schedule: Option<String>,
    timezone: Option<String>,
    keep: [i64; 5],
}

pub(crate) async fn settings(
    AxState(c): AxState<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (_, s) = match acting_on_form(
        &c,
        &headers,
        &body,
        Role::Admin,
        "changing backup interval and retention",
    )
    .await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let sent: SettingsForm = parse(&body);
    let Settings {
        interval,
        schedule,
        timezone,
        keep,
    } = match parse_settings(&sent) {
        Ok(v) => v,
        Err(errors) => return render_cluster(&c, &s, &id, Some(sent), errors, None).await,
    };
    let result = update_cluster(&c, &s, &id, |conf| {
        conf.interval = interval;
        conf.schedule = schedule;
        conf.timezone = timezone;
        [
            conf.keeplast,
            conf.keephourly,
            conf.keepdaily,
            conf.keepweekly,
            conf.keepmonthly,
        ] = keep;
    })
    .await;
    match result {
        Ok(()) => Redirect::to(&format!("/ui/clusters/{id}?saved=settings")).into_response(),
        Err(f) => {
            let mut errors = FormErrors::from_api(&f.message, "");
            // "interval and schedule are exclusive" names the section.
            if let Some(m) = errors.fields.remove("spec.backupconfiguration") {
                errors.general = Some(m);
            }
            render_cluster(&c, &s, &id, Some(sent), errors, None).await
        }
    }
}

pub(crate) async fn drill(
    AxState(c): AxState<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (f, s) = match acting_on_form(
        &c,
        &headers,
        &body,
        Role::Operator,
        "turning restore drills on or off",
    )
    .await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let on = f.get("restoredrill").is_some_and(|v| v == "on");
    let drill = if on {
        RestoreDrill::AfterEachBackup
    } else {
        RestoreDrill::Off
    };
    match update_cluster(&c, &s, &id, |conf| conf.restoredrill = drill).await {
        Ok(()) => Redirect::to(&format!("/ui/clusters/{id}?saved=drill")).into_response(),
        Err(f) => {
            render_cluster(
                &c,
                &s,
                &id,
                None,
                FormErrors::from_api(&f.message, ""),
                None,
            )
            .await
        }
    }
}

/// The cluster's age identity as a key file, for admins (the API refuses
/// others: non-admins read it redacted).
pub(crate) async fn export_key(
    AxState(c): AxState<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (_, s) =
        match acting_on_form(&c, &headers, &body, Role::Admin, "exporting backup keys").await {
            Ok(v) => v,
            Err(r) => return r,
        };
    let uri = format!(
        "/api/v1/resources/{}/{NS_DEFAULT}/{id}",
        BackupDataSpec::TYPE
    );
    let res = match c.call_json(&s, Method::GET, &uri, None).await {
        Ok(v) => v,
        Err(f) => return failed(&s, f),
    };
    let spec: BackupDataSpec = match serde_json::from_value(res["spec"].clone()) {
        Ok(spec) => spec,
        Err(e) => {
            return failed(
                &s,
                ApiFailure {
                    status: StatusCode::BAD_GATEWAY,
                    message: e.to_string(),
                },
            )
        }
    };
    if spec.ageidentity.is_empty() || spec.ageidentity == "<redacted>" {
        return refused(
            Some(&viewer(&s)),
            "the backup key is visible to admins only",
        );
    }
    tracing::info!(cluster = %id, token_id = %s.token_id, "console: backup key exported");
    let text = format!(
        "# cluster: {id}\n# cluster uuid: {}\n# public key: {}\n{}\n",
        spec.clusteruuid, spec.agerecipient, spec.ageidentity
    );
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}-backup-key.txt\""),
            ),
        ],
        text,
    )
        .into_response()
}

/// Streams the restored snapshot from the API (decrypted, decompressed,
/// digest checked on the way) as a file download.
pub(crate) async fn download(
    AxState(c): AxState<Console>,
    headers: HeaderMap,
    Path((id, backup)): Path<(String, String)>,
) -> Response {
    let s = match c.session(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if s.role < Role::Operator {
        return refused(
            Some(&viewer(&s)),
            "downloading backups requires the operator role",
        );
    }
    if !backup.starts_with(&format!("{id}-")) {
        return refused(Some(&viewer(&s)), "that backup belongs to another cluster");
    }
    let uri = format!("/api/v1/etcd-backups/{backup}/snapshot");
    match c.call(&s, Method::GET, &uri, None).await {
        Ok(resp) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{backup}.db\""),
                ),
            ],
            Body::new(resp.into_body()),
        )
            .into_response(),
        Err(f) => failed(&s, f),
    }
}

pub(crate) async fn store(
    AxState(c): AxState<Console>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_, s) = match acting_on_form(
        &c,
        &headers,
        &body,
        Role::Admin,
        "changing the backup store configuration",
    )
    .await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let sent: StoreForm = parse(&body);
    let stored = stored_s3_config(&c).await;
    let spec = sent.clone().into_spec(stored.as_ref());
    let res = Resource::from_spec(
        EtcdBackupS3ConfigSpec::TYPE,
        NS_DEFAULT,
        S3_CONFIG_ID,
        &spec,
    );
    let body = serde_json::to_value(&res).unwrap_or(Value::Null);
    match c.call(&s, Method::POST, "/api/v1/apply", Some(&body)).await {
        Ok(_) => Redirect::to("/ui/store?saved=store").into_response(),
        Err(f) => {
            let errors = FormErrors::from_api(&f.message, "");
            store_view(&c, &s, Some(sent), errors, None).await
        }
    }
}

pub(crate) async fn create_token(
    AxState(c): AxState<Console>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (f, s) = match acting_on_form(&c, &headers, &body, Role::Admin, "creating tokens").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let req = json!({
        "role": f.get("role").cloned().unwrap_or_default(),
        "description": f.get("description").cloned().unwrap_or_default(),
    });
    let (created, error) = match c
        .call_json(&s, Method::POST, "/api/v1/tokens", Some(&req))
        .await
    {
        Ok(v) => (
            Some((
                v["id"].as_str().unwrap_or_default().to_string(),
                v["token"].as_str().unwrap_or_default().to_string(),
            )),
            None,
        ),
        Err(f) => (None, Some(f.message)),
    };
    let rows = token_rows(&c).await;
    let page = admin_pages::tokens(
        &viewer(&s),
        &rows,
        created.as_ref().map(|(i, t)| (i.as_str(), t.as_str())),
        error.as_deref(),
        &s.token_id,
    );
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::CREATED
    };
    html(status, page)
}

pub(crate) async fn revoke_token(
    AxState(c): AxState<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (_, s) = match acting_on_form(&c, &headers, &body, Role::Admin, "revoking tokens").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match c
        .call(&s, Method::DELETE, &format!("/api/v1/tokens/{id}"), None)
        .await
    {
        Ok(_) => Redirect::to("/ui/tokens").into_response(),
        Err(f) => failed(&s, f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_parsed_with_field_named_errors() {
        let form = SettingsForm {
            interval: "90m".into(),
            keeplast: "3".into(),
            keepdaily: " 7 ".into(),
            ..Default::default()
        };
        let parsed = parse_settings(&form).unwrap();
        assert_eq!(parsed.interval.map(|i| i.seconds), Some(5400));
        assert_eq!(parsed.keep, [3, 0, 7, 0, 0]);
        assert_eq!((parsed.schedule, parsed.timezone), (None, None));
        let empty = parse_settings(&SettingsForm::default()).unwrap();
        assert_eq!((empty.interval, empty.keep), (None, [0; 5]));
        let cron = parse_settings(&SettingsForm {
            schedule: " 0 */6 * * * ".into(),
            timezone: "Europe/Berlin".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(cron.schedule.as_deref(), Some("0 */6 * * *"));
        assert_eq!(cron.timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(cron.interval, None);
        let bad = parse_settings(&SettingsForm {
            interval: "soon".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(bad.fields["spec.backupconfiguration.interval"].contains("is not a duration"));
        let bad = parse_settings(&SettingsForm {
            keepweekly: "two".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            bad.fields["spec.backupconfiguration.keepweekly"],
            "\"two\" is not a whole number"
        );
    }
}
