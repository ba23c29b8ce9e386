//! Browser sign-in: the session a browser holds in a sealed cookie, the
//! sign-in and sign-out flows that make and end it, and the return to the
//! page the browser first asked for. Uses auth, mint, store, config,
//! respond, net, observe and the leaves; the proxy asks it whether a
//! request carries a session (`Login::session`) and hands it the
//! `/.jwtgate/` endpoints (`Login::handle`).
//!
//! - `seal`: the key ring and the sealed envelope of every cookie;
//! - `jar`: reading, chunking, writing and stripping the cookies;
//! - `return_path`: the open-redirect guard for `rd`;
//! - `flow`: one sign-in (state, PKCE, nonce, the callback's checks);
//! - `provider`: the token endpoint (code redemption, refresh);
//! - `session`: what the cookie and the store keep of a session;
//! - `resolve`: the per-request check and the refresh;
//! - `endpoints`: `/.jwtgate/login`, `callback`, `logout`, `session`;
//! - `backchannel`: `/.jwtgate/backchannel-logout` (the provider ends
//!   sessions, server to server);
//! - `builtin`: the gate's own sign-in page (`provider = "builtin"`);
//! - `navigation`: which requests are a person's navigation.

pub mod active;
pub mod backchannel;
pub mod builtin;
pub mod endpoints;
pub mod flow;
pub mod jar;
pub mod navigation;
pub mod provider;
pub mod resolve;
pub mod return_path;
pub mod seal;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use crate::config::login::{LoginConfig, LoginProvider};
use crate::config::{Config, ConfigError};
use crate::observe::metrics::Metrics;
use crate::store::Store;

pub use crate::config::login::RESERVED_PREFIX;

/// Cookies opened before, kept this long (their deadlines are still
/// checked on every request).
const OPENED_TTL: Duration = Duration::from_secs(300);
const OPENED_MAX: u64 = 10_000;

