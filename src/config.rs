//! Typed configuration, layered with figment, then validated.
//!
//! Sources, later ones win: built-in defaults < config file < seed-compatible
//! environment names (`TOKENS_SECRET`, ...) < `JWTGATE_*` variables < flags.
//! Unknown keys are an error (`deny_unknown_fields` on every table), and every
//! validation error names the key and where its value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod schema;
pub mod store;
mod suggest;
pub mod types;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml, Yaml};
use serde::{Deserialize, Serialize};

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

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: ListenAddr,
    /// "" turns the admin listener off.
    #[serde(with = "types::optional")]
    #[schemars(with = "String")]
    pub admin_listen: Option<ListenAddr>,
    /// "" (the default) turns the forward-auth listener off.
    #[serde(with = "types::optional")]
    #[schemars(with = "String")]
    pub forward_auth_listen: Option<ListenAddr>,
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "schema::duration")]
    pub drain_timeout: Duration,
    /// Threads serving requests: 0 = one per CPU; 1 = a single-threaded
    /// runtime (the lowest overhead for a sidecar given one CPU).
    pub worker_threads: usize,
    pub tls: TlsConfig,
    pub limits: LimitsConfig,
    pub upstream: UpstreamConfig,
    pub auth: AuthConfig,
    pub status: StatusConfig,
    pub routes: Vec<RouteConfig>,
    pub paths: PathsConfig,
    pub forward: ForwardConfig,
    pub issuer: IssuerConfig,
    pub admin: AdminConfig,
    pub reload: ReloadConfig,
    pub store: store::StoreConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: ListenAddr::Tcp(SocketAddr::from(([0, 0, 0, 0], 8080))),
            admin_listen: Some(ListenAddr::Tcp(SocketAddr::from(([0, 0, 0, 0], 9901)))),
            forward_auth_listen: None,
            drain_timeout: Duration::from_secs(30),
            worker_threads: 0,
            tls: TlsConfig::default(),
            limits: LimitsConfig::default(),
            upstream: UpstreamConfig::default(),
            auth: AuthConfig::default(),
            status: StatusConfig::default(),
            routes: Vec::new(),
            paths: PathsConfig::default(),
            admin: AdminConfig::default(),
            forward: ForwardConfig::default(),
            issuer: IssuerConfig::default(),
            reload: ReloadConfig::default(),
            store: store::StoreConfig::default(),
        }
    }
}

/// `[reload]`: reloading without a signal (Kubernetes cannot send SIGHUP).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// Reload, exactly as on SIGHUP, when the config file or any file it
    /// names changes (including a ConfigMap's `..data` symlink swap).
    pub watch: bool,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig { watch: true }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    #[serde(with = "types::optional_path")]
    #[schemars(with = "String")]
    pub cert_file: Option<PathBuf>,
    #[serde(with = "types::optional_path")]
    #[schemars(with = "String")]
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// The certificate and key files, when TLS is on (`validate` makes
    /// sure they are set together).
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.cert_file.as_deref()?, self.key_file.as_deref()?))
    }
}

/// Limits that protect the listener (not in SPEC's table; documented in the README).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Time a client has to send a complete request head.
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "schema::duration")]
    pub header_read_timeout: Duration,
    /// Largest request head accepted; larger ones get 431.
    pub max_header_bytes: usize,
    /// Connections served at once; further ones wait in the kernel backlog.
    pub max_connections: usize,
    /// A connection with no request in progress (an idle HTTP/1.1
    /// keep-alive, an HTTP/2 connection with no open stream) is closed
    /// after this long.
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "schema::duration")]
    pub idle_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub url: UpstreamUrl,
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "schema::duration")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "schema::duration")]
    pub response_timeout: Duration,
    #[serde(with = "types::optional_path")]
    #[schemars(with = "String")]
    pub ca_file: Option<PathBuf>,
    /// `upstream.protocol`: which HTTP version the gate speaks to the upstream.
    pub protocol: UpstreamProtocol,
    /// Requests in flight to the upstream at most (HTTP/1.1: connections;
    /// HTTP/2: streams); 0 = unlimited. Further requests wait.
    pub max_connections: usize,
    /// How long a request waits for a place under `max_connections` before
    /// it is answered 503 with `Retry-After`.
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "schema::duration")]
    pub queue_timeout: Duration,
}

/// `upstream.protocol`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 only; gRPC requests are answered UNAVAILABLE by the gate.
    Http1,
    /// Prior-knowledge cleartext HTTP/2 for every request.
    H2c,
    /// HTTP/2 over TLS (ALPN `h2`) for every request.
    H2,
    /// HTTP/1.1, except gRPC (h2c, or h2 over TLS) and, with an https
    /// upstream, HTTP/2 clients (ALPN decides). The default: an HTTP/1
    /// backend sees exactly what it saw before `protocol` existed.
    #[default]
    Auto,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            url: UpstreamUrl::Http(http::Uri::from_static("http://127.0.0.1:8000")),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            ca_file: None,
            protocol: UpstreamProtocol::Auto,
            max_connections: 0,
            queue_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "schema::duration")]
    pub leeway: Duration,
    pub username_claims: Vec<String>,
    pub allowed_users: Vec<String>,
    pub token_from: Vec<TokenSource>,
    pub forward_token: bool,
    pub allow_cors_preflight: bool,
    pub realm: String,
    pub token_cache: u64,
    pub secret: SecretConfig,
    pub issuers: Vec<IssuerTrustConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            leeway: Duration::from_secs(60),
            username_claims: vec!["sub".into(), "user".into(), "login".into()],
            allowed_users: Vec::new(),
            token_from: vec![TokenSource::Header],
            forward_token: false,
            allow_cors_preflight: false,
            realm: "jwtgate".into(),
            token_cache: 10_000,
            secret: SecretConfig::default(),
            issuers: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SecretConfig {
    pub value: Secret,
    #[serde(with = "types::optional_path")]
    #[schemars(with = "String")]
    pub file: Option<PathBuf>,
    pub jwk: Secret,
    pub algorithms: Vec<Algorithm>,
    pub issuer: String,
    pub audiences: Vec<String>,
    /// Accept a secret shorter than 32 bytes or a published placeholder
    /// (warned at every start).
    pub allow_weak: bool,
}

