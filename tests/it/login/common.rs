//! The fixtures of the login tests: a gate with `[login]` listening on a
//! port reserved before it starts (its `external_url` and the provider's
//! redirect URIs name it), in front of the echo upstream, with a fresh
//! session key; signed in through the real provider (provider.mjs) or the
//! scripted one.
//!
//! Every gate also has `[auth.secret]` (HS256, [`SECRET`]) so that bearer
//! tokens can be minted for the "bearer keeps its path" checks, and these
//! routes: `/public/` needs nothing; everything else needs a token or a
//! session.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use base64::Engine;
use reqwest::Url;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::oidc::*;
use crate::support::*;

pub const SECRET: &str = "login-tests-hs256-secret-0123456789abcdef";

/// Words a failed callback's page must not say (it gives no detail).
const DETAIL_WORDS: &[&str] = &[
    "nonce",
    "audience",
    "azp",
    "signature",
    "invalid_grant",
    "code_verifier",
    "id_token",
];

/// What a login test's gate has beyond the basics.
#[derive(Clone, Default)]
pub struct Opts {
    /// Lines of `[auth]`.
    pub auth: String,
    /// Lines of `[login]` (scopes, timeouts, on_missing...).
    pub login: String,
    /// Tables after `[login]` (`[[routes]]`, `[forward]`, `[reload]`...).
    pub tail: String,
    /// The session keys, first seals (default: one fresh key).
    pub keys: Vec<[u8; 32]>,
    /// The real binary instead of the in-process gate.
    pub process: bool,
}

impl Opts {
    pub fn new() -> Opts {
        Opts::default()
    }
    pub fn auth(mut self, s: &str) -> Opts {
        self.auth.push_str(s);
        self.auth.push('\n');
        self
    }
    pub fn login(mut self, s: &str) -> Opts {
        self.login.push_str(s);
        self.login.push('\n');
        self
    }
    pub fn tail(mut self, s: &str) -> Opts {
        self.tail.push_str(s);
        self.tail.push('\n');
        self
    }
    pub fn keys(mut self, keys: &[[u8; 32]]) -> Opts {
        self.keys = keys.to_vec();
        self
    }
    pub fn process(mut self) -> Opts {
        self.process = true;
        self
    }
}

/// A port that was free a moment ago, and `http://127.0.0.1:PORT`.
pub fn reserve() -> (u16, String) {
    let port = free_port();
    (port, format!("http://127.0.0.1:{port}"))
}

/// A fresh random 32-byte session key.
pub fn new_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut k);
    k
}

/// The `session_keys_file` text: one base64 key per line.
pub fn keys_text(keys: &[[u8; 32]]) -> String {
    keys.iter()
        .map(|k| base64::engine::general_purpose::STANDARD.encode(k) + "\n")
        .collect()
}

/// The gate's config.
pub fn gate_toml(
    port: u16,
    upstream: &str,
    issuer: &str,
    keys_file: &std::path::Path,
    o: &Opts,
) -> String {
    format!(
        "listen = \"127.0.0.1:{port}\"\n\
         [upstream]\nurl = \"{upstream}\"\n\
         [auth]\n{auth}\n\
         [auth.secret]\nvalue = \"{SECRET}\"\n\
         [[auth.issuers]]\nissuer = \"{issuer}\"\n\
         [login]\nprovider = \"oidc\"\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT_ID}\"\n\
         client_secret = \"{CLIENT_SECRET}\"\nexternal_url = \"http://127.0.0.1:{port}\"\n\
         session_keys_file = \"{keys}\"\n{login}\n\
         [[routes]]\nprefix = \"/public/\"\nauth = \"none\"\n\
         {tail}\n",
        auth = o.auth,
        login = o.login,
        tail = o.tail,
        keys = keys_file.display(),
    )
}

/// A gate with `[login]` and its upstream.
pub struct Site {
    pub gate: Gate,
    pub up: Upstream,
    pub port: u16,
    /// `http://127.0.0.1:PORT` = `login.external_url`.
    pub external: String,
    /// `127.0.0.1:PORT`: the gate's cookies in an [`Agent`]'s jar.
    pub host: String,
    pub keys_file: PathBuf,
    _dir: TempDir,
}

impl Site {
    /// Starts the upstream and the gate on `port` for `issuer`.
    pub async fn start(port: u16, issuer: &str, o: Opts) -> Site {
        let up = Upstream::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let keys_file = dir.path().join("session.keys");
        let keys = if o.keys.is_empty() {
            vec![new_key()]
        } else {
            o.keys.clone()
        };
        std::fs::write(&keys_file, keys_text(&keys)).unwrap();
        let toml = gate_toml(port, &up.url(), issuer, &keys_file, &o);
        let mut b = GateBuilder::toml(&toml).no_listen_flag();
        if o.process {
            b = b.process();
        }
        let gate = b.start();
        assert_eq!(gate.proxy.port(), port, "the gate listens elsewhere");
        Site {
            gate,
            up,
            port,
            external: format!("http://127.0.0.1:{port}"),
            host: format!("127.0.0.1:{port}"),
            keys_file,
            _dir: dir,
        }
    }

