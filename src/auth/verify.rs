//! Token verification: the algorithm family picks the key source, never the
//! token. HS* tokens are checked only with `auth.secret`; asymmetric ones
//! only with the keys of the `[[auth.issuers]]` entry their `iss` names.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde_json::{Map, Value};

use super::cache::TokenCache;
use super::claims::{self, now};
use super::error::VerifyError;
use super::identity::Identity;
use super::jwks::{Issuers, MAX_KEYS_WITHOUT_KID};
use super::keys::HmacKey;
use super::signature::alg_name;
use crate::observe::metrics::Metrics;

/// Longest token accepted: far above any real JWT, far below a header limit.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest `kid` looked up; longer ones are refused before any lookup.
const MAX_KID_BYTES: usize = 256;

/// The parts of a JOSE header the gate looks at. Everything else
/// (`jku`, `x5u`, `x5c`, `jwk`) is ignored: nothing is ever fetched or
/// trusted from a token.
struct Header {
    alg: Algorithm,
    kid: Option<String>,
    typ: Option<String>,
}

/// The header fields read, borrowed from the decoded bytes. A duplicate
/// field is an error (serde), not "last one wins".
#[derive(serde::Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Option<std::borrow::Cow<'a, str>>,
    kid: Option<Value>,
    typ: Option<Value>,
    /// Present at all (even `null`): RFC 7515 §4.1.11 says refuse what we
    /// do not understand.
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    <serde::de::IgnoredAny as serde::Deserialize>::deserialize(d).map(|_| true)
}

fn parse_header(segment: &str) -> Result<Header, VerifyError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| VerifyError::Malformed("header is not base64url"))?;
    // serde_json does not check the UTF-8 of strings it skips (unknown
    // fields): check the whole header, as RFC 7515 §5.2 asks.
    let text =
        std::str::from_utf8(&bytes).map_err(|_| VerifyError::Malformed("header is not UTF-8"))?;
    let raw: RawHeader<'_> = serde_json::from_str(text)
        .map_err(|_| VerifyError::Malformed("header is not a JSON object"))?;
    if raw.crit {
        return Err(VerifyError::Crit);
    }
    let Some(alg) = raw.alg else {
        return Err(VerifyError::Malformed("header has no alg"));
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(VerifyError::AlgNone);
    }
    let alg: Algorithm = alg
        .parse()
        .map_err(|_| VerifyError::UnsupportedAlg(truncate(&alg, 16)))?;
    let kid = match raw.kid {
        None => None,
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KID_BYTES => Some(k),
        Some(_) => return Err(VerifyError::BadKid),
    };
    let typ = match raw.typ {
        Some(Value::String(t)) => Some(t),
        _ => None,
    };
    Ok(Header { alg, kid, typ })
}

/// RFC 9068 §2.1 / RFC 7515 §4.1.9: `typ` compares case-insensitively, and
/// `application/` may be left out (`at+jwt` = `application/at+jwt`).
fn typ_matches(have: Option<&str>, want: &str) -> bool {
    let strip = |t: &str| {
        let t = t.trim();
        if t.len() > 12 && t[..12].eq_ignore_ascii_case("application/") {
            t[12..].to_string()
        } else {
            t.to_string()
        }
    };
    have.is_some_and(|h| strip(h).eq_ignore_ascii_case(&strip(want)))
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).filter(|c| !c.is_control()).collect()
}

/// The issuer and client an ID token (or a logout token) must be for.
#[derive(Clone, Copy)]
struct IdTokenOf<'a> {
    issuer: &'a str,
    client_id: &'a str,
    /// A back-channel logout token: `typ`, when present, must be
    /// `logout+jwt` or `JWT`, and it need not name a user (`sid` alone is
    /// enough).
    logout: bool,
}

/// Verifies tokens for one configuration generation.
pub struct Verifier {
    hmac: Option<HmacKey>,
    issuers: Issuers,
    leeway: u64,
    username_claims: Vec<String>,
    cache: Option<Arc<TokenCache>>,
    /// This verifier's tag in the shared cache (see `auth::cache`).
    cache_owner: u64,
    metrics: Arc<Metrics>,
    /// Checked on every verification, cache hits included (issue 14).
    revocations: Option<Arc<dyn Revocations>>,
}

/// What the verifier asks of a revocation list after every acceptance,
/// cache hits included. The shared store implements it; `auth` does not
/// depend on the store.
pub trait Revocations: Send + Sync {
    /// `Err` when `id` is revoked, or when the list is too stale to trust.
    fn check(&self, id: &Identity) -> Result<(), VerifyError>;
}