impl Default for SecretConfig {
    fn default() -> Self {
        SecretConfig {
            value: Secret::default(),
            file: None,
            jwk: Secret::default(),
            algorithms: vec![Algorithm(jsonwebtoken::Algorithm::HS256)],
            issuer: String::new(),
            audiences: Vec::new(),
            allow_weak: false,
        }
    }
}

impl SecretConfig {
    pub fn is_configured(&self) -> bool {
        !self.value.is_empty() || self.file.is_some() || !self.jwk.is_empty()
    }
}

/// One trusted remote (or file-based) issuer of asymmetric tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IssuerTrustConfig {
    pub issuer: String,
    pub jwks_uri: String,
    #[serde(with = "types::optional_path")]
    #[schemars(with = "String")]
    pub jwks_file: Option<PathBuf>,
    #[serde(with = "types::optional_path")]
    #[schemars(with = "String")]
    pub public_key_file: Option<PathBuf>,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "schema::duration")]
    pub cache_ttl: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "schema::duration")]
    pub refetch_interval: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "schema::duration")]
    pub max_stale: Duration,
    #[serde(with = "types::optional_path")]
    #[schemars(with = "String")]
    pub ca_file: Option<PathBuf>,
    /// Allow a plain-http discovery or JWKS URL on a host other than
    /// loopback (keys fetched over http can be replaced in transit).
    pub allow_insecure_http: bool,
    /// When set, the token's `typ` header must equal it (e.g. `at+jwt`,
    /// RFC 9068), so that ID tokens are not accepted as access tokens.
    pub require_typ: String,
}

impl Default for IssuerTrustConfig {
    fn default() -> Self {
        IssuerTrustConfig {
            issuer: String::new(),
            jwks_uri: String::new(),
            jwks_file: None,
            public_key_file: None,
            audiences: Vec::new(),
            algorithms: vec![Algorithm(jsonwebtoken::Algorithm::RS256)],
            cache_ttl: Duration::from_secs(600),
            refetch_interval: Duration::from_secs(30),
            max_stale: Duration::from_secs(24 * 3600),
            ca_file: None,
            allow_insecure_http: false,
            require_typ: String::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    pub path: String,
    pub token: Secret,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            path: "/status".into(),
            token: Secret::default(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RouteAuth {
    None,
    #[default]
    Token,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    pub prefix: String,
    pub path: String,
    pub methods: Vec<Method>,
    pub auth: RouteAuth,
    pub allowed_users: Vec<String>,
    pub require_claims: BTreeMap<String, serde_json::Value>,
    pub require_scopes: Vec<String>,
    pub allow_cors_preflight: bool,
}

/// The admin listener's own settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// A bearer token that authorises the mutating admin endpoints
    /// (`POST /keys/refresh`) from any peer; without it they are accepted
    /// from loopback peers only.
    pub token: Secret,
}

/// How request paths are read (see `uri::normalize_path_with`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    /// Keep `;` path parameters (Java servers' `;jsessionid=`): routes are
    /// then matched on the path with parameters removed, and that path is
    /// forwarded. Off: a `;` in a path is 400.
    pub allow_path_parameters: bool,
    /// Match routes ignoring ASCII case, for backends (IIS) that do.
    pub case_insensitive: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    pub user_header: HeaderName,
    pub claims_headers: BTreeMap<String, HeaderName>,
    /// The whole verified payload as JSON in this header; "" = not sent.
    #[serde(with = "types::optional")]
    #[schemars(with = "String")]
    pub payload_header: Option<HeaderName>,
    /// Keep an incoming `X-Forwarded-Proto`/`-Host` (one value each) instead
    /// of overwriting them: only behind an ingress that sets them.
    pub trust_forwarded_headers: bool,
    /// Protocols an HTTP/1.1 `GET` may upgrade to after authorisation
    /// (`Upgrade` tokens). Every other upgrade is removed from the request.
    pub upgrades: Vec<String>,
    /// Override and forwarding headers (`X-HTTP-Method-Override`,
    /// `X-Original-URL`, `Forwarded`, ...) that are removed by default and
    /// that this backend needs to receive from clients as they are.
    pub pass_headers: Vec<HeaderName>,
    /// Proxies (CIDR or single addresses) whose `X-Forwarded-For` is
    /// believed: the client is the right-most address there that is not
    /// itself a trusted proxy.
    pub trusted_proxies: Vec<ProxyNet>,
}

impl ForwardConfig {
    /// The headers that carry the verified identity upstream.
    pub fn identity_headers(&self) -> Vec<&HeaderName> {
        let mut v = vec![&self.user_header];
        v.extend(&self.payload_header);
        v.extend(self.claims_headers.values());
        v
    }
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            user_header: HeaderName::from_static("X-Auth-User"),
            claims_headers: BTreeMap::new(),
            payload_header: None,
            trust_forwarded_headers: false,
            upgrades: vec!["websocket".into()],
            pass_headers: Vec::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IssuerConfig {
    /// Serve the token endpoints (off by default).
    pub enabled: bool,
    /// htpasswd-format users (`name:hash`, argon2 or bcrypt); reloaded when it
    /// changes and on SIGHUP; a broken file keeps the last good copy.
    #[serde(with = "types::optional_path")]
    #[schemars(with = "String")]
    pub users_file: Option<PathBuf>,
    /// Lifetime of an issued token (`AMPHO_SECURITY_TOKEN_TTL`, in seconds).
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "schema::duration")]
    pub token_ttl: Duration,
    /// Longest session from the login; renewals never reach past it.
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "schema::duration")]
    pub max_session: Duration,
    /// OAuth2 password grant endpoint (RFC 6749 §4.3).
    pub token_path: String,
    /// `{rest_prefix}/login` and `{rest_prefix}/renew` (`AMPHO_SECURITY_REST_PREFIX`).
    pub rest_prefix: String,
    /// PEM private key (RSA, EC P-256/P-384, Ed25519); empty: sign with auth.secret.
    #[serde(with = "types::optional_path")]
    #[schemars(with = "String")]
    pub signing_key_file: Option<PathBuf>,
    /// The `iss` of issued tokens; the gate's public base URL makes it discoverable.
    pub issuer: String,
    /// Extra claims per user, e.g. `alice = { role = "admin" }`.
    pub claims: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// Failed logins per user name before its logins are refused with 429.
    pub max_failures: u32,
    /// Failed logins per client address (IPv6: per /64) before its logins are
    /// refused with 429; higher than `max_failures` because many people may
    /// share one address behind a NAT.
    pub max_failures_per_address: u32,
    /// Failures are forgotten after this long without a new one; a lock-out
    /// lasts this long after the last failure.
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "schema::duration")]
    pub failure_window: Duration,
    /// Largest accepted request body on the token endpoints.
    pub max_body_bytes: usize,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        IssuerConfig {
            enabled: false,
            users_file: None,
            token_ttl: Duration::from_secs(15 * 60),
            max_session: Duration::from_secs(24 * 3600),
            token_path: "/token".into(),
            rest_prefix: "/api/security".into(),
            signing_key_file: None,
            issuer: "jwtgate".into(),
            claims: BTreeMap::new(),
            max_failures: 5,
            max_failures_per_address: 20,
            failure_window: Duration::from_secs(300),
            max_body_bytes: 16 * 1024,
        }
    }
}

