//! Shared-secret (HS*) authentication, the seed-compatible environment names
//! (Brevia's TOKENS_SECRET / TOKENS_USERS / STATUS_TOKEN, Ampho's
//! AMPHO_SECURITY_KEY) and the precedence of configuration sources.

use crate::support::*;
use serde_json::{Value, json};

const SECRET: &str = "brevia-shared-secret-0123456789abcdef";

fn upstream_only(up: &Upstream) -> String {
    format!("[upstream]\nurl = \"{}\"\n", up.url())
}

async fn get(gate: &Gate, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = client().get(gate.url(path));
    if let Some(t) = token {
        req = req.header("authorization", bearer(t));
    }
    req.send().await.expect("request to gate")
}

async fn echo(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), 200, "expected the upstream's 200");
    assert!(gate_error(&resp).is_none(), "unexpected x-jwtgate-error");
    resp.json().await.expect("echo JSON")
}

/// The user header values the upstream echoed.
fn auth_user(echo: &Value) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("x-auth-user"))
        .map(|h| h[1].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brevia_token_accepted_via_tokens_secret_env() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&upstream_only(&up))
        .env("TOKENS_SECRET", SECRET)
        .process()
        .start();
    // Exactly what Brevia's create_token does: HS256, {"user", "exp"} only.
    let token = brevia_token(SECRET, "alice", 600);
    let (_, payload, _) = decode_parts(&token);
    assert_eq!(payload.as_object().unwrap().len(), 2);

    let e = echo(get(&gate, "/api/chat?x=1", Some(&token)).await).await;
    assert_eq!(auth_user(&e), vec!["alice"]);
    assert_eq!(e["path"], "/api/chat");
    assert_eq!(e["query"], "x=1");
    assert_eq!(up.count(), 1);

    // The same claims signed with another secret are refused.
    let forged = brevia_token("not-the-secret", "alice", 600);
    let resp = get(&gate, "/api/chat", Some(&forged)).await;
    assert_rejection(resp, 401, "invalid_token").await;
    assert_eq!(up.count(), 1, "a rejected request reached the upstream");

    // Neither the secret nor a token appears in the logs.
    let logs = gate.logs();
    assert!(!logs.contains(SECRET), "secret in logs:\n{logs}");
    assert!(!logs.contains(&token), "token in logs:\n{logs}");
    assert!(!logs.contains(&forged), "token in logs:\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_users_limits_who_gets_through() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&upstream_only(&up))
        .env("TOKENS_SECRET", SECRET)
        .env("TOKENS_USERS", "alice,bob")
        .process()
        .start();
    for user in ["alice", "bob"] {
        let e = echo(get(&gate, "/", Some(&brevia_token(SECRET, user, 600))).await).await;
        assert_eq!(auth_user(&e), vec![user]);
    }
    let resp = get(&gate, "/", Some(&brevia_token(SECRET, "carol", 600))).await;
    let www = header(&resp, "www-authenticate");
    assert!(
        www.starts_with(r#"Bearer realm="jwtgate", error="insufficient_scope""#),
        "WWW-Authenticate: {www:?}"
    );
    assert_rejection(resp, 403, "insufficient_scope").await;
    // A user name is compared exactly, not as a prefix or case-insensitively.
    for user in ["Alice", "alice2", "ali"] {
        let resp = get(&gate, "/", Some(&brevia_token(SECRET, user, 600))).await;
        assert_eq!(resp.status(), 403, "user {user:?}");
    }
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_token_env_opens_the_status_path() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&upstream_only(&up))
        .env("TOKENS_SECRET", SECRET)
        .env("STATUS_TOKEN", "st-0123456789")
        .process()
        .start();
    let e = echo(get(&gate, "/status?token=st-0123456789", None).await).await;
    assert_eq!(e["path"], "/status");
    assert!(auth_user(&e).is_empty());
    let resp = get(&gate, "/status?token=st-wrong", None).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ampho_security_key_is_an_oct_jwk() {
    let up = Upstream::start().await;
    let key: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let k = b64url(&key);
    let jwk = json!({"kty": "oct", "k": k}).to_string();
    let gate = GateBuilder::toml(&upstream_only(&up))
        .env("AMPHO_SECURITY_KEY", &jwk)
        .process()
        .start();
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let good = sign_hmac(&key, &header, &claims("ampho-user"));
    let e = echo(get(&gate, "/", Some(&good)).await).await;
    assert_eq!(auth_user(&e), vec!["ampho-user"]);
    // The key is the decoded bytes of `k`, not the base64 text.
    let wrong = sign_hmac(k.as_bytes(), &header, &claims("ampho-user"));
    assert_rejection(get(&gate, "/", Some(&wrong)).await, 401, "invalid_token").await;
    assert_eq!(up.count(), 1);
    assert!(!gate.logs().contains(&k), "the JWK's k appears in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwtgate_env_overrides_tokens_secret() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&upstream_only(&up))
        .env("TOKENS_SECRET", "old-seed-secret-aaaaaaaaaaaaaaaaaaaaaaaa")
        .env(
            "JWTGATE_AUTH__SECRET__VALUE",
            "new-jwtgate-secret-bbbbbbbbbbbbbbbbbbbb",
        )
        .process()
        .start();
    let new = brevia_token("new-jwtgate-secret-bbbbbbbbbbbbbbbbbbbb", "alice", 600);
    let old = brevia_token("old-seed-secret-aaaaaaaaaaaaaaaaaaaaaaaa", "alice", 600);
    assert_eq!(get(&gate, "/", Some(&new)).await.status(), 200);
    assert_rejection(get(&gate, "/", Some(&old)).await, 401, "invalid_token").await;
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_secret_env_overrides_the_config_file() {
    let up = Upstream::start().await;
    let cfg = format!(
        "{}\n[auth.secret]\nvalue = \"file-secret-cccccccccccccccccccc\"\n",
        upstream_only(&up)
    );
    let gate = GateBuilder::toml(&cfg)
        .env("TOKENS_SECRET", "env-secret-dddddddddddddddddddddddddddd")
        .process()
        .start();
    let env_tok = brevia_token("env-secret-dddddddddddddddddddddddddddd", "alice", 600);
    let file_tok = brevia_token("file-secret-cccccccccccccccccccc", "alice", 600);
    assert_eq!(get(&gate, "/", Some(&env_tok)).await.status(), 200);
    assert_eq!(get(&gate, "/", Some(&file_tok)).await.status(), 401);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwtgate_upstream_env_overrides_the_config_file() {
    let up = Upstream::start().await;
    // The file points at a closed port; the environment at the real upstream.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let cfg = format!("[upstream]\nurl = \"http://{closed_addr}\"\n");
    let gate = GateBuilder::toml(&cfg)
        .env("TOKENS_SECRET", SECRET)
        .env("JWTGATE_UPSTREAM__URL", &up.url())
        .process()
        .start();
    let resp = get(&gate, "/", Some(&brevia_token(SECRET, "alice", 600))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_flag_overrides_the_config_file() {
    let up = Upstream::start().await;
    // The file names a port that is taken: if the file won, serve would fail.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let cfg = format!("listen = \"{taken_addr}\"\n{}", upstream_only(&up));
    let gate = GateBuilder::toml(&cfg)
        .env("TOKENS_SECRET", SECRET)
        .process()
        .start();
    assert_ne!(gate.proxy, taken_addr);
    let resp = get(&gate, "/", Some(&brevia_token(SECRET, "alice", 600))).await;
    assert_eq!(resp.status(), 200);
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_from_the_config_file_is_used_without_the_flag() {
    let up = Upstream::start().await;
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let cfg = format!("listen = \"{addr}\"\n{}", upstream_only(&up));
    let gate = GateBuilder::toml(&cfg)
        .no_listen_flag()
        .env("TOKENS_SECRET", SECRET)
        .process()
        .start();
    assert_eq!(gate.proxy, addr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwtgate_config_env_names_the_file() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.yaml");
    std::fs::write(
        &path,
        format!(
            "upstream:\n  url: \"{}\"\nauth:\n  secret:\n    value: \"{SECRET}\"\n",
            up.url()
        ),
    )
    .unwrap();
    let gate = GateBuilder::no_config()
        .env("JWTGATE_CONFIG", path.to_str().unwrap())
        .start();
    let resp = get(&gate, "/", Some(&brevia_token(SECRET, "alice", 600))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_config_and_secret_file() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("secret");
    std::fs::write(&secret_path, "file-held-secret-eeeeeeeeeeeeeeeeee").unwrap();
    let cfg = format!(
        "upstream:\n  url: \"{}\"\nauth:\n  secret:\n    file: \"{}\"\n",
        up.url(),
        secret_path.display()
    );
    let gate = GateBuilder::yaml(&cfg).start();
    let good = brevia_token("file-held-secret-eeeeeeeeeeeeeeeeee", "alice", 600);
    assert_eq!(get(&gate, "/", Some(&good)).await.status(), 200);
    let bad = brevia_token(secret_path.to_str().unwrap(), "alice", 600);
    assert_eq!(get(&gate, "/", Some(&bad)).await.status(), 401);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn algorithms_list_decides_which_hs_algorithms_pass() {
    let up = Upstream::start().await;
    let cfg = format!(
        "{}\n[auth.secret]\nvalue = \"{SECRET}\"\nalgorithms = [\"HS384\", \"HS512\"]\n",
        upstream_only(&up)
    );
    let gate = GateBuilder::toml(&cfg).start();
    for alg in ["HS384", "HS512"] {
        let t = hs(alg, SECRET, &claims("alice"));
        assert_eq!(get(&gate, "/", Some(&t)).await.status(), 200, "{alg}");
    }
    let t = hs("HS256", SECRET, &claims("alice"));
    assert_rejection(get(&gate, "/", Some(&t)).await, 401, "invalid_token").await;
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_issuer_and_audiences_are_enforced() {
    let up = Upstream::start().await;
    let cfg = format!(
        "{}\n[auth.secret]\nvalue = \"{SECRET}\"\nissuer = \"https://brevia.test\"\naudiences = [\"api\", \"chat\"]\n",
        upstream_only(&up)
    );
    let gate = GateBuilder::toml(&cfg).start();
    let t = now();
    let ok = [
        json!({"sub": "a", "exp": t + 600, "iss": "https://brevia.test", "aud": "api"}),
        json!({"sub": "a", "exp": t + 600, "iss": "https://brevia.test", "aud": ["other", "chat"]}),
    ];
    let bad = [
        (
            "wrong iss",
            json!({"sub": "a", "exp": t + 600, "iss": "https://evil.test", "aud": "api"}),
        ),
        ("no iss", json!({"sub": "a", "exp": t + 600, "aud": "api"})),
        (
            "iss prefix",
            json!({"sub": "a", "exp": t + 600, "iss": "https://brevia.test.evil", "aud": "api"}),
        ),
        (
            "wrong aud",
            json!({"sub": "a", "exp": t + 600, "iss": "https://brevia.test", "aud": "admin"}),
        ),
        (
            "aud array without match",
            json!({"sub": "a", "exp": t + 600, "iss": "https://brevia.test", "aud": ["x", "y"]}),
        ),
        (
            "no aud",
            json!({"sub": "a", "exp": t + 600, "iss": "https://brevia.test"}),
        ),
    ];
    for p in &ok {
        let resp = get(&gate, "/", Some(&hs256(SECRET, p))).await;
        assert_eq!(resp.status(), 200, "payload {p}");
    }
    let mut failures = Vec::new();
    for (name, p) in &bad {
        let resp = get(&gate, "/", Some(&hs256(SECRET, p))).await;
        if resp.status() != 401 || gate_error(&resp).as_deref() != Some("invalid_token") {
            failures.push(format!("{name}: {} {:?}", resp.status(), gate_error(&resp)));
        }
    }
    assert!(
        failures.is_empty(),
        "accepted or mis-rejected: {failures:#?}"
    );
    assert_eq!(up.count(), ok.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_is_not_checked_when_none_is_configured() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&upstream_only(&up))
        .env("TOKENS_SECRET", SECRET)
        .start();
    let t = hs256(
        SECRET,
        &json!({"sub": "a", "exp": now() + 600, "aud": "anything"}),
    );
    assert_eq!(get(&gate, "/", Some(&t)).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_claims_are_tried_in_order() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&upstream_only(&up))
        .env("TOKENS_SECRET", SECRET)
        .start();
    let t = now() + 600;
    let cases = [
        (
            json!({"sub": "s", "user": "u", "login": "l", "exp": t}),
            "s",
        ),
        (json!({"user": "u", "login": "l", "exp": t}), "u"),
        (json!({"login": "l", "exp": t}), "l"),
        (json!({"sub": "", "user": "u", "exp": t}), "u"),
        (json!({"sub": 42, "login": "l", "exp": t}), "l"),
    ];
    for (p, want) in cases {
        let e = echo(get(&gate, "/", Some(&hs256(SECRET, &p))).await).await;
        assert_eq!(auth_user(&e), vec![want], "payload {p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_username_claims() {
    let up = Upstream::start().await;
    let cfg = format!(
        "{}\n[auth]\nusername_claims = [\"email\"]\n[auth.secret]\nvalue = \"{SECRET}\"\n",
        upstream_only(&up)
    );
    let gate = GateBuilder::toml(&cfg).start();
    let p = json!({"sub": "s", "email": "a@example.test", "exp": now() + 600});
    let e = echo(get(&gate, "/", Some(&hs256(SECRET, &p))).await).await;
    assert_eq!(auth_user(&e), vec!["a@example.test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_without_a_user_is_not_forwarded() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&upstream_only(&up))
        .env("TOKENS_SECRET", SECRET)
        .start();
    let p = json!({"exp": now() + 600, "role": "admin"});
    let resp = get(&gate, "/", Some(&hs256(SECRET, &p))).await;
    assert!(
        resp.status() == 401 || resp.status() == 403,
        "a token naming no user got {}",
        resp.status()
    );
    assert!(gate_error(&resp).is_some());
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_scheme_is_case_insensitive() {
    // RFC 7235 §2.1: the auth-scheme is case-insensitive.
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&upstream_only(&up))
        .env("TOKENS_SECRET", SECRET)
        .start();
    let t = brevia_token(SECRET, "alice", 600);
    for scheme in ["bearer", "BEARER"] {
        let resp = client()
            .get(gate.url("/"))
            .header("authorization", format!("{scheme} {t}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "scheme {scheme}");
    }
    // Other schemes are not a bearer token.
    let resp = client()
        .get(gate.url("/"))
        .header("authorization", format!("Basic {t}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(up.count(), 2);
}
