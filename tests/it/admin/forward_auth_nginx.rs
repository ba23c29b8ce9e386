//! Browser sessions through the forward-auth listener behind the real
//! nginx (issue 21): nginx routes `/.jwtgate/` to the gate's proxy listener
//! and everything else through `auth_request` to the forward-auth
//! listener, then to the upstream, exactly as the README's snippet says. A
//! browser signs in through nginx (the scripted provider), and its session
//! reaches the upstream as identity headers; a navigation without a
//! session ends as nginx's 302 to the sign-in; a script's request keeps
//! its 401. The same in headless Chromium with the real provider
//! (tests/browser/scenarios/forward_auth.mjs). The Traefik answers (a 302
//! the ingress passes on as it is) are checked against the listener
//! directly: there is no Traefik here.
//!
//! Without nginx (or node, its modules and Chromium) those tests say
//! SKIPPED, except under CI.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::oidc::*;
use crate::support::*;

/// The location blocks of the README's nginx snippet, for a site whose
/// app is `app` and whose gate listens on `proxy` and `forward_auth`.
fn site_conf(port: u16, proxy: &str, forward_auth: &str, app: &str) -> String {
    format!(
        r#"
  server {{
    listen 127.0.0.1:{port};
    # The gate's own endpoints (sign-in, callback, sign-out, session).
    location /.jwtgate/ {{
      proxy_pass http://{proxy};
      proxy_set_header Host $http_host;
    }}
    location = /_jwtgate {{
      internal;
      proxy_pass http://{forward_auth};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
    }}
    location / {{
      auth_request /_jwtgate;
      auth_request_set $jwtgate_user $upstream_http_x_auth_user;
      auth_request_set $jwtgate_email $upstream_http_x_auth_email;
      auth_request_set $jwtgate_signin $upstream_http_x_jwtgate_signin;
      auth_request_set $jwtgate_cookie $upstream_http_set_cookie;
      add_header Set-Cookie $jwtgate_cookie;
      error_page 401 = @jwtgate_signin;
      proxy_set_header X-Auth-User $jwtgate_user;
      proxy_set_header X-Auth-Email $jwtgate_email;
      proxy_pass http://{app};
    }}
    location @jwtgate_signin {{
      if ($jwtgate_signin = "") {{
        return 401;
      }}
      return 302 $jwtgate_signin;
    }}
  }}
"#
    )
}