/// Command-line values that override every other source.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub upstream: Option<String>,
}

/// Where the configuration comes from: an optional file plus a snapshot of
/// environment variables (tests pass their own instead of the process's).
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub overrides: Overrides,
}

impl Sources {
    /// The process's real environment; the file from `--config` or `JWTGATE_CONFIG`.
    pub fn from_process(file: Option<PathBuf>, overrides: Overrides) -> Self {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let file = file.or_else(|| {
            env.iter()
                .find(|(k, v)| k == "JWTGATE_CONFIG" && !v.is_empty())
                .map(|(_, v)| PathBuf::from(v))
        });
        Sources {
            file,
            env,
            overrides,
        }
    }

    fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Human label of the file for error messages.
    pub fn file_label(&self) -> String {
        match &self.file {
            Some(p) => p.display().to_string(),
            None => "defaults and environment".into(),
        }
    }
}

/// `JWTGATE_*` names that are process settings, not configuration keys.
const MIB: u64 = 1024 * 1024;

const NON_CONFIG_ENV: &[&str] = &["JWTGATE_CONFIG", "JWTGATE_LOG_FORMAT"];

/// The settings that apply at start only: the listeners and what they
/// accept, the runtime, draining and the shared store. A reload that
/// changes them keeps the running values (and says so); everything else in
/// a `Config` is reloadable.
#[derive(Debug, PartialEq)]
pub struct StartSettings<'a> {
    pub listen: &'a ListenAddr,
    pub admin_listen: Option<&'a ListenAddr>,
    pub forward_auth_listen: Option<&'a ListenAddr>,
    pub drain_timeout: Duration,
    pub worker_threads: usize,
    pub limits: &'a LimitsConfig,
    pub tls_on: bool,
    pub store: &'a store::StoreConfig,
}

