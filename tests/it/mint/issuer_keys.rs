//! The issuer signing with its own asymmetric key: the published JWKS and
//! OpenID configuration, the key formats it reads, the gate accepting its
//! own tokens, and a second gate trusting the first by discovery.

use std::time::Duration;

use crate::support::*;
use aws_lc_rs::digest;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tempfile::TempDir;

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write");
    p.to_string_lossy().into_owned()
}

/// A fresh RSA key as PKCS#8 PEM, from `jwtgate gen-key --kty RSA --pem`.
fn rsa_pem() -> String {
    let out = run_jwtgate(&["gen-key", "--kty", "RSA", "--pem"]).run();
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(out.stdout.contains("BEGIN PRIVATE KEY"));
    out.stdout + "\n"
}

/// Files for a gate that issues with `key_pem`.
struct Setup {
    dir: TempDir,
    users: String,
    key: String,
}

fn setup(key_pem: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let users = write(
        &dir,
        "users",
        &format!("{}\n", htpasswd_bcrypt("alice", "a-pass")),
    );
    let key = write(&dir, "key.pem", key_pem);
    Setup { dir, users, key }
}

fn issuer_config(up: &Upstream, s: &Setup, issuer: &str) -> String {
    format!(
        "[upstream]\nurl = \"{}\"\n[issuer]\nenabled = true\nusers_file = \"{}\"\n\
         signing_key_file = \"{}\"\nissuer = \"{issuer}\"\n",
        up.url(),
        s.users,
        s.key
    )
}