/// nginx from Debian with `server` in its http block; killed on drop.
async fn start_nginx(dir: &Path, port: u16, server: &str) -> Option<ProcessGroup> {
    let nginx = require_program("nginx")?;
    let d = dir.display();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{server}}}\n"
        ),
    )
    .unwrap();
    let mut p = ProcessGroup::spawn(
        Command::new(nginx)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("startup.log"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "nginx",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = p.0.try_wait() {
            panic!(
                "nginx exited with {status}: {}",
                std::fs::read_to_string(dir.join("startup.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "nginx did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(p)
}

/// A gate with `[login]` whose `external_url` is nginx's origin, and a
/// forward-auth listener; `login`: more lines of `[login]`; `auth`: lines
/// of `[auth]`.
fn gate_with(
    external: &str,
    issuer: &str,
    up: &Upstream,
    keys: &Path,
    login: &str,
    auth: &str,
) -> Gate {
    let key = run_jwtgate(&["gen-key", "--session"]).run();
    assert_eq!(key.code, Some(0), "{key:?}");
    std::fs::write(keys, &key.stdout).unwrap();
    GateBuilder::toml(&format!(
        "forward_auth_listen = \"127.0.0.1:0\"\n\
         [upstream]\nurl = \"{}\"\n\
         [auth]\n{auth}\n\
         [[auth.issuers]]\nissuer = \"{issuer}\"\n\
         [login]\nprovider = \"oidc\"\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT_ID}\"\n\
         client_secret = \"{CLIENT_SECRET}\"\nexternal_url = \"{external}\"\n\
         session_keys_file = \"{}\"\n{login}\n\
         [forward]\nclaims_headers = {{ email = \"X-Auth-Email\" }}\n\
         [[routes]]\nprefix = \"/public/\"\nauth = \"none\"\n",
        up.url(),
        keys.display()
    ))
    .expect_forward_auth()
    .start()
}

fn gate(external: &str, issuer: &str, up: &Upstream, keys: &Path, login: &str) -> Gate {
    gate_with(external, issuer, up, keys, login, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_carries_a_session_and_sends_a_navigation_to_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let external = format!("http://127.0.0.1:{port}");
    let op = ScriptedOp::start(true).await;
    let up = Upstream::start().await;
    let gate = gate(&external, &op.issuer, &up, &dir.path().join("keys"), "");
    let app = up.url().trim_start_matches("http://").to_owned();
    let server = site_conf(
        port,
        &gate.proxy.to_string(),
        &gate.forward_auth.unwrap().to_string(),
        &app,
    );
    let Some(_nginx) = start_nginx(dir.path(), port, &server).await else {
        return;
    };

    // A navigation without a session: nginx answers the 302 to sign in,
    // on the gate's external origin, with the page to come back to.
    let mut browser = Agent::new();
    let page = browser.navigate(&format!("{external}/app/page?x=1")).await;
    assert_eq!(page.status, 302, "{}", page.describe());
    assert_eq!(
        page.location_raw().as_deref(),
        Some(format!("{external}/.jwtgate/login?rd=%2Fapp%2Fpage%3Fx%3D1").as_str()),
        "{}",
        page.describe()
    );
    // A script's request keeps its 401; nothing reached the app.
    let xhr = browser.fetch(&format!("{external}/app/data")).await;
    assert_eq!(xhr.status, 401, "{}", xhr.describe());
    assert_eq!(up.count(), 0, "the app was reached without a session");
    // A public route needs nothing.
    let public = browser.navigate(&format!("{external}/public/x")).await;
    assert_eq!(public.status, 200, "{}", public.describe());
    assert_eq!(up.count(), 1);

    // The whole sign-in through nginx: /.jwtgate/login and the callback go
    // to the proxy listener, the provider is asked, the cookie is set on
    // nginx's origin, and the browser lands on the page it asked for.
    let s = browser
        .sign_in_from(&format!("{external}/app/page?x=1"), ALICE, "")
        .await;
    assert!(
        s.done.sets_live_cookie(SESSION_COOKIE),
        "{}",
        s.done.describe()
    );
    assert_eq!(
        s.landing().as_str(),
        format!("{external}/app/page?x=1"),
        "landed elsewhere"
    );
    let hits = up.count();
    let page = browser.navigate(s.landing().as_str()).await;
    assert_eq!(page.status, 200, "{}", page.describe());
    assert_eq!(up.count(), hits + 1, "the app answered");
    let seen = up.last();
    assert_eq!(seen.header_all("x-auth-user"), vec![ALICE.to_owned()]);
    assert_eq!(
        seen.header_all("x-auth-email"),
        vec!["alice@example.test".to_owned()]
    );
    // The session endpoint works through the ingress too.
    let who = browser.fetch(&format!("{external}/.jwtgate/session")).await;
    assert_eq!(who.status, 200, "{}", who.describe());
    assert_eq!(who.json()["user"], ALICE);

    // A client cannot bring its own identity: nginx overwrites it.
    let forged = browser
        .send(
            "GET",
            &format!("{external}/app/forged"),
            &[("x-auth-user", "root")],
            None,
        )
        .await;
    assert_eq!(forged.status, 200, "{}", forged.describe());
    assert_eq!(up.last().header_all("x-auth-user"), vec![ALICE.to_owned()]);

    // The gate's answers were counted on the forward-auth listener.
    let m = client()
        .get(gate.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric_sum_with(
            &m,
            "jwtgate_requests_total",
            &["listener=\"forward-auth\"", "reason=\"session\""]
        ) >= 2.0,
        "{m}"
    );
}

async fn ask(gate: &Gate, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(format!("http://{}/auth", gate.forward_auth.unwrap()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

const NAV: &[(&str, &str)] = &[
    ("accept", "text/html"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
];

/// A navigation's headers and `extra`.
fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = NAV.to_vec();
    h.extend_from_slice(extra);
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_gets_a_302_to_sign_in_and_nginx_a_401_with_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let external = "https://cms.example.com";
    let gate = gate(
        external,
        "http://127.0.0.1:9/realms/test",
        &up,
        &dir.path().join("keys"),
        "redirect_hosts = [\".example.com\"]",
    );
    let location = |r: &reqwest::Response| header(r, "location");
    let login = |rd: &str| format!("{external}/.jwtgate/login?rd={rd}");

    // Traefik, the gate's own host: a path to come back to.
    let r = ask(
        &gate,
        &with(&[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "cms.example.com"),
            ("x-forwarded-uri", "/docs/a?b=1"),
        ]),
    )
    .await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), login("%2Fdocs%2Fa%3Fb%3D1"));
    // Another host of redirect_hosts: the whole URL.
    let r = ask(
        &gate,
        &with(&[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "wiki.example.com"),
            ("x-forwarded-uri", "/p"),
        ]),
    )
    .await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), login("https%3A%2F%2Fwiki.example.com%2Fp"));
    // A host that is not allowed comes back to / (checked like any rd).
    let r = ask(
        &gate,
        &with(&[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.test"),
            ("x-forwarded-uri", "/p"),
        ]),
    )
    .await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), login("%2F"));
    // A script's request, or a POST, keeps its 401 and gets no URL.
    for (method, headers) in [
        (
            "GET",
            vec![("accept", "application/json"), ("sec-fetch-mode", "cors")],
        ),
        ("POST", NAV.to_vec()),
    ] {
        let mut h = headers.clone();
        h.extend([("x-forwarded-method", method), ("x-forwarded-uri", "/docs")]);
        let r = ask(&gate, &h).await;
        assert_eq!(r.status(), 401, "{method} {headers:?}");
        assert!(r.headers().get("x-jwtgate-signin").is_none());
        assert!(r.headers().get("location").is_none());
    }

    // nginx: 401 (all auth_request understands) with the URL in a header.
    let r = ask(
        &gate,
        &with(&[
            ("x-original-method", "GET"),
            ("x-original-uri", "/docs/a?b=1"),
        ]),
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "x-jwtgate-signin"), login("%2Fdocs%2Fa%3Fb%3D1"));
    assert!(r.headers().get("location").is_none());

    // The sign-in endpoints are let through (they are the gate's own).
    for uri in ["/.jwtgate/login?rd=%2F", "/.jwtgate/callback?code=x"] {
        let r = ask(
            &gate,
            &with(&[("x-forwarded-method", "GET"), ("x-forwarded-uri", uri)]),
        )
        .await;
        assert_eq!(r.status(), 200, "{uri}");
        assert!(r.headers().get("x-auth-user").is_none());
    }
    // Only those: another path under the prefix is decided like any other
    // (here: a navigation without a session is sent to sign in).
    for uri in ["/.jwtgate/admin", "/.jwtgate/login/extra", "/.jwtgate/"] {
        let r = ask(
            &gate,
            &with(&[("x-forwarded-method", "GET"), ("x-forwarded-uri", uri)]),
        )
        .await;
        assert_ne!(r.status(), 200, "{uri}");
    }

    // A session cookie (sealed with the gate's keys) is decided as the
    // proxy decides it: 200 with the identity headers.
    let config = std::fs::read_to_string(gate.config_path()).unwrap();
    let minted = run_jwtgate(&[
        "create-token",
        "--session",
        "-u",
        "carol",
        "--claim",
        "email=carol@example.com",
    ])
    .toml(&config)
    .run();
    assert_eq!(minted.code, Some(0), "{minted:?}");
    let cookie = minted.stdout.trim().to_owned();
    for uri_header in ["x-forwarded-uri", "x-original-uri"] {
        let r = ask(
            &gate,
            &with(&[
                ("x-forwarded-method", "GET"),
                (uri_header, "/docs"),
                ("cookie", &cookie),
            ]),
        )
        .await;
        assert_eq!(r.status(), 200, "{uri_header}");
        assert_eq!(header(&r, "x-auth-user"), "carol");
        assert_eq!(header(&r, "x-auth-email"), "carol@example.com");
    }
}

