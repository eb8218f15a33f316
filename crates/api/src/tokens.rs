//! Token management endpoints (admins only).

use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{create_token, revoke_token, Role};
use crate::{Api, ApiError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    role: String,
    #[serde(default)]
    description: String,
}

pub(crate) async fn create(
    AxState(api): AxState<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = api.caller(&headers).await?;
    caller.require(Role::Admin, "creating tokens")?;
    let req: CreateToken = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Invalid(format!("invalid token request: {e}")))?;
    let role = Role::parse(&req.role)?;
    if req.description.len() > 256 {
        return Err(ApiError::Invalid(
            "description: must be at most 256 characters".into(),
        ));
    }
    let (id, token) = create_token(&api.state, role, &req.description).await?;
    tracing::info!(token_id = %id, role = role.as_str(), by = %caller.token_id, "token created");
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "role": role.as_str(), "token": token})),
    ))
}

pub(crate) async fn revoke(
    AxState(api): AxState<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = api.caller(&headers).await?;
    caller.require(Role::Admin, "revoking tokens")?;
    revoke_token(&api.state, &id).await?;
    tracing::info!(token_id = %id, by = %caller.token_id, "token revoked");
    Ok(Json(json!({"revoked": id})))
}
