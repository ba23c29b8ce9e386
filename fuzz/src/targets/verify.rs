//! JWS/JWT parsing and verification with the fixture's fixed keys
//! (HS256/HS384 secret; RS256, PS256 and ES256 keys of one issuer).
//!
//! Input, byte 0 even: the rest is a token as a client would send it.
//! Byte 0 odd: the rest is `header JSON \0 payload JSON`; the harness
//! base64url-encodes both and signs them with the fixture key picked by
//! byte 0 (whatever alg the header claims), so the claims checks behind
//! the signature are reached.
//!
//! Invariants: an accepted token's signature verifies under jsonwebtoken
//! with the fixture's key for the token's own `alg`; its claims are the
//! payload, `exp`/`nbf`/`iat`/`iss`/`aud` hold, the user is the first
//! username claim; an HS token never stands for the asymmetric issuer.
//! A token whose signature is right for its `alg` is never refused as
//! `BadSignature`. The verifier with a token cache answers like the one
//! without, twice.

use std::sync::OnceLock;

use crate::{AUDIENCE, ISS, LEEWAY, keys, now, runtime, sign_raw};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jwtgate::auth::VerifyError;
use jwtgate::proxy::state::State;
use serde_json::{Map, Value};

struct Fixture {
    uncached: State,
    cached: State,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        uncached: crate::state(crate::config(0)),
        cached: crate::state(crate::config(64)),
    })
}

fn numeric(claims: &Map<String, Value>, name: &str) -> Option<u64> {
    let n = claims.get(name)?.as_number()?;
    n.as_u64().or_else(|| n.as_f64().map(|f| f as u64))
}

fn check_accepted(token: &str, id: &jwtgate::auth::Identity) {
    let (message, sig) = token.rsplit_once('.').expect("three parts");
    let (h, p) = message.split_once('.').expect("three parts");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).expect("header b64")).expect("header");
    let alg: Algorithm = header["alg"]
        .as_str()
        .expect("alg")
        .parse()
        .expect("known alg");
    let key = keys()
        .decoding_for(alg)
        .unwrap_or_else(|| panic!("accepted an alg without a key: {alg:?}"));
    assert!(
        jsonwebtoken::crypto::verify(sig, message.as_bytes(), key, alg).unwrap_or(false),
        "accepted a token whose signature does not verify with the fixed key"
    );
    let payload = URL_SAFE_NO_PAD.decode(p).expect("payload b64");
    let claims: Map<String, Value> = serde_json::from_slice(&payload).expect("payload");
    assert_eq!(claims, id.claims);
    assert_eq!(&*id.payload_b64, p);
    let t = now();
    let exp = numeric(&claims, "exp").expect("exp");
    assert_eq!(exp, id.exp);
    assert!(exp.saturating_add(LEEWAY) >= t, "expired token accepted");
    for c in ["nbf", "iat"] {
        if claims.contains_key(c) {
            let v = numeric(&claims, c).expect("numeric date");
            assert!(v <= t + LEEWAY + 1, "{c} in the future accepted");
        }
    }
    let user = ["sub", "user", "login"]
        .iter()
        .find_map(|c| {
            claims
                .get(*c)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .expect("user");
    assert_eq!(user, id.user);
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384) {
        assert!(id.issuer.is_none());
        assert_ne!(claims.get("iss").and_then(Value::as_str), Some(ISS));
    } else {
        assert_eq!(id.issuer.as_deref(), Some(ISS));
        assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISS));
        let aud_ok = match claims.get("aud") {
            Some(Value::String(s)) => s == AUDIENCE,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(AUDIENCE)),
            _ => false,
        };
        assert!(aud_ok, "wrong audience accepted");
    }
    assert!(header.get("crit").is_none(), "crit header accepted");
}

/// The signature is right for the token's own alg (with the fixture key).
fn signature_is_right(token: &str) -> bool {
    let Some((message, sig)) = token.rsplit_once('.') else {
        return false;
    };
    let Some((h, _)) = message.split_once('.') else {
        return false;
    };
    let Some(alg) = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("alg")?.as_str()?.parse::<Algorithm>().ok())
    else {
        return false;
    };
    let Some(key) = keys().decoding_for(alg) else {
        return false;
    };
    jsonwebtoken::crypto::verify(sig, message.as_bytes(), key, alg).unwrap_or(false)
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode & 1 == 0 {
        match std::str::from_utf8(rest) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        }
    } else {
        let (header, payload) = match rest.iter().position(|&b| b == 0) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        let (key, alg) = keys().signer(mode >> 1);
        sign_raw(header, payload, key, alg)
    };
    let f = fixture();
    let rt = runtime();
    let result = rt.block_on(f.uncached.verifier.verify(&token));
    match &result {
        Ok(id) => check_accepted(&token, id),
        Err(VerifyError::BadSignature) => assert!(
            !signature_is_right(&token),
            "a correctly signed token was refused as BadSignature"
        ),
        Err(_) => {}
    }
    for _ in 0..2 {
        let cached = rt.block_on(f.cached.verifier.verify(&token));
        match (&result, &cached) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.user, b.user);
                assert_eq!(a.claims, b.claims);
            }
            (Err(a), Err(b)) => assert_eq!(a.reason(), b.reason()),
            _ => panic!("cache changed the answer: {result:?} vs {cached:?}"),
        }
    }
}
