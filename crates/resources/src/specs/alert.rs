//! Alerts: where to send them (`AlertReceivers`, written by users) and what
//! fired (`AlertStatuses`, written by the alert controller).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Kind, ValidationContext};
use crate::duration::ProtoDuration;
use crate::kinds::{Column, Writer};
use crate::validate::ValidationError;
use crate::{LabelSelector, Timestamp, NS_DEFAULT, NS_EPHEMERAL};

/// Receiver types.
pub mod receiver_type {
    /// A documented JSON object per alert, POSTed to the URL.
    pub const WEBHOOK: &str = "webhook";
    /// Alertmanager API v2: POST `{url}/api/v2/alerts`.
    pub const ALERTMANAGER: &str = "alertmanager";
    /// A Slack-compatible incoming webhook (`{"text", "blocks"}`).
    pub const SLACK: &str = "slack";
    pub const ALL: &[&str] = &[WEBHOOK, ALERTMANAGER, SLACK];
}

/// Alert names, also the values of a receiver's `events` filter.
pub mod event {
    pub const BACKUP_FAILED: &str = "backup-failed";
    pub const BACKUP_STALE: &str = "backup-stale";
    pub const DRILL_FAILED: &str = "drill-failed";
    pub const STORE_CONFIG_INVALID: &str = "store-config-invalid";
    pub const RETENTION_IDLE: &str = "retention-idle";
    pub const COPY_FAILED: &str = "copy-failed";
    pub const ALL: &[&str] = &[
        BACKUP_FAILED,
        BACKUP_STALE,
        DRILL_FAILED,
        STORE_CONFIG_INVALID,
        RETENTION_IDLE,
        COPY_FAILED,
    ];
}

pub const DEFAULT_RESEND_SECS: i64 = 4 * 3600;
pub const DEFAULT_STALE_AFTER_INTERVALS: u32 = 2;
pub const DEFAULT_RETENTION_IDLE_RUNS: u32 = 3;

/// Where alerts go. `url` and `headers` carry credentials (a Slack webhook
/// URL is its own secret): only admins read them, and they are never logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertReceiverSpec {
    /// `webhook`, `alertmanager` or `slack`.
    #[serde(rename = "type")]
    pub kind: String,
    /// https://, or http:// to a loopback host only.
    pub url: String,
    /// Extra request headers (e.g. `Authorization`).
    pub headers: BTreeMap<String, String>,
    /// Alert names to send; empty sends all.
    pub events: Vec<String>,
    /// How often a still-firing alert is sent again.
    pub resendinterval: ProtoDuration,
    /// A cluster's backups are stale after this many backup intervals
    /// without a good backup.
    pub staleafterintervals: u32,
    /// Retention is stuck after this many runs that deleted nothing while
    /// more backups are stored than the policy keeps.
    pub retentionidleruns: u32,
    /// Send a message when an alert clears.
    pub sendresolved: bool,
    /// Label selector over clusters; empty: all clusters.
    pub clusters: String,
}

impl Default for AlertReceiverSpec {
    fn default() -> Self {
        AlertReceiverSpec {
            kind: String::new(),
            url: String::new(),
            headers: BTreeMap::new(),
            events: Vec::new(),
            resendinterval: ProtoDuration {
                seconds: DEFAULT_RESEND_SECS,
                nanos: 0,
            },
            staleafterintervals: DEFAULT_STALE_AFTER_INTERVALS,
            retentionidleruns: DEFAULT_RETENTION_IDLE_RUNS,
            sendresolved: true,
            clusters: String::new(),
        }
    }
}

impl std::fmt::Debug for AlertReceiverSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertReceiverSpec")
            .field("type", &self.kind)
            .field("url", &"<redacted>")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("events", &self.events)
            .field("resendinterval", &self.resendinterval)
            .field("staleafterintervals", &self.staleafterintervals)
            .field("retentionidleruns", &self.retentionidleruns)
            .field("sendresolved", &self.sendresolved)
            .field("clusters", &self.clusters)
            .finish()
    }
}

impl AlertReceiverSpec {
    /// Whether this receiver wants alert `name`.
    pub fn wants(&self, name: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == name)
    }

    /// The resend interval; never below one second.
    pub fn resend(&self) -> std::time::Duration {
        self.resendinterval
            .to_std()
            .unwrap_or_default()
            .max(std::time::Duration::from_secs(1))
    }
}

