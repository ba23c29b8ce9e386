//! OpenID providers and a browser-like HTTP client for the browser sign-in
//! tests (`[login]`, tests/it/login/).
//!
//! * [`Provider`]: the real OpenID Provider of tests/browser/ (panva's
//!   oidc-provider, `node tests/browser/provider.mjs CONFIG`), one process per
//!   instance, stopped when dropped (its stdin closes; it exits on EOF).
//!   [`provider_available`] says whether `node` and tests/browser/node_modules
//!   are there (a skip outside CI, a failure under CI).
//! * [`ScriptedOp`]: a provider written here, for what a real one never does:
//!   its authorization endpoint answers at once (no sign-in page) and its
//!   token endpoint returns whatever ID token the test scripts (wrong `aud`,
//!   `azp`, `nonce`, `iss`, expired, unsigned, signed with another key...),
//!   and it records every authorization and token request the gate makes
//!   (PKCE, nonce, redirect_uri, client authentication). Discovery and JWKS
//!   are the mock [`Idp`]'s.
//! * [`Agent`]: one browser, as far as HTTP goes: a cookie jar kept by hand
//!   (path-aware, per host and port; reqwest's cookie store is not enabled),
//!   navigation and fetch request headers (`Sec-Fetch-*`, `Accept`), forms,
//!   and the sign-in driver: `/.jwtgate/login?rd=...` → the provider's
//!   authorization endpoint → its sign-in and consent forms → back to the
//!   gate's callback.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use reqwest::Url;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::idp::Idp;
use super::raw::{build, raw_request};
use super::tokens::{b64url, now};

/// The client the gate is registered as, at every provider of these tests.
pub const CLIENT_ID: &str = "jwtgate";
pub const CLIENT_SECRET: &str = "jwtgate-client-secret-0123456789";
pub const ALICE: &str = "alice";
pub const ALICE_PASSWORD: &str = "alice-password";
/// A second account: the attacker of the login-CSRF tests.
pub const MALLORY: &str = "mallory";
pub const MALLORY_PASSWORD: &str = "mallory-password";
/// The default `login.cookie_name`.
pub const SESSION_COOKIE: &str = "__Host-jwtgate";

/// tests/browser/: provider.mjs, browser.mjs, the scenarios, node_modules.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

const INSTALL: &str = "apt-get install -y --no-install-recommends chromium; \
                       cd tests/browser && PUPPETEER_SKIP_DOWNLOAD=1 npm ci (tests/browser/README.md)";

/// `present`, or: under CI (`CI` set) a failure, otherwise a printed skip.
pub fn skip_unless(present: bool, what: &str) -> bool {
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} is required under CI: {INSTALL}"
        );
        eprintln!("SKIPPED: {what} is not installed ({INSTALL})");
    }
    present
}

/// A program on PATH.
pub fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// Can provider.mjs run here (`node` and tests/browser/node_modules)?
/// Prints why not (and fails under CI).
pub fn provider_available() -> bool {
    let node = on_path("node").is_some();
    let modules = browser_dir()
        .join("node_modules/oidc-provider/package.json")
        .is_file();
    skip_unless(
        node && modules,
        if node {
            "tests/browser/node_modules (oidc-provider)"
        } else {
            "node"
        },
    )
}

// ------------------------------------------------------------ provider.mjs

/// The gate's client at provider.mjs: callback and post-logout URLs on
/// `external` (the gate's `login.external_url`).
pub fn client_config(external: &str) -> Value {
    json!({
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [format!("{external}/.jwtgate/callback")],
        "post_logout_redirect_uris": [format!("{external}/")],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
    })
}

/// alice (groups admins and users) and mallory.
pub fn users() -> Value {
    json!({
        ALICE: {
            "password": ALICE_PASSWORD, "email": "alice@example.test", "email_verified": true,
            "name": "Alice", "groups": ["admins", "users"],
        },
        MALLORY: {
            "password": MALLORY_PASSWORD, "email": "mallory@example.test", "email_verified": true,
            "name": "Mallory", "groups": ["users"],
        },
    })
}

/// A provider.mjs config: these clients, [`users`], and the top-level
/// fields of `extra` (e.g. `{"accessTokenTTL": 4}`).
pub fn provider_config(clients: Vec<Value>, extra: &Value) -> Value {
    let mut cfg = json!({ "clients": clients, "users": users() });
    if let Some(extra) = extra.as_object() {
        for (k, v) in extra {
            cfg[k] = v.clone();
        }
    }
    cfg
}

