//! Remote keys (`[[auth.issuers]]`): discovery, JWKS caching, rotation, the
//! unknown-kid limiter, IdP outages and stale keys, and key-source confusion.
//! Every test runs the gate (in-process) against the mock IdP in
//! tests/it/support.

use std::time::Duration;

use crate::support::*;
use base64::Engine;
use serde_json::{Value, json};

const SECRET: &str = "local-shared-secret-for-jwks-tests";

fn issuer_block(idp: &Idp, extra: &str) -> String {
    format!(
        "[[auth.issuers]]\nissuer = \"{}\"\nalgorithms = [\"RS256\", \"ES256\", \"PS256\", \"EdDSA\", \"ES384\"]\n{extra}\n",
        idp.issuer
    )
}

fn config(up: &Upstream, auth_extra: &str, issuers: &str) -> String {
    format!(
        "[upstream]\nurl = \"{}\"\n\n[auth]\ntoken_cache = 0\n{auth_extra}\n\n{issuers}",
        up.url()
    )
}

async fn get(gate: &Gate, token: &str) -> reqwest::Response {
    client()
        .get(gate.url("/api"))
        .header("authorization", bearer(token))
        .send()
        .await
        .expect("request to gate")
}

async fn status_of(gate: &Gate, token: &str) -> u16 {
    get(gate, token).await.status().as_u16()
}

