//! Console sessions: the token a user signs in with stays on the server,
//! keyed by a random ID carried in an HttpOnly, SameSite=Strict cookie.
//! Sessions live in memory and end with the process (users sign in again
//! after a restart). Every state-changing request carries the session's
//! CSRF token and an Origin (or Referer) naming this host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use omni_api::auth::Role;
use rand::RngCore;
use subtle::ConstantTimeEq;

/// Name of the session cookie.
pub const COOKIE: &str = "omni_console";
/// How long a session lasts after sign-in.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept at once; the oldest goes first past it.
const MAX_SESSIONS: usize = 10_000;

/// A signed-in user.
pub struct Session {
    /// The API token, used as the bearer of the API calls made on the user's
    /// behalf. Never rendered, logged or sent back to the browser.
    pub(crate) token: String,
    pub token_id: String,
    pub role: Role,
    pub csrf: String,
    created: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("token_id", &self.token_id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, presented: &str) -> bool {
        !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Arc<Session>>>>,
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

impl Sessions {
    /// Starts a session; returns its ID (the cookie value).
    pub fn create(&self, token: String, token_id: String, role: Role) -> (String, Arc<Session>) {
        let id = random_hex(32);
        let session = Arc::new(Session {
            token,
            token_id,
            role,
            csrf: random_hex(32),
            created: Instant::now(),
        });
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.created.elapsed() < LIFETIME);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), session.clone());
        (id, session)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(id) {
            Some(s) if s.created.elapsed() < LIFETIME => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// The session ID from the request's cookies.
pub fn cookie_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| v.len() == 64 && v.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `Set-Cookie` for a new session. `Secure` when the console is served
/// over TLS.
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Whether a state-changing request comes from a page of this server: its
/// `Origin` (or, without one, its `Referer`) must name the `Host` it was
/// sent to. A request with neither is refused: browsers send `Origin` on
/// every POST.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let authority = |url: &str| -> Option<String> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))?;
        Some(rest.split('/').next().unwrap_or_default().to_string())
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin
            .to_str()
            .ok()
            .and_then(authority)
            .is_some_and(|a| a.eq_ignore_ascii_case(host));
    }
    headers
        .get(header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(authority)
        .is_some_and(|a| a.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn origin_must_name_the_host() {
        let host = (header::HOST, "127.0.0.1:8099");
        assert!(same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "http://127.0.0.1:8099")
        ])));
        assert!(!same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "null")
        ])));
        assert!(same_origin(&headers(&[
            host.clone(),
            (header::REFERER, "http://127.0.0.1:8099/clusters/a")
        ])));
        assert!(!same_origin(&headers(&[
            host.clone(),
            (header::REFERER, "http://127.0.0.1:8099.evil.example/")
        ])));
        assert!(!same_origin(&headers(&[host])));
    }

    #[test]
    fn cookie_is_found_among_others_and_must_look_like_an_id() {
        let id = "ab".repeat(32);
        let h = headers(&[(header::COOKIE, &format!("x=1; {COOKIE}={id}; y=2"))]);
        assert_eq!(cookie_id(&h), Some(id));
        let h = headers(&[(header::COOKIE, &format!("{COOKIE}=short"))]);
        assert_eq!(cookie_id(&h), None);
    }

    #[test]
    fn sessions_check_csrf_and_end() {
        let sessions = Sessions::default();
        let (id, s) = sessions.create("omni-x".into(), "x".into(), Role::Reader);
        assert!(s.csrf_ok(&s.csrf.clone()));
        assert!(!s.csrf_ok(""));
        assert!(!s.csrf_ok("0"));
        assert!(sessions.get(&id).is_some());
        sessions.remove(&id);
        assert!(sessions.get(&id).is_none());
        let c = set_cookie(&id, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!set_cookie(&id, false).contains("Secure"));
    }
}
