//! Refresh (with `offline_access`): once the access token has expired, the
//! next requests refresh it exactly once at the provider, however many
//! arrive together, and a cookie from before the refresh does not make the
//! gate use the old refresh token again (the provider rotates them: a
//! second use would revoke the grant). A refresh refused with
//! `invalid_grant` ends the session. Against the real provider, with
//! 4-second access and ID tokens; the gate's leeway is 0 s.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::oidc::*;
use crate::support::*;

use super::common::*;

const TTL: u64 = 4;

fn short_tokens() -> Value {
    json!({"accessTokenTTL": TTL, "idTokenTTL": TTL})
}

fn offline() -> Opts {
    Opts::new()
        .auth("leeway = \"0s\"")
        .login("scopes = [\"openid\", \"profile\", \"email\", \"offline_access\"]")
}

/// Waits until the tokens of a sign-in made at `signed_in` have expired.
async fn past_expiry(signed_in: Instant) {
    let until = Duration::from_millis(TTL * 1000 + 1500);
    tokio::time::sleep(until.saturating_sub(signed_in.elapsed())).await;
}

/// `n` concurrent fetches with exactly this `Cookie` header: (status,
/// `Set-Cookie` values) of each.
async fn burst(site: &Site, cookie: &str, n: usize) -> Vec<(u16, Vec<String>)> {
    let c = client();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let req = c
                .get(site.url(&format!("/app/burst/{i}")))
                .header("cookie", cookie)
                .header("accept", "*/*")
                .header("sec-fetch-mode", "cors")
                .header("sec-fetch-dest", "empty")
                .header("sec-fetch-site", "same-origin");
            tokio::spawn(async move {
                let resp = req.send().await.expect("request");
                let cookies = resp
                    .headers()
                    .get_all("set-cookie")
                    .iter()
                    .map(|v| v.to_str().unwrap_or_default().to_string())
                    .collect();
                (resp.status().as_u16(), cookies)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn refresh_hint(stats: &Value) -> &'static str {
    if stat(stats, "token.refresh_token") == 0 {
        "no refresh at all: did the gate ask for offline_access with prompt=consent \
         (tests/browser/README.md: without it the provider issues no refresh token)?"
    } else {
        ""
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_after_expiry_refresh_exactly_once() {
    let Some((op, site)) = real(short_tokens(), offline()).await else {
        return;
    };
    let mut b = Agent::new();
    let s = b
        .sign_in_from(&site.url("/app/start"), ALICE, ALICE_PASSWORD)
        .await;
    let signed_in = Instant::now();
    assert_landed(&s, &site.external, "/app/start", "sign-in");
    let stale = site.cookie_header(&b);
    let before = op.stats().await;
    assert_eq!(stat(&before, "token.refresh_token"), 0, "{before}");

    past_expiry(signed_in).await;
    let hits = site.up.count();
    let results = burst(&site, &stale, 20).await;
    for (i, (status, _)) in results.iter().enumerate() {
        assert_eq!(
            *status,
            200,
            "request {i} of 20 after expiry; provider log:\n{}",
            op.log()
        );
    }
    assert_eq!(site.up.count(), hits + 20);
    assert!(
        site.up.seen()[hits..]
            .iter()
            .all(|s| s.header("x-auth-user").as_deref() == Some(ALICE))
    );
    let stats = op.stats().await;
    assert_eq!(
        (
            stat(&stats, "token.refresh_token"),
            stat(&stats, "refresh_failures")
        ),
        (1, 0),
        "20 concurrent requests: refreshes at the provider, failures. {}\n{stats}\n{}",
        refresh_hint(&stats),
        op.log()
    );
    let m = site.metrics().await;
    assert_eq!(
        metric_sum_with(&m, "jwtgate_sessions_refreshed_total", &["result=\"ok\""]),
        1.0,
        "{m}"
    );

    // The browser keeps what the answers set; it goes on working.
    for (_, cookies) in &results {
        let parsed: Vec<SetCookie> = cookies.iter().filter_map(|c| SetCookie::parse(c)).collect();
        b.jar
            .store(&reqwest::Url::parse(&site.external).unwrap(), &parsed);
    }
    site.assert_signed_in(&mut b, "after the refresh").await;

    // Requests still carrying the cookie from before the refresh (another
    // tab's, in flight meanwhile) must not use the old refresh token again.
    let again = burst(&site, &stale, 20).await;
    for (i, (status, _)) in again.iter().enumerate() {
        assert_eq!(
            *status, 200,
            "request {i} of 20 with the pre-refresh cookie"
        );
    }
    let stats = op.stats().await;
    assert_eq!(
        stat(&stats, "refresh_failures"),
        0,
        "a refresh token was used twice (the provider revoked the grant):\n{stats}\n{}",
        op.log()
    );
    assert!(!op.log().contains("already used"), "{}", op.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grant_ends_the_session() {
    let Some((op, site)) = real(short_tokens(), offline()).await else {
        return;
    };
    let mut b = Agent::new();
    let s = b
        .sign_in_from(&site.url("/app/start"), ALICE, ALICE_PASSWORD)
        .await;
    let signed_in = Instant::now();
    assert_landed(&s, &site.external, "/app/start", "sign-in");
    let cookie = site.cookie_header(&b);

    // The provider revokes everything of alice's, offline grants included.
    let out = op.logout_user(ALICE, true).await;
    assert_eq!(out["sessions"], 1, "{out}");
    past_expiry(signed_in).await;

    let hits = site.up.count();
    site.assert_signed_out(&mut b, "after the refresh was refused")
        .await;
    site.assert_signed_out(&mut site.replaying(&cookie), "the same cookie again")
        .await;
    assert_eq!(site.up.count(), hits, "the upstream was reached");

    let stats = op.stats().await;
    assert!(
        stat(&stats, "refresh_failures") >= 1,
        "{} {stats}",
        refresh_hint(&stats)
    );
    let m = site.metrics().await;
    let all = metric_sum(&m, "jwtgate_sessions_refreshed_total").unwrap_or(0.0);
    let ok = metric_sum_with(&m, "jwtgate_sessions_refreshed_total", &["result=\"ok\""]);
    assert!(all - ok >= 1.0, "the failed refresh is not counted:\n{m}");
}