async fn ready(gate: &Gate) -> u16 {
    client()
        .get(gate.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_verifies_rs256_es256_ps256_eddsa() {
    let idp = Idp::start_with_path("/realms/test").await;
    for (kid, alg) in [
        ("r1", "RS256"),
        ("e1", "ES256"),
        ("p1", "PS256"),
        ("d1", "EdDSA"),
        ("e384", "ES384"),
    ] {
        idp.add_key(kid, alg);
    }
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "", &issuer_block(&idp, ""))).start();
    for kid in ["r1", "e1", "p1", "d1", "e384"] {
        let token = idp.sign(kid, &idp.claims(&format!("user-{kid}")));
        let resp = get(&gate, &token).await;
        assert_eq!(
            resp.status(),
            200,
            "kid {kid}: {}",
            resp.text().await.unwrap()
        );
        let seen = up.last();
        assert_eq!(
            seen.header("x-auth-user").as_deref(),
            Some(format!("user-{kid}").as_str())
        );
    }
    assert_eq!(idp.discovery_fetches(), 1, "{:?}", idp.all_fetches());
    assert_eq!(idp.jwks_fetches(), 1, "{:?}", idp.all_fetches());
    assert_eq!(ready(&gate).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_jwks_uri_file_and_pem_sources() {
    let idp = Idp::start().await;
    idp.add_rsa("k1");
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, idp.jwks().to_string()).unwrap();
    let pem_path = dir.path().join("pub.pem");
    std::fs::write(&pem_path, idp.public_key_pem("k1")).unwrap();
    let up = Upstream::start().await;
    for source in [
        format!("jwks_uri = \"{}\"", idp.jwks_uri()),
        format!("jwks_file = \"{}\"", jwks_path.display()),
        format!("public_key_file = \"{}\"", pem_path.display()),
    ] {
        let gate = GateBuilder::toml(&config(&up, "", &issuer_block(&idp, &source))).start();
        let token = idp.sign("k1", &idp.claims("alice"));
        assert_eq!(status_of(&gate, &token).await, 200, "source {source}");
        // A PEM key is used whatever the token's kid; a JWKS needs the kid.
        let other_kid = idp.sign_with_header("k1", &json!({"kid": "zzz"}), &idp.claims("alice"));
        let expect = if source.starts_with("public_key_file") {
            200
        } else {
            401
        };
        assert_eq!(
            status_of(&gate, &other_kid).await,
            expect,
            "source {source}"
        );
    }
    assert_eq!(
        idp.discovery_fetches(),
        0,
        "explicit sources skip discovery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_accepts_new_kid_with_at_most_one_fetch() {
    let idp = Idp::start().await;
    idp.add_rsa("old");
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "", &issuer_block(&idp, ""))).start();
    assert_eq!(
        status_of(&gate, &idp.sign("old", &idp.claims("a"))).await,
        200
    );
    let before = idp.jwks_fetches();
    idp.add_rsa("new");
    assert_eq!(
        status_of(&gate, &idp.sign("new", &idp.claims("a"))).await,
        200
    );
    assert!(
        idp.jwks_fetches() <= before + 1,
        "fetches {} -> {}",
        before,
        idp.jwks_fetches()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kid_flood_costs_at_most_one_fetch_per_interval() {
    let idp = Idp::start().await;
    idp.add_rsa("real");
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(
        &up,
        "",
        &issuer_block(&idp, "refetch_interval = \"10m\""),
    ))
    .start();
    assert_eq!(
        status_of(&gate, &idp.sign("real", &idp.claims("a"))).await,
        200
    );
    let before = idp.jwks_fetches() + idp.discovery_fetches();
    let claims = idp.claims("mallory");
    let mut tasks = Vec::new();
    // One client for all: building 500 clients (each loads the CA store)
    // inside the tasks starved the runtime between connect and send for
    // longer than the gate's header_read_timeout, which now runs from accept.
    let c = client();
    for i in 0..500 {
        let token = idp.sign_with_header("real", &json!({"kid": format!("random-{i}")}), &claims);
        let url = gate.url("/api");
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.get(url)
                .header("authorization", bearer(&token))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    let after = idp.jwks_fetches() + idp.discovery_fetches();
    // One refetch = one discovery + one JWKS request.
    assert!(
        after - before <= 2,
        "500 random kids caused {} fetches",
        after - before
    );
    assert_eq!(up.count(), 1);
    // A real token still works.
    assert_eq!(
        status_of(&gate, &idp.sign("real", &idp.claims("a"))).await,
        200
    );
    let m = client()
        .get(gate.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric_sum(&m, "jwtgate_unknown_kid_suppressed_total").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_kid_refused_before_lookup() {
    let idp = Idp::start().await;
    idp.add_rsa("real");
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "", &issuer_block(&idp, ""))).start();
    assert_eq!(
        status_of(&gate, &idp.sign("real", &idp.claims("a"))).await,
        200
    );
    let fetches = idp.jwks_fetches();
    for kid in [
        json!("x".repeat(5000)),
        json!(42),
        json!({"a": 1}),
        json!(""),
    ] {
        let t = idp.sign_with_header("real", &json!({"kid": kid}), &idp.claims("a"));
        assert_eq!(status_of(&gate, &t).await, 401);
    }
    assert_eq!(idp.jwks_fetches(), fetches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_down_at_start_then_recovering() {
    let idp = Idp::start().await;
    idp.add_rsa("k1");
    idp.refuse_connections();
    let healthy = Idp::start().await;
    healthy.add_ec("h1");
    let up = Upstream::start().await;
    let issuers = format!(
        "{}{}",
        issuer_block(&idp, "refetch_interval = \"1s\""),
        issuer_block(&healthy, "")
    );
    let gate = GateBuilder::toml(&config(
        &up,
        &format!("[auth.secret]\nvalue = \"{SECRET}\""),
        &issuers,
    ))
    .start();
    assert_eq!(ready(&gate).await, 503);
    let token = idp.sign("k1", &idp.claims("a"));
    let resp = get(&gate, &token).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(
        gate_error(&resp).as_deref(),
        Some("temporarily_unavailable")
    );
    // One issuer's trouble affects neither another issuer nor the local secret.
    assert_eq!(
        status_of(&gate, &healthy.sign("h1", &healthy.claims("b"))).await,
        200
    );
    let local = hs256(SECRET, &json!({"sub": "c", "exp": now() + 600}));
    assert_eq!(status_of(&gate, &local).await, 200);
    idp.accept_connections().await;
    eventually(
        Duration::from_secs(30),
        "readyz 200 after the IdP recovers",
        || async { (ready(&gate).await == 200).then_some(()) },
    )
    .await;
    assert_eq!(status_of(&gate, &token).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_keys_serve_during_outage_until_max_stale() {
    let idp = Idp::start().await;
    idp.add_rsa("k1");
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(
        &up,
        "",
        &issuer_block(
            &idp,
            "cache_ttl = \"1s\"\nmax_stale = \"4s\"\nrefetch_interval = \"1s\"",
        ),
    ))
    .start();
    let token = idp.sign("k1", &idp.claims("a"));
    assert_eq!(status_of(&gate, &token).await, 200);
    let loaded = std::time::Instant::now();
    for mode in [IdpMode::Garbage, IdpMode::Oversized, IdpMode::Error500] {
        idp.set_mode(mode);
        // (A broken IdP fails at discovery already, so count both endpoints.)
        let seen = idp.jwks_fetches() + idp.discovery_fetches();
        // Wait for a background refresh to hit the broken IdP…
        eventually(Duration::from_secs(10), "a refresh attempt", || async {
            (idp.jwks_fetches() + idp.discovery_fetches() > seen).then_some(())
        })
        .await;
        if loaded.elapsed() < Duration::from_secs(3) {
            // …and the last good keys still serve.
            assert_eq!(status_of(&gate, &token).await, 200, "mode {mode:?}");
        }
    }
    // Past max_stale the issuer's tokens get 503 and readiness drops.
    eventually(Duration::from_secs(20), "503 past max_stale", || async {
        (status_of(&gate, &token).await == 503).then_some(())
    })
    .await;
    assert_eq!(ready(&gate).await, 503);
    let refresh = client()
        .post(gate.admin_url("/keys/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 503);
    let body: Value = refresh.json().await.unwrap();
    assert_eq!(body["issuers"][0]["ok"], false, "{body}");
    idp.set_mode(IdpMode::Normal);
    // Forced refreshes are rate-limited per issuer (refetch_interval): wait
    // out the 429.
    let refresh = eventually(
        Duration::from_secs(10),
        "a refresh past the rate limit",
        || async {
            let r = client()
                .post(gate.admin_url("/keys/refresh"))
                .send()
                .await
                .unwrap();
            (r.status() != 429).then_some(r)
        },
    )
    .await;
    assert_eq!(refresh.status(), 200);
    assert_eq!(status_of(&gate, &token).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idp_does_not_stall_known_keys() {
    let idp = Idp::start().await;
    idp.add_rsa("k1");
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(
        &up,
        "",
        &issuer_block(&idp, "refetch_interval = \"1s\""),
    ))
    .start();
    let token = idp.sign("k1", &idp.claims("a"));
    assert_eq!(status_of(&gate, &token).await, 200);
    idp.set_delay(Duration::from_secs(5));
    idp.add_rsa("k2");
    let before = idp.discovery_fetches();
    // A request with an unknown kid waits for the (slow) refetch…
    let url = gate.url("/api");
    let t2 = idp.sign("k2", &idp.claims("b"));
    let slow = tokio::spawn(async move {
        client()
            .get(url)
            .header("authorization", bearer(&t2))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    // (the refetch has reached the IdP, which now holds it for 5 s)…
    eventually(
        Duration::from_secs(10),
        "the refetch reaching the IdP",
        || async { (idp.discovery_fetches() > before).then_some(()) },
    )
    .await;
    // …while a request with a known kid is answered at once.
    let started = std::time::Instant::now();
    assert_eq!(status_of(&gate, &token).await, 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "known kid stalled {:?}",
        started.elapsed()
    );
    assert_eq!(slow.await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_of_issuer_a_with_iss_of_issuer_b_refused() {
    let a = Idp::start().await;
    a.add_rsa("ka");
    let b = Idp::start().await;
    b.add_rsa("kb");
    let up = Upstream::start().await;
    let issuers = format!("{}{}", issuer_block(&a, ""), issuer_block(&b, ""));
    let gate = GateBuilder::toml(&config(&up, "", &issuers)).start();
    assert_eq!(status_of(&gate, &a.sign("ka", &a.claims("x"))).await, 200);
    assert_eq!(status_of(&gate, &b.sign("kb", &b.claims("x"))).await, 200);
    // A's key, B's iss (with A's kid, and with B's kid).
    let forged = a.sign("ka", &b.claims("x"));
    assert_eq!(status_of(&gate, &forged).await, 401);
    let forged = a.sign_with_header("ka", &json!({"kid": "kb"}), &b.claims("x"));
    assert_eq!(status_of(&gate, &forged).await, 401);
    // An untrusted iss.
    let mut claims = a.claims("x");
    claims["iss"] = json!("https://evil.example");
    assert_eq!(status_of(&gate, &a.sign("ka", &claims)).await, 401);
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_signed_with_issuer_public_key_refused() {
    let idp = Idp::start().await;
    idp.add_rsa("k1");
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(
        &up,
        &format!("[auth.secret]\nvalue = \"{SECRET}\""),
        &issuer_block(&idp, ""),
    ))
    .start();
    let pem = idp.public_key_pem("k1");
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let jwk = idp.public_jwk("k1").to_string();
    for (form, secret) in [
        ("pem", pem.as_bytes().to_vec()),
        ("der", der),
        ("jwk", jwk.into_bytes()),
    ] {
        for with_iss in [true, false] {
            let mut claims = idp.claims("mallory");
            if !with_iss {
                claims.as_object_mut().unwrap().remove("iss");
            }
            let token = sign_hmac(
                &secret,
                &json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}),
                &claims,
            );
            assert_eq!(
                status_of(&gate, &token).await,
                401,
                "form {form}, iss {with_iss}"
            );
        }
    }
    // The local secret itself still works, and so does the issuer: no confusion.
    let local = hs256(SECRET, &json!({"user": "local", "exp": now() + 600}));
    assert_eq!(status_of(&gate, &local).await, 200);
    assert_eq!(up.last().header("x-auth-user").as_deref(), Some("local"));
    assert_eq!(
        status_of(&gate, &idp.sign("k1", &idp.claims("remote"))).await,
        200
    );
    assert_eq!(up.last().header("x-auth-user").as_deref(), Some("remote"));
    // An HS token that claims the issuer's iss is refused even with the right secret.
    let claims_iss = json!({"user": "x", "exp": now() + 600, "iss": idp.issuer});
    assert_eq!(status_of(&gate, &hs256(SECRET, &claims_iss)).await, 401);
    // And an RS token with no iss is not verified by anything.
    let mut no_iss = idp.claims("x");
    no_iss.as_object_mut().unwrap().remove("iss");
    assert_eq!(status_of(&gate, &idp.sign("k1", &no_iss)).await, 401);
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_zero_r_or_s_refused() {
    let idp = Idp::start().await;
    idp.add_ec("e1");
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "", &issuer_block(&idp, ""))).start();
    let good = idp.sign("e1", &idp.claims("a"));
    assert_eq!(status_of(&gate, &good).await, 200);
    let (h, p) = {
        let mut it = good.split('.');
        (
            it.next().unwrap().to_string(),
            it.next().unwrap().to_string(),
        )
    };
    let sig = b64url_decode(good.rsplit('.').next().unwrap());
    assert_eq!(sig.len(), 64);
    let zero_r = [&[0u8; 32][..], &sig[32..]].concat();
    let zero_s = [&sig[..32], &[0u8; 32][..]].concat();
    for bad in [zero_r, zero_s, vec![0u8; 64]] {
        let token = format!("{h}.{p}.{}", b64url(&bad));
        assert_eq!(status_of(&gate, &token).await, 401);
    }
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_algorithms_and_audiences_are_enforced() {
    let idp = Idp::start().await;
    idp.add_key("r384", "RS384");
    idp.add_rsa("r256");
    let up = Upstream::start().await;
    let block = format!(
        "[[auth.issuers]]\nissuer = \"{}\"\nalgorithms = [\"RS256\"]\naudiences = [\"api\"]\n",
        idp.issuer
    );
    let gate = GateBuilder::toml(&config(&up, "", &block)).start();
    let mut claims = idp.claims("a");
    claims["aud"] = json!(["other", "api"]);
    assert_eq!(status_of(&gate, &idp.sign("r256", &claims)).await, 200);
    // RS384 is not in this issuer's algorithms.
    assert_eq!(status_of(&gate, &idp.sign("r384", &claims)).await, 401);
    // Wrong audience, and no audience.
    claims["aud"] = json!("other");
    assert_eq!(status_of(&gate, &idp.sign("r256", &claims)).await, 401);
    claims.as_object_mut().unwrap().remove("aud");
    let resp = get(&gate, &idp.sign("r256", &claims)).await;
    assert_eq!(resp.status(), 401);
    assert!(
        header(&resp, "www-authenticate").contains("aud"),
        "{}",
        header(&resp, "www-authenticate")
    );
    // A key whose JWKS alg says RS256 cannot verify a PS256 token even with the same modulus.
    let ps = idp.sign_with_header("r256", &json!({"alg": "PS256"}), &idp.claims("a"));
    assert_eq!(status_of(&gate, &ps).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_issuer_mismatch_is_not_trusted() {
    let idp = Idp::start().await;
    idp.add_rsa("k1");
    idp.set_discovery(Some(
        json!({"issuer": "https://someone-else", "jwks_uri": idp.jwks_uri()}),
    ));
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "", &issuer_block(&idp, ""))).start();
    let resp = get(&gate, &idp.sign("k1", &idp.claims("a"))).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(
        idp.jwks_fetches(),
        0,
        "the JWKS of a mismatching discovery is not fetched"
    );
    assert_eq!(ready(&gate).await, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_control_max_age_drives_background_refresh() {
    let idp = Idp::start().await;
    idp.add_rsa("k1");
    idp.set_max_age(Some(1));
    let up = Upstream::start().await;
    let gate =
        GateBuilder::toml(&config(&up, "", &issuer_block(&idp, "cache_ttl = \"10m\""))).start();
    assert_eq!(
        status_of(&gate, &idp.sign("k1", &idp.claims("a"))).await,
        200
    );
    let before = idp.jwks_fetches();
    // With max-age=1 (raised to the 5 s floor) the keys are refreshed in
    // the background, without requests.
    eventually(Duration::from_secs(20), "a background refresh", || async {
        (idp.jwks_fetches() >= before + 2).then_some(())
    })
    .await;
    let m = client()
        .get(gate.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric_sum_with(&m, "jwtgate_key_fetches_total", &["outcome=\"ok\""]) >= 3.0,
        "{m}"
    );
    assert!(m.contains("jwtgate_key_age_seconds"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_token_and_check_config_understand_issuers() {
    let idp = Idp::start().await;
    idp.add_rsa("k1");
    let cfg = format!(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n{}",
        issuer_block(&idp, "")
    );
    let good = idp.sign("k1", &idp.claims("alice"));
    let out = run_jwtgate(&["verify-token", &good]).toml(&cfg).run();
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(out.stdout.contains("alice"), "{}", out.all());
    let unknown = idp.sign_with_header("k1", &json!({"kid": "nope"}), &idp.claims("alice"));
    let out = run_jwtgate(&["verify-token", &unknown]).toml(&cfg).run();
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.stdout.contains("kid"), "{}", out.all());
    let out = run_jwtgate(&["check-config"]).toml(&cfg).run();
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(out.stdout.contains(&idp.issuer), "{}", out.all());
    let bad = format!("{}jwks_uri = \"ftp://x\"\n", issuer_block(&idp, ""));
    let out = run_jwtgate(&["check-config"])
        .toml(&format!("[upstream]\nurl = \"http://127.0.0.1:9\"\n{bad}"))
        .run();
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(
        out.all().contains("auth.issuers[0].jwks_uri"),
        "{}",
        out.all()
    );
}
