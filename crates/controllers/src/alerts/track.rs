//! The life of one alert instance in its `AlertStatuses` resource: firing
//! and resolving, and per receiver what is due to be sent and when. Pure;
//! the controller stores the result, so deduplication holds across restarts
//! and leader changes.

use std::time::Duration;

use omni_resources::specs::alert::{state, AlertDelivery, AlertStatusSpec};
use omni_resources::Timestamp;

use super::derive::Condition;

/// Brings the status up to date with the conditions.
///
/// `condition` is the alert as any receiver sees it (`None`: it fires for
/// nobody); `receivers` lists every receiver by name with whether the alert
/// fires for it. Receivers that no longer exist are dropped.
pub fn update(
    s: &mut AlertStatusSpec,
    alert: &str,
    cluster: &str,
    condition: Option<&Condition>,
    receivers: &[(String, bool)],
    now: Timestamp,
) {
    s.alert = alert.to_string();
    s.cluster = cluster.to_string();
    match condition {
        Some(c) => {
            if s.state != state::FIRING {
                s.state = state::FIRING.to_string();
                s.startsat = now;
                s.endsat = Timestamp::default();
            }
            s.severity = c.severity.to_string();
            s.summary = c.summary.clone();
            s.description = c.description.clone();
        }
        None => {
            if s.state == state::FIRING {
                s.state = state::RESOLVED.to_string();
                s.endsat = now;
            }
        }
    }
    s.receivers
        .retain(|d| receivers.iter().any(|(name, _)| *name == d.receiver));
    for (name, firing) in receivers {
        let i = match s.receivers.iter().position(|d| d.receiver == *name) {
            Some(i) => i,
            None => {
                s.receivers.push(AlertDelivery {
                    receiver: name.clone(),
                    ..AlertDelivery::default()
                });
                s.receivers.len() - 1
            }
        };
        let d = &mut s.receivers[i];
        if *firing && !d.firing && d.sent == state::FIRING {
            // A new episode for this receiver (the old one cleared without
            // a resolved message, e.g. sendresolved: false): announce it.
            d.sent.clear();
        }
        d.firing = *firing;
    }
    s.receivers.sort_by(|a, b| a.receiver.cmp(&b.receiver));
}

/// What a receiver is owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Send this state now.
    Now(&'static str),
    /// Nothing until then (a resend, or a retry after a failure).
    At(Timestamp),
    /// Nothing until a condition changes.
    Never,
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_unix(t.seconds.saturating_add(d.as_secs().max(1) as i64))
}

/// The delivery due to one receiver.
pub fn due(d: &AlertDelivery, send_resolved: bool, resend: Duration, now: Timestamp) -> Due {
    let want = if d.firing {
        state::FIRING
    } else if d.sent == state::FIRING && send_resolved {
        state::RESOLVED
    } else {
        return Due::Never;
    };
    let at = if want == d.sent {
        if want != state::FIRING {
            return Due::Never;
        }
        after(d.lastsent, resend).max(d.nextattempt)
    } else {
        d.nextattempt
    };
    if now >= at {
        Due::Now(want)
    } else {
        Due::At(at)
    }
}

/// Records the outcome of a delivery of `sent` to `receiver`.
pub fn record(
    s: &mut AlertStatusSpec,
    receiver: &str,
    sent: &str,
    result: Result<(), String>,
    now: Timestamp,
    retry: impl Fn(u32) -> Duration,
) {
    let Some(d) = s.receivers.iter_mut().find(|d| d.receiver == receiver) else {
        return; // the receiver was deleted meanwhile
    };
    match result {
        Ok(()) => {
            d.sent = sent.to_string();
            d.lastsent = now;
            d.attempts = 0;
            d.nextattempt = Timestamp::default();
            d.error.clear();
        }
        Err(e) => {
            d.attempts = d.attempts.saturating_add(1);
            d.nextattempt = after(now, retry(d.attempts));
            d.error = e;
        }
    }
}