    /// `external_url` + path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.external)
    }

    /// The admin listener's `/metrics`.
    pub async fn metrics(&self) -> String {
        client()
            .get(self.gate.admin_url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .unwrap()
    }

    /// `jwtgate_login_total{result="ok"}` and the sum of the other results.
    pub async fn logins(&self) -> (f64, f64) {
        let m = self.metrics().await;
        let ok = metric_sum_with(&m, "jwtgate_login_total", &["result=\"ok\""]);
        let all = metric_sum(&m, "jwtgate_login_total").unwrap_or(0.0);
        (ok, all - ok)
    }

    /// The session cookie in this agent's jar.
    pub fn session(&self, agent: &Agent) -> Option<String> {
        agent.jar.get(&self.host, SESSION_COOKIE)
    }

    /// Every cookie of the gate this agent would send (the session, in
    /// however many cookies the gate split it): what a replay copies.
    pub fn cookie_header(&self, agent: &Agent) -> String {
        let root = Url::parse(&self.url("/")).unwrap();
        let h = agent.jar.header_for(&root).unwrap_or_default();
        assert!(
            h.split(';')
                .any(|p| p.trim().starts_with(&format!("{SESSION_COOKIE}="))),
            "no session cookie in {h:?}"
        );
        h
    }

    /// A browser holding exactly these cookies of the gate.
    pub fn replaying(&self, cookie_header: &str) -> Agent {
        Agent::with_cookies(&self.host, cookie_header)
    }

    /// The agent is signed in: `/.jwtgate/session` answers 200 for it.
    pub async fn assert_signed_in(&self, agent: &mut Agent, what: &str) -> Value {
        let page = agent.fetch(&self.url("/.jwtgate/session")).await;
        assert_eq!(
            page.status,
            200,
            "{what}: not signed in:\n{}",
            page.describe()
        );
        page.json()
    }

    /// The agent has no usable session: a navigation to a protected page is
    /// sent to sign in, a fetch gets 401 with no cookie, `/.jwtgate/session`
    /// is 401, and the upstream sees none of it.
    pub async fn assert_signed_out(&self, agent: &mut Agent, what: &str) {
        let hits = self.up.count();
        let nav = agent.navigate(&self.url("/app/private?q=1")).await;
        assert_login_redirect(&nav, &self.external, "/app/private?q=1", what);
        let xhr = agent.fetch(&self.url("/app/private")).await;
        assert_eq!(xhr.status, 401, "{what}: fetch:\n{}", xhr.describe());
        assert!(
            xhr.headers_named("set-cookie").is_empty(),
            "{what}: a 401 set a cookie:\n{}",
            xhr.describe()
        );
        let s = agent.fetch(&self.url("/.jwtgate/session")).await;
        assert_eq!(
            s.status,
            401,
            "{what}: /.jwtgate/session:\n{}",
            s.describe()
        );
        assert_eq!(self.up.count(), hits, "{what}: the upstream was reached");
    }
}

/// Starts a scripted provider and a gate in front of it.
pub async fn scripted(iss_supported: bool, o: Opts) -> (ScriptedOp, Site) {
    let op = ScriptedOp::start(iss_supported).await;
    let (port, _) = reserve();
    let site = Site::start(port, &op.issuer, o).await;
    (op, site)
}

/// Starts provider.mjs (with the gate's client and `provider_extra` at the
/// config's top level) and a gate in front of it; `None` when node or
/// tests/browser/node_modules are missing (a printed skip outside CI).
pub async fn real(provider_extra: Value, o: Opts) -> Option<(Provider, Site)> {
    if !provider_available() {
        return None;
    }
    let (port, external) = reserve();
    let op = Provider::start(&provider_config(
        vec![client_config(&external)],
        &provider_extra,
    ));
    let site = Site::start(port, &op.issuer, o).await;
    Some((op, site))
}

/// No extra provider settings.
pub fn defaults() -> Value {
    json!({})
}

