//! Checks of the test support itself: the echo upstream, the raw HTTP
//! helper, the token minting and the mock IdP (no gate involved), and the
//! two gate harnesses.

use std::time::Duration;

use crate::support::upstream::{big_sha256, sha256_hex};
use crate::support::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::Jwk};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_echoes_and_counts() {
    let up = Upstream::start().await;
    let body = vec![7u8; 100_000];
    let resp = client()
        .post(format!("{}/a/b?x=1", up.url()))
        .header("x-test", "yes")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/a/b");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["body_len"], 100_000);
    assert_eq!(echo["body_sha256"], sha256_hex(&body));
    assert_eq!(up.count(), 1);
    assert_eq!(up.last().header("x-test").as_deref(), Some("yes"));

    let big = client()
        .get(format!("{}/big?bytes=200000", up.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(big.len(), 200_000);
    assert_eq!(sha256_hex(&big), big_sha256(200_000));

    let raw = raw_get(up.addr, "/code?status=418", &[]).await;
    assert_eq!(raw.status, 418);
    assert_eq!(raw.json()["path"], "/code");
    assert_eq!(up.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_websocket_echo() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let up = Upstream::start().await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", up.addr))
        .await
        .expect("ws connect");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("ping")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.into_text().unwrap().as_str(), "ping");
}

#[test]
fn hmac_tokens_verify() {
    let t = brevia_token("s3cret", "alice", 60);
    let (h, p) = verify_hmac(&t, b"s3cret");
    assert_eq!(h["alg"], "HS256");
    assert_eq!(p["user"], "alice");
    assert_eq!(p.as_object().unwrap().len(), 2);
    // Cross-check with jsonwebtoken.
    let mut v = Validation::new(Algorithm::HS256);
    v.required_spec_claims.clear();
    v.required_spec_claims.insert("exp".into());
    let d = jsonwebtoken::decode::<Value>(&t, &DecodingKey::from_secret(b"s3cret"), &v).unwrap();
    assert_eq!(d.claims["user"], "alice");
    let t512 = hs("HS512", "k", &claims("bob"));
    verify_hmac(&t512, b"k");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_serves_discovery_and_verifiable_keys() {
    let idp = Idp::start_with_path("/realms/test").await;
    idp.add_key("r1", "RS256");
    idp.add_key("e1", "ES256");
    idp.add_key("p1", "PS256");
    idp.add_key("d1", "EdDSA");
    idp.set_max_age(Some(120));
    let c = client();
    let disc = c.get(idp.discovery_url()).send().await.unwrap();
    assert_eq!(disc.status(), 200);
    let disc: Value = disc.json().await.unwrap();
    assert_eq!(disc["issuer"], idp.issuer.as_str());
    assert_eq!(disc["jwks_uri"], idp.jwks_uri().as_str());
    let resp = c.get(idp.jwks_uri()).send().await.unwrap();
    assert_eq!(header(&resp, "cache-control"), "public, max-age=120");
    let jwks: jsonwebtoken::jwk::JwkSet = resp.json().await.unwrap();
    assert_eq!(jwks.keys.len(), 4);
    for (kid, alg) in [
        ("r1", Algorithm::RS256),
        ("e1", Algorithm::ES256),
        ("p1", Algorithm::PS256),
        ("d1", Algorithm::EdDSA),
    ] {
        let token = idp.sign(kid, &idp.claims("alice"));
        let jwk: &Jwk = jwks.find(kid).unwrap();
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut v = Validation::new(alg);
        v.set_issuer(&[idp.issuer.as_str()]);
        let d = jsonwebtoken::decode::<Value>(&token, &key, &v)
            .unwrap_or_else(|e| panic!("{kid}: {e}"));
        assert_eq!(d.claims["sub"], "alice");
        assert_eq!(d.header.kid.as_deref(), Some(kid));
    }
    // PEM export verifies too.
    let pem = idp.public_key_pem("r1");
    let key = DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let token = idp.sign("r1", &idp.claims("bob"));
    jsonwebtoken::decode::<Value>(&token, &key, &Validation::new(Algorithm::RS256)).unwrap();
    assert_eq!(idp.discovery_fetches(), 1);
    assert_eq!(idp.jwks_fetches(), 1);

    // Rotation.
    idp.unpublish("r1");
    let jwks: Value = c
        .get(idp.jwks_uri())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 3);
    idp.remove_key("e1");
    let jwks: Value = c
        .get(idp.jwks_uri())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert_eq!(idp.jwks_fetches(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_fault_switches() {
    let idp = Idp::start().await;
    idp.add_rsa("k");
    let c = client();
    idp.set_mode(IdpMode::Error500);
    assert_eq!(c.get(idp.jwks_uri()).send().await.unwrap().status(), 500);
    idp.set_mode(IdpMode::Garbage);
    let text = c
        .get(idp.jwks_uri())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err());
    idp.set_mode(IdpMode::Oversized);
    let big = c
        .get(idp.jwks_uri())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(big.len() > 4 * 1024 * 1024);
    idp.set_mode(IdpMode::Normal);

    idp.refuse_connections();
    let err = c.get(idp.jwks_uri()).send().await;
    assert!(err.is_err(), "connection should be refused");
    idp.accept_connections().await;
    let ok = c.get(idp.jwks_uri()).send().await.unwrap();
    assert_eq!(ok.status(), 200);

    idp.set_delay(Duration::from_millis(300));
    let fast = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    assert!(fast.get(idp.jwks_uri()).send().await.is_err(), "slow IdP");
    let _ = json!({});
}

/// The gate harnesses: an in-process gate and the process serve the same
/// configuration on the addresses they report; dropping either stops it,
/// so nothing of a test's gate outlives the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_gate_harnesses_serve_and_stop_when_dropped() {
    let up = Upstream::start().await;
    let secret = "selftest-secret-0123456789abcdef0123";
    let config = format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{secret}\"\n",
        up.url()
    );
    let token = hs256(secret, &json!({"sub": "alice", "exp": now() + 600}));
    for gate in [
        GateBuilder::toml(&config).start(),
        GateBuilder::toml(&config).process().start(),
    ] {
        let kind = if gate.is_process() {
            "process"
        } else {
            "in-process"
        };
        let r = client()
            .get(gate.url("/x"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{kind}: {}", gate.diagnostics());
        let r = client()
            .get(gate.admin_url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{kind}");
        let (proxy, admin) = (gate.proxy, gate.admin.unwrap());
        drop(gate);
        for addr in [proxy, admin] {
            assert!(
                tokio::net::TcpStream::connect(addr).await.is_err(),
                "{kind}: {addr} still accepts connections after the gate was dropped"
            );
        }
    }
    assert_eq!(up.count(), 2);
}
