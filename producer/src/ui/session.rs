//! Console sessions: a random id in an HTTP-only, `SameSite=Strict` cookie, mapped in memory to
//! the session's CSRF token and expiry. The API token signed in with is checked once and never
//! kept, in the cookie or here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::auth::Principal;

/// The session cookie's name.
pub(super) const SESSION_COOKIE: &str = "yizhan_session";
/// The login form's double-submit cookie.
pub(super) const LOGIN_COOKIE: &str = "yizhan_login";
/// A session ends this long after sign-in.
pub(super) const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Most sessions kept at once: past it, the oldest are dropped (a flood of sign-ins cannot grow
/// memory without bound).
const MAX_SESSIONS: usize = 10_000;

/// A signed-in browser: who signed in (the token's tenant and scopes, never the token).
#[derive(Debug, Clone)]
pub(super) struct Session {
    /// The token every form of this session carries.
    pub(super) csrf: String,
    /// The principal of the token signed in with: the console applies its tenant and scopes.
    pub(super) principal: Arc<Principal>,
    expires: Instant,
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub(super) fn csrf_matches(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| same(p.as_bytes(), self.csrf.as_bytes()))
    }
}

/// The live sessions, by the SHA-256 of their id (the id itself is kept nowhere).
#[derive(Default)]
pub(super) struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// The session the request's cookie names, when it is live.
    pub(super) fn find(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let mut live = self.live.lock().expect("sessions");
        let key = digest(id);
        match live.get(&key) {
            Some(session) if session.expires > Instant::now() => Some(session.clone()),
            Some(_) => {
                live.remove(&key);
                None
            }
            None => None,
        }
    }

    /// A new session for `principal`; its id, for the cookie.
    pub(super) fn create(&self, principal: Arc<Principal>) -> String {
        let id = random_token();
        let now = Instant::now();
        let session = Session { csrf: random_token(), principal, expires: now + SESSION_TTL };
        let mut live = self.live.lock().expect("sessions");
        live.retain(|_, s| s.expires > now);
        if live.len() >= MAX_SESSIONS {
            let oldest = live.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                live.remove(&oldest);
            }
        }
        live.insert(digest(&id), session);
        id
    }

    pub(super) fn remove(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            self.live.lock().expect("sessions").remove(&digest(id));
        }
    }
}

/// A form body (`application/x-www-form-urlencoded`), fields in order; a name may repeat.
#[derive(Debug, Clone, Default)]
pub(super) struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// Parses a body; undecodable bytes become U+FFFD.
    pub(super) fn parse(body: &[u8]) -> Form {
        let decode = |s: &str| {
            let spaced = s.replace('+', " ");
            percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
        };
        let text = String::from_utf8_lossy(body);
        let fields = text
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(name), decode(value))
            })
            .collect();
        Form { fields }
    }

    /// The first value of `name`.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub(super) fn all(&self, name: &str) -> Vec<String> {
        self.fields.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
    }
}

/// 32 random bytes as hex, from the thread's CSPRNG.
pub(super) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// Constant-time equality of two byte strings (lengths are not secret: tokens have one length).
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request.
pub(super) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// `Set-Cookie` for the console: HTTP-only, `SameSite=Strict`, `Secure` when the request came
/// over HTTPS (a TLS-terminating proxy says so in `X-Forwarded-Proto`).
pub(super) fn set_cookie(headers: &HeaderMap, name: &str, value: &str, path: &str, max_age: Duration) -> HeaderValue {
    let secure = headers.get("x-forwarded-proto").is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&cookie).expect("cookie values are hex")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_repeat() {
        let form = Form::parse(b"csrf=ab%2Fc&id=1&id=2&token=a+b&empty");
        assert_eq!(form.get("csrf"), Some("ab/c"));
        assert_eq!(form.all("id"), vec!["1", "2"]);
        assert_eq!(form.get("token"), Some("a b"));
        assert_eq!(form.get("empty"), Some(""));
        assert_eq!(form.get("missing"), None);
    }

    #[test]
    fn sessions_are_found_by_cookie_and_end() {
        let sessions = Sessions::default();
        let principal = Principal {
            name: "token-1".into(),
            tenant: None,
            can: crate::auth::Scopes::ALL,
            configs: crate::auth::ConfigPatterns::ALL,
        };
        let id = sessions.create(Arc::new(principal));
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("other=1; {SESSION_COOKIE}={id}")).unwrap());
        let session = sessions.find(&headers).expect("live");
        assert!(session.csrf_matches(Some(&session.csrf.clone())));
        assert!(!session.csrf_matches(Some("nope")) && !session.csrf_matches(None));
        sessions.remove(&headers);
        assert!(sessions.find(&headers).is_none());
        let mut forged = HeaderMap::new();
        forged.insert(header::COOKIE, HeaderValue::from_static("yizhan_session=00"));
        assert!(sessions.find(&forged).is_none());
    }
}