/// A running provider.mjs; stopped (stdin closed, then killed after 5 s)
/// when dropped.
pub struct Provider {
    /// `http://127.0.0.1:PORT`
    pub issuer: String,
    pub port: u16,
    child: Child,
    stdin: Option<ChildStdin>,
    log: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl Provider {
    /// Starts `node tests/browser/provider.mjs CONFIG` and waits (at most
    /// 15 s) for its first stdout line. Blocking (about half a second).
    pub fn start(config: &Value) -> Provider {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("provider.json");
        std::fs::write(&file, config.to_string()).expect("write provider config");
        let mut child = Command::new("node")
            .arg(browser_dir().join("provider.mjs"))
            .arg(&file)
            .current_dir(browser_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node tests/browser/provider.mjs");
        let stdin = child.stdin.take();
        let log = Arc::new(Mutex::new(Vec::new()));
        drain_lines(child.stderr.take().unwrap(), log.clone());
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(line) if !line.trim().is_empty() => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "provider.mjs did not print its issuer ({other:?}); stderr:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        let first: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("provider.mjs printed {line:?}: {e}"));
        Provider {
            issuer: first["issuer"].as_str().expect("issuer").to_string(),
            port: first["port"].as_u64().expect("port") as u16,
            child,
            stdin,
            log,
            _dir: dir,
        }
    }

    /// `{issuer}/.well-known/openid-configuration`.
    pub async fn discovery(&self) -> Value {
        get_json(&format!("{}/.well-known/openid-configuration", self.issuer)).await
    }

    /// `GET /test/stats`: token endpoint counts by grant type, failures,
    /// completed RP-initiated logouts.
    pub async fn stats(&self) -> Value {
        get_json(&format!("{}/test/stats", self.issuer)).await
    }

    /// `POST /test/logout?sub=SUB[&revoke=all]`: ends the user's sessions at
    /// the provider (with `revoke_all`, the offline grants too, so their
    /// refresh tokens die).
    pub async fn logout_user(&self, sub: &str, revoke_all: bool) -> Value {
        let mut url = format!("{}/test/logout?sub={sub}", self.issuer);
        if revoke_all {
            url.push_str("&revoke=all");
        }
        let resp = super::client()
            .post(&url)
            .send()
            .await
            .expect("provider /test/logout");
        assert_eq!(resp.status(), 200, "POST {url}");
        resp.json().await.expect("/test/logout JSON")
    }

    /// Every stderr line so far (JSON events, one per line).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain_lines<R: Read + Send + 'static>(r: R, sink: Arc<Mutex<Vec<String>>>) {
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
}

/// GET `url`, expecting 200 JSON.
pub async fn get_json(url: &str) -> Value {
    let resp = super::client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(resp.status(), 200, "GET {url}");
    resp.json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

/// A counter of `/test/stats` (`token.refresh_token`, `refresh_failures`...),
/// 0 when absent.
pub fn stat(stats: &Value, path: &str) -> u64 {
    let mut v = stats;
    for part in path.split('.') {
        v = &v[part];
    }
    v.as_u64().unwrap_or(0)
}

// ---------------------------------------------------------------- cookies

/// `host:port` of a URL: what the jar keys cookies by.
pub fn host_key(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// `scheme://host:port` of a URL.
pub fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// One `Set-Cookie` header, parsed.
#[derive(Clone, Debug)]
pub struct SetCookie {
    pub raw: String,
    pub name: String,
    pub value: String,
    /// Attribute names lowercased, values as sent ("" for flags).
    pub attrs: Vec<(String, String)>,
}

impl SetCookie {
    pub fn parse(raw: &str) -> Option<SetCookie> {
        let mut parts = raw.split(';');
        let (name, value) = parts.next()?.split_once('=')?;
        let attrs = parts
            .map(|a| {
                let (k, v) = a.split_once('=').unwrap_or((a, ""));
                (k.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .filter(|(k, _)| !k.is_empty())
            .collect();
        Some(SetCookie {
            raw: raw.to_string(),
            name: name.trim().to_string(),
            value: value.trim().to_string(),
            attrs,
        })
    }

    /// The value of an attribute (name case-insensitive); `Some("")` for a flag.
    pub fn attr(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.attrs
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// When the cookie ends (Unix seconds), from Max-Age or Expires.
    pub fn expires_at(&self) -> Option<i64> {
        if let Some(ma) = self.attr("max-age") {
            return Some(now() + ma.parse::<i64>().unwrap_or(0));
        }
        self.attr("expires").and_then(parse_http_date)
    }

    /// Does this header delete the cookie (Max-Age <= 0 or Expires past)?
    pub fn is_removal(&self) -> bool {
        self.expires_at().is_some_and(|t| t <= now())
    }

    /// Does it set a cookie a browser would keep and send?
    pub fn is_live(&self) -> bool {
        !self.is_removal() && !self.value.is_empty()
    }
}

/// An HTTP date (`Thu, 01 Jan 1970 00:00:00 GMT`, also with dashes) as
/// Unix seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let cleaned = s.replace(['-', ','], " ");
    let t: Vec<&str> = cleaned.split_whitespace().collect();
    // [weekday] DD Mon YYYY HH:MM:SS GMT
    let start = usize::from(t.first()?.parse::<i64>().is_err());
    let day: i64 = t.get(start)?.parse().ok()?;
    let months = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let mon = t.get(start + 1)?.to_ascii_lowercase();
    let month = months.iter().position(|m| mon.starts_with(m))? as i64 + 1;
    let mut year: i64 = t.get(start + 2)?.parse().ok()?;
    if year < 70 {
        year += 2000;
    } else if year < 100 {
        year += 1900;
    }
    let hms: Vec<i64> = t
        .get(start + 3)?
        .split(':')
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(
        days * 86_400
            + hms.first().copied().unwrap_or(0) * 3600
            + hms.get(1).copied().unwrap_or(0) * 60
            + hms.get(2).copied().unwrap_or(0),
    )
}

#[derive(Clone, Debug)]
struct Cookie {
    host: String,
    name: String,
    value: String,
    path: String,
    expires: Option<i64>,
}

/// A browser's cookies, kept by hand: per `host:port` (stricter than a
/// browser, which shares cookies across ports), with paths and expiry.
#[derive(Clone, Debug, Default)]
pub struct Jar {
    cookies: Vec<Cookie>,
    set_by: BTreeMap<String, BTreeSet<String>>,
}

fn default_path(url: &Url) -> String {
    let p = url.path();
    match p.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => p[..i].to_string(),
    }
}

fn path_match(req: &str, cookie: &str) -> bool {
    req == cookie
        || (req.starts_with(cookie)
            && (cookie.ends_with('/') || req[cookie.len()..].starts_with('/')))
}

impl Jar {
    /// Takes the `Set-Cookie` headers of a response to `url`.
    pub fn store(&mut self, url: &Url, set_cookies: &[SetCookie]) {
        let host = host_key(url);
        for sc in set_cookies {
            let path = match sc.attr("path") {
                Some(p) if p.starts_with('/') => p.to_string(),
                _ => default_path(url),
            };
            self.set_by
                .entry(host.clone())
                .or_default()
                .insert(sc.name.clone());
            self.cookies
                .retain(|c| !(c.host == host && c.name == sc.name && c.path == path));
            if sc.is_removal() {
                continue;
            }
            self.cookies.push(Cookie {
                host: host.clone(),
                name: sc.name.clone(),
                value: sc.value.clone(),
                path,
                expires: sc.expires_at(),
            });
        }
    }

    /// The `Cookie` header a browser would send to `url`.
    pub fn header_for(&self, url: &Url) -> Option<String> {
        let host = host_key(url);
        let t = now();
        let mut live: Vec<&Cookie> = self
            .cookies
            .iter()
            .filter(|c| c.host == host && c.expires.is_none_or(|e| e > t))
            .filter(|c| path_match(url.path(), &c.path))
            .collect();
        live.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let pairs: Vec<String> = live
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    /// The value of a live cookie of `host` (`127.0.0.1:PORT`).
    pub fn get(&self, host: &str, name: &str) -> Option<String> {
        let t = now();
        self.cookies
            .iter()
            .find(|c| c.host == host && c.name == name && c.expires.is_none_or(|e| e > t))
            .map(|c| c.value.clone())
    }

    /// Sets a cookie by hand (path `/`, no expiry), replacing any of that name.
    pub fn put(&mut self, host: &str, name: &str, value: &str) {
        self.remove(host, name);
        self.cookies.push(Cookie {
            host: host.into(),
            name: name.into(),
            value: value.into(),
            path: "/".into(),
            expires: None,
        });
    }

    /// Forgets every cookie of that name for `host`.
    pub fn remove(&mut self, host: &str, name: &str) {
        self.cookies.retain(|c| !(c.host == host && c.name == name));
    }

    /// Forgets every cookie of `host`.
    pub fn clear_host(&mut self, host: &str) {
        self.cookies.retain(|c| c.host != host);
    }

    /// Names of the live cookies of `host`.
    pub fn names(&self, host: &str) -> Vec<String> {
        let t = now();
        self.cookies
            .iter()
            .filter(|c| c.host == host && c.expires.is_none_or(|e| e > t))
            .map(|c| c.name.clone())
            .collect()
    }

    /// Every cookie name `host` ever set (or deleted) in this jar.
    pub fn names_ever_set(&self, host: &str) -> BTreeSet<String> {
        self.set_by.get(host).cloned().unwrap_or_default()
    }
}

// ------------------------------------------------------------------ pages

/// One response, as the agent saw it.
#[derive(Clone, Debug)]
pub struct Page {
    pub method: String,
    pub status: u16,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Page {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    pub fn headers_named(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn set_cookies(&self) -> Vec<SetCookie> {
        self.headers_named("set-cookie")
            .iter()
            .filter_map(|l| SetCookie::parse(l))
            .collect()
    }

    /// The last `Set-Cookie` of that name.
    pub fn set_cookie(&self, name: &str) -> Option<SetCookie> {
        self.set_cookies()
            .into_iter()
            .rev()
            .find(|c| c.name == name)
    }

    /// Does the response set a live cookie of that name?
    pub fn sets_live_cookie(&self, name: &str) -> bool {
        self.set_cookies()
            .iter()
            .any(|c| c.name == name && c.is_live())
    }

    pub fn is_redirect(&self) -> bool {
        matches!(self.status, 301 | 302 | 303 | 307 | 308)
    }

    /// `Location` as written.
    pub fn location_raw(&self) -> Option<String> {
        self.header("location")
    }

    /// `Location` resolved against the request URL, as a browser does.
    pub fn location(&self) -> Option<Url> {
        let raw = self.location_raw()?;
        Some(
            self.url
                .join(&raw)
                .unwrap_or_else(|e| panic!("Location {raw:?} does not parse: {e}")),
        )
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.describe()))
    }

    /// For failure messages: request, status, headers, the body's start.
    pub fn describe(&self) -> String {
        let mut out = format!("{} {} -> {}\n", self.method, self.url, self.status);
        for (n, v) in &self.headers {
            out.push_str(&format!("  {n}: {v}\n"));
        }
        let body: String = self.body.chars().take(1500).collect();
        out.push_str(&body);
        out
    }
}

/// Every character but ASCII letters and digits percent-encoded: for query
/// values such as `rd`.
pub fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// `application/x-www-form-urlencoded` (or a query string) of these pairs.
pub fn form_encode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Parses a form body or a query string.
pub fn form_decode(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let d = |x: &str| {
                percent_decode_str(&x.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (d(k), d(v))
        })
        .collect()
}

/// A query parameter of a URL (decoded).
pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The request headers a browser sends for a top-level navigation.
pub const NAVIGATE: &[(&str, &str)] = &[
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    ),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
    ("sec-fetch-site", "none"),
    ("sec-fetch-user", "?1"),
    ("upgrade-insecure-requests", "1"),
];

/// The request headers of a same-origin `fetch()` from a page script.
pub const FETCH: &[(&str, &str)] = &[
    ("accept", "*/*"),
    ("sec-fetch-mode", "cors"),
    ("sec-fetch-dest", "empty"),
    ("sec-fetch-site", "same-origin"),
];

/// `base` with the headers of `over` replacing those of the same name.
fn merge<'a>(base: &[(&'a str, &'a str)], over: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut out: Vec<(&str, &str)> = base
        .iter()
        .filter(|(n, _)| !over.iter().any(|(o, _)| o.eq_ignore_ascii_case(n)))
        .copied()
        .collect();
    out.extend(over.iter().copied());
    out
}

/// One sign-in, step by step.
#[derive(Debug)]
pub struct SignIn {
    /// The gate's answer to `GET /.jwtgate/login?rd=...` (302 to the provider).
    pub begin: Page,
    /// Where that sent the browser: the provider's authorization request.
    pub authorize: Url,
    /// Where the provider sent the browser back: the gate's callback URL
    /// with `code`, `state` and `iss`.
    pub callback: Url,
    /// The gate's answer to that callback.
    pub done: Page,
}

impl SignIn {
    /// Where the callback's answer sends the browser (resolved).
    pub fn landing(&self) -> Url {
        self.done
            .location()
            .unwrap_or_else(|| panic!("the callback did not redirect:\n{}", self.done.describe()))
    }
}

/// A browser, as far as HTTP goes.
pub struct Agent {
    pub jar: Jar,
    client: reqwest::Client,
}

impl Default for Agent {
    fn default() -> Self {
        Self::new()
    }
}

impl Agent {
    pub fn new() -> Agent {
        Agent {
            jar: Jar::default(),
            client: super::client(),
        }
    }

    /// A browser holding exactly these cookies (a `Cookie` header's
    /// `name=value; ...`) for `host` (`127.0.0.1:PORT`).
    pub fn with_cookies(host: &str, header: &str) -> Agent {
        let mut a = Agent::new();
        for pair in header.split(';') {
            let (n, v) = pair.trim().split_once('=').unwrap_or((pair.trim(), ""));
            if !n.is_empty() {
                a.jar.put(host, n, v);
            }
        }
        a
    }

    /// Sends one request (redirects are not followed) with the jar's
    /// cookies, unless `headers` has its own `cookie`; keeps `Set-Cookie`.
    pub async fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Page {
        let parsed = Url::parse(url).unwrap_or_else(|e| panic!("{url:?}: {e}"));
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(m, parsed.clone());
        let mut own_cookie = false;
        for (n, v) in headers {
            own_cookie |= n.eq_ignore_ascii_case("cookie");
            req = req.header(*n, *v);
        }
        if !own_cookie && let Some(c) = self.jar.header_for(&parsed) {
            req = req.header("cookie", c);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp.text().await.unwrap_or_default();
        let page = Page {
            method: method.to_string(),
            status,
            url: parsed.clone(),
            headers,
            body,
        };
        self.jar.store(&parsed, &page.set_cookies());
        page
    }

    /// A top-level navigation (typed URL): `Sec-Fetch-Mode: navigate`...
    pub async fn navigate(&mut self, url: &str) -> Page {
        self.send("GET", url, NAVIGATE, None).await
    }

    /// A navigation with some headers changed or added.
    pub async fn navigate_with(&mut self, url: &str, extra: &[(&str, &str)]) -> Page {
        self.send("GET", url, &merge(NAVIGATE, extra), None).await
    }

    /// A same-origin `fetch()` from a page script.
    pub async fn fetch(&mut self, url: &str) -> Page {
        self.send("GET", url, FETCH, None).await
    }

    /// A form submission (a POST navigation) with this `Origin` (none: no
    /// `Origin` header) and these fields.
    pub async fn post_form(
        &mut self,
        url: &str,
        origin: Option<&str>,
        extra: &[(&str, &str)],
        fields: &[(&str, &str)],
    ) -> Page {
        let mut headers = vec![
            ("content-type", "application/x-www-form-urlencoded"),
            ("sec-fetch-site", "same-origin"),
        ];
        if let Some(o) = origin {
            headers.push(("origin", o));
        }
        let headers = merge(&merge(NAVIGATE, &headers), extra);
        self.send(
            "POST",
            url,
            &headers,
            Some(form_encode(fields).into_bytes()),
        )
        .await
    }

    /// Sends exactly `target` (and `body`) over TCP to `addr` (no client
    /// normalises it; `Host: gate.test`), as a request to `base` for the
    /// cookie jar.
    pub async fn raw(
        &mut self,
        addr: SocketAddr,
        base: &str,
        method: &str,
        target: &str,
        headers: &[&str],
        body: &[u8],
    ) -> Page {
        let root = Url::parse(base).unwrap().join("/").unwrap();
        let url = root.join(target).unwrap_or_else(|_| root.clone());
        let mut lines: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
        if !headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("cookie:"))
            && let Some(c) = self.jar.header_for(&root)
        {
            lines.push(format!("Cookie: {c}"));
        }
        let resp = raw_request(addr, &build(method, target, &lines, body)).await;
        let page = Page {
            method: method.to_string(),
            status: resp.status,
            url: url.clone(),
            headers: resp.headers.clone(),
            body: resp.text(),
        };
        self.jar.store(&root, &page.set_cookies());
        page
    }

    /// `GET {external}/.jwtgate/login[?rd=RD]` (rd percent-encoded) as a navigation.
    pub async fn begin(&mut self, external: &str, rd: Option<&str>) -> Page {
        let url = match rd {
            Some(rd) => format!("{external}/.jwtgate/login?rd={}", enc(rd)),
            None => format!("{external}/.jwtgate/login"),
        };
        self.navigate(&url).await
    }

    /// At the provider: follows its redirects from `authorize`, fills in its
    /// sign-in form (`#login`, `#password`) and consent form (`#consent`)
    /// when it shows them, and returns the first URL off the provider's
    /// origin (the relying party's callback), without requesting it.
    pub async fn authorize(&mut self, authorize: &Url, user: &str, password: &str) -> Url {
        let op = origin_of(authorize);
        let mut page = self.navigate(authorize.as_str()).await;
        for _ in 0..30 {
            if page.is_redirect() {
                let next = page.location().unwrap();
                if origin_of(&next) != op {
                    return next;
                }
                page = self
                    .navigate_with(next.as_str(), &[("sec-fetch-site", "same-origin")])
                    .await;
                continue;
            }
            assert_eq!(
                page.status,
                200,
                "the provider answered:\n{}",
                page.describe()
            );
            let body = page.body.clone();
            assert!(
                !body.contains("id=\"error\""),
                "the provider shows an error:\n{}",
                page.describe()
            );
            let (suffix, fields): (&str, Vec<(&str, &str)>) = if body.contains("id=\"login\"") {
                ("/login", vec![("login", user), ("password", password)])
            } else if body.contains("id=\"consent\"") {
                ("/consent", vec![])
            } else {
                panic!("an unexpected page at the provider:\n{}", page.describe());
            };
            let action = form_actions(&body)
                .into_iter()
                .find(|a| a.ends_with(suffix))
                .unwrap_or_else(|| panic!("no form action ending {suffix}:\n{body}"));
            let action = page.url.join(&action).unwrap();
            page = self
                .post_form(action.as_str(), Some(&op), &[], &fields)
                .await;
        }
        panic!("the provider kept the browser for 30 steps");
    }

    /// The whole sign-in from `/.jwtgate/login?rd=RD`: the gate's redirect to
    /// the provider, the provider's pages, and the gate's callback.
    pub async fn sign_in(
        &mut self,
        external: &str,
        rd: &str,
        user: &str,
        password: &str,
    ) -> SignIn {
        let begin = self.begin(external, Some(rd)).await;
        self.finish_sign_in(begin, user, password).await
    }

    /// The sign-in from a navigation to a protected URL of the gate: it must
    /// answer 302 to `/.jwtgate/login?rd=...`, and the rest is [`Self::sign_in`].
    pub async fn sign_in_from(&mut self, url: &str, user: &str, password: &str) -> SignIn {
        let first = self.navigate(url).await;
        assert_eq!(
            first.status,
            302,
            "a navigation without a session:\n{}",
            first.describe()
        );
        let login = first.location().unwrap();
        assert_eq!(
            login.path(),
            "/.jwtgate/login",
            "redirected elsewhere:\n{}",
            first.describe()
        );
        let begin = self.navigate(login.as_str()).await;
        self.finish_sign_in(begin, user, password).await
    }

    /// From the gate's answer to `/.jwtgate/login`: the provider, then the callback.
    pub async fn finish_sign_in(&mut self, begin: Page, user: &str, password: &str) -> SignIn {
        assert_eq!(
            begin.status,
            302,
            "GET /.jwtgate/login did not redirect:\n{}",
            begin.describe()
        );
        let authorize = begin.location().unwrap();
        assert_ne!(
            origin_of(&authorize),
            origin_of(&begin.url),
            "/.jwtgate/login redirected to the gate itself:\n{}",
            begin.describe()
        );
        let callback = self.authorize(&authorize, user, password).await;
        let done = self.callback(callback.as_str()).await;
        SignIn {
            begin,
            authorize,
            callback,
            done,
        }
    }

    /// Follows a provider's redirect to the gate's callback (a navigation
    /// coming from the provider's pages).
    pub async fn callback(&mut self, url: &str) -> Page {
        self.navigate_with(url, &[("sec-fetch-site", "same-site")])
            .await
    }
}

/// Every `action="..."` of the forms of a page (HTML entities `&amp;` undone).
pub fn form_actions(html: &str) -> Vec<String> {
    attr_values(html, "action")
}

/// The `value` of the `<input>` named `name` in a page.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\"");
    let at = html.find(&needle)?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    attr_values(&html[start..=end], "value").into_iter().next()
}

/// The value of attribute `name` in one tag's text (`<form ...>`), quoted
/// with `"` or `'` or not at all.
pub fn tag_attr(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let needle = format!("{name}=");
    let mut from = 0;
    while let Some(i) = lower[from..].find(&needle) {
        let at = from + i;
        from = at + needle.len();
        // A whole attribute name, not the end of another one.
        if at > 0 && !lower.as_bytes()[at - 1].is_ascii_whitespace() {
            continue;
        }
        let rest = &tag[from..];
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or_default(),
            _ => rest
                .split(|c: char| c.is_ascii_whitespace() || c == '>')
                .next()
                .unwrap_or_default(),
        };
        return Some(value.replace("&amp;", "&"));
    }
    None
}

/// The opening tags `<NAME ...>` of a page.
pub fn tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let lower = html.to_ascii_lowercase();
    let needle = format!("<{name}");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find(&needle) {
        let start = from + i;
        let end = lower[start..]
            .find('>')
            .map_or(html.len(), |e| start + e + 1);
        out.push(&html[start..end]);
        from = end;
    }
    out
}

/// The `type="hidden"` inputs of a page, as (name, value).
pub fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    tags(html, "input")
        .into_iter()
        .filter(|t| tag_attr(t, "type").is_some_and(|v| v.eq_ignore_ascii_case("hidden")))
        .filter_map(|t| {
            Some((
                tag_attr(t, "name")?,
                tag_attr(t, "value").unwrap_or_default(),
            ))
        })
        .collect()
}

fn attr_values(html: &str, attr: &str) -> Vec<String> {
    let needle = format!("{attr}=\"");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&needle) {
        rest = &rest[i + needle.len()..];
        if let Some(end) = rest.find('"') {
            out.push(rest[..end].replace("&amp;", "&"));
            rest = &rest[end..];
        }
    }
    out
}

