//! The admin listener: health, readiness, metrics (and the verified-token
//! cache as seen through them), key refresh.

use std::time::Duration;

use crate::support::*;

const SECRET: &str = "admin-tests-secret-0123456789abcdef";

fn config(up: &Upstream, extra: &str) -> String {
    format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n{extra}\n",
        up.url()
    )
}

async fn metrics(gate: &Gate) -> String {
    let resp = client()
        .get(gate.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ctype = header(&resp, "content-type");
    assert!(
        ctype.starts_with("text/plain") || ctype.starts_with("application/openmetrics-text"),
        "metrics content-type {ctype:?}"
    );
    resp.text().await.unwrap()
}

async fn get(gate: &Gate, path: &str, token: Option<&str>) -> u16 {
    let mut req = client().get(gate.url(path));
    if let Some(t) = token {
        req = req.header("authorization", bearer(t));
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_with_a_secret_only_config() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    let c = client();
    assert_eq!(
        c.get(gate.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(gate.admin_url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(up.count(), 0, "admin requests reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_decisions_and_verification() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    let token = brevia_token(SECRET, "alice", 600);
    let before = metrics(&gate).await;
    let allow0 = metric_sum_with(&before, "jwtgate_requests_total", &[r#"decision="allow""#]);
    let deny0 = metric_sum_with(&before, "jwtgate_requests_total", &[r#"decision="deny""#]);

    assert_eq!(get(&gate, "/", Some(&token)).await, 200);
    assert_eq!(get(&gate, "/", None).await, 401);
    assert_eq!(get(&gate, "/", Some("garbage")).await, 401);

    let after = metrics(&gate).await;
    for name in [
        "jwtgate_requests_total",
        "jwtgate_verify_duration_seconds",
        "jwtgate_token_cache_hits_total",
        "jwtgate_token_cache_misses_total",
    ] {
        assert!(after.contains(name), "metric {name} missing:\n{after}");
    }
    let allow1 = metric_sum_with(&after, "jwtgate_requests_total", &[r#"decision="allow""#]);
    let deny1 = metric_sum_with(&after, "jwtgate_requests_total", &[r#"decision="deny""#]);
    assert!(
        allow1 >= allow0 + 1.0,
        "allow count {allow0} -> {allow1}:\n{after}"
    );
    assert!(
        deny1 >= deny0 + 2.0,
        "deny count {deny0} -> {deny1}:\n{after}"
    );
    let verify = metric_sum(&after, "jwtgate_verify_duration_seconds_count").unwrap_or(0.0);
    assert!(verify >= 1.0, "verify histogram did not move:\n{after}");
    assert!(!after.contains(&token) && !after.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_token_cache_hits_on_the_second_request() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    let token = brevia_token(SECRET, "alice", 600);
    let m0 = metrics(&gate).await;
    let hits0 = metric_sum(&m0, "jwtgate_token_cache_hits_total").unwrap_or(0.0);
    let miss0 = metric_sum(&m0, "jwtgate_token_cache_misses_total").unwrap_or(0.0);
    assert_eq!(get(&gate, "/a", Some(&token)).await, 200);
    let m1 = metrics(&gate).await;
    let hits1 = metric_sum(&m1, "jwtgate_token_cache_hits_total").unwrap_or(0.0);
    let miss1 = metric_sum(&m1, "jwtgate_token_cache_misses_total").unwrap_or(0.0);
    assert!(
        miss1 >= miss0 + 1.0,
        "first use is not a miss: {miss0} -> {miss1}"
    );
    assert_eq!(get(&gate, "/b", Some(&token)).await, 200);
    let m2 = metrics(&gate).await;
    let hits2 = metric_sum(&m2, "jwtgate_token_cache_hits_total").unwrap_or(0.0);
    assert!(
        hits2 >= hits1 + 1.0,
        "second use is not a hit: {hits0} -> {hits1} -> {hits2}"
    );
    assert_eq!(up.count(), 2);
    // A cached token does not let a tampered copy through.
    let (h, _, sig) = decode_parts(&token);
    let tampered = craft(
        &h,
        &serde_json::json!({"user": "admin", "exp": now() + 600}),
        &b64url(&sig),
    );
    assert_eq!(get(&gate, "/c", Some(&tampered)).await, 401);
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_paths_are_not_served_on_the_proxy_listener() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    for path in ["/metrics", "/healthz", "/readyz", "/keys/refresh"] {
        assert_eq!(
            get(&gate, path, None).await,
            401,
            "{path} on the proxy listener"
        );
    }
    assert_eq!(up.count(), 0);
    let token = brevia_token(SECRET, "alice", 600);
    assert_eq!(get(&gate, "/metrics", Some(&token)).await, 200);
    assert_eq!(up.last().path, "/metrics", "not forwarded to the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_refresh_without_issuers_succeeds() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    let resp = client()
        .post(gate.admin_url("/keys/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_admin_listen_turns_the_admin_listener_off() {
    let up = Upstream::start().await;
    let cfg = format!("admin_listen = \"\"\n{}", config(&up, ""));
    let gate = GateBuilder::toml(&cfg).no_admin().process().start();
    // The proxy serves, so start-up is over.
    let token = brevia_token(SECRET, "alice", 600);
    assert_eq!(get(&gate, "/", Some(&token)).await, 200);
    assert!(
        gate.admin.is_none(),
        "admin listener started:\n{}",
        gate.logs()
    );
    assert!(!gate.logs().contains("admin listening"), "{}", gate.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_remote_issuer_keys() {
    let up = Upstream::start().await;
    let idp = Idp::start().await;
    idp.add_rsa("k1");
    idp.set_mode(IdpMode::Error500);
    let extra = format!(
        "[[auth.issuers]]\nissuer = \"{}\"\nrefetch_interval = \"1s\"\ncache_ttl = \"2s\"\n",
        idp.issuer
    );
    let gate = GateBuilder::toml(&config(&up, &extra)).start();
    let c = client();
    assert_eq!(
        c.get(gate.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready = c.get(gate.admin_url("/readyz")).send().await.unwrap();
    let ready_status = ready.status();
    let ready_body = ready.text().await.unwrap();
    assert_eq!(
        ready_status,
        503,
        "readyz while the IdP fails: {ready_body}; IdP fetches {:?}",
        idp.all_fetches()
    );
    // The IdP's tokens get 503 while its keys were never loaded.
    let token = idp.sign("k1", &idp.claims("alice"));
    let resp = c
        .get(gate.url("/"))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("retry-after"), "no Retry-After");
    assert_rejection(resp, 503, "temporarily_unavailable").await;
    let refresh = c
        .post(gate.admin_url("/keys/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 503);

    idp.set_mode(IdpMode::Normal);
    // Forced refreshes are rate-limited per issuer (refetch_interval): wait
    // out the 429.
    let refresh = eventually(
        Duration::from_secs(10),
        "a refresh past the rate limit",
        || {
            let req = c.post(gate.admin_url("/keys/refresh")).send();
            async move {
                let r = req.await.unwrap();
                (r.status() != 429).then_some(r)
            }
        },
    )
    .await;
    assert_eq!(refresh.status(), 200);
    let body: serde_json::Value = refresh.json().await.unwrap();
    assert!(
        body.to_string().contains(&idp.issuer),
        "outcome does not name the issuer: {body}"
    );
    eventually(Duration::from_secs(10), "readyz to turn 200", || {
        let c = c.clone();
        let url = gate.admin_url("/readyz");
        async move { (c.get(url).send().await.ok()?.status() == 200).then_some(()) }
    })
    .await;
    let resp = c
        .get(gate.url("/"))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().header("x-auth-user").as_deref(), Some("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_token_is_not_used_past_exp() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "[auth]\nleeway = \"0s\"\n")).start();
    let token = hs256(
        SECRET,
        &serde_json::json!({"user": "alice", "exp": now() + 2}),
    );
    assert_eq!(get(&gate, "/", Some(&token)).await, 200);
    // Cached now; it must stop working once exp has passed.
    eventually(
        Duration::from_secs(8),
        "the cached token to expire",
        || async { (get(&gate, "/", Some(&token)).await == 401).then_some(()) },
    )
    .await;
}

/// Looping `POST /keys/refresh` cannot make the gate hammer the IdP: one
/// fetch per issuer per `refetch_interval`, the rest 429 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_refresh_is_rate_limited_per_issuer() {
    let up = Upstream::start().await;
    let idp = Idp::start().await;
    idp.add_rsa("k1");
    let extra = format!(
        "[[auth.issuers]]\nissuer = \"{}\"\nrefetch_interval = \"30s\"\n",
        idp.issuer
    );
    let gate = GateBuilder::toml(&config(&up, &extra)).start();
    let c = client();
    eventually(Duration::from_secs(10), "keys loaded", || {
        let req = c.get(gate.admin_url("/readyz")).send();
        async move { (req.await.unwrap().status() == 200).then_some(()) }
    })
    .await;
    let before = idp.jwks_fetches();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let req = c.post(gate.admin_url("/keys/refresh")).send();
        tasks.push(tokio::spawn(async move {
            let r = req.await.unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), retry)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (status, retry) = t.await.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                let secs: u64 = retry.expect("429 without Retry-After").parse().unwrap();
                assert!((1..=30).contains(&secs), "Retry-After {secs}");
            }
            other => panic!("refresh answered {other}"),
        }
    }
    assert_eq!(ok, 1, "exactly one refresh may fetch");
    assert!(
        idp.jwks_fetches() - before <= 1,
        "{} fetches for 20 refreshes",
        idp.jwks_fetches() - before
    );
}

/// With `admin.token`, a refresh presenting it is accepted; the decision
/// for non-loopback peers is unit-tested in `admin::tests` (no second
/// address may be used here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_refresh_accepts_the_admin_token() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(
        &up,
        "[admin]\ntoken = \"admin-token-0123456789abcdef0123456789\"\n",
    ))
    .process()
    .start();
    let r = client()
        .post(gate.admin_url("/keys/refresh"))
        .bearer_auth("admin-token-0123456789abcdef0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The token never shows in check-config output or logs.
    assert!(
        !gate
            .logs()
            .contains("admin-token-0123456789abcdef0123456789")
    );
}
