//! The client address behind trusted proxies (`forward.trusted_proxies`):
//! what the login limiter counts, what the upstream's X-Forwarded-For ends
//! with, and whose X-Forwarded-Proto/-Host are believed.

use crate::support::*;
use serde_json::json;

const SECRET: &str = "client-address-secret-0123456789abcdef";

fn config(up: &Upstream, users: &str, trusted: &str) -> String {
    format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n\
         [forward]\ntrusted_proxies = [{trusted}]\n\
         [issuer]\nenabled = true\nusers_file = \"{users}\"\n\
         max_failures = 100\nmax_failures_per_address = 2\nfailure_window = \"10m\"\n\
         [[routes]]\nprefix = \"/public/\"\nauth = \"none\"\n",
        up.url()
    )
}

async fn login(gate: &Gate, xff: &str, user: &str, password: &str) -> u16 {
    client()
        .post(gate.url("/api/security/login"))
        .header("content-type", "application/json")
        .header("x-forwarded-for", xff)
        .body(json!({"login": user, "password": password}).to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_client_is_counted_on_its_own() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(
        &users,
        format!(
            "{}\n{}\n",
            htpasswd_bcrypt("gus", "g-pass"),
            htpasswd_bcrypt("hal", "h-pass")
        ),
    )
    .unwrap();
    let gate = GateBuilder::toml(&config(&up, users.to_str().unwrap(), "\"127.0.0.0/8\""))
        .process()
        .start();
    // Client A, behind the ingress (127.0.0.1 here), guesses at many names.
    for i in 0..4 {
        let s = login(&gate, "203.0.113.5", &format!("nobody-{i}"), "guess").await;
        assert_eq!(s, 401);
    }
    // The failures were counted under A's address, not the ingress's.
    let logs = gate.logs();
    assert!(logs.contains("203.0.113.5"), "{logs}");
    // Client B, behind the same ingress, logs in.
    assert_eq!(login(&gate, "198.51.100.7", "hal", "h-pass").await, 200);
    // A spoofed chain: the right-most untrusted entry is the client.
    let r = raw_get(
        gate.proxy,
        "/public/x",
        &["X-Forwarded-For: 6.6.6.6, 198.51.100.7, 127.0.0.2".to_string()],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        up.last().header("x-forwarded-for").as_deref(),
        Some("6.6.6.6, 198.51.100.7")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_proxies_x_forwarded_for_is_not_believed() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, format!("{}\n", htpasswd_bcrypt("gus", "g-pass"))).unwrap();
    let gate = GateBuilder::toml(&config(&up, users.to_str().unwrap(), ""))
        .process()
        .start();
    assert_eq!(login(&gate, "203.0.113.5", "nobody", "guess").await, 401);
    let logs = gate.logs();
    assert!(!logs.contains("client=203.0.113.5"), "{logs}");
    assert!(logs.contains("client=127.0.0.1"), "{logs}");
    let r = raw_get(
        gate.proxy,
        "/public/x",
        &[
            "X-Forwarded-For: 203.0.113.5".to_string(),
            "X-Forwarded-Proto: https".to_string(),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("203.0.113.5, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_s_proto_and_host_are_believed() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, format!("{}\n", htpasswd_bcrypt("gus", "g-pass"))).unwrap();
    let gate = GateBuilder::toml(&config(&up, users.to_str().unwrap(), "\"127.0.0.1\"")).start();
    let r = raw_get(
        gate.proxy,
        "/public/x",
        &[
            "X-Forwarded-For: 203.0.113.5".to_string(),
            "X-Forwarded-Proto: https".to_string(),
            "X-Forwarded-Host: app.example.com".to_string(),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("203.0.113.5")
    );
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("app.example.com")
    );
    assert_eq!(seen.header("x-real-ip").as_deref(), Some("203.0.113.5"));
}
