//! The gate's token mint: token endpoints for backends without an identity
//! provider (configured in `[issuer]`; inside the crate "issuer" means only
//! a trusted issuer of tokens, `auth.issuers` and `iss`):
//! an OAuth2 password grant, Ampho-style login/renew, and the discovery
//! documents that let another gate trust this one.
//!
//! The pieces: `users` (the htpasswd file and its last good copy),
//! `limiter` (failure counters), `passwords` (the one credential check
//! under those limits, also used by the gate's own sign-in page),
//! `signer` (the key), `endpoints` (HTTP),
//! `discovery` (JWKS and openid-configuration).
//!
//! Folder `mint/`: uses `store`, `respond`, `auth`, `net`, `config`,
//! `observe` and the leaves.

mod discovery;
mod endpoints;
pub(crate) mod keygen;
pub mod limiter;
pub mod passwords;
pub(crate) mod shared_limits;
pub mod signer;
pub mod users;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::auth::claims::now;
use crate::config::{Config, ConfigError};
use crate::uri::normalize_path;

use limiter::Limiter;
use passwords::Passwords;
use signer::Signer;
use users::UserStore;

pub use signer::SignError;

#[doc(hidden)]
pub use endpoints::parse_form;
pub(crate) use endpoints::read_form;

/// The claim that carries the time of the original login: renewals keep it,
/// and no renewal reaches past `auth_time + issuer.max_session`. The name is
/// OpenID Connect's, for the same meaning.
pub const SESSION_CLAIM: &str = "auth_time";

/// RFC 7009 token revocation endpoint of the built-in issuer.
pub const REVOKE_PATH: &str = "/revoke";

/// Claims the issuer sets itself; `[issuer.claims]` may not override them.
pub const RESERVED_CLAIMS: &[&str] = &[
    "sub",
    "user",
    "login",
    "iat",
    "nbf",
    "exp",
    "jti",
    "iss",
    "aud",
    SESSION_CLAIM,
];

/// Process-wide issuer state that survives configuration reloads
/// (failure counters of the rate limiter, the users file's last good copy).
pub struct Runtime {
    users: UserStore,
    limiter: Limiter,
    /// Password hashes computed at once. Each argon2 verification takes
    /// ~19 MiB and a core for tens of milliseconds: without a bound, a burst
    /// of logins would exhaust memory and starve the proxy.
    hashing: tokio::sync::Semaphore,
    /// The shared store (revocations, shared login counters); set once at start.
    store: std::sync::OnceLock<Arc<crate::store::Store>>,
}

impl Runtime {
    pub fn set_store(&self, store: Arc<crate::store::Store>) {
        let _ = self.store.set(store);
    }

    pub fn store(&self) -> Option<&Arc<crate::store::Store>> {
        self.store.get()
    }
}

impl Default for Runtime {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Runtime {
            users: UserStore::default(),
            limiter: Limiter::default(),
            hashing: tokio::sync::Semaphore::new(cores.max(2)),
            store: std::sync::OnceLock::new(),
        }
    }
}

/// The public key of the gate's own signing key, for the verifier to trust
/// as a static issuer ("the gate always accepts the tokens it issued").
pub struct SelfTrust {
    pub issuer: String,
    pub algorithm: jsonwebtoken::Algorithm,
    pub kid: String,
    pub key: jsonwebtoken::DecodingKey,
}

impl std::fmt::Debug for SelfTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfTrust")
            .field("issuer", &self.issuer)
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// With `issuer.enabled` and `issuer.signing_key_file`: the verification key
/// of the issued tokens (`kid` = RFC 7638 thumbprint, as in the JWKS).
pub fn self_trust(config: &Config) -> Result<Option<SelfTrust>, ConfigError> {
    let Some(key_file) = config
        .issuer
        .signing_key_file
        .as_ref()
        .filter(|_| config.issuer.enabled)
    else {
        return Ok(None);
    };
    let Some(signer) = Signer::from_config(config)? else {
        return Ok(None);
    };
    let (Some(kid), Some(key)) = (signer.kid(), signer.decoding_key()) else {
        return Ok(None);
    };
    let key = key.map_err(|m| ConfigError::Invalid {
        key: "issuer.signing_key_file".into(),
        origin: key_file.display().to_string(),
        message: m,
    })?;
    Ok(Some(SelfTrust {
        issuer: config.issuer.issuer.clone(),
        algorithm: signer.algorithm(),
        kid: kid.to_owned(),
        key,
    }))
}

