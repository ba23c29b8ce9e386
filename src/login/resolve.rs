//! The per-request session check, and the refresh it may need.
//!
//! A cookie that does not open, is truncated, names an unknown key, or is
//! past a deadline is a request without a session (302 or 401 by the
//! navigation rule), never an error. The revocation check is the in-memory
//! set `[store]` keeps in step; the only store and provider calls are the
//! refresh (once per session on this gate at a time, and once across the
//! gates sharing a Redis store), and, with `auth.forward_token`, the first
//! read of a session's access token on a replica that did not make it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use tracing::{debug, info, warn};

use super::provider::TokenError;
use super::session::{self, Opened, Record, Session};
use super::{Login, active};
use crate::auth::claims::now;
use crate::auth::{Identity, Verifier, VerifyError};
use crate::observe::metrics::ResultLabel;
use crate::respond::GateError;

/// A refresh starts this long before the access token expires.
const REFRESH_AHEAD: u64 = 60;
/// A session is re-sealed (its idle deadline moved on) at most this often.
const RESEAL_EVERY: u64 = 60;
/// How long a gate holds the cross-replica refresh lock: longer than a
/// refresh can take (the token endpoint's 10 s timeout and the store's
/// writes), so the holder's release never frees another gate's lock.
const REFRESH_LOCK: Duration = Duration::from_secs(30);
/// How long a gate that did not get the lock waits for the other's result
/// when the access token has already expired.
const WAIT_FOR_OTHER: Duration = Duration::from_secs(3);

/// A request's valid session.
pub struct SessionHit {
    pub identity: Arc<Identity>,
    /// The cookie re-sealed (refreshed, or its idle deadline moved on).
    pub set_cookies: Vec<HeaderValue>,
    /// `Authorization: Bearer <access token>` for the upstream
    /// (`auth.forward_token`).
    pub bearer: Option<HeaderValue>,
}

/// The result of one refresh, shared by the requests that waited for it.
pub struct Refreshed {
    session: Session,
    access_token: Option<HeaderValue>,
}

/// Why a refresh gave no new session.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshError {
    /// The session is over (`invalid_grant`, or its record is gone).
    #[error("the session ended: {0}")]
    Ended(&'static str),
    /// The provider or the store could not be asked now.
    #[error("refresh failed: {0}")]
    Failed(String),
}