impl Config {
    /// The start-only part of this configuration.
    pub fn start_settings(&self) -> StartSettings<'_> {
        StartSettings {
            listen: &self.listen,
            admin_listen: self.admin_listen.as_ref(),
            forward_auth_listen: self.forward_auth_listen.as_ref(),
            drain_timeout: self.drain_timeout,
            worker_threads: self.worker_threads,
            limits: &self.limits,
            tls_on: self.tls.files().is_some(),
            store: &self.store,
        }
    }

    /// Builds the layered figment from all sources.
    pub fn figment(sources: &Sources) -> Result<Figment, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &sources.file {
            // figment silently ignores a missing file: check it ourselves.
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path.clone()));
            }
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            fig = match ext.to_ascii_lowercase().as_str() {
                "toml" => fig.merge(Toml::file_exact(path)),
                "yaml" | "yml" => fig.merge(Yaml::file_exact(path)),
                _ => return Err(ConfigError::UnknownFormat(path.clone())),
            };
        }
        fig = fig.merge(seed_env(sources)?);
        // Rebuild the JWTGATE_ variables from the snapshot, so tests need not
        // touch the process environment.
        let vars: Vec<(String, String)> = sources
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("JWTGATE_") && !NON_CONFIG_ENV.contains(&k.as_str()))
            .cloned()
            .collect();
        let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
        for (k, v) in vars {
            let key = k["JWTGATE_".len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            let value = typed_env_value(&defaults, &key, &v);
            fig = fig.merge(env_source(&k, &key, value));
        }
        let o = &sources.overrides;
        if let Some(v) = &o.listen {
            fig = fig.merge(Serialized::default("listen", v));
        }
        if let Some(v) = &o.admin_listen {
            fig = fig.merge(Serialized::default("admin_listen", v));
        }
        if let Some(v) = &o.upstream {
            fig = fig.merge(Serialized::default("upstream.url", v));
        }
        Ok(fig)
    }

    /// Loads and validates the configuration.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let fig = Self::figment(sources)?;
        Self::extract_validated(fig, sources)
    }

    /// Loads and validates a configuration given as text in `format`
    /// (`toml`, `yaml` or `yml`) over the defaults, without the environment.
    #[doc(hidden)]
    pub fn from_str_format(text: &str, format: &str) -> Result<Config, ConfigError> {
        let fig = Figment::from(Serialized::defaults(Config::default()));
        let fig = match format {
            "toml" => fig.merge(Toml::string(text)),
            "yaml" | "yml" => fig.merge(Yaml::string(text)),
            _ => return Err(ConfigError::UnknownFormat(PathBuf::from(format))),
        };
        Self::extract_validated(fig, &Sources::default())
    }

    fn extract_validated(fig: Figment, sources: &Sources) -> Result<Config, ConfigError> {
        // Fast path: a configuration that reads is only validated.
        let first = match fig.extract::<Config>() {
            Ok(c) => {
                c.validate(&fig, sources)?;
                return Ok(c);
            }
            Err(e) => e,
        };
        // serde stops at the first value that does not parse. To report
        // every error at once, the merged values are taken as a tree; each
        // bad value is replaced by its default (or its nearest enclosing
        // default), each unknown key removed, and the reading repeated. The
        // rules across keys are then checked on what could be read, and all
        // the errors come back together, each naming the source of the key
        // in the original layers.
        let describe = |err: &figment::Error| {
            // A list entry has no metadata of its own: its list's counts.
            let origin = (1..=err.path.len()).rev().find_map(|n| {
                fig.find_metadata(&err.path[..n].join("."))
                    .map(|m| match &m.source {
                        Some(src) => src.to_string(),
                        None => m.name.to_string(),
                    })
            });
            ConfigError::Parse(describe_figment_error(err, origin, sources))
        };
        let Ok(mut tree) = fig.extract::<serde_json::Value>() else {
            return Err(ConfigError::Parse(
                first
                    .into_iter()
                    .map(|e| describe(&e).to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        };
        let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
        let mut errors: Vec<ConfigError> = Vec::new();
        let mut next = Some(first);
        let mut config = None;
        for _ in 0..MAX_REPORTED_ERRORS {
            let Some(e) = next.take() else { break };
            let mut progressed = false;
            for err in e {
                errors.push(describe(&err));
                progressed |= match &err.kind {
                    figment::error::Kind::UnknownField(field, _) => {
                        let mut path = err.path.clone();
                        if path.last() != Some(field) {
                            path.push(field.clone());
                        }
                        remove_at(&mut tree, &path)
                    }
                    _ => patch_with_default(&mut tree, &defaults, &err.path),
                };
            }
            if !progressed {
                break;
            }
            match Figment::from(Serialized::defaults(&tree)).extract::<Config>() {
                Ok(c) => config = Some(c),
                Err(e) => next = Some(e),
            }
        }
        if let Some(c) = &config
            && let Err(e) = c.validate(&fig, sources)
        {
            match e {
                ConfigError::Many(list) => errors.extend(list),
                e => errors.push(e),
            }
        }
        match errors.len() {
            1 => Err(errors.remove(0)),
            _ => Err(ConfigError::Many(errors)),
        }
    }

    /// Checks what types alone cannot; each error names the key and its source.
    /// Every size and count with its accepted range: beyond them a value is
    /// a mistake (and some would overflow: hyper takes header sizes as u32,
    /// tokio's semaphore panics above `MAX_PERMITS`).
    fn bounded_sizes(&self) -> Vec<(String, u64, RangeInclusive<u64>)> {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        vec![
            ("worker_threads".into(), n(self.worker_threads), 0..=1024),
            (
                "limits.max_header_bytes".into(),
                n(self.limits.max_header_bytes),
                8192..=16 * MIB,
            ),
            (
                "limits.max_connections".into(),
                n(self.limits.max_connections),
                1..=1_000_000,
            ),
            (
                "upstream.max_connections".into(),
                n(self.upstream.max_connections),
                0..=1_000_000,
            ),
            (
                "auth.token_cache".into(),
                self.auth.token_cache,
                0..=100_000_000,
            ),
            (
                "issuer.max_body_bytes".into(),
                n(self.issuer.max_body_bytes),
                256..=MIB,
            ),
            (
                "issuer.max_failures".into(),
                u64::from(self.issuer.max_failures),
                1..=1_000_000,
            ),
            (
                "issuer.max_failures_per_address".into(),
                u64::from(self.issuer.max_failures_per_address),
                1..=1_000_000,
            ),
        ]
    }

    /// Every duration with its accepted range. A time out of zero would
    /// refuse everything; years where seconds are meant are typos, and some
    /// would overflow timers (moka panics above 1000 years).
    fn bounded_durations(&self) -> Vec<(String, Duration, RangeInclusive<Duration>)> {
        const MS: Duration = Duration::from_millis(1);
        const HOUR: Duration = Duration::from_secs(3600);
        const DAY: Duration = Duration::from_secs(24 * 3600);
        // humantime reads "1y" as 365.25 days: "1y" must be within "up to 1 year".
        const YEAR: Duration = Duration::from_secs(31_557_600);
        let mut v = vec![
            (
                "drain_timeout".to_owned(),
                self.drain_timeout,
                Duration::ZERO..=DAY,
            ),
            (
                "limits.header_read_timeout".into(),
                self.limits.header_read_timeout,
                MS..=HOUR,
            ),
            (
                "limits.idle_timeout".into(),
                self.limits.idle_timeout,
                MS..=DAY,
            ),
            (
                "upstream.connect_timeout".into(),
                self.upstream.connect_timeout,
                MS..=HOUR,
            ),
            (
                "upstream.response_timeout".into(),
                self.upstream.response_timeout,
                MS..=DAY,
            ),
            (
                "upstream.queue_timeout".into(),
                self.upstream.queue_timeout,
                Duration::ZERO..=HOUR,
            ),
            ("auth.leeway".into(), self.auth.leeway, Duration::ZERO..=DAY),
            (
                "issuer.token_ttl".into(),
                self.issuer.token_ttl,
                Duration::from_secs(1)..=YEAR,
            ),
            (
                "issuer.max_session".into(),
                self.issuer.max_session,
                Duration::from_secs(1)..=10 * YEAR,
            ),
            (
                "issuer.failure_window".into(),
                self.issuer.failure_window,
                Duration::from_secs(1)..=YEAR,
            ),
        ];
        for (i, iss) in self.auth.issuers.iter().enumerate() {
            let key = |k: &str| format!("auth.issuers[{i}].{k}");
            v.push((key("cache_ttl"), iss.cache_ttl, Duration::ZERO..=YEAR));
            v.push((
                key("refetch_interval"),
                iss.refetch_interval,
                Duration::ZERO..=YEAR,
            ));
            v.push((key("max_stale"), iss.max_stale, Duration::ZERO..=10 * YEAR));
        }
        v
    }

    fn validate(&self, fig: &Figment, sources: &Sources) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| {
            let origin = fig
                .find_metadata(key)
                .map(|m| match &m.source {
                    Some(src) => src.to_string(),
                    None => m.name.to_string(),
                })
                .unwrap_or_else(|| sources.file_label());
            ConfigError::Invalid {
                key: key.to_string(),
                origin,
                message,
            }
        };
        // Every error at once: an operator fixing a file should not have to
        // run the check again for each mistake.
        let mut errors = Vec::new();
        if let Err((k, m)) = store::validate(&self.store) {
            errors.push(invalid(k, m));
        }
        // A protocol the URL cannot carry is a mistake in the file, not
        // something to discover on the first request.
        let unix = matches!(self.upstream.url, UpstreamUrl::Unix(_));
        match (self.upstream.protocol, self.upstream.url.scheme()) {
            (UpstreamProtocol::H2, _) if unix => errors.push(invalid(
                "upstream.protocol",
                "\"h2\" is HTTP/2 over TLS, which a unix: upstream does not speak; use \"h2c\""
                    .into(),
            )),
            (UpstreamProtocol::H2, Some("http")) => errors.push(invalid(
                "upstream.protocol",
                "\"h2\" needs an https:// upstream.url; cleartext HTTP/2 is \"h2c\"".into(),
            )),
            (UpstreamProtocol::H2c, Some("https")) => errors.push(invalid(
                "upstream.protocol",
                "\"h2c\" is cleartext HTTP/2 and needs an http:// upstream.url; over TLS use \"h2\""
                    .into(),
            )),
            _ => {}
        }
        if self.tls.cert_file.is_none() != self.tls.key_file.is_none() {
            errors.push(invalid(
                "tls.cert_file",
                "tls.cert_file and tls.key_file must be set together".into(),
            ));
        }
        for (key, value, range) in self.bounded_sizes() {
            if !range.contains(&value) {
                errors.push(invalid(
                    &key,
                    format!(
                        "{value} is out of range: must be from {} to {}",
                        range.start(),
                        range.end()
                    ),
                ));
            }
        }
        for (key, value, range) in self.bounded_durations() {
            if !range.contains(&value) {
                errors.push(invalid(
                    &key,
                    format!(
                        "{} is out of range: must be from {} to {}",
                        humantime::format_duration(value),
                        humantime::format_duration(*range.start()),
                        humantime::format_duration(*range.end())
                    ),
                ));
            }
        }
        let s = &self.auth.secret;
        let set = [!s.value.is_empty(), s.file.is_some(), !s.jwk.is_empty()]
            .iter()
            .filter(|b| **b)
            .count();
        if set > 1 {
            errors.push(invalid(
                "auth.secret",
                "set exactly one of value, file and jwk".into(),
            ));
        }
        for (i, alg) in s.algorithms.iter().enumerate() {
            if !alg.is_hmac() {
                errors.push(invalid(
                    &format!("auth.secret.algorithms[{i}]"),
                    format!("\"{alg}\" is not one of HS256, HS384, HS512"),
                ));
            }
        }
        if s.algorithms.is_empty() {
            errors.push(invalid(
                "auth.secret.algorithms",
                "must not be empty".into(),
            ));
        }
        if self.auth.username_claims.is_empty() {
            errors.push(invalid("auth.username_claims", "must not be empty".into()));
        }
        if self.auth.token_from.is_empty() {
            errors.push(invalid("auth.token_from", "must not be empty".into()));
        }
        for (i, iss) in self.auth.issuers.iter().enumerate() {
            let key = |k: &str| format!("auth.issuers[{i}].{k}");
            if iss.issuer.is_empty() {
                errors.push(invalid(&key("issuer"), "must be set".into()));
            }
            let sources_set = [
                iss.jwks_file.is_some(),
                iss.public_key_file.is_some(),
                !iss.jwks_uri.is_empty(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if sources_set > 1 {
                errors.push(invalid(
                    &key("jwks_uri"),
                    "set at most one of jwks_uri, jwks_file and public_key_file".into(),
                ));
            }
            if iss.algorithms.is_empty() {
                errors.push(invalid(&key("algorithms"), "must not be empty".into()));
            }
            for alg in &iss.algorithms {
                if !alg.is_supported_asymmetric() {
                    errors.push(invalid(
                        &key("algorithms"),
                        format!("\"{alg}\" is not an asymmetric algorithm jwtgate supports"),
                    ));
                }
            }
            // Keys fetched over plain http can be swapped in transit: only
            // loopback (a local sidecar IdP, tests) or an explicit opt-in.
            if !iss.allow_insecure_http && iss.jwks_file.is_none() && iss.public_key_file.is_none()
            {
                let (which, url) = if iss.jwks_uri.is_empty() {
                    ("issuer", iss.issuer.as_str())
                } else {
                    ("jwks_uri", iss.jwks_uri.as_str())
                };
                if insecure_remote_http(url) {
                    errors.push(invalid(
                        &key(which),
                        format!(
                            "{url:?} is plain http on a host that is not loopback: keys fetched \
                             from it could be replaced in transit; use https, or set \
                             auth.issuers[{i}].allow_insecure_http = true"
                        ),
                    ));
                }
            }
            if self.auth.issuers[..i]
                .iter()
                .any(|other| other.issuer == iss.issuer)
            {
                errors.push(invalid(&key("issuer"), "listed twice".into()));
            }
            if !s.issuer.is_empty() && s.issuer == iss.issuer {
                errors.push(invalid(
                    &key("issuer"),
                    "equals auth.secret.issuer: an issuer is either HMAC or asymmetric".into(),
                ));
            }
        }
        if !self.status.path.starts_with('/') {
            errors.push(invalid("status.path", "must start with /".into()));
        } else if let Err(e) = crate::uri::normalize_config_path(&self.status.path) {
            errors.push(invalid(
                "status.path",
                format!("{e}: no request could ever match it"),
            ));
        }
        for (i, r) in self.routes.iter().enumerate() {
            let key = |k: &str| format!("routes[{i}].{k}");
            if r.prefix.is_empty() == r.path.is_empty() {
                errors.push(invalid(
                    &key("prefix"),
                    "set exactly one of prefix and path".into(),
                ));
                continue;
            }
            let p = if r.prefix.is_empty() {
                &r.path
            } else {
                &r.prefix
            };
            let which = if r.prefix.is_empty() {
                "path"
            } else {
                "prefix"
            };
            if !p.starts_with('/') {
                errors.push(invalid(&key(which), "must start with /".into()));
            } else if let Err(e) = crate::uri::normalize_config_path(p) {
                // Routes are compared in normalised form; one that cannot be
                // normalised (a `;`, an encoded `/`) could never match a
                // request and would silently not guard what it names.
                errors.push(invalid(
                    &key(which),
                    format!("{p:?}: {e}; write the path as requests reach the gate"),
                ));
            }
        }
        let identity = self.forward.identity_headers();
        for (i, h) in self.forward.pass_headers.iter().enumerate() {
            let canon = types::canonical_header(h.as_str());
            if identity
                .iter()
                .any(|id| types::canonical_header(id.as_str()) == canon)
            {
                errors.push(invalid(
                    &format!("forward.pass_headers[{i}]"),
                    format!(
                        "{:?} is an identity header: a client can never supply it",
                        h.as_str()
                    ),
                ));
            }
        }
        for (i, u) in self.forward.upgrades.iter().enumerate() {
            let key = format!("forward.upgrades[{i}]");
            if u.is_empty()
                || !u
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b))
            {
                errors.push(invalid(
                    &key,
                    format!("{u:?} is not an upgrade protocol token"),
                ));
            }
            // An h2c upgrade hands the rest of the connection to HTTP/2
            // streams the gate never sees: a bypass, never a setting.
            if u.eq_ignore_ascii_case("h2c") || u.to_ascii_lowercase().starts_with("h2c/") {
                errors.push(invalid(
                    &key,
                    "h2c cannot be tunnelled: streams after the upgrade would bypass the gate"
                        .into(),
                ));
            }
        }
        if self.issuer.enabled {
            if self.issuer.users_file.is_none() {
                errors.push(invalid(
                    "issuer.users_file",
                    "must be set when issuer.enabled".into(),
                ));
            }
            if !self.issuer.token_path.starts_with('/') {
                errors.push(invalid("issuer.token_path", "must start with /".into()));
            }
            if !self.issuer.rest_prefix.starts_with('/') {
                errors.push(invalid("issuer.rest_prefix", "must start with /".into()));
            }
            if self.issuer.signing_key_file.is_none() && !s.is_configured() {
                errors.push(invalid(
                    "issuer.signing_key_file",
                    "the issuer needs a signing key: set issuer.signing_key_file or auth.secret"
                        .into(),
                ));
            }
        }
        let issuer_signs = self.issuer.enabled && self.issuer.signing_key_file.is_some();
        if !s.is_configured() && self.auth.issuers.is_empty() && !issuer_signs {
            errors.push(ConfigError::Invalid {
                key: "auth".into(),
                origin: sources.file_label(),
                message: "no key source is configured: set auth.secret (or TOKENS_SECRET / \
                          AMPHO_SECURITY_KEY) or at least one [[auth.issuers]]; jwtgate never \
                          runs open"
                    .into(),
            });
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(ConfigError::Many(errors)),
        }
    }
}

/// One environment variable as a figment source, so that errors about its
/// value name the variable rather than a line of this file.
struct EnvVar {
    var: String,
    key: String,
    value: serde_json::Value,
}

impl figment::Provider for EnvVar {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(format!("environment variable {}", self.var))
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Serialized::default(&self.key, &self.value).data()
    }
}