/// A 302 to `/.jwtgate/login?rd=RD` on the gate's own origin (relative,
/// or absolute on `external`), never on a host the request named.
pub fn assert_login_redirect(page: &Page, external: &str, rd: &str, what: &str) {
    assert_eq!(
        page.status,
        302,
        "{what}: not sent to sign in:\n{}",
        page.describe()
    );
    let raw = page.location_raw().unwrap();
    let loc = Url::parse(external).unwrap().join(&raw).unwrap();
    assert_eq!(
        origin_of(&loc),
        external,
        "{what}: Location {raw:?} leaves the gate"
    );
    assert_eq!(loc.path(), "/.jwtgate/login", "{what}: Location {raw:?}");
    assert_eq!(
        query_param(&loc, "rd").as_deref(),
        Some(rd),
        "{what}: Location {raw:?} does not carry the return path"
    );
}

/// A 401 that sets no cookie.
pub fn assert_plain_401(page: &Page, what: &str) {
    assert_eq!(page.status, 401, "{what}:\n{}", page.describe());
    assert!(
        page.headers_named("set-cookie").is_empty(),
        "{what}: a 401 set a cookie:\n{}",
        page.describe()
    );
}

/// A refused callback: 400, no session cookie, no detail in the page.
pub fn assert_refused(page: &Page, what: &str) {
    assert_eq!(
        page.status,
        400,
        "{what}: the callback was not refused:\n{}",
        page.describe()
    );
    assert!(
        !page.sets_live_cookie(SESSION_COOKIE),
        "{what}: a refused callback set a session:\n{}",
        page.describe()
    );
    let lower = page.body.to_ascii_lowercase();
    for w in DETAIL_WORDS {
        assert!(
            !lower.contains(w),
            "{what}: the 400 page tells why ({w:?}):\n{}",
            page.describe()
        );
    }
}

/// A sign-in that succeeded and returned to `external` + `path_and_query`,
/// with a session cookie.
pub fn assert_landed(s: &SignIn, external: &str, path_and_query: &str, what: &str) {
    assert!(
        matches!(s.done.status, 302 | 303),
        "{what}: the callback did not redirect:\n{}",
        s.done.describe()
    );
    assert_eq!(
        s.landing().as_str(),
        format!("{external}{path_and_query}"),
        "{what}: landed elsewhere (Location {:?})",
        s.done.location_raw()
    );
    assert!(
        s.done.sets_live_cookie(SESSION_COOKIE),
        "{what}: no session cookie:\n{}",
        s.done.describe()
    );
}

/// The distinct values of `label` among the samples of `metric`.
pub fn label_values(text: &str, metric: &str, label: &str) -> BTreeSet<String> {
    let needle = format!("{label}=\"");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(metric))
        .filter(|rest| rest.starts_with('{'))
        .filter_map(|rest| {
            let i = rest.find(&needle)? + needle.len();
            let end = rest[i..].find('"')?;
            Some(rest[i..i + end].to_string())
        })
        .collect()
}

/// A bearer token the gate's `[auth.secret]` accepts.
pub fn bearer_for(user: &str) -> String {
    bearer(&hs256(SECRET, &json!({"sub": user, "exp": now() + 600})))
}

/// The `x-auth-user` the upstream saw last.
pub fn last_user(up: &Upstream) -> Option<String> {
    up.last().header("x-auth-user")
}

/// Every `Cookie` value the upstream saw on its last request, joined.
pub fn last_cookie_header(up: &Upstream) -> String {
    up.last().header_all("cookie").join("; ")
}

/// `GET /.jwtgate/logout` as a navigation: the page (200 HTML with a POST
/// form), the form's action (absolute) and its hidden fields.
pub async fn logout_form(b: &mut Agent, site: &Site) -> (Page, String, Vec<(String, String)>) {
    let page = b.navigate(&site.url("/.jwtgate/logout")).await;
    assert_eq!(
        page.status,
        200,
        "GET /.jwtgate/logout:\n{}",
        page.describe()
    );
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{}",
        page.describe()
    );
    let form = tags(&page.body, "form")
        .into_iter()
        .find(|t| tag_attr(t, "method").is_some_and(|m| m.eq_ignore_ascii_case("post")))
        .unwrap_or_else(|| panic!("no POST form on the logout page:\n{}", page.body));
    let action = tag_attr(form, "action")
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "/.jwtgate/logout".into());
    let action = page.url.join(&action).unwrap().to_string();
    assert!(
        action.starts_with(&site.external),
        "the logout form posts elsewhere: {action}"
    );
    let fields = hidden_inputs(&page.body);
    (page, action, fields)
}

/// `POST /.jwtgate/logout` with the form's fields, this `Origin` (or none)
/// and extra headers (e.g. a `Referer`).
pub async fn post_logout(
    b: &mut Agent,
    site: &Site,
    fields: &[(String, String)],
    origin: Option<&str>,
    extra: &[(&str, &str)],
) -> Page {
    let f: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    b.post_form(&site.url("/.jwtgate/logout"), origin, extra, &f)
        .await
}
