//! The verified-token cache never outlives the key that verified a token:
//! not across a reload that replaces the secret (raced many times while the
//! old token is hammered), and not across an IdP rotation that keeps the kid.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::*;
use jwtgate::config::{Config, Secret};

fn config(up: &Upstream, secret: &str) -> Config {
    let mut c = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: None,
        ..Default::default()
    };
    c.upstream.url = up.url().parse().unwrap();
    c.auth.secret.value = Secret::new(secret);
    c
}

/// A far-future token signed with `secret`.
fn far_future(secret: &str) -> String {
    hs256(
        secret,
        &serde_json::json!({"sub": "mallory", "exp": now() + 10 * 365 * 24 * 3600}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_that_replaces_the_secret_refuses_the_old_token_at_once() {
    install_crypto_provider();
    let up = Upstream::start().await;
    const ROUNDS: usize = 40;
    let secrets: Vec<String> = (0..=ROUNDS)
        .map(|i| format!("rotation-race-secret-{i:03}-0123456789abcdefghij"))
        .collect();
    let running = jwtgate::start(config(&up, &secrets[0])).await.unwrap();
    let url = format!("http://{}/api", running.proxy_addr);
    let c = client();
    for round in 1..=ROUNDS {
        let old = far_future(&secrets[round - 1]);
        let new = far_future(&secrets[round]);
        // Hammer the old token from several connections while the reload
        // happens, so that verifications are in flight across the swap.
        let stop = Arc::new(AtomicBool::new(false));
        let mut hammers = Vec::new();
        for _ in 0..4 {
            let (c, url, old, stop) = (c.clone(), url.clone(), old.clone(), stop.clone());
            hammers.push(tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let _ = c.get(&url).bearer_auth(&old).send().await;
                    n += 1;
                }
                n
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        running
            .reload(config(&up, &secrets[round]))
            .expect("reload");
        // From the moment the reload returned, the old token is refused,
        // on every connection, and keeps being refused.
        let mut checks = Vec::new();
        for _ in 0..4 {
            let (c, url, old) = (c.clone(), url.clone(), old.clone());
            checks.push(tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..5 {
                    let r = c.get(&url).bearer_auth(&old).send().await.unwrap();
                    statuses.push(r.status().as_u16());
                }
                statuses
            }));
        }
        for ch in checks {
            let statuses = ch.await.unwrap();
            assert!(
                statuses.iter().all(|s| *s == 401),
                "round {round}: the replaced secret's token was accepted after the reload: {statuses:?}"
            );
        }
        stop.store(true, Ordering::Relaxed);
        let mut sent = 0;
        for h in hammers {
            sent += h.await.unwrap();
        }
        assert!(sent > 0);
        let r = c.get(&url).bearer_auth(&new).send().await.unwrap();
        assert_eq!(r.status(), 200, "round {round}: the new secret is refused");
    }
    eprintln!("{ROUNDS} reload races run");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_rotation_that_keeps_the_kid_empties_the_cache() {
    let idp = Idp::start().await;
    idp.add_rsa("k1");
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&format!(
        "[upstream]\nurl = \"{}\"\n[[auth.issuers]]\nissuer = \"{}\"\n",
        up.url(),
        idp.issuer
    ))
    .start();
    let old = idp.sign("k1", &idp.claims("alice"));
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
    eventually(Duration::from_secs(10), "keys loaded", || {
        let f = status(old.clone());
        async move { (f.await == 200).then_some(()) }
    })
    .await;
    // Cached now.
    assert_eq!(status(old.clone()).await, 200);
    // New key material under the same kid, picked up by a refresh.
    idp.add_rsa("k1");
    let r = client()
        .post(gate.admin_url("/keys/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        status(old.clone()).await,
        401,
        "a token verified with the replaced key was served from the cache"
    );
    assert_eq!(status(idp.sign("k1", &idp.claims("alice"))).await, 200);
}
