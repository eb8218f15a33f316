//! Request bodies per receiver type. Pure: the alert and the time in, JSON
//! out. Shapes are documented in docs/alerts.md.

use std::time::Duration;

use omni_resources::specs::alert::{receiver_type, state, AlertStatusSpec};
use omni_resources::Timestamp;
use serde_json::{json, Value};

use super::derive::rfc3339;

/// What is sent: the alert as it stands, and which state is announced.
pub struct Message<'a> {
    pub alert: &'a AlertStatusSpec,
    /// `firing` or `resolved`.
    pub state: &'a str,
    pub now: Timestamp,
    /// How often a firing alert is resent: Alertmanager is told it ends
    /// after a few of these, so that it resolves an alert we can no longer
    /// report on.
    pub resend: Duration,
    /// Where the alert can be looked at (the server's console), if known.
    pub generator_url: Option<String>,
}

impl Message<'_> {
    fn ends_at(&self) -> Option<Timestamp> {
        if self.state == state::RESOLVED {
            Some(if self.alert.endsat.is_zero() {
                self.now
            } else {
                self.alert.endsat
            })
        } else {
            None
        }
    }

    fn title(&self) -> String {
        let scope = if self.alert.cluster.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.alert.cluster)
        };
        format!(
            "[{}] {}{}: {}",
            self.state.to_uppercase(),
            self.alert.alert,
            scope,
            self.alert.summary
        )
    }
}

/// The request path appended to the receiver URL.
pub fn path(kind: &str) -> &'static str {
    if kind == receiver_type::ALERTMANAGER {
        "/api/v2/alerts"
    } else {
        ""
    }
}

/// The JSON body for a receiver of type `kind`.
pub fn body(kind: &str, m: &Message<'_>) -> Value {
    match kind {
        receiver_type::ALERTMANAGER => alertmanager(m),
        receiver_type::SLACK => slack(m),
        _ => webhook(m),
    }
}

fn webhook(m: &Message<'_>) -> Value {
    let a = m.alert;
    json!({
        "version": "1",
        "alert": a.alert,
        "cluster": a.cluster,
        "severity": a.severity,
        "status": m.state,
        "startsAt": rfc3339(a.startsat),
        "endsAt": m.ends_at().map(rfc3339),
        "summary": a.summary,
        "description": a.description,
        "generatorURL": m.generator_url,
    })
}

fn alertmanager(m: &Message<'_>) -> Value {
    let a = m.alert;
    let mut labels = json!({
        "alertname": a.alert,
        "severity": a.severity,
        "service": "omni-etcd-backup",
    });
    if !a.cluster.is_empty() {
        labels["cluster"] = json!(a.cluster);
    }
    // A firing alert ends (in Alertmanager's eyes) unless refreshed within
    // a few resend intervals.
    let ends = m.ends_at().unwrap_or(Timestamp::from_unix(
        m.now.seconds + 4 * m.resend.as_secs() as i64,
    ));
    let mut alert = json!({
        "labels": labels,
        "annotations": {"summary": a.summary, "description": a.description},
        "startsAt": rfc3339(a.startsat),
        "endsAt": rfc3339(ends),
    });
    if let Some(url) = &m.generator_url {
        alert["generatorURL"] = json!(url);
    }
    json!([alert])
}

fn slack(m: &Message<'_>) -> Value {
    let a = m.alert;
    let icon = if m.state == state::RESOLVED {
        ":white_check_mark:"
    } else {
        ":rotating_light:"
    };
    let title = m.title();
    let mut detail = format!("*{title}*\nseverity: {}", a.severity);
    if !a.description.is_empty() {
        detail.push_str(&format!("\n{}", a.description));
    }
    json!({
        "text": format!("{icon} {title}"),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": format!("{icon} {detail}")}}],
    })
}
