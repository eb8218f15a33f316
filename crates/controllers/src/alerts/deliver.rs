//! Sending one message to one receiver over HTTP. Errors never carry the
//! URL or header values: both may be credentials.

use std::time::Duration;

use omni_resources::specs::alert::AlertReceiverSpec;
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use serde_json::Value;

use super::payload;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("receiver answered {0}")]
    Status(reqwest::StatusCode),
    /// The request failed (connect, TLS, timeout); the URL is stripped.
    #[error("sending failed: {0}")]
    Send(String),
    #[error("invalid header {0:?}")]
    Header(String),
}

/// Builds the one client all deliveries share. Redirects are not followed,
/// so headers never travel to a host the user did not name.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// POSTs `body` to the receiver.
///
/// # Errors
/// The receiver is unreachable, or answers anything but 2xx.
pub async fn send(
    client: &reqwest::Client,
    receiver: &AlertReceiverSpec,
    body: &Value,
) -> Result<(), DeliveryError> {
    let url = format!(
        "{}{}",
        receiver.url.trim_end_matches('/'),
        payload::path(&receiver.kind)
    );
    let mut req = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string());
    for (name, value) in &receiver.headers {
        let name =
            HeaderName::try_from(name.as_str()).map_err(|_| DeliveryError::Header(name.clone()))?;
        let mut value = HeaderValue::try_from(value.as_str())
            .map_err(|_| DeliveryError::Header(name.to_string()))?;
        value.set_sensitive(true);
        req = req.header(name, value);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| DeliveryError::Send(chain(&e.without_url())))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(DeliveryError::Status(resp.status()))
    }
}

/// An error with its causes, `a: b: c` (reqwest's own message is bare).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Delay before attempt `attempts + 1` after `attempts` failures: doubling
/// from `min`, capped at `max`.
pub fn backoff(attempts: u32, min: Duration, max: Duration) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(20);
    min.saturating_mul(factor).min(max)
}
