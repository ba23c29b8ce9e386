//! `jwtgate gen-key`: new keys as JWKs (or PKCS#8 PEM for signing keys).

use aws_lc_rs::encoding::{AsBigEndian, AsDer};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use pkcs1::der::Decode;
use serde_json::{Value, json};

/// Key types `gen-key` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kty {
    #[value(name = "oct")]
    Oct,
    #[value(name = "RSA")]
    Rsa,
    #[value(name = "EC")]
    Ec,
    #[value(name = "OKP")]
    Okp,
}

use crate::encoding::b64url as b64;

/// A fresh key as a JWK. Asymmetric keys are private JWKs with a `kid`
/// (the RFC 7638 thumbprint of the public part) and an `alg`.
pub(crate) fn generate(kty: Kty) -> Result<Value, String> {
    let mut jwk = match kty {
        Kty::Oct => {
            let mut k = [0u8; 32];
            crate::random::fill(&mut k).map_err(|e| e.to_string())?;
            return Ok(json!({"kty": "oct", "k": b64(&k)}));
        }
        Kty::Rsa => {
            let kp = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| "RSA key generation failed")?;
            let der = kp.as_der().map_err(|_| "RSA export failed")?;
            let info = pkcs8::PrivateKeyInfo::from_der(der.as_ref()).map_err(|e| e.to_string())?;
            let k = pkcs1::RsaPrivateKey::from_der(info.private_key).map_err(|e| e.to_string())?;
            json!({
                "kty": "RSA", "alg": "RS256", "use": "sig",
                "n": b64(k.modulus.as_bytes()), "e": b64(k.public_exponent.as_bytes()),
                "d": b64(k.private_exponent.as_bytes()),
                "p": b64(k.prime1.as_bytes()), "q": b64(k.prime2.as_bytes()),
                "dp": b64(k.exponent1.as_bytes()), "dq": b64(k.exponent2.as_bytes()),
                "qi": b64(k.coefficient.as_bytes()),
            })
        }
        Kty::Ec => {
            let kp = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| "EC key generation failed")?;
            let public = kp.public_key().as_ref();
            let (x, y) = public[1..].split_at(32);
            let d = kp
                .private_key()
                .as_be_bytes()
                .map_err(|_| "EC export failed")?;
            json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
                   "x": b64(x), "y": b64(y), "d": b64(d.as_ref())})
        }
        Kty::Okp => {
            let kp = Ed25519KeyPair::generate().map_err(|_| "Ed25519 key generation failed")?;
            let seed = kp.seed().map_err(|_| "Ed25519 export failed")?;
            let d = seed.as_be_bytes().map_err(|_| "Ed25519 export failed")?;
            json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                   "x": b64(kp.public_key().as_ref()), "d": b64(d.as_ref())})
        }
    };
    let parsed: Jwk = serde_json::from_value(jwk.clone()).map_err(|e| e.to_string())?;
    let kid = parsed
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| e.to_string())?;
    jwk["kid"] = Value::String(kid);
    Ok(jwk)
}

/// A fresh asymmetric private key as PKCS#8 PEM (for `issuer.signing_key_file`).
pub(crate) fn generate_pem(kty: Kty) -> Result<String, String> {
    let der: Vec<u8> = match kty {
        Kty::Oct => return Err("an oct key has no PEM form; use the JWK".into()),
        Kty::Rsa => RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .and_then(|k| k.as_der())
            .map_err(|_| "RSA key generation failed")?
            .as_ref()
            .to_vec(),
        Kty::Ec => EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|k| k.to_pkcs8v1())
            .map_err(|_| "EC key generation failed")?
            .as_ref()
            .to_vec(),
        Kty::Okp => Ed25519KeyPair::generate()
            .and_then(|k| k.to_pkcs8v1())
            .map_err(|_| "Ed25519 key generation failed")?
            .as_ref()
            .to_vec(),
    };
    let body = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

    #[test]
    fn asymmetric_jwks_sign_and_verify() {
        crate::net::tls::install_crypto_provider();
        for (kty, alg) in [
            (Kty::Rsa, Algorithm::RS256),
            (Kty::Ec, Algorithm::ES256),
            (Kty::Okp, Algorithm::EdDSA),
        ] {
            let jwk_json = generate(kty).unwrap();
            assert!(jwk_json["kid"].as_str().is_some_and(|k| !k.is_empty()));
            assert!(jwk_json["d"].as_str().is_some());
            let pem = generate_pem(kty).unwrap();
            let enc = match kty {
                Kty::Rsa => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
                Kty::Ec => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
                _ => EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
            };
            let token =
                jsonwebtoken::encode(&Header::new(alg), &json!({"exp": 9999999999u64}), &enc)
                    .unwrap();
            let jwk: Jwk = serde_json::from_value(jwk_json).unwrap();
            // The public part of the JWK is a usable verification key.
            assert!(DecodingKey::from_jwk(&jwk).is_ok());
            let _ = Validation::new(alg);
            assert_eq!(token.split('.').count(), 3);
        }
        let oct = generate(Kty::Oct).unwrap();
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(oct["k"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
    }
}
