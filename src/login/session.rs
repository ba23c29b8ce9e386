//! The session: what the sealed cookie carries, what stays server side
//! (in `[store]`), and the per-request check that turns a cookie into the
//! identity routes and identity headers are decided on.
//!
//! The cookie carries the session id, the user, the claims, the sign-in
//! time, the last time it was re-sealed (the idle deadline runs from it),
//! and the access token's expiry. The refresh token, the ID token and the
//! access token stay in the store under the session id, sealed with the
//! same keys (Redis never holds a token in the clear).
//!
//! Per request nothing leaves the process: the cookie is opened (or found
//! in a small cache of cookies opened before), its deadlines checked, and
//! its id looked up in the in-memory revocation set that `[store]` keeps in
//! step across replicas.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::auth::Identity;

/// Claims that mean something only inside the sign-in (or only to the
/// provider): not kept in the session.
const DROPPED_CLAIMS: &[&str] = &["nonce", "at_hash", "c_hash", "s_hash"];
/// What a session's revocation carries before its id, in the `jti`
/// namespace (stored as a `jti` revocation, so every gate, older ones too,
/// enforces it the same way).
const REVOCATION_PREFIX: &str = "session:";
/// The revocation id of a session (`jti` namespace of its own).
pub fn revocation_id(sid: &str) -> String {
    format!("{REVOCATION_PREFIX}{sid}")
}
/// The session id a `jti` revocation names, if it is a session's.
pub fn sid_of_revocation(jti: &str) -> Option<&str> {
    jti.strip_prefix(REVOCATION_PREFIX)
}
/// Could `sid` be a session id? The gate makes 22 base64url characters; an
/// administrator's input is held to that alphabet and a sane length, so a
/// typo is an error rather than a revocation that matches nothing.
pub fn plausible_sid(sid: &str) -> bool {
    (16..=64).contains(&sid.len())
        && sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
/// The store key of a session's server-side record.
pub fn record_key(sid: &str) -> String {
    format!("session:{sid}")
}
/// The store key of the lock that makes one replica refresh a session.
pub fn refresh_lock_key(sid: &str) -> String {
    format!("session-refresh:{sid}")
}

/// What the session cookie carries (sealed; short names keep it small).
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "i")]
    pub sid: String,
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "c")]
    pub claims: Map<String, Value>,
    /// Unix seconds of the sign-in: `max_lifetime` runs from it.
    #[serde(rename = "s")]
    pub signed_in: u64,
    /// Unix seconds of the last seal: `idle_timeout` runs from it.
    #[serde(rename = "l")]
    pub sealed_at: u64,
    /// When the access token expires.
    #[serde(rename = "x")]
    pub access_exp: u64,
    /// When the access token was obtained (a refresh starts half-way
    /// through a short-lived one).
    #[serde(rename = "o")]
    pub obtained: u64,
    /// A refresh token is kept server side.
    #[serde(rename = "r")]
    pub refreshable: bool,
    /// Bumped at every refresh, so a replica can tell a newer record.
    #[serde(rename = "g")]
    pub generation: u32,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("signed_in", &self.signed_in)
            .field("access_exp", &self.access_exp)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The session of a verified ID token.
    pub fn new(
        sid: String,
        id: &Identity,
        scope: Option<&str>,
        access_exp: u64,
        refreshable: bool,
        now: u64,
    ) -> Session {
        let mut claims = id.claims.clone();
        for c in DROPPED_CLAIMS {
            claims.remove(*c);
        }
        // Routes' require_scopes read `scope`: an ID token has none, the
        // token response says what was granted.
        if let Some(s) = scope
            && !claims.contains_key("scope")
        {
            claims.insert("scope".into(), Value::String(s.to_owned()));
        }
        Session {
            sid,
            user: id.user.clone(),
            claims,
            signed_in: now,
            sealed_at: now,
            access_exp,
            obtained: now,
            refreshable,
            generation: 0,
        }
    }

    /// The identity policy and identity headers see, as for a token.
    pub fn identity(&self, issuer: &str) -> Identity {
        Identity {
            user: self.user.clone(),
            claims: self.claims.clone(),
            exp: self.access_exp,
            payload_b64: "".into(),
            issuer: Some(issuer.to_owned()),
        }
    }
}

