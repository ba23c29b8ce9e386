//! `[login]`: browser sign-in (off when the table is absent). Only the
//! settings live here; `login/` runs them.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Secret;

/// Where browsers sign in.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LoginProvider {
    /// An OpenID provider (authorization code flow with PKCE).
    #[default]
    Oidc,
    /// The gate's own sign-in page, users from `issuer.users_file`.
    Builtin,
}

/// What a request without a token or session gets on a route that needs
/// one: `auto` redirects navigations to sign in and answers 401 to the
/// rest; `redirect` redirects navigations too (an explicit choice);
/// `401` never redirects.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum OnMissing {
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "redirect")]
    Redirect,
    #[serde(rename = "401")]
    Unauthorized,
}

/// `[login]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LoginConfig {
    pub provider: LoginProvider,
    /// Equals the `issuer` of one `[[auth.issuers]]` entry that uses
    /// discovery: its keys verify the ID token, its discovery document
    /// names the endpoints.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    #[serde(with = "super::types::optional_path")]
    #[schemars(with = "String")]
    pub client_secret_file: Option<PathBuf>,
    pub scopes: Vec<String>,
    /// How browsers reach the gate (`https://cms.example.com`): the
    /// redirect URI and every `Location` are built from it, never from
    /// `Host` or `X-Forwarded-*`.
    pub external_url: String,
    /// One base64 32-byte key per line: the first seals, all open.
    #[serde(with = "super::types::optional_path")]
    #[schemars(with = "String")]
    pub session_keys_file: Option<PathBuf>,
    pub cookie_name: String,
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "super::schema::duration")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "super::schema::duration")]
    pub max_lifetime: Duration,
    /// Hosts that absolute return URLs may name; `.example.com` matches
    /// that domain's subdomains.
    pub redirect_hosts: Vec<String>,
    pub post_logout_redirect: String,
    pub on_missing: OnMissing,
    /// `builtin`: the sign-in page's title (default "Sign in").
    pub page_title: Option<String>,
    /// `builtin`: a CSS file inlined into the sign-in page (read at load
    /// and reload).
    #[serde(with = "super::types::optional_path")]
    #[schemars(with = "String")]
    pub stylesheet_file: Option<PathBuf>,
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig {
            provider: LoginProvider::Oidc,
            issuer: String::new(),
            client_id: String::new(),
            client_secret: Secret::default(),
            client_secret_file: None,
            scopes: ["openid", "profile", "email"].map(String::from).to_vec(),
            external_url: String::new(),
            session_keys_file: None,
            cookie_name: "__Host-jwtgate".into(),
            idle_timeout: Duration::from_secs(30 * 60),
            max_lifetime: Duration::from_secs(12 * 3600),
            redirect_hosts: Vec::new(),
            post_logout_redirect: "/".into(),
            on_missing: OnMissing::Auto,
            page_title: None,
            stylesheet_file: None,
        }
    }
}

/// The prefix no route may claim: the gate's own sign-in endpoints.
pub const RESERVED_PREFIX: &str = "/.jwtgate/";

/// The rules of `[login]` and of `on_missing` on routes; every broken
/// rule as (key, message).
pub(super) fn validate(c: &super::Config) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let mut err = |k: &str, m: String| errors.push((k.to_string(), m));
    for (i, r) in c.routes.iter().enumerate() {
        for (field, p) in [("prefix", &r.prefix), ("path", &r.path)] {
            let bare = RESERVED_PREFIX.trim_end_matches('/');
            if p == bare || p.starts_with(RESERVED_PREFIX) {
                err(
                    &format!("routes[{i}].{field}"),
                    format!("{RESERVED_PREFIX} is reserved for the gate's sign-in endpoints"),
                );
            }
        }
        if r.on_missing == Some(OnMissing::Redirect) && r.auth == super::RouteAuth::None {
            err(
                &format!("routes[{i}].on_missing"),
                "a route with auth = \"none\" never asks anyone to sign in".into(),
            );
        }
        if r.on_missing.is_some() && c.login.is_none() {
            err(
                &format!("routes[{i}].on_missing"),
                "needs a [login] table: without one there is nowhere to sign in".into(),
            );
        }
    }
    let Some(l) = &c.login else {
        return errors;
    };
    match l.provider {
        LoginProvider::Builtin => validate_builtin(c, l, &mut err),
        LoginProvider::Oidc => validate_oidc(c, l, &mut err),
    }
    if let Err(m) = check_external_url(&l.external_url) {
        err("login.external_url", m);
    }
    if l.session_keys_file.is_none() {
        err(
            "login.session_keys_file",
            "must name a file of session keys (make one with `jwtgate gen-key --session`)".into(),
        );
    }
    if !is_cookie_name(&l.cookie_name) {
        err(
            "login.cookie_name",
            "must be a cookie name (letters, digits and !#$%&'+-.^_`|~)".into(),
        );
    }
    let minute = Duration::from_secs(60);
    let month = Duration::from_secs(31 * 24 * 3600);
    for (k, v) in [
        ("login.idle_timeout", l.idle_timeout),
        ("login.max_lifetime", l.max_lifetime),
    ] {
        if !(minute..=month).contains(&v) {
            err(k, "must be from 1m to 31days".into());
        }
    }
    if l.idle_timeout > l.max_lifetime {
        err(
            "login.idle_timeout",
            "must not be longer than login.max_lifetime".into(),
        );
    }
    for (i, h) in l.redirect_hosts.iter().enumerate() {
        let name = h.strip_prefix('.').unwrap_or(h);
        let ok = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|p| {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok || (h.starts_with('.') && !name.contains('.')) {
            err(
                &format!("login.redirect_hosts[{i}]"),
                "must be a host name (\"app.example.com\") or a domain (\".example.com\", not a whole top-level domain)".into(),
            );
        }
    }
    let p = &l.post_logout_redirect;
    if !p.starts_with('/')
        || p.starts_with("//")
        || p.bytes().any(|b| b == b'\\' || b <= b' ' || b >= 0x7f)
    {
        err(
            "login.post_logout_redirect",
            "must be a path on this gate, starting with one /".into(),
        );
    }
    for s in &c.auth.token_from {
        if let super::TokenSource::Cookie(n) = s
            && (n == &l.cookie_name || n.starts_with(&format!("{}-", l.cookie_name)))
        {
            err(
                "auth.token_from",
                format!("cookie {n:?} is login.cookie_name's: a session cookie is not a token"),
            );
        }
    }
    errors
}

