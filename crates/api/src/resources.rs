//! Reads: get and list, with role-based visibility and redaction.

use axum::extract::{Path, Query, State as AxState};
use axum::http::HeaderMap;
use axum::Json;
use omni_resources::kinds::{lookup, TypeInfo};
use omni_resources::meta::ResourceKey;
use omni_resources::specs::auth::NS_AUTH;
use omni_resources::{LabelSelector, Resource};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Caller, Role};
use crate::{Api, ApiError};

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    pub selector: Option<String>,
    pub id: Option<String>,
}

pub(crate) fn kind_info(kind: &str) -> Result<&'static TypeInfo, ApiError> {
    lookup(kind).ok_or_else(|| ApiError::NotFound(format!("unknown resource type {kind:?}")))
}

pub(crate) fn parse_selector(selector: Option<&str>) -> Result<LabelSelector, ApiError> {
    LabelSelector::parse(selector.unwrap_or("")).map_err(|e| ApiError::Invalid(e.to_string()))
}

/// Refuses reads a role may not make at all.
pub(crate) fn check_read(caller: &Caller, namespace: &str) -> Result<(), ApiError> {
    if namespace == NS_AUTH {
        caller.require(Role::Admin, "reading the auth namespace")?;
    }
    Ok(())
}

/// Blanks secrets for callers who may not see them.
pub(crate) fn visible(caller: &Caller, info: &TypeInfo, mut res: Resource) -> Resource {
    if caller.role < Role::Admin {
        info.redact(&mut res.spec);
    }
    res
}

pub(crate) async fn list(
    AxState(api): AxState<Api>,
    headers: HeaderMap,
    Path((kind, namespace)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let caller = api.caller(&headers).await?;
    let info = kind_info(&kind)?;
    check_read(&caller, &namespace)?;
    let selector = parse_selector(q.selector.as_deref())?;
    let items = if let Some(source) = api.external_source(info.name) {
        source.list(info.name, &selector).await?
    } else {
        api.state.list(&namespace, info.name, &selector).await?
    };
    let items: Vec<Resource> = items
        .into_iter()
        .filter(|r| q.id.as_ref().is_none_or(|id| *id == r.metadata.id))
        .map(|r| visible(&caller, info, r))
        .collect();
    Ok(Json(json!({ "items": items })))
}

pub(crate) async fn get(
    AxState(api): AxState<Api>,
    headers: HeaderMap,
    Path((kind, namespace, id)): Path<(String, String, String)>,
) -> Result<Json<Resource>, ApiError> {
    let caller = api.caller(&headers).await?;
    let info = kind_info(&kind)?;
    check_read(&caller, &namespace)?;
    let res = if let Some(source) = api.external_source(info.name) {
        source.get(info.name, &id).await?
    } else {
        api.state
            .get(&ResourceKey::new(&namespace, info.name, &id))
            .await?
    };
    Ok(Json(visible(&caller, info, res)))
}