/// The same site in headless Chromium with the real provider
/// (tests/browser/scenarios/forward_auth.mjs): nginx's 302, the sign-in,
/// the page as the user, page scripts with Chromium's own cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_through_nginx_and_the_forward_auth_listener() {
    if !crate::support::browser::chromium_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let external = format!("http://127.0.0.1:{port}");
    let op = Provider::start(&provider_config(
        vec![client_config(&external)],
        &serde_json::json!({}),
    ));
    let up = Upstream::start().await;
    let gate = gate(&external, &op.issuer, &up, &dir.path().join("keys"), "");
    let app = up.url().trim_start_matches("http://").to_owned();
    let server = site_conf(
        port,
        &gate.proxy.to_string(),
        &gate.forward_auth.unwrap().to_string(),
        &app,
    );
    let Some(_nginx) = start_nginx(dir.path(), port, &server).await else {
        return;
    };
    crate::support::browser::run_scenario(
        "forward_auth",
        &[
            ("SITE_URL", &external),
            ("ISSUER", &op.issuer),
            ("LOGIN_USER", ALICE),
            ("LOGIN_PASSWORD", ALICE_PASSWORD),
            ("PROTECTED_PATH", "/app/page?x=1&y=2"),
        ],
    )
    .await;
    assert!(
        up.seen().iter().any(|s| s.path == "/app/page"
            && s.query.as_deref() == Some("x=1&y=2")
            && s.header("x-auth-user").as_deref() == Some(ALICE)),
        "the upstream never served the page to alice: {:?}",
        up.seen()
    );
}