impl Login {
    /// The session this request carries, if any. `Err` only when one may
    /// exist but cannot be decided now (the revocation list too stale, the
    /// provider unreachable once the access token has expired).
    pub async fn session(
        &self,
        verifier: &Verifier,
        headers: &HeaderMap,
    ) -> Result<Option<SessionHit>, GateError> {
        let Some(sealed) = super::jar::read(headers, &self.cfg.cookie_name) else {
            return Ok(None);
        };
        let Some(opened) = self.open(&sealed) else {
            debug!("session cookie does not open");
            return Ok(None);
        };
        let s = &opened.session;
        let now = now();
        if let Err(why) = session::check_deadlines(
            s,
            now,
            self.cfg.idle_timeout.as_secs(),
            self.cfg.max_lifetime.as_secs(),
        ) {
            debug!(user = %s.user, "session over: {why:?}");
            self.active.gone(&s.sid);
            return Ok(None);
        }
        if let Some(store) = &self.store {
            // The session by its id (a sign-out, an administrator's
            // revocation), then the user's revocations, as for a token.
            let revoked = match store.revoked_jti(&opened.revocation_id) {
                Ok(true) => true,
                Ok(false) => match store.check(&opened.identity) {
                    Ok(()) => false,
                    Err(VerifyError::Revoked) => true,
                    Err(e) => return Err(GateError::Verify(e)),
                },
                Err(e) => return Err(GateError::Verify(e)),
            };
            if revoked {
                debug!(user = %s.user, "session revoked");
                self.active.gone(&s.sid);
                return Ok(None);
            }
        }
        // Ended at the provider (a back-channel logout of its sid or sub).
        if self.ended_by_provider(&opened).map_err(GateError::Verify)? {
            debug!(user = %s.user, "session ended by the provider");
            self.active.gone(&s.sid);
            return Ok(None);
        }
        let mut current = None;
        // A minute ahead, or half the token's life when it is shorter.
        let ahead = REFRESH_AHEAD.min(s.access_exp.saturating_sub(s.obtained) / 2);
        if s.refreshable && now + ahead >= s.access_exp {
            // Keyed by generation: the requests carrying this cookie share
            // one refresh; a cookie of the refreshed generation starts the next.
            let key = format!("{}/{}", s.sid, s.generation);
            match self
                .refreshes
                .try_get_with(key, self.refresh(verifier, s))
                .await
            {
                Ok(r) => current = Some(r),
                Err(e) => match e.as_ref() {
                    RefreshError::Ended(why) => {
                        info!(user = %s.user, "session ended at refresh: {why}");
                        return Ok(None);
                    }
                    RefreshError::Failed(m) if now < s.access_exp => {
                        debug!("refresh failed, the access token still holds: {m}");
                    }
                    RefreshError::Failed(_) => {
                        return Err(GateError::Verify(VerifyError::KeysUnavailable {
                            retry_after: 5,
                        }));
                    }
                },
            }
        }
        let (identity, set_cookies) = match &current {
            // A session refreshed elsewhere (another tab, another gate):
            // this cookie is re-sealed from the newer one.
            Some(r)
                if r.session.generation != s.generation || r.session.access_exp != s.access_exp =>
            {
                let mut next = r.session.clone();
                next.sealed_at = now;
                (opened.identity.clone(), self.seal_session(&next))
            }
            _ if now >= s.sealed_at + RESEAL_EVERY => {
                (opened.identity.clone(), self.resealed(&opened, now))
            }
            _ => (opened.identity.clone(), Vec::new()),
        };
        // The built-in page's sessions have no access token to forward.
        let bearer = if self.forward_token && !self.is_builtin() {
            let token = match current.as_ref().and_then(|r| r.access_token.clone()) {
                Some(t) => Some(t),
                None => self.access_token(&s.sid).await,
            };
            match token {
                Some(v) => Some(v),
                // The upstream expects the token: without it the session
                // cannot be used (signing in again makes a new one).
                None => return Ok(None),
            }
        } else {
            None
        };
        if opened.counted_at.load(Ordering::Relaxed) + active::RECOUNT_EVERY <= now {
            opened.counted_at.store(now, Ordering::Relaxed);
            self.active.seen(
                &s.sid,
                active::Seen {
                    user: s.user.clone(),
                    signed_in: s.signed_in,
                    last_seen: now,
                },
            );
        }
        Ok(Some(SessionHit {
            identity,
            set_cookies,
            bearer,
        }))
    }

    /// Opens a cookie value, from the cache when it was opened before.
    pub(super) fn open(&self, sealed: &str) -> Option<Arc<Opened>> {
        if let Some(o) = self.opened.get(sealed) {
            return Some(o);
        }
        let plain = self.keys.open(self.cfg.cookie_name.as_bytes(), sealed)?;
        let session: Session = serde_json::from_slice(&plain).ok()?;
        let identity = Arc::new(session.identity(&self.session_issuer));
        let opened = Arc::new(Opened {
            provider_principals: super::backchannel::session_principals(&session),
            revocation_id: session::revocation_id(&session.sid),
            session,
            identity,
            resealed: std::sync::Mutex::new(None),
            counted_at: AtomicU64::new(0),
        });
        self.opened.insert(sealed.to_owned(), opened.clone());
        Some(opened)
    }

