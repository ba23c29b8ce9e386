//! The gate's own sign-in page (`[login] provider = "builtin"`, issue 21
//! part 1), with the real gate: a plain HTML form under the strict CSP and
//! `no-store`, every value escaped; a CSRF token bound to the browser's
//! pre-session cookie (missing or another browser's: 403); a wrong user and
//! a wrong password answered byte for byte alike; the password grant's
//! failure limits, shared by two gates over a real Redis (429 with
//! `Retry-After`); success: 303 to the checked return path and a session
//! the upstream sees as the user; every hostile `rd` back to `/`; sign-out
//! without a provider; the configuration's rules.

use std::path::{Path, PathBuf};

use reqwest::Url;
use serde_json::Value;
use tempfile::TempDir;

use crate::support::oidc::*;
use crate::support::*;

use super::common::*;
use super::replicas::Redis;

pub const PASSWORD: &str = "correct horse battery staple";
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";
const PRE_SESSION: &str = "__Host-jwtgate-flow-signin";
const BAD_CREDENTIALS: &str = "The user name or password is incorrect.";

/// `USER:$argon2id$...` made by `jwtgate hash-password`.
async fn hash_line(user: &str, password: &str) -> String {
    let pw = format!("{password}\n");
    let out = tokio::task::spawn_blocking(move || {
        run_jwtgate(&["hash-password"]).stdin(pw.as_bytes()).run()
    })
    .await
    .unwrap();
    assert_eq!(out.code, Some(0), "{}", out.all());
    format!("{user}:{}\n", out.stdout.trim())
}

/// A users file (alice, [`PASSWORD`]), a session key and a stylesheet.
pub struct Files {
    pub dir: TempDir,
    pub users: PathBuf,
    pub keys: PathBuf,
    pub css: PathBuf,
}

pub async fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, hash_line(ALICE, PASSWORD).await).unwrap();
    let keys = dir.path().join("session.keys");
    std::fs::write(&keys, keys_text(&[new_key()])).unwrap();
    let css = dir.path().join("page.css");
    std::fs::write(&css, "main{border:1px solid #123456}").unwrap();
    Files {
        dir,
        users,
        keys,
        css,
    }
}

/// The config of a gate on `port` with the built-in page; `tail` after it.
pub fn builtin_toml(port: u16, upstream: &str, f: &Files, tail: &str) -> String {
    let p = |p: &Path| p.display().to_string();
    format!(
        "listen = \"127.0.0.1:{port}\"\n\
         [upstream]\nurl = \"{upstream}\"\n\
         [issuer]\nusers_file = \"{users}\"\nmax_failures = 3\n\
         [issuer.claims]\n{ALICE} = {{ role = \"editor\" }}\n\
         [login]\nprovider = \"builtin\"\nexternal_url = \"http://127.0.0.1:{port}\"\n\
         session_keys_file = \"{keys}\"\npage_title = \"Acme <Intranet> & co\"\n\
         stylesheet_file = \"{css}\"\n\
         [forward]\nclaims_headers = {{ role = \"X-Auth-Role\" }}\n\
         [[routes]]\nprefix = \"/public/\"\nauth = \"none\"\n{tail}\n",
        users = p(&f.users),
        keys = p(&f.keys),
        css = p(&f.css),
    )
}

/// A gate with the built-in page and its upstream.
pub struct Site {
    pub gate: Gate,
    pub up: Upstream,
    pub external: String,
    pub host: String,
}

impl Site {
    pub async fn start(f: &Files, tail: &str) -> Site {
        let (port, external) = reserve();
        let up = Upstream::start().await;
        let gate = GateBuilder::toml(&builtin_toml(port, &up.url(), f, tail))
            .no_listen_flag()
            .start();
        Site {
            gate,
            up,
            host: format!("127.0.0.1:{port}"),
            external,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.external)
    }