/// The host of an `http(s)://host[:port]/...` URL, without brackets.
fn url_host(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    host_port.split(':').next().unwrap_or("")
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Kind for AlertReceiverSpec {
    const TYPE: &'static str = "AlertReceivers.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_DEFAULT;
    const ALIASES: &'static [&'static str] = &["alertreceiver", "alertreceivers"];
    const COLUMNS: &'static [Column] = &[
        Column::new("RECEIVER TYPE", "type"),
        Column::new("EVENTS", "events"),
        Column::new("CLUSTERS", "clusters"),
    ];
    const WRITER: Writer = Writer::User;
    const SECRET_FIELDS: &'static [&'static str] = &["url", "headers"];

    fn check(&self, _ctx: &ValidationContext) -> Result<(), ValidationError> {
        if !receiver_type::ALL.contains(&self.kind.as_str()) {
            return Err(ValidationError::field(
                "spec.type",
                format!(
                    "unknown receiver type {:?}; expected one of {}",
                    self.kind,
                    receiver_type::ALL.join(", ")
                ),
            ));
        }
        // Never echo the URL: it may be a credential.
        let host = if let Some(rest) = self.url.strip_prefix("https://") {
            url_host(rest)
        } else if let Some(rest) = self.url.strip_prefix("http://") {
            let host = url_host(rest);
            if !is_loopback(host) {
                return Err(ValidationError::field(
                    "spec.url",
                    "http:// is allowed only to a loopback host (the URL and headers are secrets); use https://",
                ));
            }
            host
        } else {
            return Err(ValidationError::field(
                "spec.url",
                "must be an https:// URL (or http:// to a loopback host)",
            ));
        };
        if host.is_empty()
            || self
                .url
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ValidationError::field(
                "spec.url",
                "is not a valid URL (no host, or it contains spaces)",
            ));
        }
        for (name, value) in &self.headers {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                return Err(ValidationError::field(
                    format!("spec.headers.{name}"),
                    "is not a valid header name",
                ));
            }
            if value.chars().any(|c| c.is_control()) {
                return Err(ValidationError::field(
                    format!("spec.headers.{name}"),
                    "value must not contain control characters",
                ));
            }
        }
        for (i, e) in self.events.iter().enumerate() {
            if !event::ALL.contains(&e.as_str()) {
                return Err(ValidationError::field(
                    format!("spec.events[{i}]"),
                    format!(
                        "unknown event {e:?}; expected one of {}",
                        event::ALL.join(", ")
                    ),
                ));
            }
        }
        if self.resendinterval.to_std().is_none_or(|d| d.is_zero()) {
            return Err(ValidationError::field(
                "spec.resendinterval",
                "must be positive",
            ));
        }
        if self.staleafterintervals == 0 {
            return Err(ValidationError::field(
                "spec.staleafterintervals",
                "must be at least 1",
            ));
        }
        if self.retentionidleruns == 0 {
            return Err(ValidationError::field(
                "spec.retentionidleruns",
                "must be at least 1",
            ));
        }
        if let Err(e) = LabelSelector::parse(&self.clusters) {
            return Err(ValidationError::field("spec.clusters", e.to_string()));
        }
        Ok(())
    }
}

/// Alert states.
pub mod state {
    pub const FIRING: &str = "firing";
    pub const RESOLVED: &str = "resolved";
}

/// Delivery of one alert to one receiver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertDelivery {
    pub receiver: String,
    /// Whether the alert fires for this receiver (its own thresholds and
    /// filters).
    pub firing: bool,
    /// The last state the receiver accepted: `firing`, `resolved` or empty.
    pub sent: String,
    pub lastsent: Timestamp,
    /// Failed attempts since the last success.
    pub attempts: u32,
    /// When a failed delivery is tried again.
    pub nextattempt: Timestamp,
    /// The last delivery error (never the URL).
    pub error: String,
}

