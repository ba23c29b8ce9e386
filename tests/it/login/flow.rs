//! The sign-in round trip over HTTP: from a navigation to a protected page,
//! through the real provider's pages, back to that page with its query; what
//! the upstream receives with a session (the user, not the gate's cookies);
//! `/.jwtgate/session`; route rules on sessions; cookie attributes;
//! session key rotation. (`idle_timeout` and `max_lifetime` are at least a
//! minute, too long to wait for here.)

use std::time::Duration;

use super::common::*;
use crate::support::oidc::*;
use crate::support::*;

/// The attributes every `__Host-` cookie must have.
fn assert_host_cookie(c: &SetCookie, what: &str) {
    assert!(
        c.name.starts_with("__Host-"),
        "{what}: {:?} is not a __Host- cookie",
        c.raw
    );
    assert!(
        c.attr("secure").is_some(),
        "{what}: not Secure: {:?}",
        c.raw
    );
    assert_eq!(c.attr("path"), Some("/"), "{what}: Path in {:?}", c.raw);
    assert!(c.attr("domain").is_none(), "{what}: Domain in {:?}", c.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_returns_to_the_page_with_its_query_and_the_upstream_sees_the_user() {
    let Some((op, site)) = real(defaults(), Opts::new()).await else {
        return;
    };
    let mut b = Agent::new();
    let s = b
        .sign_in_from(&site.url("/app/page?x=1&y=2"), ALICE, ALICE_PASSWORD)
        .await;

    // The authorization request: code flow, PKCE S256, nonce, state.
    let a = &s.authorize;
    assert_eq!(origin_of(a), op.issuer, "authorization request: {a}");
    for (k, v) in [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("code_challenge_method", "S256"),
    ] {
        assert_eq!(query_param(a, k).as_deref(), Some(v), "{k} in {a}");
    }
    assert_eq!(
        query_param(a, "redirect_uri"),
        Some(site.url("/.jwtgate/callback")),
        "{a}"
    );
    for k in ["state", "nonce", "code_challenge", "scope"] {
        assert!(
            query_param(a, k).is_some_and(|v| !v.is_empty()),
            "no {k} in {a}"
        );
    }
    assert!(
        query_param(a, "scope")
            .unwrap()
            .split(' ')
            .any(|s| s == "openid"),
        "{a}"
    );

    // The flow cookie: __Host-, at most 10 minutes.
    let flow: Vec<SetCookie> = s
        .begin
        .set_cookies()
        .into_iter()
        .filter(SetCookie::is_live)
        .collect();
    assert!(!flow.is_empty(), "no flow cookie:\n{}", s.begin.describe());
    for c in &flow {
        assert_host_cookie(c, "flow cookie");
        if let Some(t) = c.expires_at() {
            assert!(
                t <= now() + 601,
                "flow cookie lives past 10 min: {:?}",
                c.raw
            );
        }
    }

    // Back from the provider with iss, then on the original page and query.
    assert_eq!(
        query_param(&s.callback, "iss").as_deref(),
        Some(op.issuer.as_str())
    );
    assert_landed(&s, &site.external, "/app/page?x=1&y=2", "sign-in");
    let sc = s.done.set_cookie(SESSION_COOKIE).unwrap();
    assert_host_cookie(&sc, "session cookie");
    assert!(sc.attr("httponly").is_some(), "not HttpOnly: {:?}", sc.raw);
    assert!(
        sc.attr("samesite")
            .is_some_and(|v| v.eq_ignore_ascii_case("lax")),
        "not SameSite=Lax: {:?}",
        sc.raw
    );

    // The page itself: the upstream sees alice (a forged header is
    // replaced), the other cookies, and none of the gate's.
    b.jar.put(&site.host, "theme", "dark");
    let page = b
        .navigate_with(s.landing().as_str(), &[("x-auth-user", "mallory")])
        .await;
    assert_eq!(page.status, 200, "{}", page.describe());
    let seen = site.up.last();
    assert_eq!(seen.path, "/app/page");
    assert_eq!(seen.query.as_deref(), Some("x=1&y=2"));
    assert_eq!(seen.header_all("x-auth-user"), vec![ALICE.to_string()]);
    let cookies = last_cookie_header(&site.up);
    assert!(cookies.contains("theme=dark"), "cookie header: {cookies:?}");
    let session_value = site.session(&b).unwrap();
    assert!(
        !cookies.contains(&session_value),
        "the session cookie reached the upstream: {cookies:?}"
    );
    for name in b.jar.names_ever_set(&site.host) {
        assert!(
            !cookies.contains(&format!("{name}=")),
            "the gate's cookie {name} reached the upstream: {cookies:?}"
        );
    }

    // A script's fetch with the session works too.
    let api = b.fetch(&site.url("/app/api")).await;
    assert_eq!(api.status, 200, "{}", api.describe());
    assert_eq!(last_user(&site.up).as_deref(), Some(ALICE));

    let (ok, failed) = site.logins().await;
    assert_eq!((ok, failed), (1.0, 0.0), "jwtgate_login_total");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_endpoint_answers_json_with_a_session_and_401_without() {
    let (_op, site) = scripted(true, Opts::new()).await;
    let mut b = Agent::new();
    for page in [
        b.fetch(&site.url("/.jwtgate/session")).await,
        b.send("GET", &site.url("/.jwtgate/session"), &[], None)
            .await,
    ] {
        assert_plain_401(&page, "/.jwtgate/session without a session");
    }

    let s = b.sign_in(&site.external, "/", ALICE, "").await;
    assert_landed(&s, &site.external, "/", "sign-in");
    let page = b.fetch(&site.url("/.jwtgate/session")).await;
    assert_eq!(page.status, 200, "{}", page.describe());
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{}",
        page.describe()
    );
    assert!(
        page.header("cache-control")
            .is_some_and(|c| c.contains("no-store")),
        "/.jwtgate/session must not be cached:\n{}",
        page.describe()
    );
    let j = page.json();
    assert_eq!(j["user"], ALICE, "{j}");
    assert_eq!(j["claims"]["sub"], ALICE, "{j}");
    assert_eq!(j["claims"]["email"], "alice@example.test", "{j}");
    let exp = j["expires_at"]
        .as_i64()
        .unwrap_or_else(|| panic!("expires_at is not a number of seconds: {j}"));
    assert!(
        exp > now() && exp <= now() + 12 * 3600 + 60,
        "expires_at {exp} (now {})",
        now()
    );
    // Page script reads it: no token in it (the cookie is HttpOnly for a reason).
    assert!(
        !page.body.contains("eyJ"),
        "/.jwtgate/session shows a token: {}",
        page.body
    );
    assert_eq!(
        site.up.count(),
        0,
        "the gate's own endpoint reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_rules_and_claim_headers_apply_to_sessions() {
    let (_op, site) = scripted(
        true,
        Opts::new().tail(
            "[[routes]]\nprefix = \"/admins/\"\nrequire_claims = { groups = \"admins\" }\n\
             [[routes]]\nprefix = \"/wizards/\"\nrequire_claims = { groups = \"wizards\" }\n\
             [[routes]]\nprefix = \"/bobs/\"\nallowed_users = [\"bob\"]\n\
             [[routes]]\nprefix = \"/scoped/\"\nrequire_scopes = [\"admin:write\"]\n\
             [forward]\nclaims_headers = { email = \"X-Auth-Email\" }\n",
        ),
    )
    .await;
    let mut b = Agent::new();
    let s = b.sign_in(&site.external, "/admins/", ALICE, "").await;
    assert_landed(&s, &site.external, "/admins/", "sign-in");

    let ok = b.navigate(&site.url("/admins/panel")).await;
    assert_eq!(ok.status, 200, "{}", ok.describe());
    let seen = site.up.last();
    assert_eq!(seen.header("x-auth-user").as_deref(), Some(ALICE));
    assert_eq!(
        seen.header("x-auth-email").as_deref(),
        Some("alice@example.test")
    );
    for path in ["/wizards/x", "/bobs/x", "/scoped/x"] {
        for page in [
            b.navigate(&site.url(path)).await,
            b.fetch(&site.url(path)).await,
        ] {
            assert_eq!(page.status, 403, "{path}:\n{}", page.describe());
        }
    }
    assert_eq!(site.up.count(), 1, "a refused request reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_served_on_a_session_are_not_cacheable() {
    let (_op, site) = scripted(true, Opts::new()).await;
    let mut b = Agent::new();
    let s = b.sign_in(&site.external, "/app/doc", ALICE, "").await;
    assert_landed(&s, &site.external, "/app/doc", "sign-in");
    let page = b.navigate(&site.url("/app/doc")).await;
    assert_eq!(page.status, 200, "{}", page.describe());
    // Otherwise the back button shows the page after sign-out.
    assert!(
        page.header("cache-control")
            .is_some_and(|c| c.contains("no-store")),
        "a page served on a session can be cached:\n{}",
        page.describe()
    );
}

/// Polls until `jwtgate_config_reloads_total` passes `before`.
async fn reloaded(site: &Site, before: f64) -> f64 {
    eventually(Duration::from_secs(10), "the SIGHUP reload", || async {
        let m = site.metrics().await;
        metric_sum(&m, "jwtgate_config_reloads_total").filter(|v| *v > before)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_keys_rotate_the_first_seals_all_open() {
    let op = ScriptedOp::start(true).await;
    let (port, _) = reserve();
    let (a, b_key) = (new_key(), new_key());
    let site = Site::start(
        port,
        &op.issuer,
        Opts::new()
            .keys(&[a])
            .tail("[reload]\nwatch = false")
            .process(),
    )
    .await;
    let mut old = Agent::new();
    let s = old.sign_in(&site.external, "/", ALICE, "").await;
    assert_landed(&s, &site.external, "/", "sign-in with key A");
    site.assert_signed_in(&mut old, "key A").await;
    let before = metric_sum(&site.metrics().await, "jwtgate_config_reloads_total").unwrap_or(0.0);

    // [B, A]: B seals, A still opens.
    std::fs::write(&site.keys_file, keys_text(&[b_key, a])).unwrap();
    site.gate.signal("HUP");
    let before = reloaded(&site, before).await;
    site.assert_signed_in(&mut old, "a cookie sealed with A after [B, A]")
        .await;
    let mut new = Agent::new();
    let s = new.sign_in(&site.external, "/", ALICE, "").await;
    assert_landed(&s, &site.external, "/", "sign-in with key B");

    // [B]: the cookie sealed with A is unknown now, B's still opens.
    std::fs::write(&site.keys_file, keys_text(&[b_key])).unwrap();
    site.gate.signal("HUP");
    reloaded(&site, before).await;
    site.assert_signed_in(&mut new, "a cookie sealed with B after [B]")
        .await;
    site.assert_signed_out(&mut old, "a cookie sealed with a key no longer listed")
        .await;
    assert!(
        !site.gate.logs().contains("panicked"),
        "{}",
        site.gate.logs()
    );
}