/// A session refreshed by the forward-auth listener (4-second tokens, the
/// real provider): the re-sealed cookie is in the 200 answer, nginx hands
/// it to the browser (`add_header Set-Cookie`), and the browser goes on
/// with it, with no second refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_refreshed_behind_nginx_reaches_the_browser_as_a_new_cookie() {
    const TTL: u64 = 4;
    if !provider_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let external = format!("http://127.0.0.1:{port}");
    let op = Provider::start(&provider_config(
        vec![client_config(&external)],
        &serde_json::json!({"accessTokenTTL": TTL, "idTokenTTL": TTL}),
    ));
    let up = Upstream::start().await;
    let gate = gate_with(
        &external,
        &op.issuer,
        &up,
        &dir.path().join("keys"),
        "scopes = [\"openid\", \"profile\", \"email\", \"offline_access\"]",
        "leeway = \"0s\"",
    );
    let app = up.url().trim_start_matches("http://").to_owned();
    let server = site_conf(
        port,
        &gate.proxy.to_string(),
        &gate.forward_auth.unwrap().to_string(),
        &app,
    );
    let Some(_nginx) = start_nginx(dir.path(), port, &server).await else {
        return;
    };
    let mut browser = Agent::new();
    let s = browser
        .sign_in_from(&format!("{external}/app/start"), ALICE, ALICE_PASSWORD)
        .await;
    let signed_in = Instant::now();
    assert!(
        s.done.sets_live_cookie(SESSION_COOKIE),
        "{}",
        s.done.describe()
    );
    let host = format!("127.0.0.1:{port}");
    let before = browser.jar.get(&host, SESSION_COOKIE).unwrap();

    tokio::time::sleep(
        Duration::from_millis(TTL * 1000 + 1500).saturating_sub(signed_in.elapsed()),
    )
    .await;
    let page = browser.fetch(&format!("{external}/app/after")).await;
    assert_eq!(page.status, 200, "{}", page.describe());
    assert!(
        page.sets_live_cookie(SESSION_COOKIE),
        "nginx did not pass the re-sealed cookie on:\n{}",
        page.describe()
    );
    let after = browser.jar.get(&host, SESSION_COOKIE).unwrap();
    assert_ne!(before, after, "the browser keeps the old cookie");
    assert_eq!(up.last().header_all("x-auth-user"), vec![ALICE.to_owned()]);
    let page = browser.fetch(&format!("{external}/app/again")).await;
    assert_eq!(page.status, 200, "{}", page.describe());
    assert_eq!(
        stat(&op.stats().await, "token.refresh_token"),
        1,
        "one refresh"
    );
}
