//! `POST /api/v1/apply/batch`: many resources in one request, so a large
//! manifest is not throttled document by document. Every item is checked
//! (type, role, id, labels, spec) before any is written; then they are
//! applied in order, each as `POST /api/v1/apply` would.

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::resources::visible;
use crate::write::{apply_with_retry, prepare};
use crate::{Api, ApiError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    items: Vec<Value>,
}

/// The same error, its message prefixed with where it happened.
fn at(prefix: &str, e: ApiError) -> ApiError {
    let msg = |m: String| format!("{prefix}: {m}");
    match e {
        ApiError::Invalid(m) => ApiError::Invalid(msg(m)),
        ApiError::Unauthenticated(m) => ApiError::Unauthenticated(msg(m)),
        ApiError::Forbidden(m) => ApiError::Forbidden(msg(m)),
        ApiError::NotFound(m) => ApiError::NotFound(msg(m)),
        ApiError::Conflict(m) => ApiError::Conflict(msg(m)),
        ApiError::TooLarge(m) => ApiError::TooLarge(msg(m)),
        ApiError::TooManyRequests {
            message,
            retry_after,
        } => ApiError::TooManyRequests {
            message: msg(message),
            retry_after,
        },
        ApiError::Unavailable(m) => ApiError::Unavailable(msg(m)),
        ApiError::Internal(m) => ApiError::Internal(msg(m)),
    }
}

pub(crate) async fn apply_batch(
    AxState(api): AxState<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = api.caller(&headers).await?;
    let batch: Batch = serde_json::from_slice(&body).map_err(|e| {
        ApiError::Invalid(format!(
            "invalid batch (expected {{\"items\": [Resource, ...]}}): {e}"
        ))
    })?;
    let mut prepared = Vec::with_capacity(batch.items.len());
    for (i, item) in batch.items.iter().enumerate() {
        let bytes = serde_json::to_vec(item).map_err(|e| ApiError::Invalid(e.to_string()))?;
        let (info, res) =
            prepare(&api, &caller, &bytes).map_err(|e| at(&format!("items[{i}]"), e))?;
        prepared.push((info, res));
    }
    let mut results = Vec::with_capacity(prepared.len());
    for (i, (info, res)) in prepared.into_iter().enumerate() {
        let key = res.key();
        let (result, stored) = apply_with_retry(&api, res).await.map_err(|e| {
            at(
                &format!("items[{i}] ({key}; the {i} items before it were applied)"),
                e,
            )
        })?;
        results.push(json!({"result": result, "resource": visible(&caller, info, stored)}));
    }
    tracing::info!(items = results.len(), token = %caller.token_id, "batch applied");
    Ok(Json(json!({"results": results})))
}
