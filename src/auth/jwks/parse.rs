//! Key material from documents: a JWKS, a PEM public key, and the
//! `jwks_uri` of an OIDC discovery document. Pure functions, no I/O.

use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tracing::debug;

use crate::auth::signature::{ASYMMETRIC, VerifyKey};

/// Keys kept from one JWKS; the rest are ignored.
const MAX_KEYS: usize = 64;

/// The kind of key a verification needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

pub(super) fn kind_for(alg: Algorithm) -> Option<KeyKind> {
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => Some(KeyKind::Rsa),
        Algorithm::ES256 => Some(KeyKind::P256),
        Algorithm::ES384 => Some(KeyKind::P384),
        Algorithm::EdDSA => Some(KeyKind::Ed25519),
        _ => None,
    }
}

/// One usable verification key.
pub struct KeyEntry {
    pub(super) kid: Option<String>,
    pub(super) kind: KeyKind,
    /// The key's own `alg`, when the JWKS names one: the token must use it.
    pub(super) alg: Option<Algorithm>,
    pub(super) key: Arc<VerifyKey>,
}

impl KeyEntry {
    pub(super) fn fits(&self, alg: Algorithm) -> bool {
        kind_for(alg) == Some(self.kind) && self.alg.is_none_or(|a| a == alg)
    }
}

/// Reads the `jwks_uri` of the OIDC discovery document of `issuer`.
#[doc(hidden)]
pub fn parse_discovery(body: &[u8], issuer: &str) -> Result<String, String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|_| "discovery document is not JSON".to_string())?;
    // OIDC Discovery §4.3: the document's issuer must be exactly ours.
    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err("discovery document names another issuer".into());
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or("discovery document has no jwks_uri")?;
    check_url(uri)?;
    Ok(uri.to_string())
}

/// What browser sign-in needs of an OpenID provider's discovery document
/// (OpenID Connect Discovery 1.0, RFC 9207, RP-Initiated Logout 1.0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderEndpoints {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    /// RP-initiated logout; absent when the provider has none.
    pub end_session_endpoint: Option<String>,
    /// RFC 9207: the provider sends `iss` with every authorization
    /// response, so a response without it (or with another) is refused.
    pub iss_parameter_supported: bool,
}

/// Reads the sign-in endpoints of `issuer`'s discovery document. `None`
/// when it names no authorization or token endpoint (a provider that only
/// serves keys); an endpoint that is not an http(s) URL with a host is an
/// error. Endpoints are not followed across issuers: the document's issuer
/// was checked by `parse_discovery`.
pub fn parse_provider_endpoints(body: &[u8]) -> Result<Option<ProviderEndpoints>, String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|_| "discovery document is not JSON".to_string())?;
    let url = |name: &str| -> Result<Option<String>, String> {
        match doc.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(u)) => {
                check_url(u).map_err(|m| format!("{name}: {m}"))?;
                Ok(Some(u.clone()))
            }
            Some(_) => Err(format!("{name} is not a string")),
        }
    };
    let (Some(authorization_endpoint), Some(token_endpoint)) =
        (url("authorization_endpoint")?, url("token_endpoint")?)
    else {
        return Ok(None);
    };
    Ok(Some(ProviderEndpoints {
        authorization_endpoint,
        token_endpoint,
        end_session_endpoint: url("end_session_endpoint")?,
        iss_parameter_supported: doc
            .get("authorization_response_iss_parameter_supported")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }))
}

/// Parses a JWKS, key by key: a key of an unknown type, an encryption key,
/// a symmetric key or a broken key is skipped, not fatal for the set.
pub fn parse_jwks(bytes: &[u8]) -> Result<Vec<KeyEntry>, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|_| "JWKS is not JSON".to_string())?;
    let items = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("JWKS has no keys array")?;
    let mut keys = Vec::new();
    for item in items.iter().take(MAX_KEYS) {
        match parse_jwk(item) {
            Ok(k) => keys.push(k),
            Err(why) => debug!("JWKS key skipped: {why}"),
        }
    }
    if keys.is_empty() {
        return Err("JWKS has no usable signature key".into());
    }
    Ok(keys)
}

