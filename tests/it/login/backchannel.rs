//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0, issue 21
//! part 2) against the scripted provider, whose ID tokens carry a `sid`:
//! `POST /.jwtgate/backchannel-logout` with a logout token signed by the
//! provider's key ends the sessions of that `sid` (or, without one, of that
//! `sub`), and every malformed, forged, replayed or misdirected token is a
//! 400 without detail that ends nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::support::idp::StandaloneKey;
use crate::support::oidc::*;
use crate::support::*;

use super::common::*;

pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A scripted provider whose n-th ID token carries `sid` = `sids[n]` (the
/// last one again once they run out; no `sid` when the list is empty), and
/// a gate in front of it.
async fn setup(sids: &[&str]) -> (ScriptedOp, Site) {
    let (op, site) = scripted(true, Opts::new()).await;
    let sids: Vec<String> = sids.iter().map(|s| s.to_string()).collect();
    let n = Arc::new(AtomicUsize::new(0));
    op.set_id_token(move |idp, req| {
        let mut c = ScriptedOp::good_claims(idp, req);
        let i = n
            .fetch_add(1, Ordering::SeqCst)
            .min(sids.len().saturating_sub(1));
        if let Some(sid) = sids.get(i) {
            c["sid"] = json!(sid);
        }
        idp.sign("k1", &c)
    });
    (op, site)
}

/// The claims of a correct logout token of `op` for the gate's client.
fn claims(op: &ScriptedOp, sid: Option<&str>, sub: Option<&str>) -> Value {
    let t = now();
    let mut c = json!({
        "iss": op.issuer, "aud": CLIENT_ID, "iat": t, "exp": t + 120,
        "jti": random_hex(12), "events": {EVENT: {}},
    });
    if let Some(s) = sid {
        c["sid"] = json!(s);
    }
    if let Some(s) = sub {
        c["sub"] = json!(s);
    }
    c
}

/// Signed with the provider's key, `typ: logout+jwt`.
fn sign(op: &ScriptedOp, claims: &Value) -> String {
    op.idp
        .sign_with_header("k1", &json!({"typ": "logout+jwt"}), claims)
}

/// `POST /.jwtgate/backchannel-logout` with this form body.
async fn post_raw(site: &Site, content_type: &str, body: String) -> reqwest::Response {
    client()
        .post(site.url("/.jwtgate/backchannel-logout"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("POST /.jwtgate/backchannel-logout")
}

/// Posts `token` as the provider does; the status, and the response
/// checked for `Cache-Control: no-store` and (on 400) no detail.
async fn post(site: &Site, token: &str) -> u16 {
    let r = post_raw(
        site,
        "application/x-www-form-urlencoded",
        form_encode(&[("logout_token", token)]),
    )
    .await;
    let status = r.status().as_u16();
    assert_eq!(
        r.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "{r:?}"
    );
    let body = r.text().await.unwrap();
    if status == 400 {
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(
            v,
            json!({"error": "invalid_request"}),
            "a refusal says no more: {body}"
        );
    }
    status
}

async fn results(site: &Site, result: &str) -> f64 {
    metric_sum_with(
        &site.metrics().await,
        "jwtgate_backchannel_logout_total",
        &[&format!("result=\"{result}\"")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_logout_token_is_refused_and_a_good_one_ends_the_session() {
    let (op, site) = setup(&["op-sid-1"]).await;
    let mut b = Agent::new();
    let s = b.sign_in(&site.external, "/app/home", ALICE, "").await;
    assert_landed(&s, &site.external, "/app/home", "sign-in");
    let cookie = site.cookie_header(&b);
    let good = || claims(&op, Some("op-sid-1"), Some(ALICE));
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut c = good();
        f(&mut c);
        c
    };
    let forger = StandaloneKey::new("k1", "RS256");
    let replayed = sign(&op, &claims(&op, Some("another-sid"), None));
    let hostile: Vec<(&str, String, &str)> = vec![
        (
            "forged (another key, same kid)",
            forger.sign(&json!({"typ": "logout+jwt"}), &good()),
            "invalid_token",
        ),
        (
            "HS256 with the gate's own secret",
            hs256(SECRET, &good()),
            "invalid_token",
        ),
        (
            "alg none",
            craft(&json!({"alg": "none", "typ": "logout+jwt"}), &good(), ""),
            "invalid_token",
        ),
        (
            "a nonce",
            sign(&op, &edit(&|c| c["nonce"] = json!("n"))),
            "nonce",
        ),
        (
            "no events",
            sign(
                &op,
                &edit(&|c| {
                    c.as_object_mut().unwrap().remove("events");
                }),
            ),
            "events",
        ),
        (
            "another event",
            sign(
                &op,
                &edit(&|c| c["events"] = json!({"http://schemas.openid.net/event/other": {}})),
            ),
            "events",
        ),
        (
            "wrong aud",
            sign(&op, &edit(&|c| c["aud"] = json!("another-client"))),
            "invalid_token",
        ),
        (
            "wrong iss",
            sign(&op, &edit(&|c| c["iss"] = json!("https://evil.example"))),
            "invalid_token",
        ),
        (
            "stale iat",
            sign(&op, &edit(&|c| c["iat"] = json!(now() - 3600))),
            "iat",
        ),
        (
            "iat in the future",
            sign(&op, &edit(&|c| c["iat"] = json!(now() + 3600))),
            "invalid_token",
        ),
        (
            "no iat",
            sign(
                &op,
                &edit(&|c| {
                    c.as_object_mut().unwrap().remove("iat");
                }),
            ),
            "iat",
        ),
        (
            "expired",
            sign(&op, &edit(&|c| c["exp"] = json!(now() - 3600))),
            "invalid_token",
        ),
        (
            "no jti",
            sign(
                &op,
                &edit(&|c| {
                    c.as_object_mut().unwrap().remove("jti");
                }),
            ),
            "jti",
        ),
        (
            "no sid, no sub",
            sign(&op, &claims(&op, None, None)),
            "no_subject",
        ),
        (
            "typ at+jwt (an access token)",
            op.idp
                .sign_with_header("k1", &json!({"typ": "at+jwt"}), &good()),
            "typ",
        ),
        (
            "an ID token of the sign-in",
            op.idp.sign(
                "k1",
                &json!({"iss": op.issuer, "aud": CLIENT_ID, "sub": ALICE, "sid": "op-sid-1",
                        "iat": now(), "exp": now() + 300, "nonce": "n"}),
            ),
            "events",
        ),
    ];
    assert_eq!(
        post(&site, &replayed).await,
        200,
        "the first use of a token"
    );
    assert_eq!(post(&site, &replayed).await, 400, "the same jti again");
    for (what, token, _) in &hostile {
        assert_eq!(post(&site, token).await, 400, "{what}");
    }
    // Not a logout request at all.
    for (what, ctype, body) in [
        (
            "no logout_token",
            "application/x-www-form-urlencoded",
            "x=1".to_string(),
        ),
        (
            "logout_token twice",
            "application/x-www-form-urlencoded",
            form_encode(&[("logout_token", &replayed), ("logout_token", &replayed)]),
        ),
        (
            "JSON",
            "application/json",
            json!({"logout_token": replayed}).to_string(),
        ),
    ] {
        assert_eq!(
            post_raw(&site, ctype, body).await.status().as_u16(),
            400,
            "{what}"
        );
    }
    let get = client()
        .get(site.url("/.jwtgate/backchannel-logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 405);

    // None of it ended the session.
    let mut again = site.replaying(&cookie);
    site.assert_signed_in(&mut again, "after the refused logout tokens")
        .await;
    let m = site.metrics().await;
    assert_eq!(results(&site, "replayed").await, 1.0, "{m}");
    for (what, _, label) in &hostile {
        assert!(results(&site, label).await >= 1.0, "{what}: {label}\n{m}");
    }
    assert_eq!(results(&site, "malformed").await, 3.0, "{m}");

    // The real thing.
    let hits = site.up.count();
    assert_eq!(post(&site, &sign(&op, &good())).await, 200);
    site.assert_signed_out(
        &mut site.replaying(&cookie),
        "after the back-channel logout",
    )
    .await;
    assert_eq!(site.up.count(), hits);
    assert_eq!(results(&site, "ok").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sid_ends_that_provider_session_only() {
    let (op, site) = setup(&["sid-a", "sid-b"]).await;
    let mut first = Agent::new();
    let s = first.sign_in(&site.external, "/one", ALICE, "").await;
    assert_landed(&s, &site.external, "/one", "first");
    let mut second = Agent::new();
    let s = second.sign_in(&site.external, "/two", ALICE, "").await;
    assert_landed(&s, &site.external, "/two", "second");
    let (c1, c2) = (site.cookie_header(&first), site.cookie_header(&second));

    // sid-a, even with alice as sub: only the first session.
    assert_eq!(
        post(&site, &sign(&op, &claims(&op, Some("sid-a"), Some(ALICE)))).await,
        200
    );
    site.assert_signed_out(&mut site.replaying(&c1), "the session of sid-a")
        .await;
    site.assert_signed_in(&mut site.replaying(&c2), "the session of sid-b")
        .await;
    // Another provider's sid of the same name does nothing here either:
    // unknown sids are fine (200) and end nothing.
    assert_eq!(
        post(&site, &sign(&op, &claims(&op, Some("sid-unknown"), None))).await,
        200
    );
    site.assert_signed_in(&mut site.replaying(&c2), "after an unknown sid")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_ends_every_session_of_the_subject_and_not_later_ones() {
    let (op, site) = setup(&[]).await;
    let mut first = Agent::new();
    let s = first.sign_in(&site.external, "/one", ALICE, "").await;
    assert_landed(&s, &site.external, "/one", "first");
    let mut second = Agent::new();
    let s = second.sign_in(&site.external, "/two", ALICE, "").await;
    assert_landed(&s, &site.external, "/two", "second");
    let (c1, c2) = (site.cookie_header(&first), site.cookie_header(&second));
    // A bearer token of the same subject is not a session: it keeps working.
    let token = bearer_for(ALICE);

    assert_eq!(
        post(&site, &sign(&op, &claims(&op, None, Some(ALICE)))).await,
        200
    );
    site.assert_signed_out(&mut site.replaying(&c1), "alice's first session")
        .await;
    site.assert_signed_out(&mut site.replaying(&c2), "alice's second session")
        .await;
    let r = client()
        .get(site.url("/app/api"))
        .header("authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "a bearer token of alice");

    // Signing in again (in a later second than the logout) works.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut later = Agent::new();
    let s = later.sign_in(&site.external, "/three", ALICE, "").await;
    assert_landed(&s, &site.external, "/three", "a new sign-in");
    site.assert_signed_in(&mut later, "a session signed in after the logout")
        .await;
}