/// Browser sign-in for one configuration generation.
pub struct Login {
    cfg: LoginConfig,
    keys: seal::KeyRing,
    returns: return_path::ReturnPolicy,
    /// `https://cms.example.com`: every `Location` starts with it.
    origin: String,
    redirect_uri: String,
    flow_prefix: String,
    tokens: provider::TokenClient,
    store: Option<Arc<Store>>,
    leeway: u64,
    forward_token: bool,
    metrics: Arc<Metrics>,
    /// Cookie value → the session it opened to.
    opened: moka::sync::Cache<String, Arc<session::Opened>>,
    /// Session id → the outcome of its refresh: one refresh per session at
    /// a time on this gate, and its result shared by every request that
    /// waited for it.
    refreshes: moka::future::Cache<String, Arc<resolve::Refreshed>>,
    /// Session id → its access token, for `auth.forward_token`: filled at
    /// sign-in and refresh, read from the store once per replica otherwise.
    access_tokens: moka::sync::Cache<String, http::HeaderValue>,
    /// The sessions seen alive lately (`jwtgate_sessions_active`); kept
    /// across reloads.
    active: Arc<active::ActiveSessions>,
    /// `provider = "builtin"`: the gate's own sign-in page (None for the
    /// command line, which only opens cookies).
    builtin: Option<builtin::Page>,
    /// The `iss` of the sessions' identity: `login.issuer`, or
    /// `issuer.issuer` for the built-in page.
    session_issuer: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("issuer", &self.cfg.issuer)
            .field("origin", &self.origin)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Login {
    /// Builds `[login]` from `config` (None when the table is absent).
    /// `runtime` (the users file and failure counters of `mint`) serves the
    /// built-in page; without it (the command line) the page is not built.
    pub fn from_config(
        config: &Config,
        store: Option<Arc<Store>>,
        metrics: Arc<Metrics>,
        runtime: Option<Arc<crate::mint::Runtime>>,
    ) -> Result<Option<Login>, ConfigError> {
        let Some(cfg) = &config.login else {
            return Ok(None);
        };
        let bad = |key: &str, m: String| ConfigError::invalid(key, "configuration", m);
        let keys_file = cfg.session_keys_file.as_deref().ok_or_else(|| {
            bad(
                "login.session_keys_file",
                "must name a file of session keys".into(),
            )
        })?;
        let text = crate::config::read_key_file("login.session_keys_file", keys_file)?;
        let text = String::from_utf8(text).map_err(|_| {
            ConfigError::invalid(
                "login.session_keys_file",
                keys_file.display().to_string(),
                "is not text: one base64 key per line",
            )
        })?;
        let keys = seal::KeyRing::parse(&text).map_err(|e| {
            ConfigError::invalid(
                "login.session_keys_file",
                keys_file.display().to_string(),
                e.to_string(),
            )
        })?;
        let returns = return_path::ReturnPolicy::new(&cfg.external_url, &cfg.redirect_hosts)
            .map_err(|m| bad("login.external_url", m))?;
        let origin = returns.origin();
        let secret = match &cfg.client_secret_file {
            Some(p) => {
                let raw = crate::config::read_key_file("login.client_secret_file", p)?;
                Some(
                    String::from_utf8(raw)
                        .map_err(|_| bad("login.client_secret_file", "is not text".into()))?
                        .trim()
                        .to_owned(),
                )
            }
            None => Some(cfg.client_secret.expose().to_owned()).filter(|s| !s.is_empty()),
        };
        let ca_file = config
            .auth
            .issuers
            .iter()
            .find(|i| i.issuer == cfg.issuer)
            .and_then(|i| i.ca_file.as_deref());
        let tokens = provider::TokenClient::new(&cfg.client_id, secret.as_deref(), ca_file)?;
        let builtin = match (cfg.provider, runtime) {
            (LoginProvider::Builtin, Some(rt)) => {
                Some(builtin::Page::from_config(config, cfg, rt)?)
            }
            _ => None,
        };
        let session_issuer = match cfg.provider {
            LoginProvider::Builtin => config.issuer.issuer.clone(),
            LoginProvider::Oidc => cfg.issuer.clone(),
        };
        Ok(Some(Login {
            builtin,
            session_issuer,
            redirect_uri: format!("{origin}/.jwtgate/callback"),
            flow_prefix: flow::cookie_prefix(&cfg.cookie_name),
            origin,
            keys,
            returns,
            tokens,
            store,
            leeway: config.auth.leeway.as_secs(),
            forward_token: config.auth.forward_token,
            metrics,
            opened: moka::sync::Cache::builder()
                .max_capacity(OPENED_MAX)
                .time_to_live(OPENED_TTL)
                .build(),
            refreshes: moka::future::Cache::builder()
                .max_capacity(OPENED_MAX)
                .time_to_live(Duration::from_secs(30))
                .build(),
            access_tokens: moka::sync::Cache::builder()
                .max_capacity(OPENED_MAX)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            active: Arc::new(active::ActiveSessions::new(cfg.idle_timeout)),
            cfg: cfg.clone(),
        }))
    }

    /// This generation after a reload: the count of active sessions goes
    /// on from the previous one (unless `idle_timeout` changed, which
    /// changes what it counts).
    pub fn keeping(mut self, previous: Option<&Login>) -> Login {
        if let Some(p) = previous
            && p.active.idle() == self.active.idle()
        {
            self.active = p.active.clone();
        }
        self
    }

    /// `jwtgate_sessions_active` (see `active`).
    pub fn active_sessions(&self) -> u64 {
        self.active.count()
    }

    /// The sessions this gate has seen alive within `idle_timeout` (the
    /// admin `GET /sessions`).
    pub fn list_active(
        &self,
        user: Option<&str>,
        max: usize,
    ) -> (Vec<(String, active::Seen)>, bool) {
        self.active.list(user, max)
    }

    /// Default lifetime of a session's revocation: no session outlives
    /// `max_lifetime` from now.
    pub fn max_lifetime(&self) -> Duration {
        self.cfg.max_lifetime
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.cfg.cookie_name
    }

    /// The names `jar::strip` takes to keep every cookie of the gate's
    /// (the session, its chunks, the flows) from the upstream.
    pub fn cookie_patterns(&self) -> [String; 2] {
        [
            self.cfg.cookie_name.clone(),
            format!("{}*", self.flow_prefix),
        ]
    }

    /// `login.on_missing`, unless the route says otherwise.
    pub fn on_missing(&self) -> crate::config::login::OnMissing {
        self.cfg.on_missing
    }

    /// Where a navigation without credentials is sent: the sign-in, with
    /// the page it asked for (path and query) as the return path.
    pub fn sign_in_location(&self, path: &str, query: Option<&str>) -> String {
        let rd = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        let rd: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        self.location(&format!("/.jwtgate/login?rd={rd}"))
    }

    /// The sign-in location for a navigation the forward-auth listener was
    /// asked about: the ingress serves the site, so the page to return to
    /// is rebuilt from what the ingress says (`X-Forwarded-Proto`/`-Host`,
    /// and the described path and query), and checked like any `rd`: the
    /// gate's own origin gives a path; another host must be in
    /// `redirect_hosts`, else the return is `/`. Without a host the path
    /// is taken as one of this origin.
    pub fn sign_in_location_for(
        &self,
        proto: Option<&str>,
        host: Option<&str>,
        path_and_query: &str,
    ) -> String {
        let rd = match host.map(str::trim).filter(|h| !h.is_empty()) {
            Some(host) => {
                let scheme = match proto.map(str::trim) {
                    Some(p) if p.eq_ignore_ascii_case("http") => "http",
                    Some(p) if p.eq_ignore_ascii_case("https") => "https",
                    // No (or an odd) scheme: the gate's own.
                    _ => self.origin.split_once("://").map_or("https", |(s, _)| s),
                };
                let url = format!("{scheme}://{}{path_and_query}", host.to_ascii_lowercase());
                match url.strip_prefix(self.origin.as_str()) {
                    Some(rest) if rest.starts_with('/') => self.returns.check(rest),
                    _ => self.returns.check(&url),
                }
            }
            None => self.returns.check(path_and_query),
        };
        let rd = rd.unwrap_or_else(|| "/".to_owned());
        let rd: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        self.location(&format!("/.jwtgate/login?rd={rd}"))
    }

    /// `verify-token --session`: does this cookie value open, whose is it,
    /// and when does it end (deadlines only: revocations live in the
    /// running gates' store).
    pub fn inspect_cookie(&self, value: &str) -> Result<String, String> {
        let opened = self.open(value).ok_or_else(|| {
            "does not open with login.session_keys_file (tampered, truncated, or sealed with a key that is not in the file)".to_string()
        })?;
        let s = &opened.session;
        let now = crate::auth::claims::now();
        session::check_deadlines(
            s,
            now,
            self.cfg.idle_timeout.as_secs(),
            self.cfg.max_lifetime.as_secs(),
        )
        .map_err(|why| format!("the session of {:?} is over ({why:?})", s.user))?;
        let ends = session::ends_at(
            s,
            self.cfg.idle_timeout.as_secs(),
            self.cfg.max_lifetime.as_secs(),
        );
        Ok(format!(
            "valid session: user {:?}, signed in {} ago, ends in {} at the latest{}; session id {} \
             (jwtgate revoke --session {} ends it)",
            s.user,
            humantime::format_duration(Duration::from_secs(now.saturating_sub(s.signed_in))),
            humantime::format_duration(Duration::from_secs(ends.saturating_sub(now))),
            if s.refreshable { " (refreshable)" } else { "" },
            s.sid,
            s.sid,
        ))
    }

    /// `create-token --session`: a session cookie (`NAME=VALUE`) for
    /// `user`, sealed with the configured keys, holding for `lifetime`,
    /// without a refresh token or tokens server side.
    pub fn mint_cookie(
        &self,
        user: &str,
        mut claims: serde_json::Map<String, serde_json::Value>,
        lifetime: Duration,
    ) -> Result<String, String> {
        let now = crate::auth::claims::now();
        claims.entry("sub").or_insert_with(|| user.into());
        claims
            .entry("iss")
            .or_insert_with(|| self.session_issuer.clone().into());
        claims.entry("iat").or_insert_with(|| now.into());
        let sid = crate::random::token(16).map_err(|e| e.to_string())?;
        let s = session::Session {
            sid,
            user: user.to_owned(),
            claims,
            signed_in: now,
            sealed_at: now,
            access_exp: now + lifetime.as_secs(),
            obtained: now,
            refreshable: false,
            generation: 0,
        };
        let plain = serde_json::to_vec(&s).map_err(|e| e.to_string())?;
        let value = self
            .keys
            .seal(self.cfg.cookie_name.as_bytes(), &plain)
            .map_err(|e| e.to_string())?;
        if value.len() > jar::CHUNK_LEN {
            return Err("the session is larger than one cookie: fewer claims".into());
        }
        Ok(format!("{}={value}", self.cfg.cookie_name))
    }

    /// Does the gate sign people in itself (`provider = "builtin"`)?
    fn is_builtin(&self) -> bool {
        self.cfg.provider == LoginProvider::Builtin
    }

    /// `Location` for a path of this gate.
    fn location(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.origin)
    }

    fn count_login(&self, result: &'static str) {
        self.metrics
            .login
            .get_or_create(&crate::observe::metrics::ResultLabel { result })
            .inc();
    }
}
