//! Signature checks with keys prepared once.
//!
//! jsonwebtoken parses JWKs and PEM files for us, but its `crypto::verify`
//! rebuilds the key for every call: the HMAC key schedule, the RSA modulus
//! and its Montgomery constants, the EC point. A gate verifies the same few
//! keys millions of times, so each key is prepared here once, per allowed
//! algorithm, with aws-lc-rs (the provider jsonwebtoken uses too) and then
//! only used. Measured effect: BENCHMARKS.md.

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use pkcs1::der::Encode;

enum Prepared {
    Hmac(Box<hmac::Key>),
    Public(ParsedPublicKey),
}

/// One key, ready to check signatures for each algorithm it may be used with.
pub struct VerifyKey {
    by_alg: Vec<(Algorithm, Prepared)>,
    /// SHA-256 of the key material: two keys are the same key only when
    /// these are equal (a rotation that keeps the `kid` is still a change).
    fingerprint: [u8; 32],
}

fn fingerprint(material: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, material);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algs: Vec<Algorithm> = self.by_alg.iter().map(|(a, _)| *a).collect();
        f.debug_struct("VerifyKey")
            .field("algorithms", &algs)
            .finish_non_exhaustive()
    }
}

fn hmac_algorithm(alg: Algorithm) -> Option<hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

fn public_algorithm(alg: Algorithm) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &signature::ED25519,
        _ => return None,
    })
}

impl VerifyKey {
    /// A shared secret for the HMAC algorithms among `algorithms`.
    pub(crate) fn hmac(secret: &[u8], algorithms: &[Algorithm]) -> VerifyKey {
        VerifyKey {
            by_alg: algorithms
                .iter()
                .filter_map(|a| {
                    hmac_algorithm(*a)
                        .map(|h| (*a, Prepared::Hmac(Box::new(hmac::Key::new(h, secret)))))
                })
                .collect(),
            fingerprint: fingerprint(secret),
        }
    }

    /// Is this the same key material as `other`?
    pub(crate) fn same_material(&self, other: &VerifyKey) -> bool {
        self.fingerprint == other.fingerprint
            && self
                .by_alg
                .iter()
                .map(|(a, _)| *a)
                .eq(other.by_alg.iter().map(|(a, _)| *a))
    }

    /// A public key (as jsonwebtoken parsed it from a JWK or PEM) for those
    /// of `algorithms` it fits; `None` when it fits none of them.
    pub fn public(key: &DecodingKey, algorithms: &[Algorithm]) -> Option<VerifyKey> {
        // aws-lc-rs takes RSA keys as PKCS#1 RSAPublicKey DER, EC keys as the
        // uncompressed point, Ed25519 keys as the raw 32 bytes: the forms
        // jsonwebtoken keeps, except RSA JWK components, encoded here.
        let bytes = match key.kind() {
            DecodingKeyKind::SecretOrDer(b) => b.clone(),
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                let der = pkcs1::RsaPublicKey {
                    modulus: pkcs1::UintRef::new(n).ok()?,
                    public_exponent: pkcs1::UintRef::new(e).ok()?,
                };
                // Room for an 8192-bit modulus, the largest aws-lc-rs accepts.
                let mut buf = [0u8; 1100];
                der.encode_to_slice(&mut buf).ok()?.to_vec()
            }
        };
        let by_alg: Vec<(Algorithm, Prepared)> = algorithms
            .iter()
            .filter(|a| key.family() == a.family())
            .filter_map(|a| {
                let parsed = ParsedPublicKey::new(public_algorithm(*a)?, &bytes).ok()?;
                Some((*a, Prepared::Public(parsed)))
            })
            .collect();
        (!by_alg.is_empty()).then(|| VerifyKey {
            by_alg,
            fingerprint: fingerprint(&bytes),
        })
    }

    /// Does `signature` (raw bytes) sign `message` with this key under `alg`?
    /// An algorithm the key was not prepared for never verifies.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        match self.by_alg.iter().find(|(a, _)| *a == alg) {
            Some((_, Prepared::Hmac(k))) => hmac::verify(k, message, signature).is_ok(),
            Some((_, Prepared::Public(k))) => k.verify_sig(message, signature).is_ok(),
            None => false,
        }
    }
}

/// The JOSE name of an algorithm (`Algorithm` is `#[non_exhaustive]`).
pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

/// Every asymmetric algorithm jwtgate knows (keys are prepared for those
/// that fit; the issuer's `algorithms` decide which a token may use).
pub(crate) const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn split(token: &str) -> (String, Vec<u8>) {
        use base64::Engine;
        let (msg, sig) = token.rsplit_once('.').unwrap();
        (
            msg.to_string(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(sig)
                .unwrap(),
        )
    }

    #[test]
    fn agrees_with_jsonwebtoken() {
        crate::net::tls::install_crypto_provider();
        let claims = json!({"sub": "a", "exp": 9_999_999_999u64});
        // HMAC
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &claims,
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        let (m, s) = split(&t);
        let k = VerifyKey::hmac(b"s3cret", &[Algorithm::HS256, Algorithm::HS384]);
        assert!(k.verify(Algorithm::HS384, m.as_bytes(), &s));
        assert!(!k.verify(Algorithm::HS256, m.as_bytes(), &s));
        assert!(!VerifyKey::hmac(b"other", &[Algorithm::HS384]).verify(
            Algorithm::HS384,
            m.as_bytes(),
            &s
        ));
        // Asymmetric keys as jsonwebtoken parses them from a JWK.
        use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let msg = b"header.payload";
        let ec = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let p = ec.public_key().as_ref();
        let b64 = |b: &[u8]| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
        };
        let ec_key = DecodingKey::from_ec_components(&b64(&p[1..33]), &b64(&p[33..])).unwrap();
        let ec_sig = ec.sign(&rng, msg).unwrap().as_ref().to_vec();
        let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let rsa_key = DecodingKey::from_rsa_raw_components(
            rsa.public_key().modulus().big_endian_without_leading_zero(),
            rsa.public_key()
                .exponent()
                .big_endian_without_leading_zero(),
        );
        let mut rsa_sig = vec![0; rsa.public_modulus_len()];
        rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut rsa_sig)
            .unwrap();
        let ed = Ed25519KeyPair::generate().unwrap();
        let ed_key = DecodingKey::from_ed_components(&b64(ed.public_key().as_ref())).unwrap();
        let ed_sig = ed.sign(msg).as_ref().to_vec();
        for (alg, key, sig) in [
            (Algorithm::ES256, ec_key, ec_sig),
            (Algorithm::RS256, rsa_key, rsa_sig),
            (Algorithm::EdDSA, ed_key, ed_sig),
        ] {
            let k = VerifyKey::public(&key, ASYMMETRIC).unwrap();
            assert!(k.verify(alg, msg, &sig), "{alg:?}");
            let mut bad = sig.clone();
            bad[5] ^= 1;
            assert!(!k.verify(alg, msg, &bad), "{alg:?}");
            assert!(!k.verify(Algorithm::HS256, msg, &sig));
            assert!(!k.verify(alg, b"other", &sig));
        }
    }
}
