//! The configuration's tables as typed values with their defaults: one
//! struct a table (`[upstream]`, `[auth]`, ...), and the start-only view.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::types::{
    self, Algorithm, HeaderName, ListenAddr, Method, ProxyNet, TokenSource, UpstreamUrl,
};
use super::{Secret, login, schema, store};

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
    /// `[login]`: browser sign-in; off when the table is absent.
    pub login: Option<login::LoginConfig>,
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
            login: None,
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
    /// What a request without a token or session gets here (`[login]`);
    /// unset: `login.on_missing`.
    pub on_missing: Option<login::OnMissing>,
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
}