/// `url` with its scheme, host and port taken from `origin` (the same
/// authorization request sent to another provider).
pub fn with_origin(url: &Url, origin: &str) -> Url {
    let o = Url::parse(origin).unwrap();
    let mut u = url.clone();
    u.set_scheme(o.scheme()).unwrap();
    u.set_host(o.host_str()).unwrap();
    u.set_port(o.port()).unwrap();
    u
}

/// `url` with query parameter `name` replaced (`Some`) or removed (`None`).
pub fn with_param(url: &Url, name: &str, value: Option<&str>) -> Url {
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some(v) = value {
        pairs.push((name.to_string(), v.to_string()));
    }
    let mut u = url.clone();
    let q: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    u.set_query(Some(&form_encode(&q)));
    u
}

/// base64url(SHA-256(`verifier`)): the S256 code challenge.
pub fn s256(verifier: &str) -> String {
    b64url(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref())
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rand::Rng::fill(&mut rand::rng(), &mut b[..]);
    b
}

/// `n` random bytes, hex.
pub fn random_hex(n: usize) -> String {
    random_bytes(n).iter().map(|b| format!("{b:02x}")).collect()
}

// ------------------------------------------------------------ ScriptedOp

/// An authorization request the gate sent the browser to.
#[derive(Clone, Debug)]
pub struct AuthRequest {
    pub params: Vec<(String, String)>,
    /// The code this provider answered with.
    pub code: String,
}

