//! API errors and their one mapping to HTTP status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use omni_resources::ValidationError;
use omni_state::StateError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        match &e {
            StateError::NotFound(_) => ApiError::NotFound(e.to_string()),
            StateError::AlreadyExists(_) | StateError::Conflict { .. } => {
                ApiError::Conflict(e.to_string())
            }
            StateError::FinalizersPending { .. }
            | StateError::TearingDown(_)
            | StateError::OwnerConflict { .. }
            | StateError::Fenced(_) => ApiError::Conflict(e.to_string()),
            // Named so that clients and operators know which dependency is down.
            StateError::Unavailable(_) => {
                tracing::warn!(error = %e, "state store unavailable");
                ApiError::Unavailable(format!(
                    "{e}; the state store (etcd) has no quorum or cannot be reached, retry later"
                ))
            }
            StateError::Storage(_) | StateError::Corrupt(_) => {
                tracing::error!(error = %e, "state failure");
                ApiError::Internal("state storage failed; see the server log".into())
            }
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::Invalid(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.code();
        let body = json!({"error": {"code": code, "message": self.to_string()}});
        (status, axum::Json(body)).into_response()
    }
}
