//! The key that signs issued tokens: the shared secret (`auth.secret`, HS*)
//! or a private key from `issuer.signing_key_file` (RS256, ES256, ES384 or
//! EdDSA, decided by the key's type).
//!
//! Asymmetric keys are parsed and used with aws-lc-rs directly rather than
//! through `jsonwebtoken::EncodingKey`: one parser then accepts PKCS#8,
//! PKCS#1 and SEC1 PEM alike, and the very same key object yields the public
//! JWK we publish, so the published key cannot drift from the signing one.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Map, Value, json};

use crate::auth::keys::HmacKey;
use crate::auth::signature::alg_name;
use crate::config::{Config, ConfigError, read_key_file};

/// Signing failed (never expected with a key that loaded; no details that
/// could describe the key).
#[derive(Debug, thiserror::Error)]
#[error("signing the token failed")]
pub struct SignError;

impl From<crate::random::RandomError> for SignError {
    fn from(_: crate::random::RandomError) -> Self {
        SignError
    }
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// An asymmetric signing key with its published public half.
struct Asymmetric {
    pair: Pair,
    alg: Algorithm,
    kid: String,
    /// The public JWK (with `kid`, `alg`, `use`), exactly as published.
    public_jwk: Value,
}

enum Kind {
    Hmac {
        key: EncodingKey,
        alg: Algorithm,
        /// The first of `auth.secret.audiences`, so that the local secret
        /// path accepts the tokens when it checks `aud`.
        audience: Option<String>,
    },
    Asymmetric(Box<Asymmetric>),
}

/// Signs issued tokens.
pub struct Signer {
    kind: Kind,
}

// Key material never shows in Debug output.
impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("algorithm", &self.algorithm())
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

use crate::encoding::b64url as b64;

impl Signer {
    /// The issuer's signer: `issuer.signing_key_file` when set (and the
    /// issuer is enabled), else the shared secret; `None` without either.
    pub fn from_config(config: &Config) -> Result<Option<Signer>, ConfigError> {
        if let (true, Some(file)) = (config.issuer.enabled, &config.issuer.signing_key_file) {
            let pem = read_key_file("issuer.signing_key_file", file)?;
            return Ok(Some(Signer::from_pem(&pem).map_err(|m| {
                ConfigError::invalid("issuer.signing_key_file", file.display().to_string(), m)
            })?));
        }
        let Some(key) = HmacKey::from_config(&config.auth.secret)? else {
            return Ok(None);
        };
        let Some(alg) = key.algorithms.first().copied() else {
            return Err(ConfigError::invalid(
                "auth.secret.algorithms",
                "configuration",
                "must not be empty",
            ));
        };
        Ok(Some(Signer {
            kind: Kind::Hmac {
                key: key.encoding,
                alg,
                audience: key.audiences.first().cloned(),
            },
        }))
    }

