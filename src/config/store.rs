//! `[store]`: where the gates keep what they share (revocations, login
//! counters). Only the settings live here; the store module runs them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A Redis URL: may carry a password, so it never shows in Debug output
/// and serialises with its user-info redacted (for `check-config`).
#[derive(Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct StoreUrl(String);

impl StoreUrl {
    pub fn new(url: impl Into<String>) -> Self {
        StoreUrl(url.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl Serialize for StoreUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact_url(&self.0))
    }
}

/// `[store]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `redis://` or `rediss://` (TLS): shared by every gate naming it.
    /// Empty: the embedded store.
    pub url: StoreUrl,
    /// Embedded store only: the file that keeps revocations across restarts.
    #[serde(with = "super::types::optional_path")]
    #[schemars(with = "String")]
    pub path: Option<std::path::PathBuf>,
    /// Answer 503 once the mirror has not been known in sync for this long
    /// ("0s": never; keep serving with the last known set).
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "super::schema::duration")]
    pub max_stale: Duration,
    /// How often the whole set is reloaded from Redis (heals missed messages).
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "super::schema::duration")]
    pub resync_interval: Duration,
    /// How long a revocation is kept when the lifetime of the tokens it
    /// affects is not known (revoking by jti or user without `expires`).
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "super::schema::duration")]
    pub max_token_lifetime: Duration,
    /// Prefix (and cluster hash tag) of every Redis key: gates that must
    /// share state use the same one.
    pub prefix: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: StoreUrl::default(),
            path: None,
            max_stale: Duration::ZERO,
            resync_interval: Duration::from_secs(30),
            max_token_lifetime: Duration::from_secs(24 * 3600),
            prefix: "jwtgate".into(),
        }
    }
}

/// Checks `[store]`; the error names the key (the caller adds the file).
pub fn validate(c: &StoreConfig) -> Result<(), (&'static str, String)> {
    let url = c.url.expose();
    if !url.is_empty() {
        let scheme = url.split_once("://").map(|(s, _)| s);
        match scheme {
            Some("redis" | "rediss" | "valkey" | "valkeys") => {}
            _ => {
                return Err((
                    "store.url",
                    format!(
                        "{} must start with redis:// or rediss:// (Sentinel and Cluster URLs are \
                         not supported yet)",
                        redact_url(url)
                    ),
                ));
            }
        }
        if let Err(e) = redis::Client::open(url) {
            return Err((
                "store.url",
                format!(
                    "{} is not a usable Redis URL ({:?})",
                    redact_url(url),
                    e.kind()
                ),
            ));
        }
        if c.path.is_some() {
            return Err((
                "store.path",
                "is for the embedded store only; with store.url the state lives in Redis".into(),
            ));
        }
    }
    if c.resync_interval < Duration::from_millis(100) {
        return Err(("store.resync_interval", "must be at least 100ms".into()));
    }
    if c.max_token_lifetime.as_secs() == 0 {
        return Err(("store.max_token_lifetime", "must be at least 1s".into()));
    }
    if c.prefix.is_empty() || c.prefix.contains(['{', '}']) || c.prefix.len() > 64 {
        return Err((
            "store.prefix",
            "must be 1 to 64 characters without { or }".into(),
        ));
    }
    Ok(())
}

/// A Redis URL with the password (and user name) replaced, for logs,
/// errors and Debug output.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://<redacted>@{host}{tail}"),
        None => url.to_owned(),
    }
}