    /// This cookie with its idle deadline moved on: sealed at most once a
    /// minute per cookie value, whatever the client does with Set-Cookie.
    fn resealed(&self, opened: &Opened, now: u64) -> Vec<HeaderValue> {
        let mut slot = opened.resealed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, headers)) = slot.as_ref()
            && now < at + RESEAL_EVERY
        {
            return headers.clone();
        }
        let mut next = opened.session.clone();
        next.sealed_at = now;
        let headers = self.seal_session(&next);
        *slot = Some((now, headers.clone()));
        headers
    }

    /// The Set-Cookie headers of a session (empty if it cannot be sealed:
    /// the request goes on, the browser keeps its cookie).
    pub(super) fn seal_session(&self, s: &Session) -> Vec<HeaderValue> {
        let sealed = serde_json::to_vec(s)
            .ok()
            .and_then(|plain| self.keys.seal(self.cfg.cookie_name.as_bytes(), &plain).ok());
        let max_age = s
            .signed_in
            .saturating_add(self.cfg.max_lifetime.as_secs())
            .saturating_sub(now());
        match sealed
            .map(|v| super::jar::set_cookie_headers(&self.cfg.cookie_name, &v, Some(max_age)))
        {
            Some(Ok(headers)) => headers,
            _ => {
                warn!("a session could not be sealed into a cookie (too many claims?)");
                Vec::new()
            }
        }
    }

    /// Seals a record for the store (tokens never in the clear there).
    pub(super) fn seal_record(&self, sid: &str, r: &Record) -> Option<Vec<u8>> {
        let plain = serde_json::to_vec(r).ok()?;
        self.keys
            .seal(session::record_key(sid).as_bytes(), &plain)
            .ok()
            .map(String::into_bytes)
    }

    pub(super) async fn load_record(&self, sid: &str) -> Result<Option<Record>, RefreshError> {
        let store = self.store.as_ref().ok_or(RefreshError::Ended("no store"))?;
        let raw = store
            .get_record(&session::record_key(sid))
            .await
            .map_err(|e| RefreshError::Failed(e.to_string()))?;
        Ok(raw.and_then(|raw| {
            let text = String::from_utf8(raw).ok()?;
            let plain = self.keys.open(session::record_key(sid).as_bytes(), &text)?;
            serde_json::from_slice(&plain).ok()
        }))
    }

    /// The session's access token as an `Authorization` value: this
    /// gate's copy, or the store's.
    async fn access_token(&self, sid: &str) -> Option<HeaderValue> {
        if let Some(t) = self.access_tokens.get(sid) {
            return Some(t);
        }
        let record = self.load_record(sid).await.ok()??;
        let token = bearer_value(&record.access_token)?;
        self.access_tokens.insert(sid.to_owned(), token.clone());
        Some(token)
    }

    /// Keeps a session's access token on this gate.
    pub(super) fn remember_access_token(&self, sid: &str, token: &str) -> Option<HeaderValue> {
        let v = bearer_value(token)?;
        self.access_tokens.insert(sid.to_owned(), v.clone());
        Some(v)
    }

    /// One refresh of `s` (the caller makes it single flight on this gate;
    /// the store's lock makes it single across gates).
    async fn refresh(
        &self,
        verifier: &Verifier,
        s: &Session,
    ) -> Result<Arc<Refreshed>, RefreshError> {
        let result = self.refresh_once(verifier, s).await;
        let label = match &result {
            Ok(_) => "ok",
            Err(RefreshError::Ended(_)) => "ended",
            Err(RefreshError::Failed(_)) => "error",
        };
        self.metrics
            .sessions_refreshed
            .get_or_create(&ResultLabel { result: label })
            .inc();
        if let Err(RefreshError::Ended(_)) = &result {
            self.end_session(&s.sid, s.signed_in).await;
        }
        result.map(Arc::new)
    }

    async fn refresh_once(
        &self,
        verifier: &Verifier,
        s: &Session,
    ) -> Result<Refreshed, RefreshError> {
        let store = self.store.as_ref().ok_or(RefreshError::Ended("no store"))?;
        let lock = session::refresh_lock_key(&s.sid);
        let mine = store
            .take_lock(&lock, REFRESH_LOCK)
            .await
            .map_err(|e| RefreshError::Failed(e.to_string()))?;
        if !mine {
            return self.wait_for_other(s).await;
        }
        // The record, read under the lock: another gate (or this one, for
        // another tab) may have refreshed since this cookie was sealed. Its
        // refresh token is then spent, and using it again would make the
        // provider revoke the whole grant: take the newer record instead.
        let outcome = match self.load_record(&s.sid).await {
            Ok(Some(r)) if r.generation > s.generation => Ok(self.adopt_record(s, r)),
            Ok(Some(r)) => self.refresh_at_provider(verifier, s, r).await,
            Ok(None) => Err(RefreshError::Ended("its record is gone")),
            Err(e) => Err(e),
        };
        let _ = store.delete_record(&lock).await;
        outcome
    }

    async fn refresh_at_provider(
        &self,
        verifier: &Verifier,
        s: &Session,
        record: Record,
    ) -> Result<Refreshed, RefreshError> {
        let refresh_token = record
            .refresh_token
            .as_deref()
            .ok_or(RefreshError::Ended("no refresh token"))?;
        let endpoints = verifier
            .provider_endpoints(&self.cfg.issuer)
            .await
            .map_err(|e| RefreshError::Failed(e.to_string()))?;
        let tokens = match self
            .tokens
            .refresh(&endpoints.token_endpoint, refresh_token)
            .await
        {
            Ok(t) => t,
            Err(TokenError::InvalidGrant) => return Err(RefreshError::Ended("invalid_grant")),
            Err(e) => return Err(RefreshError::Failed(e.to_string())),
        };
        let id_token = match tokens.id_token {
            Some(t) => {
                // A new ID token must be of the same person (OIDC Core §12.2).
                let id = verifier
                    .verify_id_token(&t, &self.cfg.issuer, &self.cfg.client_id)
                    .await
                    .map_err(|e| RefreshError::Failed(format!("refreshed ID token: {e}")))?;
                if id.claims.get("sub") != s.claims.get("sub") {
                    return Err(RefreshError::Ended(
                        "the refreshed ID token is of another subject",
                    ));
                }
                t
            }
            None => record.id_token,
        };
        let now = now();
        let next = Record {
            refresh_token: tokens.refresh_token.or(record.refresh_token),
            id_token,
            access_token: tokens.access_token,
            access_exp: now + tokens.expires_in.unwrap_or(300),
            obtained: now,
            generation: s
                .generation
                .wrapping_add(1)
                .max(record.generation.wrapping_add(1)),
        };
        let store = self.store.as_ref().ok_or(RefreshError::Ended("no store"))?;
        let sealed = self
            .seal_record(&s.sid, &next)
            .ok_or(RefreshError::Failed("cannot seal the record".into()))?;
        store
            .put_record(&session::record_key(&s.sid), sealed, self.record_ttl(s))
            .await
            .map_err(|e| RefreshError::Failed(e.to_string()))?;
        debug!(user = %s.user, "session refreshed");
        Ok(self.adopt_record(s, next))
    }

    /// Another gate holds the refresh lock: use its result once the store
    /// has it, or go on with the current token while it still holds.
    async fn wait_for_other(&self, s: &Session) -> Result<Refreshed, RefreshError> {
        let deadline = tokio::time::Instant::now() + WAIT_FOR_OTHER;
        loop {
            if let Some(r) = self.load_record(&s.sid).await?
                && r.generation > s.generation
            {
                return Ok(self.adopt_record(s, r));
            }
            if now() < s.access_exp || tokio::time::Instant::now() >= deadline {
                return Err(RefreshError::Failed("another gate is refreshing".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn adopt_record(&self, s: &Session, r: Record) -> Refreshed {
        Refreshed {
            access_token: self.remember_access_token(&s.sid, &r.access_token),
            session: Session {
                access_exp: r.access_exp,
                obtained: r.obtained,
                generation: r.generation,
                refreshable: r.refresh_token.is_some(),
                ..s.clone()
            },
        }
    }

    /// How long a session's record is kept: until its absolute deadline.
    pub(super) fn record_ttl(&self, s: &Session) -> Duration {
        let end = s.signed_in.saturating_add(self.cfg.max_lifetime.as_secs());
        Duration::from_secs(end.saturating_sub(now()).max(1))
    }

    /// Revokes a session on every gate and drops its record.
    pub(super) async fn end_session(&self, sid: &str, signed_in: u64) {
        self.access_tokens.invalidate(sid);
        self.active.gone(sid);
        let Some(store) = &self.store else { return };
        let until = signed_in.saturating_add(self.cfg.max_lifetime.as_secs());
        let (_, outcome) = store
            .revoke(
                crate::store::revocation::Rule::Token {
                    jti: session::revocation_id(sid),
                },
                Some(until.max(now() + 1)),
            )
            .await;
        if let Err(e) = outcome {
            warn!("session revoked on this gate; sharing it: {e}");
        }
        let _ = store.delete_record(&session::record_key(sid)).await;
    }
}

/// `Bearer <token>`, or None when the token cannot be a header value.
fn bearer_value(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}
