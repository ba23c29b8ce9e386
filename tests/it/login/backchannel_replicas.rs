//! Back-channel logout with the real programs: provider.mjs (oidc-provider,
//! `backchannelLogout` on, the client's `backchannel_logout_uri` at gate A),
//! two gates sharing a real redis-server, and headless Chromium. A person
//! signs in through A, uses B with the same cookie, signs out at the
//! provider; B refuses the cookie within a second or so (the scenario
//! measures it; the bound here is generous, the figures are in
//! `backchannel_propagation_figures`, an ignored test run by hand).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::browser::*;
use crate::support::oidc::*;
use crate::support::*;

use super::common::*;
use super::replicas::{Redis, client_of_replicas, two_replicas};

/// What B may take in the normal suite (README: about a second).
const GENEROUS: Duration = Duration::from_secs(3);

/// The client of both replicas, with gate A as its back-channel logout URI
/// and `sid` in its ID tokens.
fn client_with_backchannel(ea: &str, eb: &str) -> Value {
    let mut c = client_of_replicas(&[ea, eb]);
    c["backchannel_logout_uri"] = json!(format!("{ea}/.jwtgate/backchannel-logout"));
    c["backchannel_logout_session_required"] = json!(true);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_at_the_provider_ends_the_session_on_both_replicas_in_chromium() {
    if !chromium_available() {
        return;
    }
    let Some(redis) = Redis::start() else { return };
    let ((pa, ea), (pb, eb)) = (reserve(), reserve());
    let op = Provider::start(&provider_config(
        vec![client_with_backchannel(&ea, &eb)],
        &defaults(),
    ));
    let (a, b) = two_replicas((pa, pb), &op.issuer, Opts::new(), &redis).await;
    let (ga, gb, iss) = (a.external.clone(), b.external.clone(), op.issuer.clone());
    let run = tokio::spawn(async move {
        run_scenario(
            "backchannel",
            &[
                ("GATE_A", &ga),
                ("GATE_B", &gb),
                ("ISSUER", &iss),
                ("LOGIN_USER", ALICE),
                ("LOGIN_PASSWORD", ALICE_PASSWORD),
                ("LIMIT_MS", &GENEROUS.as_millis().to_string()),
            ],
        )
        .await
    })
    .await;
    // A failed scenario: the provider's log says whether it sent the token.
    let run = run.unwrap_or_else(|e| {
        eprintln!("provider log:\n{}", op.log());
        std::panic::resume_unwind(e.into_panic())
    });
    let r = &run.report["result"];
    eprintln!(
        "back-channel logout reached B {} ms after the provider answered the browser ({} ms \
         after the click; {} polls)",
        r["after_provider_ms"], r["after_click_ms"], r["polls"]
    );
    assert!(r["after_provider_ms"].as_u64().is_some(), "{r}");
    let stats = op.stats().await;
    assert_eq!(stat(&stats, "backchannel.ok"), 1, "{stats}\n{}", op.log());
    assert_eq!(
        stat(&stats, "backchannel.error"),
        0,
        "{stats}\n{}",
        op.log()
    );
    let m = a.metrics().await;
    assert_eq!(
        metric_sum_with(&m, "jwtgate_backchannel_logout_total", &["result=\"ok\""]),
        1.0,
        "{m}"
    );
    // The cookie the browser held, replayed: refused on both, as a
    // navigation too, and neither upstream reached.
    let cookie = r["cookie"].as_str().expect("the scenario's cookie");
    a.assert_signed_out(&mut a.replaying(cookie), "the cookie on A")
        .await;
    b.assert_signed_out(&mut b.replaying(cookie), "the cookie on B")
        .await;
}

/// The propagation figures (run by hand):
/// `cargo test --test it backchannel_propagation_figures -- --ignored --nocapture`.
/// 100 times: sign in through A (the Agent drives provider.mjs's pages),
/// check the cookie on A and B, then end the session at the provider with
/// its own `client.backchannelLogout` (the `/test/logout` hook: a real
/// logout token, posted to A) while two pollers ask A and B every
/// millisecond or so. Prints the median and maximum of: B's refusal after
/// A's (what the store adds), and B's refusal after the logout request was
/// sent to the provider (end to end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: about ten seconds; run by hand"]
async fn backchannel_propagation_figures() {
    const RUNS: usize = 100;
    if !provider_available() {
        return;
    }
    let Some(redis) = Redis::start() else { return };
    let ((pa, ea), (pb, eb)) = (reserve(), reserve());
    let op = Provider::start(&provider_config(
        vec![client_with_backchannel(&ea, &eb)],
        &defaults(),
    ));
    let (a, b) = two_replicas((pa, pb), &op.issuer, Opts::new(), &redis).await;
    let (mut after_a, mut end_to_end) = (Vec::new(), Vec::new());
    let mut browser = Agent::new();
    for i in 0..RUNS {
        let s = browser
            .sign_in_from(&a.url(&format!("/app/run/{i}")), ALICE, ALICE_PASSWORD)
            .await;
        assert_landed(&s, &a.external, &format!("/app/run/{i}"), "sign-in on A");
        let cookie = a.cookie_header(&browser);
        // A poller per gate, each on its own connection, warmed up.
        let poll = |site: &Site| {
            let url = site.url("/app/poll");
            let mut agent = site.replaying(&cookie);
            async move {
                assert_eq!(agent.fetch(&url).await.status, 200, "run {i}: {url}");
                let (go, wait) = tokio::sync::oneshot::channel::<Instant>();
                let task = tokio::spawn(async move {
                    let Ok(since) = wait.await else { return None };
                    while since.elapsed() < Duration::from_secs(5) {
                        let page = agent.fetch(&url).await;
                        if page.status != 200 {
                            assert_eq!(page.status, 401, "{}", page.describe());
                            return Some(Instant::now());
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    None
                });
                (go, task)
            }
        };
        let (go_a, on_a) = poll(&a).await;
        let (go_b, on_b) = poll(&b).await;
        let sent = Instant::now();
        let _ = (go_a.send(sent), go_b.send(sent));
        let out = op.logout_user(ALICE, false).await;
        assert_eq!(out["backchannel"][0]["ok"], true, "run {i}: {out}");
        let t_a = on_a
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("run {i}: A never refused"));
        let t_b = on_b
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("run {i}: B never refused"));
        after_a.push(t_b.saturating_duration_since(t_a));
        end_to_end.push(t_b - sent);
    }
    let figures = |v: &mut Vec<Duration>| {
        v.sort();
        (
            v[v.len() / 2].as_secs_f64() * 1e3,
            v[v.len() - 1].as_secs_f64() * 1e3,
        )
    };
    let (med_a, max_a) = figures(&mut after_a);
    let (med_e, max_e) = figures(&mut end_to_end);
    eprintln!(
        "back-channel logout, {RUNS} runs, A and B polled about every millisecond:\n\
         B refused the cookie after A did (the store's share): median {med_a:.1} ms, max {max_a:.1} ms\n\
         B refused it after the logout was asked of the provider: median {med_e:.1} ms, max {max_e:.1} ms"
    );
    assert_eq!(
        metric_sum_with(
            &a.metrics().await,
            "jwtgate_backchannel_logout_total",
            &["result=\"ok\""]
        ),
        RUNS as f64
    );
}
