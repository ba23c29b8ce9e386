//! In headless Chromium (tests/browser/): sign in from a protected page with
//! a query and come back to it; the page shows the upstream's echo with the
//! user; page scripts call `/.jwtgate/session` and the API; sign out with
//! the gate's form and the provider's confirmation; the history does not
//! bring the protected page back. And a fresh browser replaying a callback
//! URL gets nothing. The scenarios are tests/browser/scenarios/signin.mjs
//! and callback_replay.mjs.

use serde_json::json;

use crate::support::browser::*;
use crate::support::oidc::*;
use crate::support::*;

use super::common::*;

const SIGNED_OUT: &str = "/public/signed-out";

/// The provider (its client also allows [`SIGNED_OUT`] after logout) and
/// the gate; `None` when Chromium or the node modules are missing.
async fn setup(login: &str) -> Option<(Provider, Site)> {
    if !chromium_available() {
        return None;
    }
    let (port, external) = reserve();
    let mut client = client_config(&external);
    client["post_logout_redirect_uris"] =
        json!([format!("{external}/"), format!("{external}{SIGNED_OUT}")]);
    let op = Provider::start(&provider_config(vec![client], &defaults()));
    let site = Site::start(port, &op.issuer, Opts::new().login(login)).await;
    Some((op, site))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_use_and_sign_out_in_chromium() {
    let Some((op, site)) = setup(&format!("post_logout_redirect = \"{SIGNED_OUT}\"")).await else {
        return;
    };
    run_scenario(
        "signin",
        &[
            ("GATE_URL", &site.external),
            ("ISSUER", &op.issuer),
            ("LOGIN_USER", ALICE),
            ("LOGIN_PASSWORD", ALICE_PASSWORD),
            ("PROTECTED_PATH", "/app/page?x=1&y=2"),
            ("SIGNED_OUT_PATH", SIGNED_OUT),
        ],
    )
    .await;
    // What the others saw of it.
    assert!(
        site.up.seen().iter().any(|s| s.path == "/app/page"
            && s.query.as_deref() == Some("x=1&y=2")
            && s.header("x-auth-user").as_deref() == Some(ALICE)),
        "the upstream never served the page to alice: {:?}",
        site.up.seen()
    );
    assert_eq!(stat(&op.stats().await, "end_session"), 1);
    let m = site.metrics().await;
    assert_eq!(
        metric_sum_with(&m, "jwtgate_login_total", &["result=\"ok\""]),
        1.0,
        "{m}"
    );
    assert_eq!(metric_sum(&m, "jwtgate_logout_total"), Some(1.0), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_browser_replaying_a_callback_url_gets_nothing() {
    let Some((op, site)) = setup("").await else {
        return;
    };
    run_scenario(
        "callback_replay",
        &[
            ("GATE_URL", &site.external),
            ("ISSUER", &op.issuer),
            ("LOGIN_USER", ALICE),
            ("LOGIN_PASSWORD", ALICE_PASSWORD),
        ],
    )
    .await;
    let (ok, failed) = site.logins().await;
    assert_eq!(ok, 1.0);
    assert!(failed >= 2.0, "{failed} refused callbacks counted");
}
