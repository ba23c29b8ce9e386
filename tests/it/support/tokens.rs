//! Token minting by hand: base64url + HMAC, so that tests can craft exactly the
//! bytes they want (alg none, stripped signatures, tampered payloads, odd
//! headers) without a JWT library normalising anything.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// base64url without padding.
pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decodes base64url with or without padding.
pub fn b64url_decode(s: &str) -> Vec<u8> {
    let s = s.trim();
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(s))
        .unwrap_or_else(|e| panic!("{s:?} is not base64url: {e}"))
}

fn hmac_alg(alg: &str) -> hmac::Algorithm {
    match alg {
        "HS256" => hmac::HMAC_SHA256,
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        other => panic!("not an HMAC algorithm: {other}"),
    }
}

/// HMAC of `msg` with `secret` under an HS* algorithm, base64url-encoded.
pub fn hmac_sig(alg: &str, secret: &[u8], msg: &[u8]) -> String {
    let key = hmac::Key::new(hmac_alg(alg), secret);
    b64url(hmac::sign(&key, msg).as_ref())
}

/// `b64(header).b64(payload)` for JSON values.
pub fn signing_input(header: &Value, payload: &Value) -> String {
    format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(payload.to_string().as_bytes())
    )
}

/// A token with an arbitrary header and payload, signed with HMAC under
/// `alg_for_sig` (independent of what the header claims).
pub fn sign_hmac_with(alg_for_sig: &str, secret: &[u8], header: &Value, payload: &Value) -> String {
    let input = signing_input(header, payload);
    let sig = hmac_sig(alg_for_sig, secret, input.as_bytes());
    format!("{input}.{sig}")
}

/// A token whose header is `header` (its `alg` decides the HMAC).
pub fn sign_hmac(secret: &[u8], header: &Value, payload: &Value) -> String {
    let alg = header["alg"].as_str().expect("header.alg").to_string();
    sign_hmac_with(&alg, secret, header, payload)
}

/// An HS256 token with header `{"alg":"HS256","typ":"JWT"}`.
pub fn hs256(secret: &str, payload: &Value) -> String {
    sign_hmac(
        secret.as_bytes(),
        &json!({"alg": "HS256", "typ": "JWT"}),
        payload,
    )
}

/// An HS* token with header `{"alg":ALG,"typ":"JWT"}`.
pub fn hs(alg: &str, secret: &str, payload: &Value) -> String {
    sign_hmac(
        secret.as_bytes(),
        &json!({"alg": alg, "typ": "JWT"}),
        payload,
    )
}

/// A token exactly as Brevia makes it: HS256, payload `{"user", "exp"}` only.
pub fn brevia_token(secret: &str, user: &str, valid_secs: i64) -> String {
    hs256(secret, &json!({"user": user, "exp": now() + valid_secs}))
}

/// A typical valid payload: `sub`, `iat`, `exp` (+10 min).
pub fn claims(user: &str) -> Value {
    let t = now();
    json!({"sub": user, "iat": t, "exp": t + 600})
}

/// `header.payload.` with the given (possibly empty) signature text.
pub fn craft(header: &Value, payload: &Value, signature: &str) -> String {
    format!("{}.{}", signing_input(header, payload), signature)
}

/// Splits a compact JWS into (header JSON, payload JSON, signature bytes).
pub fn decode_parts(token: &str) -> (Value, Value, Vec<u8>) {
    let parts: Vec<&str> = token.trim().split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token:?}");
    let h = serde_json::from_slice(&b64url_decode(parts[0])).expect("header JSON");
    let p = serde_json::from_slice(&b64url_decode(parts[1])).expect("payload JSON");
    (h, p, b64url_decode(parts[2]))
}

/// Verifies an HS* token's signature with `secret`; returns (header, payload).
pub fn verify_hmac(token: &str, secret: &[u8]) -> (Value, Value) {
    let token = token.trim();
    let (h, p, sig) = decode_parts(token);
    let alg = h["alg"].as_str().expect("alg").to_string();
    let input = &token[..token.rfind('.').unwrap()];
    let key = hmac::Key::new(hmac_alg(&alg), secret);
    hmac::verify(&key, input.as_bytes(), &sig).expect("HMAC signature does not verify");
    (h, p)
}

/// `Bearer TOKEN`
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
