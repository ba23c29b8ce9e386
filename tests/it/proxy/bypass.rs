//! What the backend sees must be what the gate decided: protocol upgrades,
//! path parameters and other ambiguous paths, header aliases and override
//! headers, Host disagreements, and tokens on exempt routes. Requests are
//! sent as raw bytes so that no client library tidies them first.

use crate::support::*;
use serde_json::json;

const SECRET: &str = "bypass-tests-secret-0123456789abcdef";

fn config(up: &Upstream, extra: &str) -> String {
    format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n{extra}\n\
         [[routes]]\nprefix = \"/public/\"\nauth = \"none\"\n\
         [[routes]]\nprefix = \"/admin\"\nrequire_claims = {{ role = \"admin\" }}\n",
        up.url()
    )
}

fn token(user: &str) -> String {
    hs256(SECRET, &json!({"sub": user, "exp": now() + 600}))
}

fn auth(user: &str) -> String {
    format!("Authorization: Bearer {}", token(user))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_and_unknown_upgrades_are_removed_not_forwarded() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    // The h2c smuggle: a request the gate lets through asks to switch the
    // connection to HTTP/2. It must reach the upstream as plain HTTP/1.1.
    for (target, extra) in [("/public/x", vec![]), ("/app", vec![auth("alice")])] {
        let mut headers = vec![
            "Connection: Upgrade, HTTP2-Settings".to_string(),
            "Upgrade: h2c".to_string(),
            "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA".to_string(),
        ];
        headers.extend(extra);
        let before = up.count();
        let resp = raw_request(
            gate.proxy,
            &crate::support::raw::build("GET", target, &headers, b""),
        )
        .await;
        assert_eq!(resp.status, 200, "{target}: {}", resp.text());
        assert_eq!(up.count(), before + 1);
        let seen = up.last();
        assert!(seen.header_all("upgrade").is_empty(), "{target}: {seen:?}");
        assert!(
            seen.header_all("http2-settings").is_empty(),
            "{target}: {seen:?}"
        );
        assert!(
            !seen
                .header_all("connection")
                .iter()
                .any(|c| c.to_ascii_lowercase().contains("upgrade")),
            "{target}: {seen:?}"
        );
    }
    // Other protocols, a websocket upgrade on a method other than GET, and
    // one over HTTP/1.0 are not upgrades either.
    for (method, version, upgrade) in [
        ("GET", "1.1", "TLS/1.2"),
        ("GET", "1.1", "h2c, foo"),
        ("POST", "1.1", "websocket"),
        ("GET", "1.0", "websocket"),
    ] {
        let req = format!(
            "{method} /public/u HTTP/{version}\r\nHost: gate.test\r\nConnection: Upgrade\r\n\
             Upgrade: {upgrade}\r\nContent-Length: 0\r\n\r\n"
        );
        let resp = raw_request(gate.proxy, req.as_bytes()).await;
        assert_eq!(resp.status, 200, "{method} HTTP/{version} {upgrade}");
        let seen = up.last();
        assert!(
            seen.header_all("upgrade").is_empty(),
            "{method} HTTP/{version} {upgrade}: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_can_be_turned_off_and_connect_is_refused() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "[forward]\nupgrades = []\n")).start();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: gate.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{}\r\n\r\n",
        auth("alice")
    );
    let resp = raw_request(gate.proxy, req.as_bytes()).await;
    assert_ne!(resp.status, 101);
    assert!(up.last().header_all("upgrade").is_empty());

    let before = up.count();
    for target in ["gate.test:443", "127.0.0.1:22"] {
        let req = format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{}\r\n\r\n",
            auth("alice")
        );
        let resp = raw_request(gate.proxy, req.as_bytes()).await;
        assert_eq!(resp.status, 405, "CONNECT {target}: {}", resp.text());
        assert_eq!(resp.gate_error().as_deref(), Some("invalid_request"));
    }
    assert_eq!(up.count(), before, "CONNECT reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_is_refused_as_a_configured_upgrade() {
    let up = Upstream::start().await;
    let out = run_jwtgate(&["check-config"])
        .toml(&config(
            &up,
            "[forward]\nupgrades = [\"websocket\", \"h2c\"]\n",
        ))
        .run();
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.all().contains("forward.upgrades[1]"), "{}", out.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_are_refused_by_default() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    let alice = auth("alice");
    for target in [
        "/public/..;/admin/secret",
        "/public/..;x=1/admin/secret",
        "/admin;x=1/secret",
        "/admin/secret;jsessionid=1",
        "/public/%2e%2e;/admin/secret",
        "/public/..%3B/admin/secret",
        "/public/..%3b/admin/secret",
        "/public;/x",
        // Other spellings some backend reads differently.
        "/public/%252e%252e/admin/secret",
        "/public/%2e%2e%252fadmin",
        "/public/a%0d%0ab",
        "/public/a%7f",
        "/public/..%5cadmin",
    ] {
        for headers in [vec![], vec![alice.clone()]] {
            let resp = raw_get(gate.proxy, target, &headers).await;
            assert_eq!(
                resp.status,
                400,
                "{target} (token: {}): {}",
                !headers.is_empty(),
                resp.text()
            );
            assert_eq!(resp.gate_error().as_deref(), Some("invalid_request"));
        }
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_when_allowed_are_removed_before_routing() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "[paths]\nallow_path_parameters = true\n")).start();
    // The route decision and the forwarded path are both the path with the
    // parameters removed: the public prefix no longer matches.
    let resp = raw_get(gate.proxy, "/public/..;/admin/secret", &[]).await;
    assert_eq!(resp.status, 401, "{}", resp.text());
    let resp = raw_get(gate.proxy, "/admin;x=1/secret", &[auth("alice")]).await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(up.count(), 0);
    let admin = hs256(
        SECRET,
        &json!({"sub": "root", "role": "admin", "exp": now() + 600}),
    );
    let resp = raw_get(
        gate.proxy,
        "/public/..;/admin/secret;jsessionid=9?q=1",
        &[format!("Authorization: Bearer {admin}")],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = up.last();
    assert_eq!(seen.path, "/admin/secret");
    assert_eq!(seen.query.as_deref(), Some("q=1"));
    let resp = raw_get(gate.proxy, "/public/x;jsessionid=1", &[]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.last().path, "/public/x");
    // An encoded semicolon stays ambiguous.
    let resp = raw_get(gate.proxy, "/public/..%3B/admin", &[]).await;
    assert_eq!(resp.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_insensitive_routes_for_backends_that_ignore_case() {
    let up = Upstream::start().await;
    let alice = auth("alice");
    // Default: routes are case-sensitive, so `/ADMIN` is another path.
    let gate = GateBuilder::toml(&config(&up, "")).start();
    let resp = raw_get(gate.proxy, "/ADMIN/x", std::slice::from_ref(&alice)).await;
    assert_eq!(resp.status, 200);
    drop(gate);
    let gate = GateBuilder::toml(&config(&up, "[paths]\ncase_insensitive = true\n")).start();
    for target in ["/ADMIN/x", "/Admin", "/aDmIn/x/y", "/%41dmin/x"] {
        let resp = raw_get(gate.proxy, target, std::slice::from_ref(&alice)).await;
        assert_eq!(resp.status, 403, "{target}: {}", resp.text());
    }
    let resp = raw_get(gate.proxy, "/PUBLIC/x", &[]).await;
    assert_eq!(resp.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_paths_are_normalised_when_loaded() {
    let up = Upstream::start().await;
    let cfg = format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n\
         [[routes]]\nprefix = \"/x/../secret/./area/\"\nrequire_claims = {{ role = \"admin\" }}\n\
         [[routes]]\npath = \"/caf\u{e9}\"\nauth = \"none\"\n",
        up.url()
    );
    let gate = GateBuilder::toml(&cfg).start();
    let resp = raw_get(gate.proxy, "/secret/area/x", &[auth("alice")]).await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    let resp = raw_get(gate.proxy, "/caf%C3%A9", &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    // A route that can never match a request is a configuration error.
    let out = run_jwtgate(&["check-config"])
        .toml(&format!(
            "[auth.secret]\nvalue = \"{SECRET}\"\n[[routes]]\nprefix = \"/a;b/\"\nauth = \"none\"\n"
        ))
        .run();
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.all().contains("routes[0].prefix"), "{}", out.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_aliases_and_overrides_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(
        &up,
        "[forward]\nclaims_headers = { email = \"X-Auth-Email\" }\n",
    ))
    .start();
    let spoof = [
        "X_Auth_User: root",
        "x_auth_user: root",
        "X-Auth_User: root",
        "X_AUTH_EMAIL: root@evil",
        "X_Forwarded_For: 6.6.6.6",
        "X_Forwarded_Host: evil.test",
        "X_Real_IP: 6.6.6.6",
        "X-HTTP-Method-Override: DELETE",
        "X_HTTP_Method_Override: DELETE",
        "X-HTTP-Method: DELETE",
        "X-Method-Override: DELETE",
        "X-Original-URL: /admin/secret",
        "X-Rewrite-URL: /admin/secret",
        "X-Original-URI: /admin/secret",
        "X-Forwarded-Uri: /admin/secret",
        "X-Forwarded-Method: DELETE",
        "X-Forwarded-Prefix: /admin",
        "X-HTTP-Host-Override: evil.test",
        "X-Forwarded-Scheme: evil",
        "X-Real-IP: 6.6.6.6",
        "Forwarded: for=6.6.6.6;host=evil.test",
    ];
    let mut headers: Vec<String> = spoof.iter().map(|s| s.to_string()).collect();
    headers.push(auth("alice"));
    let resp = raw_get(gate.proxy, "/app", &headers).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = up.last();
    for h in &seen.headers {
        let v = h.1.to_ascii_lowercase();
        assert!(
            !v.contains("root")
                && !v.contains("6.6.6.6")
                && !v.contains("evil")
                && !v.contains("delete")
                && !v.contains("/admin"),
            "spoofed header reached the upstream: {h:?}\nall: {:?}",
            seen.headers
        );
        assert!(!h.0.contains('_'), "alias reached the upstream: {h:?}");
    }
    assert_eq!(seen.header("x-auth-user").as_deref(), Some("alice"));
    assert!(seen.header("forwarded").is_none());
    assert!(seen.header("x-real-ip").is_none());
    // The same on a public route (no identity at all).
    let resp = raw_get(
        gate.proxy,
        "/public/x",
        &spoof.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = up.last();
    assert!(seen.header_all("x-auth-user").is_empty(), "{seen:?}");
    assert!(seen.headers.iter().all(|h| !h.0.contains('_')), "{seen:?}");
    // Unrelated headers with underscores pass.
    let resp = raw_get(gate.proxy, "/public/x", &["X_Custom_Thing: 1".to_string()]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.last().header("x_custom_thing").as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_headers_and_trusted_forwarding_view() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(
        &up,
        "[forward]\npass_headers = [\"X-HTTP-Method-Override\"]\ntrust_forwarded_headers = true\n",
    ))
    .start();
    let resp = raw_get(
        gate.proxy,
        "/public/x",
        &[
            "X-HTTP-Method-Override: PATCH".to_string(),
            "X_HTTP_Method_Override: DELETE".to_string(),
            "X-Real-IP: 6.6.6.6".to_string(),
            "Forwarded: for=6.6.6.6".to_string(),
            "X-Original-URL: /admin".to_string(),
        ],
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = up.last();
    assert_eq!(
        seen.header("x-http-method-override").as_deref(),
        Some("PATCH")
    );
    assert!(seen.header_all("x_http_method_override").is_empty());
    assert!(seen.header("x-original-url").is_none());
    // Rewritten from the gate's own view of the client.
    assert_eq!(seen.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    let fwd = seen.header("forwarded").unwrap_or_default();
    assert!(fwd.starts_with("for=\"127.0.0.1\";proto=http"), "{fwd}");

    // An identity header can never be passed.
    let out = run_jwtgate(&["check-config"])
        .toml(&config(
            &up,
            "[forward]\npass_headers = [\"x_auth_user\"]\n",
        ))
        .run();
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(
        out.all().contains("forward.pass_headers[0]"),
        "{}",
        out.all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_must_have_one_meaning() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    let two =
        b"GET /public/x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n";
    let resp = raw_request(gate.proxy, two).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    let abs = b"GET http://a.test/public/x HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n";
    let resp = raw_request(gate.proxy, abs).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(up.count(), 0);
    // Agreeing forms pass (case and the default port do not matter).
    for req in [
        &b"GET http://a.test/public/x HTTP/1.1\r\nHost: A.test\r\nConnection: close\r\n\r\n"[..],
        &b"GET http://a.test:80/public/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"[..],
    ] {
        let resp = raw_request(gate.proxy, req).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    // HTTP/2: a host header that disagrees with :authority.
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = hyper::Request::get(gate.url("/public/h2"))
        .header("host", "evil.test")
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.expect("h2c request");
    assert_eq!(resp.status(), 400);
    let _ = resp.into_body().collect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_forwarded_only_when_verified_on_this_request() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(
        &up,
        "[auth]\nforward_token = true\ntoken_from = [\"header\", \"query:access_token\", \"cookie:jwt\"]\n",
    ))
    .start();
    let t = token("alice");
    // Exempt route: an unverified token is never passed on, wherever it was.
    let resp = raw_get(
        gate.proxy,
        "/public/x?access_token=forged&a=1",
        &[
            "Authorization: Bearer forged".to_string(),
            "Cookie: jwt=forged; other=1".to_string(),
        ],
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = up.last();
    assert!(seen.header_all("authorization").is_empty(), "{seen:?}");
    assert_eq!(seen.query.as_deref(), Some("a=1"));
    assert_eq!(seen.header("cookie").as_deref(), Some("other=1"));
    // Verified from the header: kept.
    let resp = raw_get(gate.proxy, "/app", &[format!("Authorization: Bearer {t}")]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        up.last().header("authorization"),
        Some(format!("Bearer {t}"))
    );
    // Verified from the query: no Authorization is passed on (another
    // scheme's header included), and the query token is removed.
    let resp = raw_get(
        gate.proxy,
        &format!("/app?access_token={t}"),
        &["Authorization: Basic YTpi".to_string()],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = up.last();
    assert!(seen.header_all("authorization").is_empty(), "{seen:?}");
    assert_eq!(seen.query, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragment_in_the_target_never_changes_the_route() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    let resp = raw_get(gate.proxy, "/public/x#/../../admin/secret", &[]).await;
    // Either refused or forwarded without the fragment; never the admin path.
    assert!(resp.status == 400 || resp.status == 200, "{}", resp.status);
    for seen in up.seen() {
        assert!(!seen.path.contains("admin"), "{seen:?}");
    }
}