impl AuthRequest {
    pub fn param(&self, name: &str) -> Option<String> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// A request the gate made to the token endpoint.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub form: Vec<(String, String)>,
    pub authorization: Option<String>,
    /// What this provider answered.
    pub status: u16,
}

impl TokenRequest {
    pub fn param(&self, name: &str) -> Option<String> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// The client id and secret, from HTTP Basic (RFC 6749 §2.3.1) or the form.
    pub fn client_credentials(&self) -> Option<(String, String)> {
        if let Some(b) = self
            .authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Basic "))
        {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()?;
            let text = String::from_utf8(raw).ok()?;
            let (id, secret) = text.split_once(':')?;
            let d = |x: &str| percent_decode_str(x).decode_utf8_lossy().into_owned();
            return Some((d(id), d(secret)));
        }
        Some((self.param("client_id")?, self.param("client_secret")?))
    }
}

/// Makes the ID token of a token response from the authorization request
/// (an empty string: the response has no `id_token`).
pub type IdTokenFn = Box<dyn Fn(&Idp, &AuthRequest) -> String + Send + Sync>;

struct OpState {
    idp: Arc<Idp>,
    auths: Mutex<Vec<AuthRequest>>,
    codes: Mutex<HashMap<String, AuthRequest>>,
    tokens: Mutex<Vec<TokenRequest>>,
    id_token: Mutex<Option<IdTokenFn>>,
    token_answer: Mutex<Option<(u16, Value)>>,
    send_iss: AtomicBool,
}

