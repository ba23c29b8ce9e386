//! Sign-out (issue, rule 9): `GET /.jwtgate/logout` only shows a form;
//! `POST` needs a same-origin `Origin` (or `Referer`) and a session; it
//! revokes the session id through `[store]`, clears the cookie and goes to
//! the provider's end_session_endpoint (or `post_logout_redirect`); the old
//! cookie replayed afterwards is a new sign-in, never access.

use crate::support::oidc::*;
use crate::support::*;

use super::common::*;

async fn logouts(site: &Site) -> f64 {
    metric_sum(&site.metrics().await, "jwtgate_logout_total").unwrap_or(0.0)
}

/// The response clears the session cookie.
fn assert_clears_session(page: &Page, what: &str) {
    let c = page.set_cookie(SESSION_COOKIE).unwrap_or_else(|| {
        panic!(
            "{what}: the session cookie is not cleared:\n{}",
            page.describe()
        )
    });
    assert!(!c.is_live(), "{what}: {:?} does not clear it", c.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_revokes_the_session_and_ends_at_the_provider() {
    let Some((op, site)) = real(defaults(), Opts::new()).await else {
        return;
    };
    let end_session = op.discovery().await["end_session_endpoint"]
        .as_str()
        .expect("end_session_endpoint")
        .to_string();
    let mut b = Agent::new();
    let s = b
        .sign_in_from(&site.url("/app/home"), ALICE, ALICE_PASSWORD)
        .await;
    assert_landed(&s, &site.external, "/app/home", "sign-in");
    let old = site.cookie_header(&b);

    let (_, _, fields) = logout_form(&mut b, &site).await;
    site.assert_signed_in(&mut b, "after GET /.jwtgate/logout")
        .await;
    let out = post_logout(
        &mut b,
        &site,
        &fields,
        Some(&site.external),
        &[
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert!(matches!(out.status, 302 | 303), "{}", out.describe());
    assert_clears_session(&out, "POST /.jwtgate/logout");
    let loc = out.location().unwrap();
    assert_eq!(
        format!("{}{}", origin_of(&loc), loc.path()),
        end_session,
        "not the provider's end_session_endpoint: {loc}"
    );
    assert_eq!(
        query_param(&loc, "post_logout_redirect_uri"),
        Some(site.url("/")),
        "{loc}"
    );
    let state = query_param(&loc, "state").unwrap_or_default();
    assert!(!state.is_empty(), "no state: {loc}");
    let hint =
        query_param(&loc, "id_token_hint").unwrap_or_else(|| panic!("no id_token_hint: {loc}"));
    let (_, claims, _) = decode_parts(&hint);
    assert_eq!(claims["iss"], op.issuer.as_str(), "{claims}");
    assert_eq!(claims["sub"], ALICE, "{claims}");
    assert!(
        claims["aud"] == CLIENT_ID
            || claims["aud"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == CLIENT_ID)),
        "{claims}"
    );
    assert_eq!(logouts(&site).await, 1.0, "jwtgate_logout_total");

    // The old cookie, replayed: a new sign-in, never access.
    site.assert_signed_out(&mut site.replaying(&old), "the old cookie replayed")
        .await;
    site.assert_signed_out(&mut b, "the browser that signed out")
        .await;

    // At the provider: its confirmation, then back to the gate with the state.
    let confirm = b
        .navigate_with(loc.as_str(), &[("sec-fetch-site", "same-site")])
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.describe());
    assert!(
        confirm.body.contains("id=\"logout\""),
        "the provider refused the logout request:\n{}",
        confirm.describe()
    );
    let action = form_actions(&confirm.body)
        .into_iter()
        .find(|a| a.contains("/session/end/confirm"))
        .unwrap_or_else(|| panic!("no confirm form:\n{}", confirm.body));
    let xsrf = input_value(&confirm.body, "xsrf").expect("xsrf");
    let action = confirm.url.join(&action).unwrap();
    let back = b
        .post_form(
            action.as_str(),
            Some(&op.issuer),
            &[],
            &[("xsrf", &xsrf), ("logout", "yes")],
        )
        .await;
    assert!(back.is_redirect(), "{}", back.describe());
    let to = back.location().unwrap();
    assert_eq!(format!("{}{}", origin_of(&to), to.path()), site.url("/"));
    assert_eq!(query_param(&to, "state"), Some(state));
    assert_eq!(stat(&op.stats().await, "end_session"), 1);

    // Signing in again works (and asks for the password again).
    let s = b
        .sign_in_from(&site.url("/app/again"), ALICE, ALICE_PASSWORD)
        .await;
    assert_landed(&s, &site.external, "/app/again", "signing in again");
}

/// What a refused sign-out sends: why, its `Origin`, other headers.
type LogoutCase<'a> = (&'a str, Option<&'a str>, Vec<(&'a str, &'a str)>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_refuses_cross_site_requests() {
    let (op, site) = scripted(true, Opts::new()).await;
    let mut b = Agent::new();
    let s = b.sign_in(&site.external, "/", ALICE, "").await;
    assert_landed(&s, &site.external, "/", "sign-in");

    // GETs from elsewhere (a link, an image) only ever show the form.
    let url = site.url("/.jwtgate/logout");
    let link = b
        .navigate_with(
            &url,
            &[
                ("sec-fetch-site", "cross-site"),
                ("referer", "http://evil.example/page"),
            ],
        )
        .await;
    assert_eq!(link.status, 200, "{}", link.describe());
    let img = b
        .send(
            "GET",
            &url,
            &[
                ("sec-fetch-mode", "no-cors"),
                ("sec-fetch-dest", "image"),
                ("sec-fetch-site", "cross-site"),
            ],
            None,
        )
        .await;
    for page in [&link, &img] {
        assert!(
            page.set_cookie(SESSION_COOKIE).is_none(),
            "a GET touched the session:\n{}",
            page.describe()
        );
    }
    site.assert_signed_in(&mut b, "after cross-site GETs of the logout page")
        .await;

    let (_, _, fields) = logout_form(&mut b, &site).await;
    let other_port = format!("http://{}", op.addr);
    let https = format!("https://127.0.0.1:{}", site.port);
    let suffix = format!("{}.evil.example", site.external);
    let lookalike = format!("http://127.0.0.1.evil.example:{}/", site.port);
    let cases: Vec<LogoutCase> = vec![
        (
            "a foreign Origin",
            Some("http://evil.example"),
            vec![("sec-fetch-site", "cross-site")],
        ),
        ("Origin: null", Some("null"), vec![]),
        (
            "another port of the same host (same site)",
            Some(&other_port),
            vec![("sec-fetch-site", "same-site")],
        ),
        ("the gate's host over https", Some(&https), vec![]),
        ("the gate's origin as a prefix", Some(&suffix), vec![]),
        (
            "no Origin, a foreign Referer",
            None,
            vec![("referer", "http://evil.example/page")],
        ),
        (
            "no Origin, a look-alike Referer",
            None,
            vec![("referer", &lookalike)],
        ),
        ("neither Origin nor Referer", None, vec![]),
    ];
    for (what, origin, extra) in &cases {
        let page = post_logout(&mut b, &site, &fields, *origin, extra).await;
        assert!(
            (400..500).contains(&page.status),
            "{what}: not refused:\n{}",
            page.describe()
        );
        site.assert_signed_in(&mut b, what).await;
    }
    // No session: nothing to sign out.
    let page = post_logout(&mut Agent::new(), &site, &fields, Some(&site.external), &[]).await;
    assert!(page.status < 500, "{}", page.describe());
    assert_eq!(logouts(&site).await, 0.0, "a refused sign-out was counted");

    let out = post_logout(&mut b, &site, &fields, Some(&site.external), &[]).await;
    assert!(matches!(out.status, 302 | 303), "{}", out.describe());
    assert_eq!(logouts(&site).await, 1.0);
    site.assert_signed_out(&mut b, "after signing out").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_end_session_sign_out_goes_to_post_logout_redirect() {
    let (_op, site) = scripted(true, Opts::new().login("post_logout_redirect = \"/bye\"")).await;
    let mut b = Agent::new();
    let s = b.sign_in(&site.external, "/", ALICE, "").await;
    assert_landed(&s, &site.external, "/", "sign-in");
    let old = site.cookie_header(&b);
    let (_, _, fields) = logout_form(&mut b, &site).await;
    // Referer instead of Origin (the issue allows either).
    let referer = site.url("/app/x");
    let out = post_logout(&mut b, &site, &fields, None, &[("referer", &referer)]).await;
    assert!(matches!(out.status, 302 | 303), "{}", out.describe());
    assert_eq!(out.location().unwrap().as_str(), site.url("/bye"));
    assert_clears_session(&out, "POST /.jwtgate/logout");
    assert_eq!(logouts(&site).await, 1.0);
    site.assert_signed_out(&mut site.replaying(&old), "the old cookie replayed")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_stays_revoked_after_a_restart() {
    let op = ScriptedOp::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let opts = Opts::new()
        .keys(&[new_key()])
        .tail(&format!("[store]\npath = \"{}\"", store.display()));
    let (port, _) = reserve();
    let first = Site::start(port, &op.issuer, opts.clone()).await;
    let mut gone = Agent::new();
    let s = gone.sign_in(&first.external, "/", ALICE, "").await;
    assert_landed(&s, &first.external, "/", "sign-in (to be signed out)");
    let mut kept = Agent::new();
    let s = kept.sign_in(&first.external, "/", ALICE, "").await;
    assert_landed(&s, &first.external, "/", "sign-in (kept)");
    let (gone_cookie, kept_cookie) = (first.cookie_header(&gone), first.cookie_header(&kept));
    let (_, _, fields) = logout_form(&mut gone, &first).await;
    let out = post_logout(&mut gone, &first, &fields, Some(&first.external), &[]).await;
    assert!(matches!(out.status, 302 | 303), "{}", out.describe());
    drop(first);

    // The same keys, store and port: a restarted gate.
    let second = Site::start(port, &op.issuer, opts).await;
    second
        .assert_signed_in(
            &mut second.replaying(&kept_cookie),
            "a session that was not signed out, after the restart",
        )
        .await;
    second
        .assert_signed_out(
            &mut second.replaying(&gone_cookie),
            "a signed-out session, after the restart",
        )
        .await;
}
