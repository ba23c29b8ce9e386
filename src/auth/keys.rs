//! Parsing of configured key material: the local HMAC secret.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};

use super::signature::VerifyKey;

use crate::config::{ConfigError, SecretConfig, read_key_file};

/// The local shared secret and what it may verify.
pub struct HmacKey {
    /// Prepared once; checks every token's signature.
    pub verify: VerifyKey,
    pub encoding: EncodingKey,
    /// Allowed algorithms, in configuration order (the first one signs).
    pub algorithms: Vec<Algorithm>,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacKey")
            .field("algorithms", &self.algorithms)
            .field("issuer", &self.issuer)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(key, "configuration", message)
}

impl HmacKey {
    /// Builds the key from `auth.secret`; `None` when no secret is configured.
    pub fn from_config(cfg: &SecretConfig) -> Result<Option<HmacKey>, ConfigError> {
        let bytes: Vec<u8> = if !cfg.value.is_empty() {
            cfg.value.expose().as_bytes().to_vec()
        } else if let Some(file) = &cfg.file {
            let raw = read_key_file("auth.secret.file", file)?;
            // A trailing newline is an editor's, not part of the secret.
            let mut end = raw.len();
            while end > 0 && (raw[end - 1] == b'\n' || raw[end - 1] == b'\r') {
                end -= 1;
            }
            raw[..end].to_vec()
        } else if !cfg.jwk.is_empty() {
            oct_jwk_bytes(cfg.jwk.expose()).map_err(|m| invalid("auth.secret.jwk", m))?
        } else {
            return Ok(None);
        };
        if bytes.is_empty() {
            return Err(invalid("auth.secret", "the secret is empty"));
        }
        if let Some(why) = weakness(&bytes) {
            if !cfg.allow_weak {
                // Never the value itself, only what is wrong with it.
                return Err(invalid(
                    "auth.secret",
                    format!(
                        "{why}; use at least {MIN_SECRET_BYTES} random bytes (`jwtgate gen-key`), \
                         or set auth.secret.allow_weak = true to accept it anyway"
                    ),
                ));
            }
            tracing::warn!(
                "auth.secret is weak ({why}); accepted because auth.secret.allow_weak = true"
            );
        }
        // The HMAC family is checked when the configuration is read.
        let algorithms = crate::config::types::algorithms(&cfg.algorithms);
        Ok(Some(HmacKey {
            verify: VerifyKey::hmac(&bytes, &algorithms),
            encoding: EncodingKey::from_secret(&bytes),
            algorithms,
            issuer: Some(cfg.issuer.clone()).filter(|s| !s.is_empty()),
            audiences: cfg.audiences.clone(),
        }))
    }
}

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash (32
/// bytes); a shorter one can be brute-forced offline from any token.
const MIN_SECRET_BYTES: usize = 32;

/// Secrets that were published as placeholders (the example configuration,
/// the Kubernetes example, documentation favourites): whoever copies them
/// runs with a key the world knows.
const PLACEHOLDERS: &[&str] = &[
    "change-me-this-is-not-a-real-secret",
    "REPLACE-ME-with-a-real-secret-before-deploying",
    "your-256-bit-secret",
    "a long random secret",
    "secret",
    "changeme",
];

/// Why a secret is weak, if it is.
fn weakness(secret: &[u8]) -> Option<String> {
    let lower = String::from_utf8_lossy(secret).to_ascii_lowercase();
    if PLACEHOLDERS.iter().any(|p| lower == p.to_ascii_lowercase())
        || ["change-me", "changeme", "replace-me", "not-a-real-secret"]
            .iter()
            .any(|p| lower.contains(p))
    {
        return Some("it is a published placeholder".into());
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Some(format!(
            "it is {} bytes long, shorter than {MIN_SECRET_BYTES} (RFC 7518 section 3.2)",
            secret.len()
        ));
    }
    None
}

/// The raw bytes of an oct JWK (`{"kty":"oct","k":"..."}`), as Ampho stores
/// its `AMPHO_SECURITY_KEY`.
fn oct_jwk_bytes(json: &str) -> Result<Vec<u8>, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not a JSON object: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    match obj.get("kty").and_then(|k| k.as_str()) {
        Some("oct") => {}
        Some(other) => return Err(format!("kty is {other:?}, expected \"oct\"")),
        None => return Err("missing kty".into()),
    }
    let k = obj
        .get("k")
        .and_then(|k| k.as_str())
        .ok_or("missing k (the base64url key)")?;
    // Some tools pad base64url; accept both forms.
    URL_SAFE_NO_PAD
        .decode(k.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(k))
        .map_err(|_| "k is not base64url".to_string())
        .and_then(|b| {
            if b.is_empty() {
                Err("k is empty".to_string())
            } else {
                Ok(b)
            }
        })
}