/// `provider = "oidc"`: the provider and the client.
fn validate_oidc(c: &super::Config, l: &LoginConfig, err: &mut impl FnMut(&str, String)) {
    if l.issuer.is_empty() {
        err(
            "login.issuer",
            "must name the OpenID provider's issuer".into(),
        );
    } else {
        match c.auth.issuers.iter().find(|i| i.issuer == l.issuer) {
            None => err(
                "login.issuer",
                format!(
                    "{:?} is not the issuer of any [[auth.issuers]] entry (its keys verify the ID token)",
                    l.issuer
                ),
            ),
            Some(i) if !i.jwks_uri.is_empty() || i.jwks_file.is_some() || i.public_key_file.is_some() => err(
                "login.issuer",
                "its [[auth.issuers]] entry must use discovery (no jwks_uri, jwks_file or public_key_file): the discovery document names the sign-in endpoints".into(),
            ),
            Some(_) => {}
        }
    }
    if l.client_id.is_empty() {
        err("login.client_id", "must be set".into());
    }
    if !l.client_secret.is_empty() && l.client_secret_file.is_some() {
        err(
            "login.client_secret",
            "set client_secret or client_secret_file, not both".into(),
        );
    }
    if !l.scopes.iter().any(|s| s == "openid") {
        err("login.scopes", "must include \"openid\"".into());
    }
    for (key, set) in [
        ("login.page_title", l.page_title.is_some()),
        ("login.stylesheet_file", l.stylesheet_file.is_some()),
    ] {
        if set {
            err(
                key,
                "only the built-in sign-in page (provider = \"builtin\") has one; the provider's pages are styled there".into(),
            );
        }
    }
}

/// The longest `login.page_title`.
pub const MAX_PAGE_TITLE: usize = 200;

/// `provider = "builtin"`: the users file and the failure limits of
/// `[issuer]`; none of the provider's keys.
fn validate_builtin(c: &super::Config, l: &LoginConfig, err: &mut impl FnMut(&str, String)) {
    if c.issuer.users_file.is_none() {
        err(
            "issuer.users_file",
            "must be set: login.provider = \"builtin\" signs in the users of this file".into(),
        );
    }
    for (key, set) in [
        ("login.issuer", !l.issuer.is_empty()),
        ("login.client_id", !l.client_id.is_empty()),
        ("login.client_secret", !l.client_secret.is_empty()),
        ("login.client_secret_file", l.client_secret_file.is_some()),
    ] {
        if set {
            err(
                key,
                "is not used with login.provider = \"builtin\" (the gate signs people in itself): remove it".into(),
            );
        }
    }
    if c.issuer.max_failures == 0 {
        err("issuer.max_failures", "must be at least 1".into());
    }
    if c.issuer.max_failures_per_address == 0 {
        err(
            "issuer.max_failures_per_address",
            "must be at least 1".into(),
        );
    }
    if c.issuer.failure_window.is_zero() {
        err("issuer.failure_window", "must be at least 1s".into());
    }
    if let Some(t) = &l.page_title
        && (t.trim().is_empty() || t.len() > MAX_PAGE_TITLE || t.chars().any(char::is_control))
    {
        err(
            "login.page_title",
            format!("must be one line of text, at most {MAX_PAGE_TITLE} bytes"),
        );
    }
}

/// RFC 6265 cookie-name: an RFC 9110 token.
fn is_cookie_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(cookie_name_byte)
}

/// A byte of the gate's own cookie names: an RFC 9110 `tchar` (RFC 6265
/// cookie-name), but not `*`, which `login::jar::strip` reads as a prefix
/// pattern. The one rule for `login.cookie_name` and the cookie jar.
pub fn cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'+-.^_`|~".contains(&b)
}

/// `external_url`: scheme, host and optional port, nothing else; https
/// unless the host is loopback (browsers treat `http://localhost` and
/// `http://127.0.0.1` as secure, so `__Host-` cookies work there).
fn check_external_url(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(
            "must be set: how browsers reach the gate, e.g. \"https://cms.example.com\"".into(),
        );
    }
    let uri: http::Uri = s
        .parse()
        .map_err(|_| "must be an absolute URL such as \"https://cms.example.com\"".to_string())?;
    let (Some(scheme), Some(auth)) = (uri.scheme_str(), uri.authority()) else {
        return Err("must be an absolute URL such as \"https://cms.example.com\"".into());
    };
    if auth.as_str().contains('@') {
        return Err("must not carry user information".into());
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("must be the origin only (scheme, host, port): the gate's endpoints are under /.jwtgate/".into());
    }
    match scheme {
        "https" => Ok(()),
        "http" if super::validate::loopback_host(auth.host()) => Ok(()),
        "http" => Err(
            "must be https:// (http:// only on a loopback host): session cookies are Secure".into(),
        ),
        _ => Err("must be an https:// URL".into()),
    }
}