/// The server-side part of a session (sealed in the store).
#[derive(Serialize, Deserialize, Default)]
pub struct Record {
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(rename = "d")]
    pub id_token: String,
    #[serde(rename = "a")]
    pub access_token: String,
    #[serde(rename = "x")]
    pub access_exp: u64,
    #[serde(rename = "o")]
    pub obtained: u64,
    #[serde(rename = "g")]
    pub generation: u32,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("access_exp", &self.access_exp)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// A cookie opened once: the session, the identity built from it, its
/// revocation id, and the cookie re-sealed from it (so that a client that
/// ignores Set-Cookie costs one seal a minute, not one a request).
pub struct Opened {
    pub session: Session,
    pub identity: Arc<Identity>,
    /// The provider's session and subject as back-channel logouts name
    /// them (see `backchannel`).
    pub provider_principals: Vec<String>,
    pub revocation_id: String,
    pub resealed: std::sync::Mutex<Option<(u64, Vec<http::HeaderValue>)>>,
    /// When this gate last counted the session as active (Unix seconds;
    /// 0: not yet), so that counting costs one atomic load per request.
    pub counted_at: std::sync::atomic::AtomicU64,
}

/// Why a session does not hold (for the log; the request is then as if it
/// had none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Idle,
    Lifetime,
    AccessExpired,
}

/// When the session ends if nothing happens: the first of its deadlines.
pub fn ends_at(s: &Session, idle_timeout: u64, max_lifetime: u64) -> u64 {
    let end = s
        .signed_in
        .saturating_add(max_lifetime)
        .min(s.sealed_at.saturating_add(idle_timeout));
    if s.refreshable {
        end
    } else {
        end.min(s.access_exp)
    }
}

/// The deadlines, checked on every request.
pub fn check_deadlines(
    s: &Session,
    now: u64,
    idle_timeout: u64,
    max_lifetime: u64,
) -> Result<(), Ended> {
    if now >= s.signed_in.saturating_add(max_lifetime) {
        return Err(Ended::Lifetime);
    }
    if now >= s.sealed_at.saturating_add(idle_timeout) {
        return Err(Ended::Idle);
    }
    // Without a refresh token the session ends with its access token.
    if !s.refreshable && now >= s.access_exp {
        return Err(Ended::AccessExpired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(now: u64) -> Session {
        Session {
            sid: "s".into(),
            user: "alice".into(),
            claims: Map::new(),
            signed_in: now - 100,
            sealed_at: now - 10,
            access_exp: now + 50,
            obtained: now - 100,
            refreshable: false,
            generation: 0,
        }
    }

    #[test]
    fn deadlines() {
        let now = 1_000_000;
        let s = session(now);
        assert_eq!(check_deadlines(&s, now, 60, 3600), Ok(()));
        assert_eq!(check_deadlines(&s, now, 5, 3600), Err(Ended::Idle));
        assert_eq!(check_deadlines(&s, now, 60, 100), Err(Ended::Lifetime));
        assert_eq!(
            check_deadlines(&s, now + 60, 600, 3600),
            Err(Ended::AccessExpired)
        );
        let r = Session {
            refreshable: true,
            ..s
        };
        assert_eq!(check_deadlines(&r, now + 60, 600, 3600), Ok(()));
    }

    #[test]
    fn the_session_keeps_claims_but_not_the_flow_ones() {
        let mut claims = Map::new();
        claims.insert("nonce".into(), "n".into());
        claims.insert("email".into(), "a@x".into());
        let id = Identity {
            user: "alice".into(),
            claims,
            exp: 0,
            payload_b64: "".into(),
            issuer: None,
        };
        let s = Session::new("sid".into(), &id, Some("openid api"), 10, true, 5);
        assert!(!s.claims.contains_key("nonce"));
        assert_eq!(s.claims["scope"], "openid api");
        assert_eq!(
            s.identity("https://idp").issuer.as_deref(),
            Some("https://idp")
        );
        assert!(!format!("{s:?}").contains("a@x"));
    }
}