/// A provider whose answers the test scripts (see the module docs). Its
/// issuer, discovery and JWKS are the mock [`Idp`]'s (key `k1`, RS256); its
/// authorization and token endpoints are served here.
pub struct ScriptedOp {
    pub idp: Arc<Idp>,
    /// The issuer (`http://127.0.0.1:PORT`, the Idp's).
    pub issuer: String,
    /// Where `/authorize` and `/token` are.
    pub addr: SocketAddr,
    state: Arc<OpState>,
    task: JoinHandle<()>,
}

impl Drop for ScriptedOp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedOp {
    /// Starts it; with `iss_supported`, discovery advertises
    /// `authorization_response_iss_parameter_supported` and authorization
    /// responses carry `iss` (RFC 9207).
    pub async fn start(iss_supported: bool) -> ScriptedOp {
        let idp = Arc::new(Idp::start().await);
        idp.add_rsa("k1");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind op");
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        idp.set_discovery(Some(json!({
            "issuer": idp.issuer,
            "jwks_uri": idp.jwks_uri(),
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "profile", "email", "groups", "offline_access"],
            "claims_supported": ["sub", "email", "name", "groups"],
            "authorization_response_iss_parameter_supported": iss_supported,
        })));
        let state = Arc::new(OpState {
            idp: idp.clone(),
            auths: Mutex::new(Vec::new()),
            codes: Mutex::new(HashMap::new()),
            tokens: Mutex::new(Vec::new()),
            id_token: Mutex::new(None),
            token_answer: Mutex::new(None),
            send_iss: AtomicBool::new(iss_supported),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| op_answer(req, st.clone()));
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        ScriptedOp {
            issuer: idp.issuer.clone(),
            idp,
            addr,
            state,
            task,
        }
    }

