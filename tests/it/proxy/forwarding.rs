//! What the upstream receives: identity headers only from the gate, hop-by-hop
//! hygiene, X-Forwarded-*, claims headers, streamed bodies both ways,
//! WebSocket upgrades and HTTP/2, and the header size limit.

use std::time::Duration;

use crate::support::upstream::{big_sha256, sha256_hex};
use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "forwarding-tests-secret-0123456789abcdef";

fn config(up: &Upstream, extra: &str) -> String {
    format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n{extra}\n",
        up.url()
    )
}

fn auth(user: &str) -> String {
    format!("Authorization: Bearer {}", brevia_token(SECRET, user, 600))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let gate =
        GateBuilder::toml(&config(&up, "[status]\ntoken = \"st-spoof-0123456789\"\n")).start();

    // Any case, repeated.
    let resp = raw_get(
        gate.proxy,
        "/",
        &[
            "X-Auth-User: mallory".into(),
            "x-auth-user: eve".into(),
            "X-AUTH-USER: root".into(),
            auth("alice"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(up.last().header_all("x-auth-user"), vec!["alice"]);

    // Named in Connection: the client's copy goes, the gate's value stays.
    let resp = raw_get(
        gate.proxy,
        "/",
        &[
            "Connection: x-auth-user".into(),
            "X-Auth-User: mallory".into(),
            auth("alice"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.last().header_all("x-auth-user"), vec!["alice"]);

    // An exempt request carries no identity at all, whatever the client says.
    let resp = raw_get(
        gate.proxy,
        "/status?token=st-spoof-0123456789",
        &["X-Auth-User: admin".into(), "x-auth-user: root".into()],
    )
    .await;
    assert_eq!(resp.status, 200);
    assert!(
        up.last().header_all("x-auth-user").is_empty(),
        "{:?}",
        up.last().headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_claims_headers_are_removed_even_when_the_claim_is_missing() {
    let up = Upstream::start().await;
    let extra = "[forward]\nuser_header = \"X-Remote-User\"\nclaims_headers = { email = \"X-Auth-Email\" }\npayload_header = \"X-Auth-Claims\"\n";
    let gate = GateBuilder::toml(&config(&up, extra)).start();
    let resp = raw_get(
        gate.proxy,
        "/",
        &[
            "X-Auth-Email: ceo@example.test".into(),
            "X-Auth-Claims: eyJyb2xlIjoiYWRtaW4ifQ".into(),
            "X-Remote-User: root".into(),
            auth("alice"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = up.last();
    assert!(
        seen.header_all("x-auth-email").is_empty(),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.header_all("x-remote-user"), vec!["alice"]);
    let claims = seen.header("x-auth-claims").expect("payload header");
    assert_ne!(claims, "eyJyb2xlIjoiYWRtaW4ifQ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_dropped() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    let resp = raw_request(
        gate.proxy,
        &crate::support::raw::build(
            "GET",
            "/",
            &[
                "Connection: x-custom-hop, X-Other-Hop".into(),
                "X-Custom-Hop: 1".into(),
                "X-Other-Hop: 2".into(),
                "Keep-Alive: timeout=5".into(),
                "Proxy-Authorization: Basic Zm9vOmJhcg==".into(),
                "Proxy-Connection: keep-alive".into(),
                "X-Keep: yes".into(),
                auth("alice"),
            ],
            b"",
        ),
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = up.last();
    for gone in [
        "x-custom-hop",
        "x-other-hop",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(
            seen.header_all(gone).is_empty(),
            "{gone} reached the upstream: {:?}",
            seen.headers
        );
    }
    // Connection itself may be set by the gate's client, but never to the
    // client's list of header names.
    for c in seen.header_all("connection") {
        let c = c.to_ascii_lowercase();
        assert!(
            !c.contains("x-custom-hop") && !c.contains("x-other-hop"),
            "connection: {c}"
        );
    }
    assert_eq!(seen.header("x-keep").as_deref(), Some("yes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_is_dropped_by_default() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    let resp = raw_get(gate.proxy, "/", &[auth("alice")]).await;
    assert_eq!(resp.status, 200);
    assert!(up.last().header_all("authorization").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_is_kept_with_forward_token() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "[auth]\nforward_token = true\n")).start();
    let token = brevia_token(SECRET, "alice", 600);
    let resp = raw_get(gate.proxy, "/", &[format!("Authorization: Bearer {token}")]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        up.last().header_all("authorization"),
        vec![format!("Bearer {token}")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_headers_are_set() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    // raw::build sends `Host: gate.test`.
    let resp = raw_get(gate.proxy, "/", &[auth("alice")]).await;
    assert_eq!(resp.status, 200);
    let seen = up.last();
    let xff = seen.header_all("x-forwarded-for").join(",");
    assert_eq!(
        xff.rsplit(',').next().map(str::trim),
        Some("127.0.0.1"),
        "xff {xff:?}"
    );
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("gate.test")
    );

    // A client's X-Forwarded-For is not taken as the client address: the
    // last hop is always the address the gate saw.
    let resp = raw_get(
        gate.proxy,
        "/",
        &["X-Forwarded-For: 6.6.6.6".into(), auth("alice")],
    )
    .await;
    assert_eq!(resp.status, 200);
    let xff = up.last().header_all("x-forwarded-for").join(",");
    assert_eq!(
        xff.rsplit(',').next().map(str::trim),
        Some("127.0.0.1"),
        "xff {xff:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_headers_and_payload_header() {
    let up = Upstream::start().await;
    let extra = r#"[forward]
claims_headers = { email = "X-Auth-Email", groups = "X-Auth-Groups", "realm_access.roles" = "X-Auth-Roles", missing = "X-Auth-Missing" }
payload_header = "X-Auth-Claims"
"#;
    let gate = GateBuilder::toml(&config(&up, extra)).start();
    let payload = json!({
        "sub": "alice",
        "exp": now() + 600,
        "email": "alice@example.test",
        "groups": ["staff", "dev"],
        "realm_access": {"roles": ["admin", "reader"]},
    });
    let token = hs256(SECRET, &payload);
    let resp = raw_get(gate.proxy, "/", &[format!("Authorization: Bearer {token}")]).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = up.last();
    assert_eq!(seen.header("x-auth-user").as_deref(), Some("alice"));
    assert_eq!(
        seen.header("x-auth-email").as_deref(),
        Some("alice@example.test")
    );
    let groups = seen
        .header("x-auth-groups")
        .unwrap_or_default()
        .replace(", ", ",");
    assert_eq!(groups, "staff,dev");
    let roles = seen
        .header("x-auth-roles")
        .unwrap_or_default()
        .replace(", ", ",");
    assert_eq!(roles, "admin,reader");
    assert!(seen.header("x-auth-missing").is_none());
    let claims_b64 = seen.header("x-auth-claims").expect("payload header");
    assert!(
        !claims_b64.contains('+') && !claims_b64.contains('/'),
        "not base64url"
    );
    let claims: Value = serde_json::from_slice(&b64url_decode(&claims_b64)).expect("claims JSON");
    assert_eq!(claims, payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_and_download_stream_intact() {
    const SIZE: usize = 24 * 1024 * 1024;
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    let token = brevia_token(SECRET, "alice", 600);
    let c = client();

    let mut body = vec![0u8; SIZE];
    rand::Rng::fill(&mut rand::rng(), &mut body[..]);
    let want = sha256_hex(&body);
    let resp = c
        .post(gate.url("/upload"))
        .header("authorization", bearer(&token))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["body_len"], SIZE as u64);
    assert_eq!(echo["body_sha256"], want);

    let resp = c
        .get(gate.url(&format!("/big?bytes={SIZE}")))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = resp.bytes().await.unwrap();
    assert_eq!(got.len(), SIZE);
    assert_eq!(sha256_hex(&got), big_sha256(SIZE as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_is_forwarded() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    let mut req = format!(
        "POST /chunked HTTP/1.1\r\nHost: gate.test\r\nConnection: close\r\n{}\r\nTransfer-Encoding: chunked\r\n\r\n",
        auth("alice")
    )
    .into_bytes();
    req.extend_from_slice(b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n");
    let resp = raw_request(gate.proxy, &req).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let echo = resp.json();
    assert_eq!(echo["body_len"], 11);
    assert_eq!(echo["body_sha256"], sha256_hex(b"hello world"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_gate() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    let token = brevia_token(SECRET, "alice", 600);
    let mut request = format!("ws://{}/ws", gate.proxy)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", bearer(&token).parse().unwrap());
    let stream = tokio::net::TcpStream::connect(gate.proxy).await.unwrap();
    let (mut ws, resp) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(request, stream),
    )
    .await
    .expect("handshake timed out")
    .expect("websocket handshake through the gate");
    assert_eq!(resp.status(), 101);
    for msg in [
        Message::text("hello gate"),
        Message::binary(vec![0u8, 1, 2, 255]),
    ] {
        ws.send(msg.clone()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo timed out")
            .expect("stream ended")
            .expect("ws error");
        assert_eq!(got, msg);
    }
    let _ = ws.close(None).await;
    let seen = up.last();
    assert_eq!(seen.path, "/ws");
    assert_eq!(seen.header("x-auth-user").as_deref(), Some("alice"));
    assert!(seen.header_all("authorization").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_without_token_is_refused() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    let request = format!("ws://{}/ws", gate.proxy)
        .into_client_request()
        .unwrap();
    let stream = tokio::net::TcpStream::connect(gate.proxy).await.unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(request, stream),
    )
    .await
    .expect("handshake timed out")
    .expect_err("upgrade without a token must fail");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), 401);
            assert_eq!(
                resp.headers()
                    .get("x-jwtgate-error")
                    .and_then(|v| v.to_str().ok()),
                Some("unauthorized")
            );
        }
        other => panic!("expected an HTTP 401 answer, got {other:?}"),
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_works() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let token = brevia_token(SECRET, "alice", 600);
    let req = hyper::Request::get(gate.url("/h2?x=1"))
        .header("authorization", bearer(&token))
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.expect("h2c request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["path"], "/h2");
    assert_eq!(up.last().header("x-auth-user").as_deref(), Some("alice"));

    let req = hyper::Request::get(gate.url("/h2"))
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.expect("h2c request");
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()
            .get("x-jwtgate-error")
            .and_then(|v| v.to_str().ok()),
        Some("unauthorized")
    );
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_larger_than_the_limit_get_431() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "[limits]\nmax_header_bytes = 16384\n")).start();
    let big = format!("X-Padding: {}", "a".repeat(24 * 1024));
    let resp = raw_get(gate.proxy, "/", &[big, auth("alice")]).await;
    assert_eq!(resp.status, 431, "{}", resp.text());
    assert_eq!(up.count(), 0);
    // Headers under the limit pass.
    let small = format!("X-Padding: {}", "a".repeat(4 * 1024));
    let resp = raw_get(gate.proxy, "/", &[small, auth("alice")]).await;
    assert_eq!(resp.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_passes_only_when_allowed() {
    let preflight = |gate: &Gate| {
        client()
            .request(reqwest::Method::OPTIONS, gate.url("/api"))
            .header("origin", "https://app.example.test")
            .header("access-control-request-method", "POST")
            .send()
    };
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    assert_eq!(preflight(&gate).await.unwrap().status(), 401);
    assert_eq!(up.count(), 0);

    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "[auth]\nallow_cors_preflight = true\n")).start();
    let resp = preflight(&gate).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().method, "OPTIONS");
    assert!(up.last().header_all("x-auth-user").is_empty());
    // A plain OPTIONS (not a preflight) still needs a token.
    let resp = client()
        .request(reqwest::Method::OPTIONS, gate.url("/api"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_forwarded_proto_and_host_are_kept_only_when_trusted() {
    let up = Upstream::start().await;
    let spoof = [
        auth("alice"),
        "X-Forwarded-Proto: https".to_string(),
        "X-Forwarded-Host: public.example".to_string(),
    ];
    let gate = GateBuilder::toml(&config(&up, "")).start();
    assert_eq!(raw_get(gate.proxy, "/", &spoof).await.status, 200);
    assert_eq!(
        up.last().header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        up.last().header("x-forwarded-host").as_deref(),
        Some("gate.test")
    );

    let trusting =
        GateBuilder::toml(&config(&up, "[forward]\ntrust_forwarded_headers = true\n")).start();
    assert_eq!(raw_get(trusting.proxy, "/", &spoof).await.status, 200);
    assert_eq!(
        up.last().header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(
        up.last().header("x-forwarded-host").as_deref(),
        Some("public.example")
    );
    // Two values are ambiguous: the gate's own view wins.
    let twice = [
        auth("alice"),
        "X-Forwarded-Proto: https".into(),
        "X-Forwarded-Proto: http".into(),
    ];
    assert_eq!(raw_get(trusting.proxy, "/", &twice).await.status, 200);
    assert_eq!(up.last().header_all("x-forwarded-proto"), vec!["http"]);
}
