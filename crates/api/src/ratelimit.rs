//! Per-token request rate limit: a token bucket per token ID, so one busy
//! or runaway client cannot starve the others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Requests per second and burst size of each token's bucket.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 50.0,
            burst: 200.0,
        }
    }
}

#[derive(Default)]
pub(crate) struct Limiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Limiter {
    /// Takes one request from `key`'s bucket; `false` when it is empty.
    pub fn allow(&self, key: &str, limit: RateLimit, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = buckets.entry(key.to_string()).or_insert((limit.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * limit.per_second).min(limit.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills_per_key() {
        let l = Limiter::default();
        let limit = RateLimit {
            per_second: 10.0,
            burst: 3.0,
        };
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.allow("a", limit, t0)));
        assert!(!l.allow("a", limit, t0));
        assert!(l.allow("b", limit, t0), "buckets are per key");
        assert!(l.allow("a", limit, t0 + Duration::from_millis(100)));
        assert!(!l.allow("a", limit, t0 + Duration::from_millis(100)));
    }
}
