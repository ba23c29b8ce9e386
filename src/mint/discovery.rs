//! `/.well-known/jwks.json` and `/.well-known/openid-configuration`: what
//! another gate (or any OpenID-aware service) needs to trust this one as an
//! `[[auth.issuers]]` entry.

use http::HeaderMap;
use serde_json::{Value, json};

pub(super) const JWKS_PATH: &str = "/.well-known/jwks.json";
pub(super) const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// The http(s) base of an issuer that is a URL (without a trailing `/`).
fn issuer_url(issuer: &str) -> Option<&str> {
    let uri: http::Uri = issuer.parse().ok()?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some() && uri.query().is_none() => {
            Some(issuer.trim_end_matches('/'))
        }
        _ => None,
    }
}

/// The path part of an issuer URL, when it has one (`https://h/base` → `/base`).
pub(super) fn issuer_path(issuer: &str) -> Option<String> {
    let base = issuer_url(issuer)?;
    let uri: http::Uri = base.parse().ok()?;
    let p = uri.path().trim_end_matches('/');
    (!p.is_empty()).then(|| p.to_owned())
}

/// The absolute base URL the documents name: the issuer itself when it is a
/// URL (as OpenID Connect Discovery requires); otherwise the scheme and
/// `Host` of the request, the best a gate that does not know its public
/// name can do.
pub(super) fn base_url(issuer: &str, headers: &HeaderMap, uri: &http::Uri, tls: bool) -> String {
    if let Some(base) = issuer_url(issuer) {
        return base.to_owned();
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        // Only a plain host[:port] is echoed into the document.
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        });
    match host {
        Some(h) => format!("{}://{h}", if tls { "https" } else { "http" }),
        None => String::new(),
    }
}

/// The OpenID provider metadata of the gate's issuer.
pub(super) fn document(issuer: &str, base: &str, token_path: &str, alg: &str) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{base}{JWKS_PATH}"),
        "token_endpoint": format!("{base}{token_path}"),
        "grant_types_supported": ["password"],
        "token_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [alg],
        "claims_supported": ["sub", "user", "login", "iss", "iat", "nbf", "exp", "jti", "auth_time"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_is_the_issuer_url_or_the_host() {
        let uri: http::Uri = "/x".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, "gate.local:8080".parse().unwrap());
        assert_eq!(
            base_url("https://gate.example/", &h, &uri, false),
            "https://gate.example"
        );
        assert_eq!(
            base_url("jwtgate", &h, &uri, true),
            "https://gate.local:8080"
        );
        h.insert(http::header::HOST, "evil/x?".parse().unwrap());
        assert_eq!(base_url("jwtgate", &h, &uri, false), "");
        assert_eq!(issuer_path("https://h/base/").as_deref(), Some("/base"));
        assert_eq!(issuer_path("https://h"), None);
        assert_eq!(issuer_path("jwtgate"), None);
    }
}
