//! Typed configuration, layered with figment, then validated.
//!
//! Sources, later ones win: built-in defaults < config file < seed-compatible
//! environment names (`TOKENS_SECRET`, ...) < `JWTGATE_*` variables < flags.
//! Unknown keys are an error (`deny_unknown_fields` on every table), and every
//! validation error names the key and where its value came from.
//!
//! Folder `config/`: uses only the leaves (`uri`); everything else uses it.

use std::fmt;
use std::path::{Path, PathBuf};

mod env;
mod load;
pub mod login;
pub mod schema;
mod sections;
pub mod store;
mod suggest;
pub mod types;
mod validate;

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
mod tests;

use serde::{Deserialize, Serialize};

pub use load::{Overrides, Sources};
pub use sections::{
    AdminConfig, AuthConfig, Config, ForwardConfig, IssuerConfig, IssuerTrustConfig, LimitsConfig,
    PathsConfig, ReloadConfig, RouteAuth, RouteConfig, SecretConfig, StartSettings, StatusConfig,
    TlsConfig, UpstreamConfig, UpstreamProtocol,
};
pub use types::{Algorithm, HeaderName, ListenAddr, Method, ProxyNet, TokenSource, UpstreamUrl};

/// A configuration error; the message names the key and its source.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0}: no such file")]
    MissingFile(PathBuf),
    #[error("config file {0}: unsupported extension (use .toml, .yaml or .yml)")]
    UnknownFormat(PathBuf),
    #[error("{0}")]
    Parse(String),
    #[error("invalid `{key}` (from {origin}): {message}")]
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
    /// Several of the above, all reported at once.
    #[error("{} configuration errors:\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Many(Vec<ConfigError>),
}

impl ConfigError {
    /// A value that cannot be used: the key, where it came from (a file, an
    /// environment variable, or "configuration"), and why.
    pub fn invalid(
        key: impl Into<String>,
        origin: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            origin: origin.into(),
            message: message.into(),
        }
    }
}

/// A secret string: deserialises as a plain string, but never shows in
/// `Debug` output and serialises redacted (so `check-config` can print the
/// effective configuration safely).
#[derive(Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
#[schemars(description = "A secret: never logged, redacted in check-config output.")]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"<redacted>\"")
        }
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() {
            s.serialize_str("")
        } else {
            s.serialize_str("<redacted>")
        }
    }
}

/// Reads a small file named by a config key, with an error naming the key.
pub fn read_key_file(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::Invalid {
        key: key.to_string(),
        origin: path.display().to_string(),
        message: format!("cannot read {}: {e}", path.display()),
    })
}