impl Verifier {
    pub fn new(
        hmac: Option<HmacKey>,
        issuers: Issuers,
        leeway: u64,
        username_claims: Vec<String>,
        cache: Option<Arc<TokenCache>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        // A new configuration is a key change: nothing verified before it
        // (by the previous configuration, possibly with other keys) is used.
        let cache_owner = cache.as_ref().map_or(0, |c| c.advance());
        Verifier {
            hmac,
            issuers,
            leeway,
            username_claims,
            cache,
            cache_owner,
            metrics,
            revocations: None,
        }
    }

    /// Every token this verifier accepts is also checked against `list`
    /// (in memory).
    pub fn set_revocations(&mut self, list: Arc<dyn Revocations>) {
        self.revocations = Some(list);
    }

    /// Verifies `token` (from the cache or fully), then checks it has not
    /// been revoked: a revocation must hold for cached tokens too.
    pub async fn verify(&self, token: &str) -> Result<Arc<Identity>, VerifyError> {
        let id = self.verify_signed(token).await?;
        if let Some(list) = &self.revocations {
            list.check(&id)?;
        }
        Ok(id)
    }

    /// The sign-in endpoints of the trusted issuer `iss` (from its
    /// discovery document, fetched now if not loaded yet).
    pub async fn provider_endpoints(
        &self,
        iss: &str,
    ) -> Result<Arc<super::jwks::ProviderEndpoints>, VerifyError> {
        let issuer = self.issuers.get(iss).ok_or(VerifyError::UntrustedIssuer)?;
        issuer.endpoints().await
    }

    pub fn issuers(&self) -> &Issuers {
        &self.issuers
    }

    pub fn cache(&self) -> Option<&Arc<TokenCache>> {
        self.cache.as_ref()
    }

    /// Verifies `token` fully, or answers from the cache of tokens verified before.
    async fn verify_signed(&self, token: &str) -> Result<Arc<Identity>, VerifyError> {
        let Some(cache) = &self.cache else {
            return Ok(Arc::new(self.verify_timed(token).await?));
        };
        // Read before any key is looked at: if the keys change while this
        // verification runs, its result is not cached.
        let generation = cache.generation();
        if let Some(id) = cache.get(token, self.cache_owner) {
            self.metrics.cache_hits.inc();
            return Ok(id);
        }
        self.metrics.cache_misses.inc();
        let id = Arc::new(self.verify_timed(token).await?);
        cache.insert(token, id.clone(), generation, self.cache_owner);
        Ok(id)
    }

