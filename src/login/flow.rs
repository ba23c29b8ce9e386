//! One sign-in: the authorization code flow with PKCE (S256) and a nonce,
//! always. Its state (`state`, `nonce`, the PKCE verifier, the return path,
//! the time) travels sealed in a short-lived cookie of its own, named after
//! the state, so several tabs can sign in at once; it is used once.
//!
//! The callback checks, in this order: the flow cookie is there and its
//! state matches; the RFC 9207 `iss` parameter (required when the provider
//! advertises it, compared exactly); then the code is redeemed; then the ID
//! token is verified like any token of that issuer, for `aud` = the client,
//! with `azp` (when present), `nonce` and `iat` checked. Any failure: a 400
//! page without detail, no session, a log line and `jwtgate_login_total`
//! with the reason.

use http::HeaderMap;
use http::header::COOKIE;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::jar;
use crate::auth::claims::now;
use crate::respond::LoginRefusal;
use crate::store::mirror::now_ms;

/// A flow cookie lives this long, and a callback older than that fails.
pub const FLOW_MAX_AGE: u64 = 600;
/// Flows kept per browser: the oldest is dropped when a ninth starts.
pub const MAX_FLOWS: usize = 8;
/// Characters of the state in a flow cookie's name.
const NAME_STATE_CHARS: usize = 16;

/// What a flow cookie carries (sealed).
#[derive(Serialize, Deserialize)]
pub struct Flow {
    #[serde(rename = "s")]
    pub state: String,
    #[serde(rename = "n")]
    pub nonce: String,
    #[serde(rename = "v")]
    pub verifier: String,
    #[serde(rename = "r")]
    pub return_to: String,
    /// Unix milliseconds: flows started in the same second are still
    /// told apart when the oldest is dropped.
    #[serde(rename = "t")]
    pub started_ms: u64,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("started_ms", &self.started_ms)
            .finish_non_exhaustive()
    }
}

/// The prefix of every flow cookie's name.
pub fn cookie_prefix(session_cookie: &str) -> String {
    format!("{session_cookie}-flow-")
}

/// The flow cookie's name for `state`: the prefix and the state's first
/// characters (a state is base64url, so they are cookie-name characters).
pub fn cookie_name(prefix: &str, state: &str) -> Option<String> {
    let head = state.get(..NAME_STATE_CHARS)?;
    head.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        .then(|| format!("{prefix}{head}"))
}

/// A new flow: fresh random state, nonce and verifier.
pub fn new_flow(return_to: String) -> Result<Flow, crate::random::RandomError> {
    Ok(Flow {
        state: crate::random::token(32)?,
        nonce: crate::random::token(32)?,
        verifier: crate::random::token(32)?,
        return_to,
        started_ms: now_ms(),
    })
}

/// RFC 7636 §4.2: `BASE64URL(SHA256(verifier))`.
pub fn challenge(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    crate::encoding::b64url(digest.as_ref())
}

/// The authorization request: `endpoint` with the flow's parameters.
pub fn authorization_url(
    endpoint: &str,
    client_id: &str,
    redirect_uri: &str,
    scopes: &[String],
    flow: &Flow,
) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", &flow.state)
        .append_pair("nonce", &flow.nonce)
        .append_pair("code_challenge", &challenge(&flow.verifier))
        .append_pair("code_challenge_method", "S256");
    if scopes.iter().any(|s| s == "offline_access") {
        // OIDC Core §11: offline access is granted with consent.
        q.append_pair("prompt", "consent");
    }
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    format!("{endpoint}{sep}{}", q.finish())
}

/// The names of the flow cookies this request carries, each at most once
/// (the rest of the header is not looked at: bounded work).
pub fn flow_cookies(headers: &HeaderMap, prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    for v in headers.get_all(COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            let name = pair.split('=').next().unwrap_or("").trim();
            if name.starts_with(prefix) && !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
                if names.len() > 4 * MAX_FLOWS {
                    return names;
                }
            }
        }
    }
    names
}

/// What the callback was given.
#[derive(Default)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    /// A parameter given twice (a response with two meanings).
    pub repeated: bool,
}

impl std::fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackParams")
            .field("iss", &self.iss)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl CallbackParams {
    pub fn parse(query: Option<&str>) -> CallbackParams {
        let mut p = CallbackParams::default();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match k.as_ref() {
                "code" => &mut p.code,
                "state" => &mut p.state,
                "iss" => &mut p.iss,
                "error" => &mut p.error,
                _ => continue,
            };
            if slot.is_some() {
                p.repeated = true;
            }
            *slot = Some(v.into_owned());
        }
        p
    }
}

/// A refused callback: 400 and the reason for the log and the metric.
pub fn refused(reason: &'static str) -> LoginRefusal {
    LoginRefusal {
        status: http::StatusCode::BAD_REQUEST,
        reason,
    }
}

/// Step 1: the flow cookie for `state`, opened, and its state matching.
pub fn matching_flow(
    keys: &super::seal::KeyRing,
    headers: &HeaderMap,
    prefix: &str,
    state: &str,
) -> Result<(Flow, String), LoginRefusal> {
    let name = cookie_name(prefix, state).ok_or(refused("state_mismatch"))?;
    let sealed = jar::read(headers, &name).ok_or(refused("state_mismatch"))?;
    let plain = keys
        .open(name.as_bytes(), &sealed)
        .ok_or(refused("state_mismatch"))?;
    let flow: Flow = serde_json::from_slice(&plain).map_err(|_| refused("state_mismatch"))?;
    if !bool::from(flow.state.as_bytes().ct_eq(state.as_bytes())) {
        return Err(refused("state_mismatch"));
    }
    if now_ms().saturating_sub(flow.started_ms) > FLOW_MAX_AGE * 1000 {
        return Err(refused("flow_expired"));
    }
    Ok((flow, name))
}