fn parse_jwk(item: &Value) -> Result<KeyEntry, String> {
    let jwk: Jwk =
        serde_json::from_value(item.clone()).map_err(|e| format!("unparsable key: {e}"))?;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Err("not a signature key (use)".into());
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops
            .iter()
            .any(|o| matches!(o, jsonwebtoken::jwk::KeyOperations::Verify))
    {
        return Err("not a verification key (key_ops)".into());
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            _ => return Err("unsupported curve".into()),
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            _ => return Err("unsupported curve".into()),
        },
        // A symmetric key from a remote set is never trusted.
        _ => return Err("not an asymmetric key".into()),
    };
    let alg = match &jwk.common.key_algorithm {
        None => None,
        Some(ka) => {
            let a = key_algorithm(*ka).ok_or("alg is not a signature algorithm")?;
            if kind_for(a) != Some(kind) {
                return Err("alg does not fit the key type".into());
            }
            Some(a)
        }
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
    let key = VerifyKey::public(&key, ASYMMETRIC).ok_or("unusable key")?;
    Ok(KeyEntry {
        kid: jwk.common.key_id.clone(),
        kind,
        alg,
        key: Arc::new(key),
    })
}

fn key_algorithm(ka: KeyAlgorithm) -> Option<Algorithm> {
    Some(match ka {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// One PEM public key (RSA, EC P-256/P-384 or Ed25519).
#[doc(hidden)]
pub fn parse_pem(pem: &[u8]) -> Result<KeyEntry, String> {
    let entry = |kind, key: DecodingKey| -> Result<KeyEntry, String> {
        let key = VerifyKey::public(&key, ASYMMETRIC).ok_or("unusable public key")?;
        Ok(KeyEntry {
            kid: None,
            kind,
            alg: None,
            key: Arc::new(key),
        })
    };
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return entry(KeyKind::Rsa, key);
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return entry(KeyKind::Ed25519, key);
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        // The curve follows from the encoded point's length.
        let kind = match key.try_get_as_bytes().map(<[u8]>::len) {
            Ok(65) => KeyKind::P256,
            Ok(97) => KeyKind::P384,
            _ => return Err("unsupported EC curve".into()),
        };
        return entry(kind, key);
    }
    Err("not a PEM public key (RSA, EC P-256/P-384 or Ed25519)".into())
}

pub(super) fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
    match uri.scheme_str() {
        // `https://:443/` parses with an empty host: nothing to fetch from.
        Some("https") | Some("http") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err(format!("{url:?} is not an http(s) URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_a_non_empty_host() {
        assert!(check_url("https://idp.example/jwks").is_ok());
        // Found by the jwks fuzz target (fuzz/corpus/jwks/regression-empty-host).
        assert!(check_url("https://:trutokn").is_err());
        assert!(check_url("https://:443/jwks").is_err());
        assert!(check_url("ftp://idp.example/").is_err());
    }

    #[test]
    fn jwks_keys_are_parsed_one_by_one() {
        let jwks = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"},
            {"kty": "RSA", "use": "enc", "kid": "enc", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "kid": "ec", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "XYZ", "kid": "weird"},
            {"kty": "EC", "crv": "P-256", "kid": "bad", "x": "AAAA", "y": "AAAA"}
        ]});
        let keys = parse_jwks(jwks.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid.clone().unwrap()).collect();
        assert!(kids.contains(&"ec".to_string()), "{kids:?}");
        assert!(!kids.contains(&"sym".to_string()));
        assert!(!kids.contains(&"enc".to_string()));
        assert!(!kids.contains(&"weird".to_string()));
        assert!(parse_jwks(br#"{"keys": []}"#).is_err());
        assert!(parse_jwks(b"garbage").is_err());
    }
}