/// Why `create-token` could not make a token.
#[derive(Debug, thiserror::Error)]
pub enum CreateTokenError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "no signing key: set auth.secret (or TOKENS_SECRET / AMPHO_SECURITY_KEY), \
         or issuer.signing_key_file with issuer.enabled"
    )]
    NoKey,
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// Signs a token for `user` with the issuer's signer, as `create-token`
/// does: `sub`/`user`/`login`, `iat`, `nbf`, `exp`, `jti`, `iss` (the
/// issuer's, or `auth.secret.issuer` when the issuer is off), the user's
/// `[issuer.claims]`, then `extra`. It carries no `auth_time`, so it is not
/// a login session and cannot be renewed.
pub fn create_token(
    config: &Config,
    user: &str,
    lifetime: Duration,
    extra: &Map<String, Value>,
) -> Result<String, CreateTokenError> {
    if config.issuer.enabled {
        validate(config)?;
    }
    let signer = Signer::from_config(config)?.ok_or(CreateTokenError::NoKey)?;
    let iss = if config.issuer.enabled {
        Some(config.issuer.issuer.as_str())
    } else {
        Some(config.auth.secret.issuer.as_str()).filter(|s| !s.is_empty())
    };
    let now = now();
    let mut claims = base_claims(
        user,
        iss,
        now,
        now.saturating_add(lifetime.as_secs()),
        signer.audience(),
    )?;
    if config.issuer.enabled
        && let Some(more) = config.issuer.claims.get(user)
    {
        for (k, v) in more {
            claims.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    for (k, v) in extra {
        claims.insert(k.clone(), v.clone());
    }
    Ok(signer.sign(&claims)?)
}

/// The standard claims of an issued token.
fn base_claims(
    user: &str,
    iss: Option<&str>,
    now: u64,
    exp: u64,
    aud: Option<&str>,
) -> Result<Map<String, Value>, SignError> {
    let mut c = Map::new();
    for name in ["sub", "user", "login"] {
        c.insert(name.into(), Value::String(user.into()));
    }
    c.insert("iat".into(), now.into());
    c.insert("nbf".into(), now.into());
    c.insert("exp".into(), exp.into());
    c.insert("jti".into(), Value::String(crate::random::token(16)?));
    if let Some(iss) = iss {
        c.insert("iss".into(), Value::String(iss.into()));
    }
    if let Some(aud) = aud {
        c.insert("aud".into(), Value::String(aud.into()));
    }
    Ok(c)
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(key, "configuration", message)
}

/// Checks the `[issuer]` keys that types alone cannot (with
/// `issuer.enabled`); each error names the key.
///
/// Signing with the shared secret, issued tokens are verified by the local
/// secret path, which requires `iss == auth.secret.issuer` when that is set:
/// so `issuer.issuer` must then equal it. `issuer.issuer` may never name an
/// `[[auth.issuers]]` entry: an HS token claiming such an issuer is refused,
/// and an asymmetric one would be checked with someone else's keys.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    let i = &config.issuer;
    if i.issuer.is_empty() {
        return Err(invalid("issuer.issuer", "must not be empty"));
    }
    if i.token_ttl.as_secs() == 0 {
        return Err(invalid("issuer.token_ttl", "must be at least 1s"));
    }
    if i.max_session.as_secs() == 0 {
        return Err(invalid("issuer.max_session", "must be at least 1s"));
    }
    if i.max_failures == 0 {
        return Err(invalid("issuer.max_failures", "must be at least 1"));
    }
    if i.max_failures_per_address == 0 {
        return Err(invalid(
            "issuer.max_failures_per_address",
            "must be at least 1",
        ));
    }
    if i.failure_window.as_secs() == 0 {
        return Err(invalid("issuer.failure_window", "must be at least 1s"));
    }
    if i.max_body_bytes < 256 {
        return Err(invalid("issuer.max_body_bytes", "must be at least 256"));
    }
    for (key, p) in [
        ("issuer.token_path", &i.token_path),
        ("issuer.rest_prefix", &i.rest_prefix),
    ] {
        if !p.starts_with('/') {
            return Err(invalid(key, "must start with /"));
        }
        normalize_path(p).map_err(|e| invalid(key, e.to_string()))?;
    }
    let secret_iss = &config.auth.secret.issuer;
    if i.signing_key_file.is_none() {
        if !secret_iss.is_empty() && secret_iss != &i.issuer {
            return Err(invalid(
                "issuer.issuer",
                format!(
                    "must equal auth.secret.issuer ({secret_iss:?}) when the issuer signs with \
                     auth.secret, or the gate would refuse its own tokens"
                ),
            ));
        }
    } else if secret_iss == &i.issuer {
        return Err(invalid(
            "issuer.issuer",
            "equals auth.secret.issuer: tokens signed with issuer.signing_key_file need an \
             issuer of their own",
        ));
    }
    if config.auth.issuers.iter().any(|t| t.issuer == i.issuer) {
        return Err(invalid(
            "issuer.issuer",
            "names an [[auth.issuers]] entry; the gate's own tokens need an issuer of their own",
        ));
    }
    for (user, claims) in &i.claims {
        if let Some(bad) = claims
            .keys()
            .find(|k| RESERVED_CLAIMS.contains(&k.as_str()))
        {
            return Err(invalid(
                &format!("issuer.claims.{user}.{bad}"),
                format!("{bad} is set by the issuer and cannot be overridden"),
            ));
        }
    }
    Ok(())
}

/// The token endpoints of one configuration generation.
pub struct Endpoints {
    runtime: Arc<Runtime>,
    passwords: Passwords,
    signer: Signer,
    issuer: String,
    token_path: String,
    login_path: String,
    renew_path: String,
    /// `{rest_prefix}/logout` and RFC 7009's revocation endpoint (issue 14).
    logout_path: String,
    revoke_path: String,
    jwks_paths: Vec<String>,
    discovery_paths: Vec<String>,
    token_ttl: u64,
    max_session: u64,
    leeway: u64,
    claims: BTreeMap<String, Map<String, Value>>,
    max_body: usize,
}

impl Endpoints {
    /// `None` unless `issuer.enabled`.
    pub fn from_config(
        config: &Config,
        runtime: Arc<Runtime>,
    ) -> Result<Option<Endpoints>, ConfigError> {
        if !config.issuer.enabled {
            return Ok(None);
        }
        validate(config)?;
        let i = &config.issuer;
        let signer = Signer::from_config(config)?.ok_or_else(|| {
            invalid(
                "issuer.signing_key_file",
                "the issuer needs a signing key: set issuer.signing_key_file or auth.secret",
            )
        })?;
        if i.users_file.is_none() {
            return Err(invalid(
                "issuer.users_file",
                "must be set when issuer.enabled",
            ));
        }
        let passwords = Passwords::from_config(config, runtime.clone())?;
        let norm = |key: &str, p: &str| {
            normalize_path(p)
                .map(|p| p.into_owned())
                .map_err(|e| invalid(key, e.to_string()))
        };
        let token_path = norm("issuer.token_path", &i.token_path)?;
        let prefix = norm("issuer.rest_prefix", &i.rest_prefix)?;
        let prefix = prefix.trim_end_matches('/');
        let login_path = format!("{prefix}/login");
        let renew_path = format!("{prefix}/renew");
        let logout_path = format!("{prefix}/logout");
        // Discovery lives under the issuer: at the root, and also under the
        // issuer URL's path when the gate is reached without it stripped.
        let mut bases = vec![String::new()];
        if let Some(p) = discovery::issuer_path(&i.issuer) {
            bases.push(p);
        }
        let jwks_paths = bases
            .iter()
            .map(|b| format!("{b}{}", discovery::JWKS_PATH))
            .collect();
        let discovery_paths = bases
            .iter()
            .map(|b| format!("{b}{}", discovery::DISCOVERY_PATH))
            .collect();
        Ok(Some(Endpoints {
            runtime,
            passwords,
            signer,
            issuer: i.issuer.clone(),
            token_path,
            login_path,
            renew_path,
            logout_path,
            revoke_path: REVOKE_PATH.into(),
            jwks_paths,
            discovery_paths,
            token_ttl: i.token_ttl.as_secs(),
            max_session: i.max_session.as_secs(),
            leeway: config.auth.leeway.as_secs(),
            claims: i.claims.clone(),
            max_body: i.max_body_bytes,
        }))
    }

    /// Is `path` (normalised) one of the issuer's endpoints?
    /// The endpoint `path` names, as a metrics label.
    pub fn endpoint_name(&self, path: &str) -> &'static str {
        if path == self.token_path {
            "token"
        } else if path == self.login_path {
            "login"
        } else if path == self.renew_path {
            "renew"
        } else if path == self.logout_path {
            "logout"
        } else if path == self.revoke_path {
            "revoke"
        } else if self.jwks_paths.iter().any(|p| p == path) {
            "jwks"
        } else {
            "openid_configuration"
        }
    }

    pub fn handles(&self, path: &str) -> bool {
        path == self.token_path
            || path == self.login_path
            || path == self.renew_path
            || path == self.logout_path
            || path == self.revoke_path
            || self.jwks_paths.iter().any(|p| p == path)
            || self.discovery_paths.iter().any(|p| p == path)
    }

    /// A fresh token for `user`; the session started at `auth_time` and the
    /// token never outlives `auth_time + max_session`.
    fn mint(&self, user: &str, auth_time: u64) -> Result<Issued, SignError> {
        let now = now();
        let exp = now
            .saturating_add(self.token_ttl)
            .min(auth_time.saturating_add(self.max_session));
        let mut claims = base_claims(user, Some(&self.issuer), now, exp, self.signer.audience())?;
        claims.insert(SESSION_CLAIM.into(), auth_time.into());
        if let Some(more) = self.claims.get(user) {
            for (k, v) in more {
                claims.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        Ok(Issued {
            token: self.signer.sign(&claims)?,
            iat: now,
            exp,
        })
    }
}

/// A signed token and its times.
struct Issued {
    token: String,
    iat: u64,
    exp: u64,
}

// Tokens never show in Debug output.
impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("iat", &self.iat)
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}