    /// A real verification, observed in `jwtgate_verify_duration_seconds`;
    /// cache hits are counted apart, so that they do not hide what a
    /// signature check costs.
    async fn verify_timed(&self, token: &str) -> Result<Identity, VerifyError> {
        let started = std::time::Instant::now();
        let result = self.verify_uncached(token, None).await;
        self.metrics
            .verify_seconds
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Verifies an OpenID Connect ID token of `issuer` for the client
    /// `client_id` (browser sign-in): the same checks as an access token of
    /// that issuer (its keys and algorithms, times, the user name), except
    /// that the audience must be `client_id` and `require_typ` (meant to
    /// keep ID tokens out of the API) does not apply. Never cached, never
    /// an HS* token. The caller checks `nonce`, `azp` and `iat`.
    pub async fn verify_id_token(
        &self,
        token: &str,
        issuer: &str,
        client_id: &str,
    ) -> Result<Identity, VerifyError> {
        self.verify_uncached(
            token,
            Some(IdTokenOf {
                issuer,
                client_id,
                logout: false,
            }),
        )
        .await
    }

    /// Verifies an OpenID Connect back-channel logout token of `issuer` for
    /// `client_id` (Back-Channel Logout 1.0 §2.6 items 3-5): the issuer's
    /// keys and algorithms (never HS*, never `none`), `iss`, `aud` =
    /// `client_id`, `exp` (required) / `nbf` / `iat` not in the future,
    /// and `typ`, when present, `logout+jwt` or `JWT`. The identity's user
    /// is `sub` (or empty: a token may name only a `sid`). Never cached.
    /// The caller checks `events`, `jti`, `nonce`, `sid`/`sub` and the age
    /// of `iat`.
    pub async fn verify_logout_token(
        &self,
        token: &str,
        issuer: &str,
        client_id: &str,
    ) -> Result<Identity, VerifyError> {
        self.verify_uncached(
            token,
            Some(IdTokenOf {
                issuer,
                client_id,
                logout: true,
            }),
        )
        .await
    }

    async fn verify_uncached(
        &self,
        token: &str,
        id_token: Option<IdTokenOf<'_>>,
    ) -> Result<Identity, VerifyError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed("expected three dot-separated parts"));
        };
        if s.is_empty() {
            return Err(VerifyError::BadSignature);
        }
        let header = parse_header(h)?;
        let signature = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| VerifyError::Malformed("signature is not base64url"))?;
        let payload = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| VerifyError::Malformed("payload is not base64url"))?;
        // Parsed before the signature check only to route by `iss`; nothing
        // is decided from it until the signature has been verified.
        let claims: Map<String, Value> = serde_json::from_slice(&payload)
            .map_err(|_| VerifyError::Malformed("payload is not a JSON object"))?;
        let message = &token[..h.len() + 1 + p.len()];
        let now = now();

        let client_audience = id_token.map(|t| [t.client_id.to_string()]);
        let (issuer, audiences): (Option<String>, &[String]) = match header.alg.family() {
            AlgorithmFamily::Hmac if id_token.is_some() => {
                return Err(VerifyError::AlgNotAllowed(alg_name(header.alg).into()));
            }
            AlgorithmFamily::Hmac => {
                let key = self.hmac.as_ref().ok_or(VerifyError::NoHmacKey)?;
                if !key.algorithms.contains(&header.alg) {
                    return Err(VerifyError::AlgNotAllowed(alg_name(header.alg).into()));
                }
                // An HS token must never speak for an asymmetric issuer: that is
                // the classic public-key-as-HMAC-secret confusion.
                if let Some(Value::String(iss)) = claims.get("iss")
                    && self.issuers.get(iss).is_some()
                {
                    return Err(VerifyError::HmacForAsymmetricIssuer);
                }
                if !key
                    .verify
                    .verify(header.alg, message.as_bytes(), &signature)
                {
                    return Err(VerifyError::BadSignature);
                }
                claims::check_issuer(&claims, key.issuer.as_deref())?;
                (None, &key.audiences)
            }
            _ => {
                let iss = match claims.get("iss") {
                    Some(Value::String(iss)) => iss.as_str(),
                    _ => return Err(VerifyError::UntrustedIssuer),
                };
                if id_token.is_some_and(|t| t.issuer != iss) {
                    return Err(VerifyError::UntrustedIssuer);
                }
                let issuer = self.issuers.get(iss).ok_or(VerifyError::UntrustedIssuer)?;
                if !issuer.algorithms().contains(&header.alg) {
                    return Err(VerifyError::AlgNotAllowed(alg_name(header.alg).into()));
                }
                if id_token.is_none()
                    && let Some(want) = issuer.required_typ()
                    && !typ_matches(header.typ.as_deref(), want)
                {
                    return Err(VerifyError::WrongType);
                }
                // Back-Channel Logout 1.0 §2.4: explicit typing keeps an ID
                // token (or any other JWT of the issuer) from being taken
                // for a logout token; plain `JWT` is allowed for providers
                // that type every token so.
                if id_token.is_some_and(|t| t.logout)
                    && header.typ.is_some()
                    && !typ_matches(header.typ.as_deref(), "logout+jwt")
                    && !typ_matches(header.typ.as_deref(), "JWT")
                {
                    return Err(VerifyError::WrongType);
                }
                let keys = issuer.keys_for(header.alg, header.kid.as_deref()).await?;
                let verified = keys
                    .iter()
                    .take(MAX_KEYS_WITHOUT_KID)
                    .any(|k| k.verify(header.alg, message.as_bytes(), &signature));
                if !verified {
                    return Err(VerifyError::BadSignature);
                }
                let audiences = match &client_audience {
                    Some(a) => a.as_slice(),
                    None => issuer.audiences(),
                };
                (Some(iss.to_string()), audiences)
            }
        };
        let exp = claims::check_times(&claims, now, self.leeway)?;
        claims::check_audience(&claims, audiences)?;
        let user = match id_token {
            // A logout token speaks of a provider session (`sid`) or a
            // subject (`sub`), not of a user name.
            Some(t) if t.logout => claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            _ => claims::username(&claims, &self.username_claims)?,
        };
        Ok(Identity {
            user,
            claims,
            exp,
            payload_b64: p.into(),
            issuer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_comparison() {
        assert!(typ_matches(Some("at+jwt"), "at+jwt"));
        assert!(typ_matches(Some("application/at+JWT"), "at+jwt"));
        assert!(typ_matches(Some("AT+JWT"), "application/at+jwt"));
        assert!(!typ_matches(Some("JWT"), "at+jwt"));
        assert!(!typ_matches(None, "at+jwt"));
    }
}
