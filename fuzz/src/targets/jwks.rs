//! JWKS, OIDC discovery document and PEM public key parsing.
//!
//! Input: byte 0 mod 3 picks the parser (0 JWKS, 1 discovery document for
//! the issuer `https://idp.fuzz`, 2 PEM); the rest is the document.
//!
//! Invariants: a JWKS accepted is a JSON object with a `keys` array and
//! yields between 1 and 64 keys, no more than that array holds, each from
//! an asymmetric signature key; a discovery document accepted names exactly
//! our issuer and yields its `jwks_uri`, an http(s) URL with a host.

use jwtgate::auth::jwks::{parse_discovery, parse_jwks, parse_pem};
use serde_json::Value;

const ISS: &str = crate::ISS;

pub fn run(data: &[u8]) {
    let Some((&which, doc)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            let Ok(keys) = parse_jwks(doc) else { return };
            let v: Value = serde_json::from_slice(doc).expect("accepted JWKS is JSON");
            let items = v["keys"]
                .as_array()
                .expect("accepted JWKS has a keys array");
            assert!(!keys.is_empty());
            assert!(keys.len() <= 64 && keys.len() <= items.len());
            let usable = items
                .iter()
                .take(64)
                .filter(|k| {
                    matches!(k["kty"].as_str(), Some("RSA" | "EC" | "OKP"))
                        && k.get("use").is_none_or(|u| u == "sig")
                })
                .count();
            assert!(
                keys.len() <= usable,
                "a non-signature or symmetric key was kept"
            );
        }
        1 => {
            let Ok(uri) = parse_discovery(doc, ISS) else {
                return;
            };
            let v: Value = serde_json::from_slice(doc).expect("accepted document is JSON");
            assert_eq!(v["issuer"].as_str(), Some(ISS));
            assert_eq!(v["jwks_uri"].as_str(), Some(uri.as_str()));
            let u: http::Uri = uri.parse().expect("jwks_uri is a URI");
            assert!(matches!(u.scheme_str(), Some("http" | "https")));
            assert!(u.host().is_some_and(|h| !h.is_empty()));
        }
        _ => {
            if parse_pem(doc).is_ok() {
                assert!(
                    doc.windows(10).any(|w| w == b"-----BEGIN"),
                    "PEM key accepted without a PEM header"
                );
            }
        }
    }
}