    /// Parses a PEM private key: RSA (PKCS#1 or PKCS#8), EC P-256/P-384
    /// (SEC1 or PKCS#8) or Ed25519 (PKCS#8). The error never quotes the file.
    pub fn from_pem(pem: &[u8]) -> Result<Signer, String> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| {
            "no unencrypted PEM private key found (expected PRIVATE KEY, \
             RSA PRIVATE KEY or EC PRIVATE KEY)"
                .to_string()
        })?;
        let unsupported = "not an RSA (2048 bits or more), EC P-256/P-384 or Ed25519 private key";
        let pair = match &der {
            PrivateKeyDer::Pkcs1(k) => Pair::Rsa(
                RsaKeyPair::from_der(k.secret_pkcs1_der()).map_err(|_| unsupported.to_string())?,
            ),
            PrivateKeyDer::Sec1(k) => ec_pair(k.secret_sec1_der()).ok_or(unsupported)?,
            PrivateKeyDer::Pkcs8(k) => {
                let d = k.secret_pkcs8_der();
                if let Ok(p) = RsaKeyPair::from_pkcs8(d) {
                    Pair::Rsa(p)
                } else if let Some(p) = ec_pair(d) {
                    p
                } else if let Ok(p) = Ed25519KeyPair::from_pkcs8(d)
                    .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(d))
                {
                    Pair::Ed(p)
                } else {
                    return Err(unsupported.into());
                }
            }
            _ => return Err(unsupported.into()),
        };
        let (alg, mut jwk) = match &pair {
            Pair::Rsa(k) => {
                if k.public_modulus_len() < 256 {
                    return Err("RSA keys must have at least 2048 bits".into());
                }
                let pk = k.public_key();
                (
                    Algorithm::RS256,
                    json!({
                        "kty": "RSA",
                        "n": b64(pk.modulus().big_endian_without_leading_zero()),
                        "e": b64(pk.exponent().big_endian_without_leading_zero()),
                    }),
                )
            }
            Pair::Ec(k) => {
                let point = k.public_key().as_ref();
                let n = point.len().saturating_sub(1) / 2;
                let (alg, crv) = if n == 48 {
                    (Algorithm::ES384, "P-384")
                } else {
                    (Algorithm::ES256, "P-256")
                };
                let (x, y) = point
                    .get(1..)
                    .map(|p| p.split_at(n))
                    .ok_or("EC public key is malformed")?;
                (
                    alg,
                    json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)}),
                )
            }
            Pair::Ed(k) => (
                Algorithm::EdDSA,
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())}),
            ),
        };
        // RFC 7638: the thumbprint covers only the required public members.
        let parsed: Jwk = serde_json::from_value(jwk.clone()).map_err(|e| e.to_string())?;
        let kid = parsed
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| e.to_string())?;
        jwk["kid"] = Value::String(kid.clone());
        jwk["alg"] = Value::String(alg_name(alg).into());
        jwk["use"] = Value::String("sig".into());
        Ok(Signer {
            kind: Kind::Asymmetric(Box::new(Asymmetric {
                pair,
                alg,
                kid,
                public_jwk: jwk,
            })),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        match &self.kind {
            Kind::Hmac { alg, .. } => *alg,
            Kind::Asymmetric(a) => a.alg,
        }
    }

    pub fn is_asymmetric(&self) -> bool {
        matches!(self.kind, Kind::Asymmetric(_))
    }

    /// The `kid` of an asymmetric key (its RFC 7638 thumbprint).
    pub fn kid(&self) -> Option<&str> {
        match &self.kind {
            Kind::Hmac { .. } => None,
            Kind::Asymmetric(a) => Some(&a.kid),
        }
    }

    /// The audience HS tokens must carry for the local secret path.
    pub fn audience(&self) -> Option<&str> {
        match &self.kind {
            Kind::Hmac { audience, .. } => audience.as_deref(),
            Kind::Asymmetric(_) => None,
        }
    }

    /// The JWKS to publish; `None` for the shared secret (never published).
    pub fn jwks(&self) -> Option<Value> {
        match &self.kind {
            Kind::Hmac { .. } => None,
            Kind::Asymmetric(a) => Some(json!({ "keys": [a.public_jwk] })),
        }
    }

    /// The public verification key of an asymmetric signer.
    pub fn decoding_key(&self) -> Option<Result<DecodingKey, String>> {
        match &self.kind {
            Kind::Hmac { .. } => None,
            Kind::Asymmetric(a) => Some(
                serde_json::from_value::<Jwk>(a.public_jwk.clone())
                    .map_err(|e| e.to_string())
                    .and_then(|jwk| DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())),
            ),
        }
    }

    /// Signs `claims` into a compact JWS.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String, SignError> {
        match &self.kind {
            Kind::Hmac { key, alg, .. } => {
                jsonwebtoken::encode(&jsonwebtoken::Header::new(*alg), claims, key)
                    .map_err(|_| SignError)
            }
            Kind::Asymmetric(a) => {
                let header = json!({"alg": alg_name(a.alg), "typ": "JWT", "kid": a.kid});
                let input = format!(
                    "{}.{}",
                    b64(header.to_string().as_bytes()),
                    b64(Value::Object(claims.clone()).to_string().as_bytes())
                );
                let sig = match &a.pair {
                    Pair::Rsa(k) => {
                        let mut sig = vec![0u8; k.public_modulus_len()];
                        k.sign(
                            &signature::RSA_PKCS1_SHA256,
                            &SystemRandom::new(),
                            input.as_bytes(),
                            &mut sig,
                        )
                        .map_err(|_| SignError)?;
                        sig
                    }
                    Pair::Ec(k) => k
                        .sign(&SystemRandom::new(), input.as_bytes())
                        .map_err(|_| SignError)?
                        .as_ref()
                        .to_vec(),
                    Pair::Ed(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
                };
                Ok(format!("{input}.{}", b64(&sig)))
            }
        }
    }
}

/// An EC key of either supported curve, in SEC1 or PKCS#8 form; the JWS
/// signature format (r‖s) is the "fixed" one.
fn ec_pair(der: &[u8]) -> Option<Pair> {
    [
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
    ]
    .into_iter()
    .find_map(|alg| EcdsaKeyPair::from_private_key_der(alg, der).ok())
    .map(Pair::Ec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mint::keygen::{Kty, generate_pem};

    #[test]
    fn every_key_type_signs_verifiably_and_publishes_its_kid() {
        crate::net::tls::install_crypto_provider();
        for (kty, alg) in [
            (Kty::Rsa, Algorithm::RS256),
            (Kty::Ec, Algorithm::ES256),
            (Kty::Okp, Algorithm::EdDSA),
        ] {
            let pem = generate_pem(kty).unwrap();
            let s = Signer::from_pem(pem.as_bytes()).unwrap();
            assert_eq!(s.algorithm(), alg);
            let jwks = s.jwks().unwrap();
            assert_eq!(jwks["keys"][0]["kid"], s.kid().unwrap());
            assert!(jwks["keys"][0].get("d").is_none());
            let mut claims = Map::new();
            claims.insert("sub".into(), "alice".into());
            claims.insert("exp".into(), 9_999_999_999u64.into());
            let token = s.sign(&claims).unwrap();
            let key = s.decoding_key().unwrap().unwrap();
            let mut v = jsonwebtoken::Validation::new(alg);
            v.validate_aud = false;
            let data = jsonwebtoken::decode::<Value>(&token, &key, &v).unwrap();
            assert_eq!(data.claims["sub"], "alice");
            assert_eq!(data.header.kid.as_deref(), s.kid());
        }
    }

    #[test]
    fn garbage_is_refused_without_quoting_it() {
        let err =
            Signer::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .err()
                .unwrap();
        assert!(!err.contains("AAAA"), "{err}");
        assert!(Signer::from_pem(b"hello").is_err());
    }
}
