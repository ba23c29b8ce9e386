//! SPEC's rejection table, row by row, and every way a token can be bad.
//! Each rejection must come from the gate (x-jwtgate-error) with the exact
//! status, WWW-Authenticate and JSON code, and must not reach the upstream.

use crate::support::idp::StandaloneKey;
use crate::support::*;
use serde_json::{Value, json};

const SECRET: &str = "rejection-tests-secret-0123456789abcdef";

fn config(up_url: &str, extra: &str) -> String {
    format!("[upstream]\nurl = \"{up_url}\"\n{extra}\n[auth.secret]\nvalue = \"{SECRET}\"\n")
}

async fn start() -> (Upstream, Gate) {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up.url(), "")).start();
    (up, gate)
}

/// [`start`] with the real process, for a test that reads its logs.
async fn start_process() -> (Upstream, Gate) {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up.url(), "")).process().start();
    (up, gate)
}

async fn get(gate: &Gate, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = client().get(gate.url(path));
    if let Some(t) = token {
        req = req.header("authorization", bearer(t));
    }
    req.send().await.expect("request to gate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_is_401_without_error_attribute() {
    let (up, gate) = start().await;
    let resp = get(&gate, "/anything", None).await;
    assert_eq!(
        header(&resp, "www-authenticate"),
        r#"Bearer realm="jwtgate""#
    );
    assert_rejection(resp, 401, "unauthorized").await;
    // An empty bearer value is no token either way: not forwarded.
    let resp = client()
        .get(gate.url("/anything"))
        .header("authorization", "Bearer ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realm_is_configurable() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up.url(), "[auth]\nrealm = \"my-app\"\n")).start();
    let resp = get(&gate, "/", None).await;
    assert_eq!(
        header(&resp, "www-authenticate"),
        r#"Bearer realm="my-app""#
    );
    let resp = get(&gate, "/", Some("garbage")).await;
    let www = header(&resp, "www-authenticate");
    assert!(
        www.starts_with(r#"Bearer realm="my-app", error="invalid_token""#),
        "{www}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_token_is_401_with_error_and_description() {
    let (up, gate) = start().await;
    let token = brevia_token("some-other-secret", "alice", 600);
    let resp = get(&gate, "/", Some(&token)).await;
    let www = header(&resp, "www-authenticate");
    assert!(
        www.starts_with(r#"Bearer realm="jwtgate", error="invalid_token""#),
        "WWW-Authenticate: {www:?}"
    );
    assert!(
        www.contains(r#"error_description=""#),
        "WWW-Authenticate: {www:?}"
    );
    assert!(
        !www.contains(&token),
        "the token is echoed in WWW-Authenticate"
    );
    let body = assert_rejection(resp, 401, "invalid_token").await;
    assert!(
        !body.to_string().contains(&token),
        "the token is echoed in the body"
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_are_400() {
    let (up, gate) = start().await;
    let good = brevia_token(SECRET, "alice", 600);
    let resp = raw_get(
        gate.proxy,
        "/",
        &[
            format!("Authorization: Bearer {good}"),
            format!("Authorization: Bearer {good}"),
        ],
    )
    .await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.gate_error().as_deref(), Some("invalid_request"));
    let www = resp.header("www-authenticate").unwrap_or_default();
    assert!(
        www.starts_with(r#"Bearer realm="jwtgate", error="invalid_request""#),
        "WWW-Authenticate: {www:?}"
    );
    assert_eq!(resp.json()["error"], "invalid_request");
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_not_allowed_is_403_insufficient_scope() {
    let up = Upstream::start().await;
    let gate =
        GateBuilder::toml(&config(&up.url(), "[auth]\nallowed_users = [\"alice\"]\n")).start();
    let resp = get(&gate, "/", Some(&brevia_token(SECRET, "mallory", 600))).await;
    let www = header(&resp, "www-authenticate");
    assert!(
        www.starts_with(r#"Bearer realm="jwtgate", error="insufficient_scope""#),
        "WWW-Authenticate: {www:?}"
    );
    assert_rejection(resp, 403, "insufficient_scope").await;
    assert_eq!(up.count(), 0);
    let resp = get(&gate, "/", Some(&brevia_token(SECRET, "alice", 600))).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refusing_is_502() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let gate = GateBuilder::toml(&config(&format!("http://{addr}"), "")).start();
    let resp = get(&gate, "/", Some(&brevia_token(SECRET, "alice", 600))).await;
    assert_rejection(resp, 502, "bad_gateway").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_too_slow_is_504() {
    let up = Upstream::start().await;
    let cfg = format!(
        "[upstream]\nurl = \"{}\"\nresponse_timeout = \"300ms\"\n[auth.secret]\nvalue = \"{SECRET}\"\n",
        up.url()
    );
    let gate = GateBuilder::toml(&cfg).start();
    let token = brevia_token(SECRET, "alice", 600);
    let resp = get(&gate, "/slow?ms=5000", Some(&token)).await;
    assert_rejection(resp, 504, "gateway_timeout").await;
    // A fast request still passes.
    assert_eq!(get(&gate, "/slow?ms=1", Some(&token)).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_pass_through_unmarked() {
    let (up, gate) = start().await;
    let token = brevia_token(SECRET, "alice", 600);
    for status in [401u16, 403, 500, 502] {
        let resp = get(&gate, &format!("/code?status={status}"), Some(&token)).await;
        assert_eq!(resp.status().as_u16(), status);
        assert!(
            gate_error(&resp).is_none(),
            "upstream {status} marked as a gate error"
        );
    }
    assert_eq!(up.count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_says_expired() {
    let (up, gate) = start().await;
    let token = hs256(SECRET, &json!({"user": "alice", "exp": now() - 3600}));
    let body = assert_rejection(get(&gate, "/", Some(&token)).await, 401, "invalid_token").await;
    let desc = body["error_description"].as_str().unwrap().to_lowercase();
    assert!(desc.contains("expired"), "description: {desc:?}");
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leeway_tolerates_small_clock_skew() {
    let (up, gate) = start().await;
    let t = now();
    // Default leeway is 60 s.
    let cases = [
        json!({"user": "a", "exp": t - 10}),
        json!({"user": "a", "exp": t + 600, "nbf": t + 10}),
        json!({"user": "a", "exp": t + 600, "iat": t + 10}),
    ];
    for p in &cases {
        let resp = get(&gate, "/", Some(&hs256(SECRET, p))).await;
        assert_eq!(resp.status(), 200, "payload {p} within leeway");
    }
    assert_eq!(up.count(), cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leeway_is_configurable() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up.url(), "[auth]\nleeway = \"5s\"\n")).start();
    let t = now();
    let resp = get(
        &gate,
        "/",
        Some(&hs256(SECRET, &json!({"user": "a", "exp": t - 30}))),
    )
    .await;
    assert_rejection(resp, 401, "invalid_token").await;
    let resp = get(
        &gate,
        "/",
        Some(&hs256(SECRET, &json!({"user": "a", "exp": t + 30}))),
    )
    .await;
    assert_eq!(resp.status(), 200);
}

/// Every crafted token here must be refused with 401 invalid_token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_tokens_are_refused() {
    let (up, gate) = start_process().await;
    let t = now();
    let hs256_header = json!({"alg": "HS256", "typ": "JWT"});
    let good_payload = json!({"user": "alice", "exp": t + 600});
    let good = sign_hmac(SECRET.as_bytes(), &hs256_header, &good_payload);
    let good_sig = good.rsplit('.').next().unwrap().to_string();
    let attacker = b"attacker-chosen-secret-0123456789";

    // The valid token passes first, so that a verified-token cache is warm.
    assert_eq!(get(&gate, "/", Some(&good)).await.status(), 200);

    let p = |v: Value| v;
    let mut cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            craft(&json!({"alg": "none", "typ": "JWT"}), &good_payload, ""),
        ),
        (
            "alg None",
            craft(&json!({"alg": "None", "typ": "JWT"}), &good_payload, ""),
        ),
        (
            "alg NONE",
            craft(&json!({"alg": "NONE"}), &good_payload, ""),
        ),
        (
            "alg none with a signature",
            craft(&json!({"alg": "none"}), &good_payload, &good_sig),
        ),
        (
            "stripped signature",
            craft(&hs256_header, &good_payload, ""),
        ),
        (
            "tampered payload",
            craft(
                &hs256_header,
                &json!({"user": "admin", "exp": t + 600}),
                &good_sig,
            ),
        ),
        (
            "extended exp",
            craft(
                &hs256_header,
                &json!({"user": "alice", "exp": t + 999_999}),
                &good_sig,
            ),
        ),
        (
            "wrong secret",
            sign_hmac(attacker, &hs256_header, &good_payload),
        ),
        ("HS512 when only HS256", hs("HS512", SECRET, &good_payload)),
        ("HS384 when only HS256", hs("HS384", SECRET, &good_payload)),
        (
            "RS256 header over an HMAC signature",
            sign_hmac_with(
                "HS256",
                SECRET.as_bytes(),
                &json!({"alg": "RS256"}),
                &good_payload,
            ),
        ),
        (
            "expired",
            hs256(SECRET, &p(json!({"user": "alice", "exp": t - 3600}))),
        ),
        (
            "nbf in the future",
            hs256(
                SECRET,
                &json!({"user": "alice", "exp": t + 7200, "nbf": t + 3600}),
            ),
        ),
        (
            "iat in the future",
            hs256(
                SECRET,
                &json!({"user": "alice", "exp": t + 7200, "iat": t + 3600}),
            ),
        ),
        (
            "exp as a string",
            hs256(
                SECRET,
                &json!({"user": "alice", "exp": (t + 600).to_string()}),
            ),
        ),
        (
            "exp null",
            hs256(SECRET, &json!({"user": "alice", "exp": null})),
        ),
        (
            "exp bool",
            hs256(SECRET, &json!({"user": "alice", "exp": true})),
        ),
        (
            "nbf as a string",
            hs256(
                SECRET,
                &json!({"user": "alice", "exp": t + 600, "nbf": t.to_string()}),
            ),
        ),
        (
            "iat as a string",
            hs256(
                SECRET,
                &json!({"user": "alice", "exp": t + 600, "iat": t.to_string()}),
            ),
        ),
        ("missing exp", hs256(SECRET, &json!({"user": "alice"}))),
        (
            "unknown crit extension",
            sign_hmac(
                SECRET.as_bytes(),
                &json!({"alg": "HS256", "crit": ["x-acme"], "x-acme": true}),
                &good_payload,
            ),
        ),
        (
            "crit b64",
            sign_hmac(
                SECRET.as_bytes(),
                &json!({"alg": "HS256", "crit": ["b64"], "b64": true}),
                &good_payload,
            ),
        ),
        (
            "embedded oct jwk with the attacker's key",
            sign_hmac(
                attacker,
                &json!({"alg": "HS256", "jwk": {"kty": "oct", "k": b64url(attacker)}}),
                &good_payload,
            ),
        ),
        ("two parts", good[..good.rfind('.').unwrap()].to_string()),
        ("four parts", format!("{good}.{good_sig}")),
        ("garbage", "not-a-jwt".to_string()),
        (
            "header not JSON",
            format!(
                "{}.{}.{}",
                b64url(b"{alg:HS256"),
                b64url(good_payload.to_string().as_bytes()),
                good_sig
            ),
        ),
        ("payload not JSON", {
            let input = format!(
                "{}.{}",
                b64url(hs256_header.to_string().as_bytes()),
                b64url(b"hello")
            );
            format!(
                "{input}.{}",
                hmac_sig("HS256", SECRET.as_bytes(), input.as_bytes())
            )
        }),
        ("payload a JSON array", {
            let input = format!(
                "{}.{}",
                b64url(hs256_header.to_string().as_bytes()),
                b64url(b"[1,2]")
            );
            format!(
                "{input}.{}",
                hmac_sig("HS256", SECRET.as_bytes(), input.as_bytes())
            )
        }),
        ("padded base64 signature", format!("{good}==")),
    ];
    // An RS256 token from a key of the attacker's, with that key embedded.
    let rogue = StandaloneKey::new("rogue", "RS256");
    cases.push((
        "RS256 with embedded jwk",
        rogue.sign(&json!({"jwk": rogue.public_jwk()}), &good_payload),
    ));

    let mut failures = Vec::new();
    for (name, token) in &cases {
        let resp = get(&gate, "/", Some(token)).await;
        let status = resp.status().as_u16();
        let marker = gate_error(&resp);
        let www = header(&resp, "www-authenticate");
        let body = resp.text().await.unwrap_or_default();
        if status != 401
            || marker.as_deref() != Some("invalid_token")
            || !www.contains(r#"error="invalid_token""#)
        {
            failures.push(format!("{name}: {status} {marker:?} {www:?} {body}"));
        }
        if body.contains(token.as_str()) {
            failures.push(format!("{name}: token echoed in the body"));
        }
    }
    assert!(
        failures.is_empty(),
        "not refused as invalid_token:\n{}",
        failures.join("\n")
    );
    assert_eq!(up.count(), 1, "a crafted token reached the upstream");
    let logs = gate.logs();
    for (name, token) in &cases {
        if token.len() > 20 {
            assert!(!logs.contains(token.as_str()), "{name}: token in the logs");
        }
    }
}

/// `jku` / `x5u` headers must never make the gate fetch anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_urls_in_token_headers_are_never_fetched() {
    let (up, gate) = start().await;
    let idp = Idp::start().await;
    idp.add_rsa("evil");
    let payload = json!({"user": "alice", "exp": now() + 600, "iss": idp.issuer});
    let attacker = b"attacker-chosen-secret-0123456789";
    let tokens = [
        idp.sign_with_header("evil", &json!({"jku": idp.jwks_uri()}), &payload),
        idp.sign_with_header(
            "evil",
            &json!({"x5u": format!("{}/cert.pem", idp.issuer)}),
            &payload,
        ),
        sign_hmac(
            attacker,
            &json!({"alg": "HS256", "jku": idp.jwks_uri()}),
            &payload,
        ),
        sign_hmac(
            attacker,
            &json!({"alg": "HS256", "x5u": format!("{}/x5u", idp.issuer)}),
            &payload,
        ),
    ];
    for (i, t) in tokens.iter().enumerate() {
        let resp = get(&gate, "/", Some(t)).await;
        assert_eq!(resp.status(), 401, "token #{i}");
        assert_eq!(
            gate_error(&resp).as_deref(),
            Some("invalid_token"),
            "token #{i}"
        );
    }
    assert!(
        idp.all_fetches().is_empty(),
        "the gate fetched {:?}",
        idp.all_fetches()
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_in_query_or_cookie_is_ignored_unless_configured() {
    let (up, gate) = start().await;
    let token = brevia_token(SECRET, "alice", 600);
    let resp = get(
        &gate,
        &format!("/?access_token={token}&token={token}"),
        None,
    )
    .await;
    assert_eq!(resp.status(), 401);
    let resp = client()
        .get(gate.url("/"))
        .header(
            "cookie",
            format!("access_token={token}; token={token}; jwt={token}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_query_and_cookie_when_configured_is_removed() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(
        &up.url(),
        "[auth]\ntoken_from = [\"header\", \"query:access_token\", \"cookie:jwt\"]\n",
    ))
    .start();
    let token = brevia_token(SECRET, "alice", 600);

    let resp = get(&gate, &format!("/q?a=1&access_token={token}&b=2"), None).await;
    assert_eq!(resp.status(), 200);
    let seen = up.last();
    assert_eq!(seen.header("x-auth-user").as_deref(), Some("alice"));
    let q = seen.query.unwrap_or_default();
    assert!(
        !q.contains("access_token") && !q.contains(&token),
        "query forwarded: {q}"
    );
    assert!(
        q.contains("a=1") && q.contains("b=2"),
        "other parameters lost: {q}"
    );

    let resp = client()
        .get(gate.url("/c"))
        .header("cookie", format!("theme=dark; jwt={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.last();
    assert_eq!(seen.header("x-auth-user").as_deref(), Some("alice"));
    let cookies = seen.header_all("cookie").join("; ");
    assert!(
        !cookies.contains(&token),
        "token cookie forwarded: {cookies}"
    );
    assert!(
        cookies.contains("theme=dark"),
        "other cookies lost: {cookies:?}"
    );

    // Only the configured names are read.
    let resp = get(&gate, &format!("/?token={token}"), None).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(up.count(), 2);
}

/// SPEC: an HS* token is refused if its `iss` names one of `[[auth.issuers]]`
/// (so the shared secret can never impersonate a trusted IdP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs_token_naming_a_trusted_issuer_is_refused() {
    let up = Upstream::start().await;
    let idp = Idp::start().await;
    idp.add_rsa("k1");
    let extra = format!("[[auth.issuers]]\nissuer = \"{}\"\n", idp.issuer);
    let gate = GateBuilder::toml(&config(&up.url(), &extra)).start();
    let t = now();
    let plain = hs256(SECRET, &json!({"sub": "alice", "exp": t + 600}));
    assert_eq!(get(&gate, "/", Some(&plain)).await.status(), 200);
    let posing = hs256(
        SECRET,
        &json!({"sub": "alice", "exp": t + 600, "iss": idp.issuer}),
    );
    assert_rejection(get(&gate, "/", Some(&posing)).await, 401, "invalid_token").await;
    // An RS256 token of the IdP's own key passes; the same claims under an
    // HS256 header signed with the IdP's public key material do not.
    let rs = idp.sign("k1", &idp.claims("bob"));
    assert_eq!(get(&gate, "/", Some(&rs)).await.status(), 200);
    let n = idp.public_jwk("k1")["n"].as_str().unwrap().to_string();
    let confused = sign_hmac(
        idp.public_key_pem("k1").as_bytes(),
        &json!({"alg": "HS256", "kid": "k1"}),
        &idp.claims("mallory"),
    );
    assert_rejection(get(&gate, "/", Some(&confused)).await, 401, "invalid_token").await;
    let confused_n = sign_hmac(
        n.as_bytes(),
        &json!({"alg": "HS256", "kid": "k1"}),
        &idp.claims("mallory"),
    );
    assert_rejection(
        get(&gate, "/", Some(&confused_n)).await,
        401,
        "invalid_token",
    )
    .await;
    assert_eq!(up.count(), 2);
}
