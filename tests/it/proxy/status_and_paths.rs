//! The status exemption and path normalisation. Every request with a tricky
//! path is sent as raw bytes: HTTP clients and URL parsers normalise paths
//! themselves and would hide what the gate does.

use crate::support::*;

const SECRET: &str = "status-tests-secret-0123456789abcdef";
const STATUS: &str = "st-9f8e7d6c5b4a3210-status";

async fn start_with_status() -> (Upstream, Gate) {
    let (up, gate) = status_gate().await;
    (up, gate.start())
}

/// [`start_with_status`] with the real process, for a test that reads its logs.
async fn start_process_with_status() -> (Upstream, Gate) {
    let (up, gate) = status_gate().await;
    (up, gate.process().start())
}

async fn status_gate() -> (Upstream, GateBuilder) {
    let up = Upstream::start().await;
    let cfg = format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n[status]\ntoken = \"{STATUS}\"\n",
        up.url()
    );
    (up, GateBuilder::toml(&cfg))
}

fn req(method: &str, target: &str) -> Vec<u8> {
    crate::support::raw::build(method, target, &[], b"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_get_and_head_pass_without_the_token_parameter() {
    let (up, gate) = start_with_status().await;

    let resp = raw_get(gate.proxy, &format!("/status?token={STATUS}"), &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.gate_error().is_none());
    let seen = up.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/status");
    let q = seen.query.clone().unwrap_or_default();
    assert!(
        !q.contains("token") && !q.contains(STATUS),
        "token forwarded in query {q:?}"
    );
    assert!(
        seen.header("x-auth-user").is_none(),
        "identity header on an exempt request"
    );

    // Other parameters survive; only `token` is removed.
    let resp = raw_get(
        gate.proxy,
        &format!("/status?verbose=1&token={STATUS}&x=2"),
        &[],
    )
    .await;
    assert_eq!(resp.status, 200);
    let q = up.last().query.unwrap_or_default();
    assert!(!q.contains(STATUS), "token forwarded in query {q:?}");
    assert!(
        q.contains("verbose=1") && q.contains("x=2"),
        "other parameters lost: {q:?}"
    );

    let resp = raw_request(gate.proxy, &req("HEAD", &format!("/status?token={STATUS}"))).await;
    assert_eq!(resp.status, 200);
    let seen = up.last();
    assert_eq!(seen.method, "HEAD");
    assert!(!seen.query.unwrap_or_default().contains(STATUS));
    assert_eq!(up.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_with_wrong_or_missing_token_or_method_needs_a_jwt() {
    let (up, gate) = start_with_status().await;
    let cases = [
        ("GET", "/status".to_string()),
        ("GET", "/status?token=".to_string()),
        ("GET", "/status?token=wrong".to_string()),
        (
            "GET",
            format!("/status?token={}", &STATUS[..STATUS.len() - 1]),
        ),
        ("GET", format!("/status?token={STATUS}x")),
        ("GET", format!("/status?token={}", STATUS.to_uppercase())),
        ("GET", format!("/status?tokens={STATUS}")),
        ("GET", format!("/status?xtoken={STATUS}")),
        ("POST", format!("/status?token={STATUS}")),
        ("PUT", format!("/status?token={STATUS}")),
        ("DELETE", format!("/status?token={STATUS}")),
        ("OPTIONS", format!("/status?token={STATUS}")),
    ];
    let mut failures = Vec::new();
    for (method, target) in &cases {
        let resp = raw_request(gate.proxy, &req(method, target)).await;
        if resp.status != 401 || resp.gate_error().is_none() {
            failures.push(format!(
                "{method} {target}: {} {:?}",
                resp.status,
                resp.gate_error()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "should need a JWT:\n{}",
        failures.join("\n")
    );
    // The token in the Authorization header is not a JWT either.
    let resp = raw_get(
        gate.proxy,
        "/status",
        &[format!("Authorization: Bearer {STATUS}")],
    )
    .await;
    assert_eq!(resp.status, 401);
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_token_opens_only_the_exact_status_path() {
    let (up, gate) = start_with_status().await;
    let t = STATUS;
    // Variants that are NOT `/status` after normalisation: a JWT is needed.
    let needs_jwt = [
        format!("/status/?token={t}"),
        format!("/STATUS?token={t}"),
        format!("/Status?token={t}"),
        format!("/status/x?token={t}"),
        format!("/statusx?token={t}"),
        format!("/x/status?token={t}"),
        format!("/status.json?token={t}"),
        format!("/status%20?token={t}"),
        format!("/status/../admin?token={t}"),
        format!("/status/%2e%2e/admin?token={t}"),
        format!("/status/%2E%2E/admin?token={t}"),
        format!("/status/./?token={t}"),
        // RFC 3986 §5.2.4: a final `.` segment leaves a trailing slash.
        format!("/status/.?token={t}"),
        format!("/admin/../status/?token={t}"),
    ];
    let mut failures = Vec::new();
    for target in &needs_jwt {
        let resp = raw_get(gate.proxy, target, &[]).await;
        if resp.status != 401 {
            failures.push(format!("{target}: {} {:?}", resp.status, resp.gate_error()));
        }
    }
    // Ambiguous encodings are refused outright.
    for target in [
        format!("/status%2F..?token={t}"),
        format!("/status%2f?token={t}"),
        format!("/status%5C?token={t}"),
        format!("/status%00?token={t}"),
        // A path parameter: Java servers would read `/status`, others
        // `/status;x` (refused since path parameters are off by default).
        format!("/status;x?token={t}"),
        format!("/status%3Bx?token={t}"),
    ] {
        let resp = raw_get(gate.proxy, &target, &[]).await;
        if resp.status != 400 || resp.gate_error().as_deref() != Some("invalid_request") {
            failures.push(format!(
                "{target}: {} {:?} (want 400)",
                resp.status,
                resp.gate_error()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "wrongly handled:\n{}",
        failures.join("\n")
    );
    assert_eq!(up.count(), 0, "seen: {:?}", up.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_path_variants_that_normalise_to_status_are_exempt() {
    let (up, gate) = start_with_status().await;
    // Each normalises to exactly `/status` (unreserved characters decoded,
    // dot segments resolved, `//` merged), so each is the status path.
    let exempt = [
        "/st%61tus",
        "/%73tatus",
        "//status",
        "/./status",
        "/a/../status",
    ];
    for path in exempt {
        let resp = raw_get(gate.proxy, &format!("{path}?token={STATUS}"), &[]).await;
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
        let seen = up.last();
        assert_eq!(seen.path, "/status", "{path} forwarded as {}", seen.path);
        assert!(!seen.query.unwrap_or_default().contains(STATUS));
        // ... and the normalised path still needs the right token.
        let resp = raw_get(gate.proxy, &format!("{path}?token=wrong"), &[]).await;
        assert_eq!(resp.status, 401, "{path} with a wrong token");
    }
    assert_eq!(up.count(), exempt.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_token_never_appears_in_logs() {
    let (_up, gate) = start_process_with_status().await;
    for target in [
        format!("/status?token={STATUS}"),
        format!("/status/?token={STATUS}"),
        format!("/other?token={STATUS}"),
        format!("/status%2F..?token={STATUS}"),
    ] {
        let _ = raw_get(gate.proxy, &target, &[]).await;
    }
    let _ = raw_request(gate.proxy, &req("POST", &format!("/status?token={STATUS}"))).await;
    // Access-log lines are written around the response; give them a moment
    // by waiting for a later request's line... then check.
    let _ = raw_get(gate.proxy, "/last-request", &[]).await;
    let logs = gate.logs();
    assert!(!logs.contains(STATUS), "status token in logs:\n{logs}");
    assert!(!logs.contains(SECRET), "secret in logs:\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_status_token_the_status_path_needs_a_jwt() {
    let up = Upstream::start().await;
    let cfg = format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n",
        up.url()
    );
    let gate = GateBuilder::toml(&cfg).start();
    for target in ["/status", "/status?token=", "/status?token=x"] {
        let resp = raw_get(gate.proxy, target, &[]).await;
        assert_eq!(resp.status, 401, "{target}");
    }
    let jwt = brevia_token(SECRET, "alice", 600);
    let resp = raw_get(
        gate.proxy,
        "/status",
        &[format!("Authorization: Bearer {jwt}")],
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_status_path() {
    let up = Upstream::start().await;
    let cfg = format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n[status]\npath = \"/health/live\"\ntoken = \"{STATUS}\"\n",
        up.url()
    );
    let gate = GateBuilder::toml(&cfg).start();
    let resp = raw_get(gate.proxy, &format!("/health/live?token={STATUS}"), &[]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.last().path, "/health/live");
    let resp = raw_get(gate.proxy, &format!("/status?token={STATUS}"), &[]).await;
    assert_eq!(resp.status, 401);
    let resp = raw_get(gate.proxy, &format!("/health?token={STATUS}"), &[]).await;
    assert_eq!(resp.status, 401);
    assert_eq!(up.count(), 1);
}

async fn start_plain() -> (Upstream, Gate, String) {
    let up = Upstream::start().await;
    let cfg = format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n",
        up.url()
    );
    let gate = GateBuilder::toml(&cfg).start();
    let auth = format!(
        "Authorization: Bearer {}",
        brevia_token(SECRET, "alice", 600)
    );
    (up, gate, auth)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_receives_the_normalised_path() {
    let (up, gate, auth) = start_plain().await;
    let cases = [
        ("/a/./b/../c", "/a/c", None),
        ("/a//b///c", "/a/b/c", None),
        ("/a/%7Euser", "/a/~user", None),
        ("/%61%62%63", "/abc", None),
        ("/a/%2e%2e/b", "/b", None),
        ("/a/b/..", "/a/", None),
        ("/a/%20b", "/a/%20b", None),
        ("/a?x=1&y=%2F..%2F", "/a", Some("x=1&y=%2F..%2F")),
        ("/a?next=/b/../c", "/a", Some("next=/b/../c")),
    ];
    let mut failures = Vec::new();
    for (target, want_path, want_query) in cases {
        let resp = raw_get(gate.proxy, target, std::slice::from_ref(&auth)).await;
        if resp.status != 200 {
            failures.push(format!("{target}: status {} {}", resp.status, resp.text()));
            continue;
        }
        let echo = resp.json();
        if echo["path"] != want_path {
            failures.push(format!(
                "{target}: upstream path {} (want {want_path})",
                echo["path"]
            ));
        }
        if let Some(q) = want_query
            && echo["query"] != q
        {
            failures.push(format!(
                "{target}: upstream query {} (want {q})",
                echo["query"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(up.count(), cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_never_climb_above_the_root() {
    let (up, gate, auth) = start_plain().await;
    for target in [
        "/../../etc/passwd",
        "/a/../../etc/passwd",
        "/%2e%2e/etc/passwd",
    ] {
        let resp = raw_get(gate.proxy, target, std::slice::from_ref(&auth)).await;
        // Either refused, or clamped at the root as RFC 3986 §5.2.4 does.
        if resp.status == 200 {
            assert_eq!(resp.json()["path"], "/etc/passwd", "{target}");
        } else {
            assert_eq!(resp.status, 400, "{target}");
        }
    }
    for s in up.seen() {
        assert!(!s.path.contains(".."), "upstream saw {}", s.path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_paths_are_400_even_with_a_valid_token() {
    let (up, gate, auth) = start_plain().await;
    let targets = [
        "/a%2Fb",
        "/a%2fb",
        "/a%5Cb",
        "/a%5cb",
        "/a%00b",
        "/a%FFb",
        "/a%C3%28",
        "/%2F%2Fevil",
        "/a%252Fb/%2F",
    ];
    let mut failures = Vec::new();
    for target in targets {
        let resp = raw_get(gate.proxy, target, std::slice::from_ref(&auth)).await;
        let www = resp.header("www-authenticate").unwrap_or_default();
        if resp.status != 400
            || resp.gate_error().as_deref() != Some("invalid_request")
            || !www.starts_with(r#"Bearer realm="jwtgate", error="invalid_request""#)
        {
            failures.push(format!(
                "{target}: {} {:?} {www:?}",
                resp.status,
                resp.gate_error()
            ));
            continue;
        }
        if resp.json()["error"] != "invalid_request" {
            failures.push(format!("{target}: body {}", resp.text()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_encoding_is_not_decoded_twice() {
    let (up, gate, auth) = start_plain().await;
    // `%252F` is an encoded `%`, then `2F`: a backend or framework that
    // decodes twice reads `/`. The gate never decodes twice, and since it
    // cannot know whether the backend does, such a path has two meanings:
    // refused (issue 7; it used to be forwarded as it was).
    for target in ["/a%252Fb", "/a%252e%252e/b", "/a%2541"] {
        let resp = raw_get(gate.proxy, target, std::slice::from_ref(&auth)).await;
        assert_eq!(resp.status, 400, "{target}: {}", resp.text());
    }
    assert_eq!(up.count(), 0);
    // An encoded `%` that is not followed by an escape is a plain `%`.
    let resp = raw_get(gate.proxy, "/a%25b/100%25", std::slice::from_ref(&auth)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(up.last().path, "/a%25b/100%25");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_with_auth_none_match_normalised_paths_only() {
    let up = Upstream::start().await;
    let cfg = format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n\n[[routes]]\nprefix = \"/public/\"\nauth = \"none\"\n\n[[routes]]\npath = \"/open\"\nmethods = [\"GET\"]\nauth = \"none\"\n",
        up.url()
    );
    let gate = GateBuilder::toml(&cfg).start();
    for target in [
        "/public/a",
        "/public/",
        "/x/../public/b",
        "/%70ublic/c",
        "/open",
    ] {
        let resp = raw_get(gate.proxy, target, &["X-Auth-User: admin".into()]).await;
        assert_eq!(resp.status, 200, "{target} should be public");
        let seen = up.last();
        assert!(
            seen.header_all("x-auth-user").is_empty(),
            "{target}: a client-supplied identity reached the upstream"
        );
    }
    let before = up.count();
    for target in [
        "/public",
        "/publicx",
        "/public/../private",
        "/PUBLIC/a",
        "/open/",
        "/opened",
    ] {
        let resp = raw_get(gate.proxy, target, &[]).await;
        assert_eq!(resp.status, 401, "{target} should need a token");
    }
    let resp = raw_request(gate.proxy, &req("POST", "/open")).await;
    assert_eq!(resp.status, 401, "POST /open is not in the route's methods");
    assert_eq!(up.count(), before);
}