fn env_source(var: &str, key: &str, value: serde_json::Value) -> EnvVar {
    EnvVar {
        var: var.into(),
        key: key.into(),
        value,
    }
}

/// The seed-compatible names of Brevia and Ampho deployments.
fn seed_env(sources: &Sources) -> Result<Figment, ConfigError> {
    const PLAIN: &[(&str, &str)] = &[
        ("TOKENS_SECRET", "auth.secret.value"),
        ("STATUS_TOKEN", "status.token"),
        ("AMPHO_SECURITY_KEY", "auth.secret.jwk"),
        ("AMPHO_SECURITY_REST_PREFIX", "issuer.rest_prefix"),
    ];
    let mut fig = Figment::new();
    for (var, key) in PLAIN {
        if let Some(v) = sources.env_var(var).filter(|v| !v.is_empty()) {
            fig = fig.merge(env_source(var, key, v.into()));
        }
    }
    if let Some(v) = sources.env_var("TOKENS_USERS").filter(|v| !v.is_empty()) {
        fig = fig.merge(env_source(
            "TOKENS_USERS",
            "auth.allowed_users",
            split_list(v),
        ));
    }
    if let Some(v) = sources
        .env_var("AMPHO_SECURITY_TOKEN_TTL")
        .filter(|v| !v.is_empty())
    {
        let secs: u64 = v.trim().parse().map_err(|_| ConfigError::Invalid {
            key: "issuer.token_ttl".into(),
            origin: "environment variable AMPHO_SECURITY_TOKEN_TTL".into(),
            message: format!("{v:?} is not a number of seconds"),
        })?;
        fig = fig.merge(env_source(
            "AMPHO_SECURITY_TOKEN_TTL",
            "issuer.token_ttl",
            format!("{secs}s").into(),
        ));
    }
    Ok(fig)
}

