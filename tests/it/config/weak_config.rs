//! Weak configuration is refused at start: short or placeholder HMAC
//! secrets, plain-http key URLs on other hosts; secrets never appear in a
//! configuration error; `require_typ` keeps ID tokens out.

use std::time::Duration;

use crate::support::*;
use serde_json::json;

#[test]
fn short_and_placeholder_secrets_are_refused_unless_allowed() {
    for secret in [
        "x",
        "0123456789abcdef0123456789abcde",
        "change-me-this-is-not-a-real-secret",
        "REPLACE-ME-with-a-real-secret-before-deploying",
    ] {
        let out = run_jwtgate(&["check-config"])
            .toml(&format!("[auth.secret]\nvalue = \"{secret}\"\n"))
            .run();
        assert_eq!(out.code, Some(1), "{secret}: {}", out.all());
        assert!(out.all().contains("auth.secret"), "{}", out.all());
        assert!(
            !out.all().contains(secret),
            "the secret is echoed: {}",
            out.all()
        );
        // Seed names are checked too.
        let out = run_jwtgate(&["check-config"])
            .env("TOKENS_SECRET", secret)
            .run();
        assert_eq!(out.code, Some(1), "TOKENS_SECRET={secret}: {}", out.all());
        let out = run_jwtgate(&["check-config"])
            .toml(&format!(
                "[auth.secret]\nvalue = \"{secret}\"\nallow_weak = true\n"
            ))
            .run();
        assert_eq!(out.code, Some(0), "{secret} with allow_weak: {}", out.all());
        assert!(out.all().contains("weak"), "no warning: {}", out.all());
    }
    let out = run_jwtgate(&["check-config"])
        .toml("[auth.secret]\nvalue = \"0123456789abcdef0123456789abcdef\"\n")
        .run();
    assert_eq!(out.code, Some(0), "{}", out.all());
}

#[test]
fn a_secret_of_the_wrong_type_is_not_echoed() {
    let out = run_jwtgate(&["check-config"])
        .toml("[auth.secret]\nvalue = 918273645546372819\n[status]\ntoken = 55443322119988\n")
        .run();
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.all().contains("auth.secret.value"), "{}", out.all());
    assert!(!out.all().contains("918273645546372819"), "{}", out.all());
    assert!(!out.all().contains("55443322119988"), "{}", out.all());
}

#[test]
fn plain_http_key_urls_must_be_loopback_or_allowed() {
    let base = "[auth.secret]\nvalue = \"0123456789abcdef0123456789abcdef\"\n";
    for (iss, extra) in [
        ("http://idp.example.com", ""),
        (
            "https://idp.example.com",
            "jwks_uri = \"http://idp.example.com/jwks\"\n",
        ),
    ] {
        let out = run_jwtgate(&["check-config"])
            .toml(&format!(
                "{base}[[auth.issuers]]\nissuer = \"{iss}\"\n{extra}"
            ))
            .run();
        assert_eq!(out.code, Some(1), "{iss}: {}", out.all());
        assert!(out.all().contains("auth.issuers[0]"), "{}", out.all());
        assert!(out.all().contains("allow_insecure_http"), "{}", out.all());
        let out = run_jwtgate(&["check-config"])
            .toml(&format!(
                "{base}[[auth.issuers]]\nissuer = \"{iss}\"\n{extra}allow_insecure_http = true\n"
            ))
            .run();
        assert_eq!(out.code, Some(0), "{iss} allowed: {}", out.all());
    }
    for iss in [
        "http://127.0.0.1:9999",
        "http://localhost:9999",
        "http://[::1]:9999",
    ] {
        let out = run_jwtgate(&["check-config"])
            .toml(&format!("{base}[[auth.issuers]]\nissuer = \"{iss}\"\n"))
            .run();
        assert_eq!(out.code, Some(0), "{iss}: {}", out.all());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_typ_refuses_id_tokens() {
    let idp = Idp::start().await;
    idp.add_rsa("k1");
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&format!(
        "[upstream]\nurl = \"{}\"\n[[auth.issuers]]\nissuer = \"{}\"\nrequire_typ = \"at+jwt\"\n",
        up.url(),
        idp.issuer
    ))
    .start();
    let status = |t: String| {
        let url = gate.url("/api");
        async move {
            client()
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let access = idp.sign_with_header("k1", &json!({"typ": "at+jwt"}), &idp.claims("alice"));
    eventually(Duration::from_secs(10), "keys loaded", || {
        let f = status(access.clone());
        async move { (f.await == 200).then_some(()) }
    })
    .await;
    let long_form = idp.sign_with_header(
        "k1",
        &json!({"typ": "application/at+jwt"}),
        &idp.claims("alice"),
    );
    assert_eq!(status(long_form).await, 200);
    for typ in [json!("JWT"), json!(null)] {
        let id_token = idp.sign_with_header("k1", &json!({"typ": typ}), &idp.claims("alice"));
        assert_eq!(status(id_token).await, 401, "typ {typ}");
    }
    let untyped = idp.sign("k1", &idp.claims("alice"));
    assert_eq!(status(untyped).await, 401);
}