async fn password_grant(gate: &Gate, user: &str, password: &str) -> String {
    let resp = client()
        .post(gate.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&username={user}&password={password}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

/// RFC 7638 thumbprint of an RSA JWK, computed here independently.
fn rsa_thumbprint(jwk: &Value) -> String {
    let canonical = format!(
        "{{\"e\":\"{}\",\"kty\":\"RSA\",\"n\":\"{}\"}}",
        jwk["e"].as_str().unwrap(),
        jwk["n"].as_str().unwrap()
    );
    b64url(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_issuer_publishes_its_key_and_openid_configuration() {
    let up = Upstream::start().await;
    let s = setup(&rsa_pem());
    let gate = GateBuilder::toml(&issuer_config(&up, &s, "https://gate.example/base")).start();

    let resp = client()
        .get(gate.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let jwks: Value = resp.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let jwk = &keys[0];
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["alg"], "RS256");
    assert_eq!(jwk["use"], "sig");
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(jwk.get(private).is_none(), "{private} published");
    }
    assert_eq!(
        jwk["kid"],
        rsa_thumbprint(jwk),
        "kid is the RFC 7638 thumbprint"
    );

    // Under the issuer's own path too (when it is not stripped by an ingress).
    let resp = client()
        .get(gate.url("/base/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let resp = client()
        .get(gate.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["issuer"], "https://gate.example/base");
    assert_eq!(
        doc["jwks_uri"],
        "https://gate.example/base/.well-known/jwks.json"
    );
    assert_eq!(doc["token_endpoint"], "https://gate.example/base/token");
    let resp = client()
        .head(gate.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // An issued token: RS256, the published kid, verifiable with the JWK.
    let token = password_grant(&gate, "alice", "a-pass").await;
    let (h, p, _) = decode_parts(&token);
    assert_eq!(h["alg"], "RS256");
    assert_eq!(h["kid"], jwk["kid"]);
    assert_eq!(p["iss"], "https://gate.example/base");
    let key = DecodingKey::from_jwk(&serde_json::from_value::<Jwk>(jwk.clone()).unwrap()).unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.validate_aud = false;
    let data = jsonwebtoken::decode::<Value>(&token, &key, &v).expect("signature verifies");
    assert_eq!(data.claims["sub"], "alice");

    // create-token uses the same signer.
    let out = run_jwtgate(&["create-token", "-u", "bob"])
        .toml(&issuer_config(&up, &s, "https://gate.example/base"))
        .run();
    assert_eq!(out.code, Some(0), "{}", out.all());
    let (h, p, _) = decode_parts(out.stdout.trim());
    assert_eq!(h["kid"], jwk["kid"]);
    assert_eq!(p["iss"], "https://gate.example/base");
    jsonwebtoken::decode::<Value>(out.stdout.trim(), &key, &v).expect("create-token verifies");
    drop(s.dir);
}

#[test]
fn pkcs1_sec1_and_ed25519_keys_sign_with_the_matching_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    // Keys written by openssl (tests/fixtures/make.sh), each with the public
    // key openssl derived from it.
    let cases = [
        // PKCS#1 "RSA PRIVATE KEY", as older tools write it.
        ("rsa", openssl_key("rsa-pkcs1"), "RS256"),
        // SEC1 "EC PRIVATE KEY" on both curves.
        ("p256", openssl_key("p256-sec1"), "ES256"),
        ("p384", openssl_key("p384-sec1"), "ES384"),
        // PKCS#8 Ed25519.
        ("ed", openssl_key("ed25519-pkcs8"), "EdDSA"),
    ];
    let users = write(&dir, "users", &format!("{}\n", htpasswd_bcrypt("a", "b")));
    for (name, (pem, public), alg) in cases {
        let key_file = write(&dir, &format!("{name}.pem"), &pem);
        let out = run_jwtgate(&["create-token", "-u", "zoe"])
            .toml(&format!(
                "[issuer]\nenabled = true\nusers_file = \"{users}\"\n\
                 signing_key_file = \"{key_file}\"\n"
            ))
            .run();
        assert_eq!(out.code, Some(0), "{name}: {}", out.all());
        let token = out.stdout.trim();
        let (h, _, _) = decode_parts(token);
        assert_eq!(h["alg"], alg, "{name}");
        let (key, algorithm) = match alg {
            "RS256" => (
                DecodingKey::from_rsa_pem(public.as_bytes()).unwrap(),
                Algorithm::RS256,
            ),
            "ES256" => (
                DecodingKey::from_ec_pem(public.as_bytes()).unwrap(),
                Algorithm::ES256,
            ),
            "ES384" => (
                DecodingKey::from_ec_pem(public.as_bytes()).unwrap(),
                Algorithm::ES384,
            ),
            _ => (
                DecodingKey::from_ed_pem(public.as_bytes()).unwrap(),
                Algorithm::EdDSA,
            ),
        };
        let mut v = Validation::new(algorithm);
        v.validate_aud = false;
        jsonwebtoken::decode::<Value>(token, &key, &v)
            .unwrap_or_else(|e| panic!("{name}: signature does not verify: {e}"));
    }
    // An encrypted or foreign file is refused, naming the key.
    let bad = write(&dir, "bad.pem", "not a key\n");
    let out = run_jwtgate(&["check-config"])
        .toml(&format!(
            "[issuer]\nenabled = true\nusers_file = \"{users}\"\nsigning_key_file = \"{bad}\"\n"
        ))
        .run();
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(
        out.stderr.contains("issuer.signing_key_file"),
        "{}",
        out.all()
    );
}

/// Needs the verifier to trust `issuer::self_trust` (wired in `State::build`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_accepts_and_renews_its_own_rsa_tokens() {
    let up = Upstream::start().await;
    let s = setup(&rsa_pem());
    let gate = GateBuilder::toml(&issuer_config(&up, &s, "jwtgate-rsa")).start();
    let token = password_grant(&gate, "alice", "a-pass").await;
    let resp = client()
        .get(gate.url("/docs/1"))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(up.last().header("x-auth-user").as_deref(), Some("alice"));

    let resp = client()
        .post(gate.url("/api/security/renew"))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let (h, p, _) = decode_parts(body["token"].as_str().unwrap());
    assert_eq!(h["alg"], "RS256");
    assert_eq!(p["sub"], "alice");

    // A token from another RSA key claiming this issuer is refused.
    let other = StandaloneKey::new("x", "RS256");
    let t = now();
    let forged = other.sign(
        &json!({}),
        &json!({"sub": "alice", "iss": "jwtgate-rsa", "iat": t, "exp": t + 600, "auth_time": t}),
    );
    let resp = client()
        .post(gate.url("/api/security/renew"))
        .header("authorization", bearer(&forged))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

/// Gate A issues with an RSA key; gate B trusts A as an `[[auth.issuers]]`
/// entry found by OpenID discovery, and lets A's users through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gate_trusts_the_first_by_discovery() {
    let up_a = Upstream::start().await;
    let up_b = Upstream::start().await;
    let s = setup(&rsa_pem());
    // A's issuer must be its own URL, known only once it listens: start it,
    // then rewrite the configuration and reload.
    let gate_a = GateBuilder::toml(&issuer_config(&up_a, &s, "placeholder"))
        .process()
        .start();
    let issuer = format!("http://{}", gate_a.proxy);
    gate_a.rewrite_config(&issuer_config(&up_a, &s, &issuer));
    gate_a.signal("HUP");
    assert!(
        gate_a
            .wait_log(&["configuration reloaded"], Duration::from_secs(15))
            .await,
        "{}",
        gate_a.logs()
    );
    let doc: Value = client()
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], issuer);
    assert_eq!(doc["jwks_uri"], format!("{issuer}/.well-known/jwks.json"));

    let gate_b = GateBuilder::toml(&format!(
        "[upstream]\nurl = \"{}\"\n[[auth.issuers]]\nissuer = \"{issuer}\"\n",
        up_b.url()
    ))
    .start();

    let token = password_grant(&gate_a, "alice", "a-pass").await;
    let resp = client()
        .get(gate_b.url("/reports"))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_eq!(
        status,
        200,
        "{}\nB: {}",
        resp.text().await.unwrap(),
        gate_b.diagnostics()
    );
    assert_eq!(up_b.last().header("x-auth-user").as_deref(), Some("alice"));
    assert_eq!(up_a.count(), 0, "A answered its token endpoint itself");
}