/// `a, b` or `[a, b]` (or a JSON array) as a list of strings.
fn split_list(v: &str) -> serde_json::Value {
    let t = v.trim();
    if let Ok(list @ serde_json::Value::Array(_)) = serde_json::from_str(t) {
        return list;
    }
    let inner = t
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(t);
    serde_json::Value::Array(
        inner
            .split(',')
            .map(|s| s.trim().trim_matches('"'))
            .filter(|s| !s.is_empty())
            .map(|s| serde_json::Value::String(s.into()))
            .collect(),
    )
}

/// An environment value typed after the default at the same key: lists
/// split on commas, numbers and booleans parsed, everything else (secrets,
/// durations, addresses) kept as the string it is. A value that does not
/// parse stays a string, so the error names the key.
fn typed_env_value(defaults: &serde_json::Value, key: &str, v: &str) -> serde_json::Value {
    use serde_json::Value;
    let default = key.split('.').try_fold(defaults, |cur, part| cur.get(part));
    let t = v.trim();
    match default {
        Some(Value::Array(_)) => split_list(v),
        Some(Value::Number(_)) => t
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(v.into())),
        Some(Value::Bool(_)) => match t {
            "true" | "1" | "yes" | "on" => Value::Bool(true),
            "false" | "0" | "no" | "off" => Value::Bool(false),
            _ => Value::String(v.into()),
        },
        Some(Value::Object(_)) => {
            serde_json::from_str(t).unwrap_or_else(|_| Value::String(v.into()))
        }
        _ => Value::String(v.into()),
    }
}

