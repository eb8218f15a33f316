//! A webhook receiver for the alert tests: an HTTP server on loopback that
//! records every request.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub auth: Option<String>,
    pub body: Value,
}

/// A receiver on loopback that records every request.
#[derive(Clone, Default)]
pub struct Inbox(Arc<Mutex<Vec<Received>>>);

impl Inbox {
    pub async fn serve(listener: tokio::net::TcpListener) -> Inbox {
        let inbox = Inbox::default();
        let app = axum::Router::new()
            .fallback(record)
            .with_state(inbox.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        inbox
    }

    pub fn all(&self) -> Vec<Received> {
        self.0.lock().unwrap().clone()
    }

    /// Webhook messages on `path` for `alert` in `status`.
    pub fn webhook(&self, path: &str, alert: &str, status: &str) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| r.path == path && r.body["alert"] == alert && r.body["status"] == status)
            .collect()
    }

    pub fn on(&self, path: &str) -> Vec<Received> {
        self.all().into_iter().filter(|r| r.path == path).collect()
    }
}

async fn record(
    State(inbox): State<Inbox>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    inbox.0.lock().unwrap().push(Received {
        path: uri.path().to_string(),
        auth,
        body,
    });
    StatusCode::OK
}

/// An `AlertReceivers` document.
pub fn receiver_yaml(id: &str, kind: &str, url: &str, extra: &str) -> String {
    format!(
        "metadata:\n  type: AlertReceivers.omni.sidero.dev\n  id: {id}\nspec:\n  type: {kind}\n  url: {url}\n{extra}"
    )
}