/// Step 2: RFC 9207. Required when the provider says it sends `iss`;
/// compared exactly whenever present.
pub fn check_iss(given: Option<&str>, issuer: &str, advertised: bool) -> Result<(), LoginRefusal> {
    match given {
        Some(i) if i == issuer => Ok(()),
        Some(_) => Err(refused("iss_mismatch")),
        None if advertised => Err(refused("iss_missing")),
        None => Ok(()),
    }
}

/// Step 4, after the signature, issuer, audience and times: the claims an
/// ID token carries for this flow alone (OIDC Core §3.1.3.7).
pub fn check_id_token_claims(
    claims: &serde_json::Map<String, Value>,
    client_id: &str,
    nonce: &str,
    leeway: u64,
) -> Result<(), LoginRefusal> {
    match claims.get("nonce") {
        Some(Value::String(n)) if bool::from(n.as_bytes().ct_eq(nonce.as_bytes())) => {}
        _ => return Err(refused("nonce_mismatch")),
    }
    // Several audiences: azp must name us (§3.1.3.7 items 4-5).
    let several = matches!(claims.get("aud"), Some(Value::Array(a)) if a.len() > 1);
    match claims.get("azp") {
        Some(Value::String(a)) if a == client_id => {}
        None if !several => {}
        _ => return Err(refused("azp_mismatch")),
    }
    let now = now();
    match claims.get("iat").and_then(Value::as_u64) {
        Some(iat) if iat <= now + leeway && now.saturating_sub(iat) <= FLOW_MAX_AGE + leeway => {
            Ok(())
        }
        _ => Err(refused("iat_invalid")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pkce_challenge_is_rfc_7636_appendix_b() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn authorization_url_carries_every_parameter() {
        let flow = new_flow("/".into()).unwrap();
        let u = authorization_url(
            "https://idp/auth?x=1",
            "gate",
            "https://cms/.jwtgate/callback",
            &["openid".into(), "offline_access".into()],
            &flow,
        );
        assert!(u.starts_with("https://idp/auth?x=1&response_type=code&client_id=gate"));
        assert!(u.contains("code_challenge_method=S256"));
        assert!(u.contains(&format!("state={}", flow.state)));
        assert!(u.contains("scope=openid+offline_access"));
        assert!(u.contains("prompt=consent"));
        assert!(u.contains("redirect_uri=https%3A%2F%2Fcms%2F.jwtgate%2Fcallback"));
    }

    #[test]
    fn iss_rules() {
        assert!(check_iss(Some("https://idp"), "https://idp", true).is_ok());
        assert!(check_iss(Some("https://idp/"), "https://idp", true).is_err());
        assert!(check_iss(None, "https://idp", true).is_err());
        assert!(check_iss(None, "https://idp", false).is_ok());
        assert!(check_iss(Some("https://evil"), "https://idp", false).is_err());
    }

    #[test]
    fn id_token_claims_rules() {
        let now = now();
        let ok = json!({"nonce": "n1", "iat": now, "aud": "gate"});
        let m = |v: Value| v.as_object().unwrap().clone();
        assert!(check_id_token_claims(&m(ok.clone()), "gate", "n1", 60).is_ok());
        assert!(check_id_token_claims(&m(ok), "gate", "n2", 60).is_err());
        let no_nonce = json!({"iat": now});
        assert!(check_id_token_claims(&m(no_nonce), "gate", "n1", 60).is_err());
        let azp = json!({"nonce": "n1", "iat": now, "azp": "other"});
        assert!(check_id_token_claims(&m(azp), "gate", "n1", 60).is_err());
        let several = json!({"nonce": "n1", "iat": now, "aud": ["gate", "api"]});
        assert!(check_id_token_claims(&m(several), "gate", "n1", 60).is_err());
        let future = json!({"nonce": "n1", "iat": now + 3600});
        assert!(check_id_token_claims(&m(future), "gate", "n1", 60).is_err());
        let old = json!({"nonce": "n1", "iat": now - 3600});
        assert!(check_id_token_claims(&m(old), "gate", "n1", 60).is_err());
    }

    #[test]
    fn callback_params_notice_repeats() {
        let p = CallbackParams::parse(Some("code=a&state=b&iss=https%3A%2F%2Fidp"));
        assert_eq!(p.iss.as_deref(), Some("https://idp"));
        assert!(!p.repeated);
        assert!(CallbackParams::parse(Some("code=a&code=b")).repeated);
    }

    #[test]
    fn flow_cookie_names() {
        let prefix = cookie_prefix("__Host-jwtgate");
        assert_eq!(
            cookie_name(&prefix, "abcdefghijklmnopqrstuvwxyz").as_deref(),
            Some("__Host-jwtgate-flow-abcdefghijklmnop")
        );
        assert!(cookie_name(&prefix, "short").is_none());
        assert!(cookie_name(&prefix, "abcdefgh;jklmnopqr").is_none());
    }
}
