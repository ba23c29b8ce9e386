//! OpenID Connect Back-Channel Logout 1.0: the provider tells the gate,
//! server to server, that a person signed out there.
//!
//! `POST /.jwtgate/backchannel-logout` with a form field `logout_token`:
//! a JWT of the login provider, verified by the same verifier as its ID
//! tokens (its keys and algorithms, never HS* or `none`; `iss`; `aud` =
//! `client_id`; `exp`), then §2.6's checks: `typ`, when present,
//! `logout+jwt` or `JWT`; `iat` recent; a `jti` not seen before (the
//! replay cache is a record in `[store]`, so every replica shares it); the
//! back-channel logout event in `events`; `sid` or `sub`; no `nonce`.
//!
//! What it ends is a revocation in the shared set, so every replica
//! applies it from memory within about a second, with no scan of the
//! sessions: a user rule (`Rule::User`) for the principal
//! `backchannel-sid:<sid>` (the provider session) or, when the token names
//! no `sid`, `backchannel-sub:<sub>` (every session of that subject), of
//! the provider's `iss`, before now. A session carries the `sid` and `sub`
//! of its ID token (in its claims), and is refused when either principal
//! is revoked at or after its sign-in. The entry lives `max_lifetime` (plus
//! the leeway): no session it can end outlives that.
//!
//! Answers: 200 (empty) when the logout is applied; 400 `invalid_request`
//! without detail otherwise; both `Cache-Control: no-store`. The reason is
//! in the log and in `jwtgate_backchannel_logout_total{result}`.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use tracing::{info, warn};

use super::Login;
use super::endpoints::Answer;
use super::session::{Opened, Session};
use crate::auth::claims::now;
use crate::auth::{Verifier, VerifyError};
use crate::observe::metrics::ResultLabel;
use crate::store::revocation::Rule;

/// The event a logout token must carry (§2.4).
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// How far in the past `iat` may be, beyond `auth.leeway`: the time a
/// logout token takes from the provider to the gate.
pub const TRANSIT: u64 = 60;
/// A logout request's body is small: one token.
const MAX_BODY: usize = 16 * 1024;
/// Longest `jti`, `sid` or `sub` accepted.
const MAX_FIELD: usize = 256;

/// What a valid logout token ends.
#[derive(Debug, PartialEq, Eq)]
pub struct LogoutOf {
    pub sid: Option<String>,
    pub sub: Option<String>,
    pub jti: String,
    pub iat: u64,
}

/// The principal a back-channel logout of provider session `sid` revokes.
pub fn sid_principal(sid: &str) -> String {
    format!("backchannel-sid:{sid}")
}

/// The principal a back-channel logout of subject `sub` revokes.
pub fn sub_principal(sub: &str) -> String {
    format!("backchannel-sub:{sub}")
}

/// The principals of a session: its provider session and its subject.
pub fn session_principals(s: &Session) -> Vec<String> {
    let text = |k: &str| {
        s.claims
            .get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    text("sid")
        .map(sid_principal)
        .into_iter()
        .chain(text("sub").map(sub_principal))
        .collect()
}

/// The store key that remembers a `jti` of `iss` (hashed: any length and
/// any bytes in, 32 hex characters out).
fn replay_key(iss: &str, jti: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{iss}\0{jti}").as_bytes(),
    );
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("backchannel-jti:{hex}")
}

fn short_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_FIELD => Ok(Some(s.clone())),
        Some(_) => Err(()),
    }
}

/// §2.6 items 6-10, after the signature, `iss`, `aud` and `exp`: the
/// claims only a logout token has. `Err` is the metrics label.
pub fn check_claims(
    claims: &Map<String, Value>,
    now: u64,
    leeway: u64,
) -> Result<LogoutOf, &'static str> {
    // 7. The event, whose value is a JSON object.
    match claims.get("events") {
        Some(Value::Object(events)) if matches!(events.get(EVENT), Some(Value::Object(_))) => {}
        _ => return Err("events"),
    }
    // 9. No nonce: keeps an ID token from passing for a logout token.
    if claims.contains_key("nonce") {
        return Err("nonce");
    }
    let iat = match claims.get("iat").and_then(Value::as_u64) {
        Some(iat) if iat <= now + leeway && now.saturating_sub(iat) <= leeway + TRANSIT => iat,
        _ => return Err("iat"),
    };
    let jti = short_string(claims, "jti").ok().flatten().ok_or("jti")?;
    // 8. A sid, a sub, or both.
    let sid = short_string(claims, "sid").map_err(|_| "no_subject")?;
    let sub = short_string(claims, "sub").map_err(|_| "no_subject")?;
    if sid.is_none() && sub.is_none() {
        return Err("no_subject");
    }
    Ok(LogoutOf { sid, sub, jti, iat })
}