    /// `GET /.jwtgate/login?rd=RD` as a navigation, and its form's fields.
    pub async fn form(&self, b: &mut Agent, rd: Option<&str>) -> (Page, Vec<(String, String)>) {
        let url = match rd {
            Some(rd) => self.url(&format!("/.jwtgate/login?rd={}", enc(rd))),
            None => self.url("/.jwtgate/login"),
        };
        let page = b.navigate(&url).await;
        assert_eq!(page.status, 200, "{}", page.describe());
        let fields = hidden_inputs(&page.body);
        (page, fields)
    }

    /// Posts the form with these credentials (and the hidden fields given).
    pub async fn post(
        &self,
        b: &mut Agent,
        hidden: &[(String, String)],
        user: &str,
        password: &str,
    ) -> Page {
        let mut f: Vec<(&str, &str)> = hidden
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        f.push(("username", user));
        f.push(("password", password));
        b.post_form(&self.url("/.jwtgate/login"), Some("null"), &[], &f)
            .await
    }

    pub async fn logins(&self, result: &str) -> f64 {
        let m = client()
            .get(self.gate.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric_sum_with(
            &m,
            "jwtgate_login_total",
            &[&format!("result=\"{result}\"")],
        )
    }
}

fn hidden(fields: &[(String, String)], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// The form page again, with `status` and the generic message.
fn assert_form_again(page: &Page, status: u16, what: &str) {
    assert_eq!(page.status, status, "{what}:\n{}", page.describe());
    assert!(
        page.body
            .contains("<form method=\"post\" action=\"/.jwtgate/login\">"),
        "{what}: no form:\n{}",
        page.body
    );
    assert!(
        !page.sets_live_cookie(SESSION_COOKIE),
        "{what}: a session was set:\n{}",
        page.describe()
    );
    assert_eq!(page.header("cache-control").as_deref(), Some("no-store"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_is_plain_html_under_the_strict_csp_and_never_cached() {
    let f = files().await;
    let site = Site::start(&f, "").await;
    let mut b = Agent::new();
    let (page, fields) = site.form(&mut b, Some("/app/page?x=1&y=2")).await;
    assert_eq!(page.header("content-security-policy").as_deref(), Some(CSP));
    assert_eq!(page.header("cache-control").as_deref(), Some("no-store"));
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{}",
        page.describe()
    );
    let html = &page.body;
    assert!(!html.to_ascii_lowercase().contains("<script"), "{html}");
    assert!(html.contains("<form method=\"post\" action=\"/.jwtgate/login\">"));
    assert!(html.contains("name=\"username\"") && html.contains("type=\"password\""));
    assert!(
        html.contains("<title>Acme &lt;Intranet&gt; &amp; co</title>"),
        "{html}"
    );
    assert!(
        html.contains("main{border:1px solid #123456}"),
        "the stylesheet"
    );
    assert_eq!(hidden(&fields, "rd").as_deref(), Some("/app/page?x=1&y=2"));
    let csrf = hidden(&fields, "csrf").expect("a csrf field");
    assert!(csrf.len() >= 32, "{csrf}");
    // The pre-session cookie: sealed, HttpOnly, Secure, Lax, ten minutes;
    // its value is not the token.
    let c = page.set_cookie(PRE_SESSION).expect("a pre-session cookie");
    assert!(c.is_live());
    assert!(!c.value.contains(&csrf));
    let raw = c.raw.to_ascii_lowercase();
    for attr in [
        "httponly",
        "secure",
        "samesite=lax",
        "path=/",
        "max-age=600",
    ] {
        assert!(raw.contains(attr), "{attr} missing: {}", c.raw);
    }
    // A second visit in the same browser keeps its token (other tabs' forms
    // stay good); another browser gets another one.
    let (_, again) = site.form(&mut b, None).await;
    assert_eq!(hidden(&again, "csrf"), Some(csrf.clone()));
    assert_eq!(hidden(&again, "rd").as_deref(), Some("/"));
    let (_, other) = site.form(&mut Agent::new(), None).await;
    assert_ne!(hidden(&other, "csrf"), Some(csrf));
    // Other methods; and the provider-only endpoints do not exist here.
    let put = b.send("PUT", &site.url("/.jwtgate/login"), &[], None).await;
    assert_eq!(put.status, 405);
    for path in [
        "/.jwtgate/callback?code=x&state=y",
        "/.jwtgate/backchannel-logout",
    ] {
        let r = b.navigate(&site.url(path)).await;
        assert_eq!(r.status, 404, "{path}");
    }
    let r = client()
        .post(site.url("/.jwtgate/backchannel-logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("logout_token=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // A protected page sends a navigation to this form, not elsewhere.
    let nav = b.navigate(&site.url("/app/deep?q=1")).await;
    assert_login_redirect(&nav, &site.external, "/app/deep?q=1", "a navigation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_return_path_is_never_echoed_raw() {
    let f = files().await;
    let site = Site::start(&f, "").await;
    let mut b = Agent::new();
    for rd in [
        "/app/\"><script>alert(1)</script>",
        "/\"onmouseover=\"alert(1)",
        "javascript:alert(1)",
        "/a'b<img src=x onerror=alert(1)>",
    ] {
        let (page, fields) = site.form(&mut b, Some(rd)).await;
        let lower = page.body.to_ascii_lowercase();
        assert!(!lower.contains("<script"), "{rd}: {}", page.body);
        assert!(!lower.contains("<img"), "{rd}: {}", page.body);
        assert!(!page.body.contains("\"onmouseover"), "{rd}: {}", page.body);
        assert_eq!(hidden(&fields, "rd").as_deref(), Some("/"), "{rd}");
    }
    // A query with quotes and ampersands the check lets through is escaped.
    let (page, _) = site.form(&mut b, Some("/app/q?a='x'&b=1")).await;
    assert!(
        page.body.contains("value=\"/app/q?a=&#39;x&#39;&amp;b=1\""),
        "{}",
        page.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_without_this_browsers_token_is_refused_with_403() {
    let f = files().await;
    let site = Site::start(&f, "").await;
    let mut mine = Agent::new();
    let (_, my_fields) = site.form(&mut mine, Some("/app/x")).await;
    let mut theirs = Agent::new();
    let (_, their_fields) = site.form(&mut theirs, Some("/app/x")).await;
    let hits = site.up.count();

    // Another browser's token, with the right password.
    let p = site.post(&mut mine, &their_fields, ALICE, PASSWORD).await;
    assert_form_again(&p, 403, "another browser's token");
    assert!(!p.body.contains(BAD_CREDENTIALS));
    let mine_again = hidden_inputs(&p.body);
    assert_eq!(
        hidden(&mine_again, "csrf"),
        hidden(&my_fields, "csrf"),
        "the 403 form carries this browser's own token"
    );
    // No token at all.
    let rd_only = vec![("rd".to_string(), "/app/x".to_string())];
    let p = site.post(&mut theirs, &rd_only, ALICE, PASSWORD).await;
    assert_form_again(&p, 403, "no token");
    // A browser without the pre-session cookie, replaying a token.
    let p = site
        .post(&mut Agent::new(), &my_fields, ALICE, PASSWORD)
        .await;
    assert_form_again(&p, 403, "no pre-session cookie");
    assert_eq!(site.up.count(), hits);
    assert_eq!(site.logins("csrf_mismatch").await, 3.0);
    assert_eq!(site.logins("ok").await, 0.0);
    // The 403 gave the browser a fresh form that works.
    let again = hidden_inputs(&p.body);
    let mut fresh = Agent::new();
    let (_, _) = site.form(&mut fresh, None).await;
    let p = site.post(&mut fresh, &again, ALICE, PASSWORD).await;
    assert_eq!(p.status, 403, "a token of a form shown to another browser");
    // The browser that was refused signs in with the form it got back.
    let p = site.post(&mut mine, &mine_again, ALICE, PASSWORD).await;
    assert_eq!(p.status, 303, "{}", p.describe());
    assert_eq!(p.location_raw(), Some(site.url("/app/x")));
}

/// The parts of an answer that must not differ between a wrong user and a
/// wrong password: status, headers (but the request id and date), body.
fn comparable(p: &Page) -> (u16, Vec<(String, String)>, String) {
    let mut h: Vec<(String, String)> = p
        .headers
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "x-request-id" | "date"))
        .cloned()
        .collect();
    h.sort();
    (p.status, h, p.body.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_user_and_a_wrong_password_get_the_same_answer() {
    let f = files().await;
    let site = Site::start(&f, "").await;
    let mut b = Agent::new();
    let (_, fields) = site.form(&mut b, Some("/app/x")).await;
    let wrong_password = site.post(&mut b, &fields, ALICE, "not the password").await;
    let wrong_user = site.post(&mut b, &fields, "nobody-here", PASSWORD).await;
    assert_form_again(&wrong_password, 401, "a wrong password");
    assert!(wrong_password.body.contains(BAD_CREDENTIALS));
    assert_eq!(
        comparable(&wrong_password),
        comparable(&wrong_user),
        "the two answers differ:\n{}\n{}",
        wrong_password.describe(),
        wrong_user.describe()
    );
    for p in [&wrong_password, &wrong_user] {
        assert!(!p.body.contains(ALICE) && !p.body.contains("nobody-here"));
        assert!(p.headers_named("set-cookie").is_empty(), "{}", p.describe());
    }
    assert_eq!(site.logins("bad_credentials").await, 2.0);
    // The same form still signs in afterwards.
    let ok = site.post(&mut b, &fields, ALICE, PASSWORD).await;
    assert_eq!(ok.status, 303, "{}", ok.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_goes_back_to_rd_with_a_session_the_upstream_sees() {
    let f = files().await;
    let site = Site::start(&f, "").await;
    let mut b = Agent::new();
    let (_, fields) = site.form(&mut b, Some("/app/page?x=1&y=2")).await;
    let done = site.post(&mut b, &fields, ALICE, PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.describe());
    assert_eq!(
        done.location_raw().as_deref(),
        Some(site.url("/app/page?x=1&y=2").as_str())
    );
    assert!(done.sets_live_cookie(SESSION_COOKIE), "{}", done.describe());
    let pre = done
        .set_cookie(PRE_SESSION)
        .expect("the pre-session cookie");
    assert!(
        !pre.is_live(),
        "the pre-session cookie is spent: {}",
        pre.raw
    );
    let session = b
        .jar
        .get(&site.host, SESSION_COOKIE)
        .expect("a session cookie");

    let page = b.navigate(&site.url("/app/page?x=1&y=2")).await;
    assert_eq!(page.status, 200, "{}", page.describe());
    let seen = site.up.last();
    assert_eq!(seen.path, "/app/page");
    assert_eq!(seen.header("x-auth-user").as_deref(), Some(ALICE));
    assert_eq!(seen.header("x-auth-role").as_deref(), Some("editor"));
    assert!(
        !seen
            .header_all("cookie")
            .join(";")
            .contains("__Host-jwtgate"),
        "the gate's cookies reached the upstream"
    );
    let who: Value = b.fetch(&site.url("/.jwtgate/session")).await.json();
    assert_eq!(who["user"], ALICE);
    assert_eq!(who["claims"]["sub"], ALICE);
    assert_eq!(who["claims"]["iss"], "jwtgate");
    assert_eq!(who["claims"]["role"], "editor");
    // No refresh: it ends at idle_timeout (default 30 minutes) unless used.
    let ends = who["expires_at"].as_i64().expect("expires_at");
    assert!(
        (now() + 1790..=now() + 1800).contains(&ends),
        "expires_at {ends}, now {}",
        now()
    );

    // Sign-out: no provider, straight to post_logout_redirect; the old
    // cookie is refused afterwards.
    let out = b
        .post_form(
            &site.url("/.jwtgate/logout"),
            Some(&site.external),
            &[],
            &[],
        )
        .await;
    assert_eq!(out.status, 303, "{}", out.describe());
    assert_eq!(out.location_raw(), Some(site.url("/")));
    let mut replay = Agent::with_cookies(&site.host, &format!("{SESSION_COOKIE}={session}"));
    let r = replay.fetch(&site.url("/app/after")).await;
    assert_plain_401(&r, "the signed-out cookie");
    assert_eq!(site.logins("ok").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_return_path_falls_back_to_the_root() {
    let f = files().await;
    let site = Site::start(&f, "").await;
    let hostile = [
        "//evil.example/x",
        "https://evil.example/x",
        "http://evil.example",
        "/\\evil.example",
        "\\/evil.example",
        "/%5Cevil.example",
        "/%2F/evil.example",
        "%2F%2Fevil.example",
        "/%252F%252Fevil.example",
        "https:evil.example",
        "/\tevil.example",
        "/%09/evil.example",
        "javascript:alert(1)",
        "//127.0.0.1@evil.example",
        "/./%2e/evil",
    ];
    let mut b = Agent::new();
    for rd in hostile {
        let (_, fields) = site.form(&mut b, Some(rd)).await;
        assert_eq!(hidden(&fields, "rd").as_deref(), Some("/"), "GET rd={rd:?}");
    }
    // The POST checks its own rd too (a form edited by hand): a few of them,
    // each a real sign-in that lands on the root.
    for rd in [
        "//evil.example/x",
        "https://evil.example/x",
        "/\\evil.example",
    ] {
        let mut b = Agent::new();
        let (_, fields) = site.form(&mut b, None).await;
        let mut fields: Vec<(String, String)> =
            fields.into_iter().filter(|(k, _)| k != "rd").collect();
        fields.push(("rd".into(), rd.into()));
        let done = site.post(&mut b, &fields, ALICE, PASSWORD).await;
        assert_eq!(done.status, 303, "{rd}: {}", done.describe());
        let loc = Url::parse(&done.location_raw().unwrap()).unwrap();
        assert_eq!(loc.as_str(), site.url("/"), "POST rd={rd:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_out_is_shared_by_two_gates_over_redis() {
    let Some(redis) = Redis::start() else { return };
    let f = files().await;
    let store = format!("[store]\nurl = \"{}\"", redis.url());
    let a = Site::start(&f, &store).await;
    let b = Site::start(&f, &store).await;
    for site in [&a, &b] {
        let url = site.gate.admin_url("/readyz");
        eventually(std::time::Duration::from_secs(10), "the store", || async {
            let body: Value = client().get(&url).send().await.ok()?.json().await.ok()?;
            (body["store"]["up"] == true).then_some(())
        })
        .await;
    }
    // max_failures = 3: two wrong passwords on A, one on B...
    let mut on_a = Agent::new();
    let (_, fa) = a.form(&mut on_a, None).await;
    let mut on_b = Agent::new();
    let (_, fb) = b.form(&mut on_b, None).await;
    let p = a.post(&mut on_a, &fa, ALICE, "wrong-1").await;
    assert_form_again(&p, 401, "first failure, on A");
    let p = a.post(&mut on_a, &fa, ALICE, "wrong-2").await;
    assert_form_again(&p, 401, "second failure, on A");
    let p = b.post(&mut on_b, &fb, ALICE, "wrong-3").await;
    assert_form_again(&p, 401, "third failure, on B");
    // ...and alice is locked out on both, the right password included.
    for (site, agent, fields, what) in [(&b, &mut on_b, &fb, "B"), (&a, &mut on_a, &fa, "A")] {
        let p = site.post(agent, fields, ALICE, PASSWORD).await;
        assert_form_again(&p, 429, &format!("locked out on {what}"));
        let wait: u64 = p
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Retry-After: {}", p.describe()));
        assert!((1..=300).contains(&wait), "Retry-After {wait}");
        assert!(p.body.contains("Too many failed sign-ins"), "{}", p.body);
        assert_eq!(site.logins("rate_limited").await, 1.0, "{what}");
    }
    // The counters are Redis's, under the same keys as the password grant's.
    let keys = redis.command(&["KEYS", "*login:user:*"]);
    assert_eq!(keys.len(), 1, "{keys:?}");
}

/// `jwtgate check-config` on a config with `login` as the `[login]` lines
/// (after provider = "builtin" and the basics) and `issuer` as `[issuer]`'s.
async fn check(f: &Files, issuer: &str, login: &str) -> RunOutput {
    let toml = format!(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[issuer]\n{issuer}\n\
         [login]\nprovider = \"builtin\"\nexternal_url = \"http://127.0.0.1:8080\"\n\
         session_keys_file = \"{}\"\n{login}\n",
        f.keys.display()
    );
    tokio::task::spawn_blocking(move || run_jwtgate(&["check-config"]).toml(&toml).run())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configuration_names_what_is_wrong() {
    let f = files().await;
    let users = format!("users_file = \"{}\"", f.users.display());
    // Good, and no other key source needed: the page is one.
    let ok = check(
        &f,
        &users,
        &format!("stylesheet_file = \"{}\"", f.css.display()),
    )
    .await;
    assert_eq!(ok.code, Some(0), "{}", ok.all());

    let bad_css = f.dir.path().join("bad.css");
    std::fs::write(&bad_css, "</style><script>alert(1)</script>").unwrap();
    let missing = f.dir.path().join("missing.css");
    let cases: Vec<(String, String, &[&str])> = vec![
        (String::new(), String::new(), &["issuer.users_file"]),
        (
            users.clone(),
            "client_id = \"gate\"".into(),
            &["login.client_id", "builtin"],
        ),
        (
            users.clone(),
            "issuer = \"https://idp.example.com\"".into(),
            &["login.issuer"],
        ),
        (
            users.clone(),
            format!("stylesheet_file = \"{}\"", missing.display()),
            &["login.stylesheet_file", "missing.css"],
        ),
        (
            users.clone(),
            format!("stylesheet_file = \"{}\"", bad_css.display()),
            &["login.stylesheet_file", "bad.css"],
        ),
        (
            users.clone(),
            "page_title = \"\"".into(),
            &["login.page_title"],
        ),
    ];
    for (issuer, login, words) in cases {
        let out = check(&f, &issuer, &login).await;
        assert_eq!(out.code, Some(1), "{issuer} {login}: {}", out.all());
        for w in words {
            assert!(out.stderr.contains(w), "{login}: {w} not in {}", out.stderr);
        }
    }
    // The page's keys with an OpenID provider: refused, named.
    let toml = format!(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[auth.issuers]]\nissuer = \"https://idp.example.com\"\n\
         [login]\nissuer = \"https://idp.example.com\"\nclient_id = \"gate\"\n\
         external_url = \"http://127.0.0.1:8080\"\nsession_keys_file = \"{}\"\npage_title = \"x\"\n",
        f.keys.display()
    );
    let out = tokio::task::spawn_blocking(move || run_jwtgate(&["check-config"]).toml(&toml).run())
        .await
        .unwrap();
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.stderr.contains("login.page_title"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_through_the_form_in_chromium_with_javascript_off() {
    if !crate::support::browser::chromium_available() {
        return;
    }
    let f = files().await;
    let site = Site::start(&f, "").await;
    crate::support::browser::run_scenario(
        "builtin_signin",
        &[
            ("GATE_URL", &site.external),
            ("LOGIN_USER", ALICE),
            ("LOGIN_PASSWORD", PASSWORD),
            ("PROTECTED_PATH", "/app/page?x=1&y=2"),
            ("PAGE_TITLE", "Acme <Intranet> & co"),
        ],
    )
    .await;
    assert!(
        site.up.seen().iter().any(|s| s.path == "/app/page"
            && s.query.as_deref() == Some("x=1&y=2")
            && s.header("x-auth-user").as_deref() == Some(ALICE)),
        "the upstream never served the page to alice: {:?}",
        site.up.seen()
    );
    assert_eq!(site.logins("bad_credentials").await, 1.0);
    assert_eq!(site.logins("ok").await, 1.0);
}