/// One alert instance, per alert name and cluster; written only by the
/// alert controller, so delivery survives restarts and leader changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertStatusSpec {
    pub alert: String,
    /// Empty for server-wide alerts.
    pub cluster: String,
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: String,
    pub summary: String,
    pub description: String,
    pub startsat: Timestamp,
    /// When it cleared; zero while firing.
    pub endsat: Timestamp,
    pub receivers: Vec<AlertDelivery>,
}

impl Kind for AlertStatusSpec {
    const TYPE: &'static str = "AlertStatuses.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_EPHEMERAL;
    const ALIASES: &'static [&'static str] = &["alertstatus", "alertstatuses"];
    const COLUMNS: &'static [Column] = &[
        Column::new("ALERT", "alert"),
        Column::new("CLUSTER", "cluster"),
        Column::new("STATE", "state"),
        Column::new("STARTS AT", "startsat"),
        Column::new("SUMMARY", "summary"),
    ];
    const WRITER: Writer = Writer::Controller("AlertController");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::validate_typed;
    use serde_json::json;

    fn check(spec: serde_json::Value) -> Result<serde_json::Value, ValidationError> {
        validate_typed::<AlertReceiverSpec>(&spec, &ValidationContext::default())
    }

    #[test]
    fn defaults_fill_in() {
        let v = check(json!({"type": "webhook", "url": "https://hooks.example/x"})).unwrap();
        assert_eq!(v["resendinterval"]["seconds"], DEFAULT_RESEND_SECS);
        assert_eq!(v["staleafterintervals"], 2);
        assert_eq!(v["sendresolved"], true);
    }

    #[test]
    fn bad_specs_name_the_field() {
        let cases = [
            (json!({"type": "pager", "url": "https://x"}), "spec.type"),
            (json!({"type": "slack", "url": "ftp://x"}), "spec.url"),
            (
                json!({"type": "slack", "url": "http://hooks.example/x"}),
                "spec.url",
            ),
            (json!({"type": "slack", "url": "https:///x"}), "spec.url"),
            (
                json!({"type": "webhook", "url": "https://x", "events": ["nope"]}),
                "spec.events[0]",
            ),
            (
                json!({"type": "webhook", "url": "https://x", "headers": {"a b": "c"}}),
                "spec.headers.a b",
            ),
            (
                json!({"type": "webhook", "url": "https://x", "staleafterintervals": 0}),
                "spec.staleafterintervals",
            ),
            (
                json!({"type": "webhook", "url": "https://x", "resendinterval": {"seconds": 0}}),
                "spec.resendinterval",
            ),
            (
                json!({"type": "webhook", "url": "https://x", "clusters": "a in"}),
                "spec.clusters",
            ),
        ];
        for (spec, field) in cases {
            let err = check(spec.clone()).unwrap_err();
            assert_eq!(err.field, field, "{spec}: {err}");
        }
    }

    #[test]
    fn url_errors_do_not_echo_the_url() {
        let err =
            check(json!({"type": "slack", "url": "http://hooks.example/T0/SECRET"})).unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for url in [
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://[::1]:80/",
            "http://user:pw@127.0.0.2/",
        ] {
            check(json!({"type": "webhook", "url": url})).unwrap();
        }
        for url in ["http://10.0.0.1/", "http://127.0.0.1.example/"] {
            assert!(
                check(json!({"type": "webhook", "url": url})).is_err(),
                "{url}"
            );
        }
    }

    #[test]
    fn debug_hides_url_and_header_values() {
        let spec = AlertReceiverSpec {
            url: "https://hooks.example/SECRET".into(),
            headers: [("Authorization".to_string(), "Bearer TOKEN".to_string())].into(),
            ..Default::default()
        };
        let text = format!("{spec:?}");
        assert!(
            !text.contains("SECRET") && !text.contains("TOKEN"),
            "{text}"
        );
    }

    #[test]
    fn redaction_blanks_url_and_header_values() {
        let info = crate::kinds::lookup("alertreceiver").unwrap();
        let mut spec = json!({"type": "webhook", "url": "https://x/SECRET",
            "headers": {"Authorization": "Bearer TOKEN"}, "events": []});
        info.redact(&mut spec);
        assert_eq!(spec["url"], "<redacted>");
        assert_eq!(spec["headers"]["Authorization"], "<redacted>");
        assert_eq!(spec["type"], "webhook");
    }
}