    /// `http://ADDR/authorize`
    pub fn authorization_endpoint(&self) -> String {
        format!("http://{}/authorize", self.addr)
    }

    /// The claims of a correct ID token for this authorization request:
    /// iss, sub alice, aud = client_id, iat, exp (+5 min), auth_time, the
    /// request's nonce, email, name, groups.
    pub fn good_claims(idp: &Idp, req: &AuthRequest) -> Value {
        let t = now();
        let mut c = json!({
            "iss": idp.issuer, "sub": ALICE, "aud": CLIENT_ID, "iat": t, "exp": t + 300,
            "auth_time": t, "email": "alice@example.test", "email_verified": true,
            "name": "Alice", "groups": ["admins", "users"],
        });
        if let Some(n) = req.param("nonce") {
            c["nonce"] = json!(n);
        }
        c
    }

    /// From now on the token endpoint's ID token is `f(idp, request)`.
    pub fn set_id_token(&self, f: impl Fn(&Idp, &AuthRequest) -> String + Send + Sync + 'static) {
        *self.state.id_token.lock().unwrap() = Some(Box::new(f));
    }

    /// Back to correct ID tokens.
    pub fn reset_id_token(&self) {
        *self.state.id_token.lock().unwrap() = None;
    }

    /// The token endpoint answers this (status, JSON) to every request.
    pub fn set_token_answer(&self, answer: Option<(u16, Value)>) {
        *self.state.token_answer.lock().unwrap() = answer;
    }