impl Login {
    /// `POST /.jwtgate/backchannel-logout`.
    pub(super) async fn backchannel_logout(
        &self,
        verifier: &Verifier,
        req: Request<Incoming>,
    ) -> Answer {
        let result = self.backchannel_checked(verifier, req).await;
        let label = match &result {
            Ok(_) => "ok",
            Err(reason) => reason,
        };
        self.metrics
            .backchannel_logout
            .get_or_create(&ResultLabel { result: label })
            .inc();
        let response = match result {
            Ok(of) => {
                info!(
                    by = if of.sid.is_some() { "sid" } else { "sub" },
                    "back-channel logout: the provider ended a session"
                );
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = StatusCode::OK;
                r
            }
            Err(reason) => {
                warn!(result = reason, "back-channel logout refused");
                crate::respond::json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "invalid_request"}),
                )
            }
        };
        Answer {
            response,
            reason: "login_endpoint",
        }
    }

    async fn backchannel_checked(
        &self,
        verifier: &Verifier,
        req: Request<Incoming>,
    ) -> Result<LogoutOf, &'static str> {
        let form = crate::mint::read_form(req, MAX_BODY)
            .await
            .map_err(|_| "malformed")?;
        let token = form
            .iter()
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.as_str())
            .ok_or("malformed")?;
        let id = verifier
            .verify_logout_token(token, &self.cfg.issuer, &self.cfg.client_id)
            .await
            .map_err(|e| {
                info!("back-channel logout: token refused: {e}");
                match e {
                    VerifyError::WrongType => "typ",
                    _ => "invalid_token",
                }
            })?;
        let now = now();
        let of = check_claims(&id.claims, now, self.leeway)?;
        let store = self.store.as_ref().ok_or("no_store")?;
        // Seen before? Remembered as long as its iat would pass the check.
        let remember = (of.iat + self.leeway + TRANSIT + 1)
            .saturating_sub(now)
            .max(1);
        match store
            .take_lock(
                &replay_key(&self.cfg.issuer, &of.jti),
                Duration::from_secs(remember),
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err("replayed"),
            // Cannot tell: ending a session twice is harmless, keeping one
            // the provider ended is not.
            Err(e) => warn!("back-channel logout: the replay cache did not answer ({e})"),
        }
        let principal = match (&of.sid, &of.sub) {
            (Some(sid), _) => sid_principal(sid),
            (None, Some(sub)) => sub_principal(sub),
            (None, None) => return Err("no_subject"),
        };
        let expires = now
            .saturating_add(self.cfg.max_lifetime.as_secs())
            .saturating_add(self.leeway);
        let (_, outcome) = store
            .revoke(
                Rule::User {
                    user: principal,
                    issuer: Some(self.cfg.issuer.clone()),
                    before: now,
                },
                Some(expires),
            )
            .await;
        if let Err(e) = outcome {
            warn!("back-channel logout applied on this gate; sharing it: {e}");
        }
        Ok(of)
    }

    /// Has the provider ended this session (a back-channel logout of its
    /// `sid` or its `sub`, at or after its sign-in)? In memory only.
    pub(super) fn ended_by_provider(&self, opened: &Opened) -> Result<bool, VerifyError> {
        let Some(store) = &self.store else {
            return Ok(false);
        };
        for p in &opened.provider_principals {
            if store.revoked_principal(p, Some(&self.cfg.issuer), opened.session.signed_in)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn good() -> Map<String, Value> {
        json!({
            "iss": "https://idp", "aud": "gate", "iat": NOW, "exp": NOW + 120,
            "jti": "j1", "sid": "s1", "sub": "alice",
            "events": {EVENT: {}},
        })
        .as_object()
        .cloned()
        .unwrap()
    }

    fn with(f: impl FnOnce(&mut Map<String, Value>)) -> Result<LogoutOf, &'static str> {
        let mut c = good();
        f(&mut c);
        check_claims(&c, NOW, 60)
    }

    #[test]
    fn a_good_token_names_what_it_ends() {
        assert_eq!(
            check_claims(&good(), NOW, 60),
            Ok(LogoutOf {
                sid: Some("s1".into()),
                sub: Some("alice".into()),
                jti: "j1".into(),
                iat: NOW
            })
        );
        assert!(
            with(|c| {
                c.remove("sid");
            })
            .is_ok_and(|o| o.sid.is_none() && o.sub.as_deref() == Some("alice"))
        );
        assert!(
            with(|c| {
                c.remove("sub");
            })
            .is_ok_and(|o| o.sub.is_none() && o.sid.as_deref() == Some("s1"))
        );
    }

    #[test]
    fn events_must_carry_the_logout_event_as_an_object() {
        assert_eq!(with(|c| drop(c.remove("events"))), Err("events"));
        assert_eq!(
            with(|c| drop(c.insert("events".into(), json!({})))),
            Err("events")
        );
        assert_eq!(
            with(|c| drop(c.insert("events".into(), json!({EVENT: "yes"})))),
            Err("events")
        );
        assert_eq!(
            with(|c| drop(c.insert("events".into(), json!([EVENT])))),
            Err("events")
        );
        assert_eq!(
            with(|c| drop(c.insert(
                "events".into(),
                json!({"http://schemas.openid.net/event/other": {}})
            ))),
            Err("events")
        );
        assert!(
            with(|c| drop(c.insert("events".into(), json!({EVENT: {"x": 1}, "other": {}}))))
                .is_ok()
        );
    }

    #[test]
    fn a_nonce_is_refused() {
        assert_eq!(
            with(|c| drop(c.insert("nonce".into(), json!("n")))),
            Err("nonce")
        );
        assert_eq!(
            with(|c| drop(c.insert("nonce".into(), Value::Null))),
            Err("nonce")
        );
    }

    #[test]
    fn iat_is_required_and_recent() {
        assert_eq!(with(|c| drop(c.remove("iat"))), Err("iat"));
        assert_eq!(
            with(|c| drop(c.insert("iat".into(), json!("now")))),
            Err("iat")
        );
        assert_eq!(
            with(|c| drop(c.insert("iat".into(), json!(NOW + 61)))),
            Err("iat")
        );
        assert!(with(|c| drop(c.insert("iat".into(), json!(NOW + 60)))).is_ok());
        assert!(with(|c| drop(c.insert("iat".into(), json!(NOW - 60 - TRANSIT)))).is_ok());
        assert_eq!(
            with(|c| drop(c.insert("iat".into(), json!(NOW - 61 - TRANSIT)))),
            Err("iat")
        );
        assert_eq!(
            with(|c| drop(c.insert("iat".into(), json!(NOW - 3600)))),
            Err("iat")
        );
    }

    #[test]
    fn jti_is_required() {
        assert_eq!(with(|c| drop(c.remove("jti"))), Err("jti"));
        assert_eq!(
            with(|c| drop(c.insert("jti".into(), json!("")))),
            Err("jti")
        );
        assert_eq!(with(|c| drop(c.insert("jti".into(), json!(7)))), Err("jti"));
        assert_eq!(
            with(|c| drop(c.insert("jti".into(), json!("x".repeat(MAX_FIELD + 1))))),
            Err("jti")
        );
    }

    #[test]
    fn sid_or_sub_is_required_and_must_be_strings() {
        assert_eq!(
            with(|c| {
                c.remove("sid");
                c.remove("sub");
            }),
            Err("no_subject")
        );
        assert_eq!(
            with(|c| drop(c.insert("sid".into(), json!(5)))),
            Err("no_subject")
        );
        assert_eq!(
            with(|c| drop(c.insert("sub".into(), json!("")))),
            Err("no_subject")
        );
    }

    #[test]
    fn principals_and_replay_keys() {
        let s = Session {
            sid: "gate-sid".into(),
            user: "alice".into(),
            claims: good(),
            signed_in: NOW,
            sealed_at: NOW,
            access_exp: NOW + 60,
            obtained: NOW,
            refreshable: false,
            generation: 0,
        };
        assert_eq!(
            session_principals(&s),
            vec![
                "backchannel-sid:s1".to_string(),
                "backchannel-sub:alice".into()
            ]
        );
        let k = replay_key("https://idp", "j1");
        assert_eq!(k.len(), "backchannel-jti:".len() + 32);
        assert_ne!(k, replay_key("https://idp2", "j1"));
        assert_eq!(k, replay_key("https://idp", "j1"));
    }
}