/// Type errors reported from one configuration before giving up.
const MAX_REPORTED_ERRORS: usize = 32;

/// Replaces the value at `path` in `tree` by the built-in default there,
/// or the nearest enclosing key's default (a bad entry of a list replaces
/// the whole list). False when there is nothing to replace.
fn patch_with_default(
    tree: &mut serde_json::Value,
    defaults: &serde_json::Value,
    path: &[String],
) -> bool {
    use serde_json::Value;
    for n in (1..=path.len()).rev() {
        let p = &path[..n];
        let default = p.iter().try_fold(defaults, |cur, part| match cur {
            Value::Object(m) => m.get(part),
            _ => None,
        });
        if let Some(d) = default
            && let Some(slot) = slot_at(tree, p)
        {
            *slot = d.clone();
            return true;
        }
    }
    false
}

/// The value at `path` (object keys and list indices) in `tree`.
fn slot_at<'a>(
    tree: &'a mut serde_json::Value,
    path: &[String],
) -> Option<&'a mut serde_json::Value> {
    path.iter().try_fold(tree, |cur, part| match cur {
        serde_json::Value::Object(m) => m.get_mut(part),
        serde_json::Value::Array(a) => a.get_mut(part.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Removes the key at `path` from `tree`; false when it is not there.
fn remove_at(tree: &mut serde_json::Value, path: &[String]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    match slot_at(tree, parent) {
        Some(serde_json::Value::Object(m)) => m.remove(last).is_some(),
        _ => false,
    }
}

/// Keys whose values are secrets: never shown in an error.
const SECRET_KEYS: &[&str] = &[
    "auth.secret.value",
    "auth.secret.jwk",
    "status.token",
    "admin.token",
];

/// `origin`: where the key's value came from, when the error itself does
/// not know (it was found in a re-read of the merged values).
fn describe_figment_error(
    err: &figment::Error,
    origin: Option<String>,
    sources: &Sources,
) -> String {
    let key = if err.path.is_empty() {
        String::new()
    } else {
        err.path.join(".")
    };
    let source = origin
        .or_else(|| {
            err.metadata.as_ref().map(|m| match &m.source {
                Some(src) => src.to_string(),
                None => m.name.to_string(),
            })
        })
        .unwrap_or_else(|| sources.file_label());
    let mut msg = err.kind.to_string();
    // A secret of the wrong type (`value = 12345`) must not be echoed by
    // serde's "found ..." message.
    if SECRET_KEYS.contains(&key.as_str()) {
        msg = "expected a string (the value is not shown: it is a secret)".into();
    }
    // Name the offending key itself for unknown fields.
    if let figment::error::Kind::UnknownField(field, expected) = &err.kind {
        // figment's path may or may not end with the unknown field already.
        let full = if key.is_empty() {
            field.clone()
        } else if err.path.last() == Some(field) {
            key.clone()
        } else {
            format!("{key}.{field}")
        };
        msg = format!("unknown key `{full}`");
        let parent = match err.path.last() {
            Some(last) if last == field => &err.path[..err.path.len() - 1],
            _ => &err.path[..],
        };
        if let Some(hint) = suggest::suggest(parent, field, expected) {
            msg.push_str(&format!(" (did you mean `{hint}`?)"));
        }
        return format!("{msg} in {source}");
    }
    if !key.is_empty() {
        msg = format!("invalid `{key}`: {msg}");
    }
    format!("{msg} (from {source})")
}

/// An `http://` URL whose host is not loopback (`localhost`, 127/8, ::1).
fn insecure_remote_http(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    if uri.scheme_str() != Some("http") {
        return false;
    }
    let host = uri
        .host()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// Reads a small file named by a config key, with an error naming the key.
pub fn read_key_file(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::Invalid {
        key: key.to_string(),
        origin: path.display().to_string(),
        message: format!("cannot read {}: {e}", path.display()),
    })
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Sources {
        Sources {
            file: None,
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            overrides: Overrides::default(),
        }
    }

    #[test]
    fn values_that_do_not_parse_are_all_reported_with_the_rules_across_keys() {
        let err = Config::from_str_format(
            "listen = \"nowhere\"\nadmin_listen = \"unix:rel.sock\"\n\
             [upstream]\nurl = \"ftp://x\"\n[status]\npath = \"status\"\n\
             [auth]\ntoken_from = [\"header\", \"body\"]\n\
             [auth.secret]\nvalue = \"0123456789abcdef0123456789abcdef\"\nalgorithms = [\"RS256\"]\n\
             [[routes]]\nprefix = \"/a\"\nmethods = [\"GET\", \"B AD\"]\n\
             [forward]\nuser_header = \"X User\"\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            "toml",
        )
        .unwrap_err();
        let ConfigError::Many(list) = &err else {
            panic!("expected every error at once: {err}");
        };
        let text = err.to_string();
        for key in [
            "`listen`",
            "`admin_listen`",
            "`upstream.url`",
            "`auth.token_from",
            "`routes",
            "`forward.user_header`",
            "`forward.trusted_proxies",
            "`status.path`",
            "`auth.secret.algorithms[0]`",
        ] {
            assert!(text.contains(key), "{key} not named: {text}");
        }
        assert_eq!(list.len(), 9, "{text}");
    }

    #[test]
    fn refuses_to_run_without_key_source() {
        let err = Config::load(&env(&[])).unwrap_err().to_string();
        assert!(err.contains("no key source"), "{err}");
    }

    #[test]
    fn seed_names_and_precedence() {
        let c = Config::load(&env(&[
            ("TOKENS_SECRET", "seed"),
            ("TOKENS_USERS", "alice, bob"),
            ("STATUS_TOKEN", "st"),
            ("JWTGATE_AUTH__LEEWAY", "5s"),
        ]))
        .unwrap();
        assert_eq!(c.auth.secret.value.expose(), "seed");
        assert_eq!(c.auth.allowed_users, vec!["alice", "bob"]);
        assert_eq!(c.status.token.expose(), "st");
        assert_eq!(c.auth.leeway, Duration::from_secs(5));

        let c = Config::load(&env(&[
            ("TOKENS_SECRET", "seed"),
            ("JWTGATE_AUTH__SECRET__VALUE", "wins"),
        ]))
        .unwrap();
        assert_eq!(c.auth.secret.value.expose(), "wins");
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "gate.toml",
                "[auth]\nsecret = { value = \"x\" }\nbogus = 1\n",
            )?;
            let s = Sources {
                file: Some("gate.toml".into()),
                ..Default::default()
            };
            let err = Config::load(&s).unwrap_err().to_string();
            assert!(err.contains("unknown key `auth.bogus`"), "{err}");
            assert!(err.contains("gate.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn yaml_and_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "gate.yaml",
                "listen: 127.0.0.1:1\nauth:\n  secret:\n    value: abc\n",
            )?;
            let mut s = Sources {
                file: Some("gate.yaml".into()),
                ..Default::default()
            };
            assert_eq!(Config::load(&s).unwrap().listen.to_string(), "127.0.0.1:1");
            s.overrides.listen = Some("127.0.0.1:2".into());
            assert_eq!(Config::load(&s).unwrap().listen.to_string(), "127.0.0.1:2");
            Ok(())
        });
    }

    #[test]
    fn secret_is_redacted_in_debug_and_serialize() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&s).unwrap().contains("hunter2"));
    }

    #[test]
    fn env_values_are_typed_after_the_defaults() {
        let c = Config::load(&env(&[
            ("JWTGATE_AUTH__SECRET__VALUE", "12345"),
            ("JWTGATE_STATUS__TOKEN", "true"),
            ("JWTGATE_AUTH__TOKEN_FROM", "header,cookie:jwt"),
            ("JWTGATE_AUTH__TOKEN_CACHE", "0"),
            ("JWTGATE_AUTH__FORWARD_TOKEN", "true"),
            ("JWTGATE_AUTH__ALLOWED_USERS", "[alice, bob]"),
        ]))
        .unwrap();
        assert_eq!(c.auth.secret.value.expose(), "12345");
        assert_eq!(c.status.token.expose(), "true");
        assert_eq!(
            c.auth.token_from,
            vec![TokenSource::Header, TokenSource::Cookie("jwt".into())]
        );
        assert_eq!(c.auth.token_cache, 0);
        assert!(c.auth.forward_token);
        assert_eq!(c.auth.allowed_users, vec!["alice", "bob"]);
        let err = Config::load(&env(&[
            ("TOKENS_SECRET", "x"),
            ("JWTGATE_AUTH__TOKEN_CACHE", "lots"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("auth.token_cache") && err.contains("JWTGATE_AUTH__TOKEN_CACHE"),
            "{err}"
        );
    }

    #[test]
    fn invalid_value_names_key() {
        let err = Config::load(&env(&[
            ("TOKENS_SECRET", "x"),
            ("JWTGATE_UPSTREAM__URL", "ftp://nope"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("upstream.url"), "{err}");
    }

    #[test]
    fn durations_and_sizes_are_bounded_by_name_and_the_top_values_load() {
        const SECRET: &str = "bounds-test-secret-0123456789abcdef0123";
        let load = |extra: &str| {
            Config::from_str_format(
                &format!("{extra}\n[auth.secret]\nvalue = \"{SECRET}\"\n"),
                "toml",
            )
        };
        // The top of each range is accepted, "1y" as humantime reads it too.
        let top = load(
            "[limits]\nmax_header_bytes = 16777216\nmax_connections = 1000000\n\
             [[auth.issuers]]\nissuer = \"https://idp.example\"\ncache_ttl = \"1y\"\n\
             refetch_interval = \"1y\"\nmax_stale = \"10y\"\n",
        );
        assert!(top.is_ok(), "{:?}", top.err());
        let err = load(
            "worker_threads = 5000\n[limits]\nmax_header_bytes = 4294967296\n\
             max_connections = 0\nheader_read_timeout = \"0s\"\n\
             [[auth.issuers]]\nissuer = \"https://idp.example\"\nrefetch_interval = \"1001y\"\n",
        )
        .unwrap_err()
        .to_string();
        for key in [
            "worker_threads",
            "limits.max_header_bytes",
            "limits.max_connections",
            "limits.header_read_timeout",
            "auth.issuers[0].refetch_interval",
        ] {
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        }
    }

    #[test]
    fn upstream_protocol_must_fit_the_url() {
        let load = |url: &str, proto: &str| {
            Config::load(&env(&[
                ("TOKENS_SECRET", "x"),
                ("JWTGATE_UPSTREAM__URL", url),
                ("JWTGATE_UPSTREAM__PROTOCOL", proto),
            ]))
        };
        assert_eq!(
            load("http://a:1", "h2c").unwrap().upstream.protocol,
            UpstreamProtocol::H2c
        );
        assert_eq!(
            load("https://a:1", "h2").unwrap().upstream.protocol,
            UpstreamProtocol::H2
        );
        for (url, proto) in [
            ("http://a:1", "h2"),
            ("https://a:1", "h2c"),
            ("unix:/tmp/x.sock", "h2"),
            ("http://a:1", "http3"),
        ] {
            let err = load(url, proto).unwrap_err().to_string();
            assert!(err.contains("upstream.protocol"), "{url} {proto}: {err}");
        }
        assert_eq!(Config::default().upstream.protocol, UpstreamProtocol::Auto);
    }
}