    /// Whether authorization responses carry `iss`.
    pub fn set_send_iss(&self, on: bool) {
        self.state.send_iss.store(on, Ordering::SeqCst);
    }

    /// Every authorization request so far.
    pub fn auth_requests(&self) -> Vec<AuthRequest> {
        self.state.auths.lock().unwrap().clone()
    }

    /// Every token request so far.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.state.tokens.lock().unwrap().clone()
    }
}

fn op_response(status: u16, ctype: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn op_answer(
    req: Request<Incoming>,
    st: Arc<OpState>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    match req.uri().path() {
        "/authorize" => Ok(op_authorize(&req, &st)),
        "/token" => Ok(op_token(req, &st).await),
        _ => Ok(op_response(404, "text/plain", "not found".into())),
    }
}

fn op_authorize(req: &Request<Incoming>, st: &OpState) -> Response<Full<Bytes>> {
    let params = form_decode(req.uri().query().unwrap_or_default());
    let code = random_hex(16);
    let auth = AuthRequest { params, code };
    st.auths.lock().unwrap().push(auth.clone());
    let Some(redirect) = auth.param("redirect_uri") else {
        return op_response(400, "text/plain", "no redirect_uri".into());
    };
    st.codes
        .lock()
        .unwrap()
        .insert(auth.code.clone(), auth.clone());
    let mut back: Vec<(&str, String)> = vec![("code", auth.code.clone())];
    if let Some(s) = auth.param("state") {
        back.push(("state", s));
    }
    if st.send_iss.load(Ordering::SeqCst) {
        back.push(("iss", st.idp.issuer.clone()));
    }
    let q: Vec<(&str, &str)> = back.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let sep = if redirect.contains('?') { '&' } else { '?' };
    Response::builder()
        .status(302)
        .header("location", format!("{redirect}{sep}{}", form_encode(&q)))
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

async fn op_token(req: Request<Incoming>, st: &OpState) -> Response<Full<Bytes>> {
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let form = form_decode(&String::from_utf8_lossy(&body));
    let mut record = TokenRequest {
        form,
        authorization,
        status: 0,
    };
    let (status, answer) = token_answer(&record, st);
    record.status = status;
    st.tokens.lock().unwrap().push(record);
    op_response(status, "application/json", answer.to_string())
}

fn token_answer(tr: &TokenRequest, st: &OpState) -> (u16, Value) {
    let err = |status: u16, code: &str| (status, json!({"error": code}));
    if let Some(a) = st.token_answer.lock().unwrap().clone() {
        return a;
    }
    if tr.client_credentials() != Some((CLIENT_ID.into(), CLIENT_SECRET.into())) {
        return err(401, "invalid_client");
    }
    if tr.param("grant_type").as_deref() != Some("authorization_code") {
        return err(400, "unsupported_grant_type");
    }
    // Codes are single use.
    let Some(auth) = tr
        .param("code")
        .and_then(|c| st.codes.lock().unwrap().remove(&c))
    else {
        return err(400, "invalid_grant");
    };
    if tr.param("redirect_uri") != auth.param("redirect_uri") {
        return err(400, "invalid_grant");
    }
    let pkce_ok = auth.param("code_challenge_method").as_deref() == Some("S256")
        && tr
            .param("code_verifier")
            .is_some_and(|v| Some(s256(&v)) == auth.param("code_challenge"));
    if !pkce_ok {
        return err(400, "invalid_grant");
    }
    let id_token = match &*st.id_token.lock().unwrap() {
        Some(f) => f(&st.idp, &auth),
        None => st.idp.sign("k1", &ScriptedOp::good_claims(&st.idp, &auth)),
    };
    let t = now();
    let access_token = st.idp.sign_with_header(
        "k1",
        &json!({"typ": "at+jwt"}),
        &json!({
            "iss": st.idp.issuer, "sub": ALICE, "aud": "urn:jwtgate:api", "client_id": CLIENT_ID,
            "iat": t, "exp": t + 300, "scope": auth.param("scope").unwrap_or_default(),
        }),
    );
    let mut answer = json!({
        "access_token": access_token, "token_type": "Bearer", "expires_in": 300,
        "scope": auth.param("scope").unwrap_or_default(),
    });
    if !id_token.is_empty() {
        answer["id_token"] = json!(id_token);
    }
    (200, answer)
}
