//! Watch as an NDJSON stream: the current items, a `bootstrapped` marker,
//! then every change. A watcher that falls behind gets an `error` line and
//! the stream ends; the client re-watches. Every stream ends at shutdown.

use axum::body::Body;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use futures::stream::{self, StreamExt};
use omni_resources::Resource;
use omni_state::EventKind;
use serde_json::json;

use crate::resources::{check_read, kind_info, parse_selector, visible, ListQuery};
use crate::{Api, ApiError};

fn line(event: &str, resource: Option<&Resource>) -> Result<bytes::Bytes, std::io::Error> {
    let mut s = serde_json::to_string(&json!({"event": event, "resource": resource}))
        .map_err(std::io::Error::other)?;
    s.push('\n');
    Ok(bytes::Bytes::from(s))
}

pub(crate) async fn watch(
    AxState(api): AxState<Api>,
    headers: HeaderMap,
    Path((kind, namespace)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let caller = api.caller(&headers).await?;
    let info = kind_info(&kind)?;
    check_read(&caller, &namespace)?;
    if api.external_source(info.name).is_some() {
        return Err(ApiError::Invalid(format!(
            "{} is listed from the backup store and cannot be watched",
            info.name
        )));
    }
    let selector = parse_selector(q.selector.as_deref())?;
    // Subscribe before listing so nothing in between is lost.
    let watch = api.state.watch(Some(&namespace), info.name);
    let id = q.id.clone();
    let wanted = move |r: &Resource| {
        selector.matches(&r.metadata.labels) && id.as_ref().is_none_or(|id| *id == r.metadata.id)
    };
    let initial: Vec<Resource> = api
        .state
        .list(
            &namespace,
            info.name,
            &omni_resources::LabelSelector::default(),
        )
        .await?
        .into_iter()
        .filter(|r| wanted(r))
        .collect();
    let mut head = Vec::new();
    for r in &initial {
        head.push(line("created", Some(&visible(&caller, info, r.clone()))));
    }
    head.push(line("bootstrapped", None));
    let tail = stream::unfold(Some(watch), move |w| {
        let caller = caller.clone();
        let wanted = wanted.clone();
        async move {
            let mut w = w?;
            loop {
                match w.next().await {
                    Ok(ev) if wanted(&ev.resource) => {
                        let name = match ev.kind {
                            EventKind::Created => "created",
                            EventKind::Updated => "updated",
                            EventKind::Destroyed => "destroyed",
                        };
                        return Some((
                            line(name, Some(&visible(&caller, info, ev.resource.clone()))),
                            Some(w),
                        ));
                    }
                    Ok(_) => continue,
                    Err(0) => return None,
                    Err(missed) => {
                        let msg = json!({"event": "error", "message": format!("watch fell behind by {missed} events; watch again")});
                        return Some((Ok(bytes::Bytes::from(format!("{msg}\n"))), None));
                    }
                }
            }
        }
    });
    let shutdown = api.shutdown.clone().cancelled_owned();
    let body = Body::from_stream(stream::iter(head).chain(tail).take_until(shutdown));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(body)
        .map_err(|e| ApiError::Internal(e.to_string()))
}
