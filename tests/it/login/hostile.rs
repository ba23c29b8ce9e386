//! The hostile battery: broken, foreign and oversized cookies; replayed
//! callbacks; login CSRF; mix-up with a second provider; forged hosts;
//! floods of requests and flows. Each refusal is shown beside a case that
//! works, so that a gate refusing everything fails too.

use std::time::Duration;

use base64::Engine;
use reqwest::Url;

use crate::support::oidc::*;
use crate::support::*;

use super::common::*;

/// A request carrying only this `Cookie` header is treated as carrying no
/// session: a navigation is sent to sign in, a fetch gets 401 and no new
/// cookie (clearing the broken one is allowed), never a 5xx. With
/// `big`, 400 and 431 are also accepted.
async fn assert_absent(site: &Site, cookie: &str, big: bool, what: &str) {
    let mut b = Agent::new();
    let nav = b
        .navigate_with(&site.url("/app/secret?n=1"), &[("cookie", cookie)])
        .await;
    let xhr = b
        .send(
            "GET",
            &site.url("/app/secret"),
            &[FETCH, &[("cookie", cookie)]].concat(),
            None,
        )
        .await;
    if big && matches!(nav.status, 400 | 431) && matches!(xhr.status, 400 | 431) {
        return;
    }
    assert_login_redirect(&nav, &site.external, "/app/secret?n=1", what);
    assert_eq!(xhr.status, 401, "{what}: fetch:\n{}", xhr.describe());
    assert!(
        !xhr.set_cookies().iter().any(SetCookie::is_live),
        "{what}: the 401 set a cookie:\n{}",
        xhr.describe()
    );
}

/// `name=value` pairs of a `Cookie` header, and back.
fn pairs(header: &str) -> Vec<(String, String)> {
    header
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn join(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_session_cookies_are_treated_as_absent() {
    let (_op, site) = scripted(true, Opts::new()).await;
    let mut b = Agent::new();
    let s = b.sign_in(&site.external, "/", ALICE, "").await;
    assert_landed(&s, &site.external, "/", "sign-in");
    // The session as the browser sends it (in as many cookies as the gate
    // split it into): each case breaks the longest value or the set.
    let full = site.cookie_header(&b);
    let good = pairs(&full);
    let longest = (0..good.len()).max_by_key(|&i| good[i].1.len()).unwrap();
    let v = good[longest].1.clone();
    assert!(v.len() >= 16, "session cookie {full:?}");
    let with = |value: String| {
        let mut p = good.clone();
        p[longest].1 = value;
        join(&p)
    };

    let mid = v.len() / 2;
    let flip_at = |at: usize| -> String {
        v.chars()
            .enumerate()
            .map(|(i, c)| match (i == at, c) {
                (true, 'A') => 'B',
                (true, _) => 'A',
                (false, c) => c,
            })
            .collect()
    };
    let random = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(300));
    let mut cases: Vec<(String, String)> = vec![
        ("one character changed".into(), with(flip_at(mid))),
        (
            "the last character changed".into(),
            with(flip_at(v.len() - 1)),
        ),
        ("the first character changed".into(), with(flip_at(0))),
        ("truncated to half".into(), with(v[..mid].to_string())),
        (
            "one character short".into(),
            with(v[..v.len() - 1].to_string()),
        ),
        ("one character more".into(), with(format!("{v}A"))),
        ("reversed".into(), with(v.chars().rev().collect())),
        ("empty".into(), with(String::new())),
        ("garbage".into(), with("garbage".into())),
        ("random base64url".into(), with(random)),
        ("quotes and separators".into(), with("\"a.b.c\"".into())),
    ];
    if good.len() > 1 {
        cases.push((
            "the last cookie of the set dropped".into(),
            join(&good[..good.len() - 1]),
        ));
        let mut swapped = good.clone();
        let (a, z) = (swapped[0].1.clone(), swapped[good.len() - 1].1.clone());
        swapped[0].1 = z;
        swapped[good.len() - 1].1 = a;
        cases.push(("two values of the set swapped".into(), join(&swapped)));
    }
    for (what, header) in &cases {
        assert_absent(&site, header, false, what).await;
    }
    for sep in ['.', '-'] {
        let chunks: Vec<String> = (0..60)
            .map(|i| format!("{SESSION_COOKIE}{sep}{i}={}", random_hex(40)))
            .collect();
        assert_absent(
            &site,
            &chunks.join("; "),
            false,
            &format!("60 chunk-like cookies ({sep}N)"),
        )
        .await;
        assert_absent(
            &site,
            &format!("{SESSION_COOKIE}=ok; {SESSION_COOKIE}{sep}0={v}; {SESSION_COOKIE}{sep}1={v}"),
            false,
            &format!("a session value under chunk names ({sep}N)"),
        )
        .await;
    }
    assert_absent(
        &site,
        &format!("{SESSION_COOKIE}={}", "A".repeat(12 * 1024)),
        true,
        "a 12 KiB session cookie",
    )
    .await;
    assert_eq!(site.up.count(), 0, "a broken cookie reached the upstream");

    // The real one still opens.
    site.assert_signed_in(&mut site.replaying(&full), "the untouched cookies")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_sealed_with_another_key_is_absent() {
    let op = ScriptedOp::start(true).await;
    let (pa, _) = reserve();
    let a = Site::start(pa, &op.issuer, Opts::new()).await;
    let (pb, _) = reserve();
    let other = Site::start(pb, &op.issuer, Opts::new()).await;
    let mut b = Agent::new();
    let s = b.sign_in(&other.external, "/", ALICE, "").await;
    assert_landed(&s, &other.external, "/", "sign-in at the other gate");
    other
        .assert_signed_in(&mut b, "at the gate that sealed it")
        .await;
    let foreign = other.cookie_header(&b);
    assert_absent(&a, &foreign, false, "a cookie sealed with an unknown key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_callback_is_refused_in_the_same_and_in_a_fresh_browser() {
    let (op, site) = scripted(true, Opts::new()).await;
    let mut a = Agent::new();
    let begin = a.begin(&site.external, Some("/inbox")).await;
    assert_eq!(begin.status, 302, "{}", begin.describe());
    let cb = a.authorize(&begin.location().unwrap(), ALICE, "").await;
    // What an attacker could copy before the browser used it.
    let copied_jar = a.jar.clone();
    let done = a.callback(cb.as_str()).await;
    assert_eq!(done.status, 302, "the first use:\n{}", done.describe());
    assert!(done.sets_live_cookie(SESSION_COOKIE), "{}", done.describe());

    let again = a.callback(cb.as_str()).await;
    assert_refused(&again, "the same browser replays its callback URL");

    let redeemed = op.token_requests().len();
    let fresh = Agent::new().callback(cb.as_str()).await;
    assert_refused(&fresh, "a fresh browser replays the callback URL");
    assert_eq!(
        op.token_requests().len(),
        redeemed,
        "a callback without its flow cookie got as far as the token endpoint"
    );

    let mut thief = Agent::new();
    thief.jar = copied_jar;
    let stolen = thief.callback(cb.as_str()).await;
    assert_refused(
        &stolen,
        "the callback URL replayed with the flow cookie copied before use",
    );

    let (ok, failed) = site.logins().await;
    assert_eq!(ok, 1.0);
    assert!(failed >= 3.0, "{failed} failed sign-ins counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_csrf_a_callback_started_by_another_browser_is_refused() {
    let (op, site) = scripted(true, Opts::new()).await;
    // The attacker starts a sign-in with their own account and keeps the
    // callback URL instead of following it.
    let mut attacker = Agent::new();
    let begin = attacker.begin(&site.external, Some("/")).await;
    let evil_cb = attacker
        .authorize(&begin.location().unwrap(), MALLORY, "")
        .await;
    let redeemed = op.token_requests().len();

    // A victim with no flow of their own, and one in the middle of theirs.
    let mut victim = Agent::new();
    let page = victim.callback(evil_cb.as_str()).await;
    assert_refused(&page, "the attacker's callback in a fresh browser");
    let mut busy = Agent::new();
    let own = busy.begin(&site.external, Some("/mine")).await;
    assert_eq!(own.status, 302);
    let page = busy.callback(evil_cb.as_str()).await;
    assert_refused(
        &page,
        "the attacker's callback in a browser with its own flow",
    );
    assert_eq!(
        op.token_requests().len(),
        redeemed,
        "the attacker's code was redeemed for the victim"
    );
    assert!(site.session(&victim).is_none() && site.session(&busy).is_none());

    // The URL itself was good: in the attacker's browser it signs in.
    let page = attacker.callback(evil_cb.as_str()).await;
    assert_eq!(page.status, 302, "{}", page.describe());
    assert!(page.sets_live_cookie(SESSION_COOKIE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mix_up_a_second_provider_cannot_sign_in_through_the_gate() {
    let Some((honest, site)) = real(defaults(), Opts::new()).await else {
        return;
    };
    // The hostile provider: another issuer and key, with the gate's client
    // id, secret and callback registered (as an attacker can do).
    let hostile = Provider::start(&provider_config(
        vec![client_config(&site.external)],
        &defaults(),
    ));
    let mut b = Agent::new();
    let mut failures = Vec::new();
    for (what, iss) in [
        ("its own iss", Some(hostile.issuer.as_str())),
        ("the honest iss", Some(honest.issuer.as_str())),
        ("no iss", None),
    ] {
        // The gate's authorization request, sent to the hostile provider.
        let begin = b.begin(&site.external, Some("/mixed")).await;
        assert_eq!(begin.status, 302, "{}", begin.describe());
        let hostile_auth = with_origin(&begin.location().unwrap(), &hostile.issuer);
        let cb = b.authorize(&hostile_auth, ALICE, ALICE_PASSWORD).await;
        assert_eq!(
            query_param(&cb, "iss").as_deref(),
            Some(hostile.issuer.as_str())
        );
        let page = b.callback(with_param(&cb, "iss", iss).as_str()).await;
        if page.status != 400 || page.sets_live_cookie(SESSION_COOKIE) {
            failures.push(format!(
                "the hostile provider's code with {what}:\n{}",
                page.describe()
            ));
        }
    }
    // The honest provider's code with the hostile iss.
    let begin = b.begin(&site.external, Some("/mixed")).await;
    let cb = b
        .authorize(&begin.location().unwrap(), ALICE, ALICE_PASSWORD)
        .await;
    let page = b
        .callback(with_param(&cb, "iss", Some(&hostile.issuer)).as_str())
        .await;
    if page.status != 400 || page.sets_live_cookie(SESSION_COOKIE) {
        failures.push(format!(
            "an honest code with the hostile iss:\n{}",
            page.describe()
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // The gate never talked to the hostile token endpoint.
    let hs = hostile.stats().await;
    assert!(
        hs["token"].as_object().is_none_or(|m| m.is_empty()),
        "the gate sent a code (and its client secret) to the hostile provider: {hs}"
    );
    let (ok, failed) = site.logins().await;
    assert_eq!(ok, 0.0);
    assert!(failed >= 4.0, "{failed}");

    // The honest way still works.
    let s = b
        .sign_in(&site.external, "/fine", ALICE, ALICE_PASSWORD)
        .await;
    assert_landed(&s, &site.external, "/fine", "the honest provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_hosts_never_reach_a_location_nor_pass_the_origin_check() {
    let (_op, site) = scripted(true, Opts::new()).await;
    let proxy = site.gate.proxy;
    // Raw requests say `Host: gate.test`; these add forwarded hosts.
    let forged = [
        "X-Forwarded-Host: evil.example",
        "X-Forwarded-Proto: https",
        "Forwarded: host=evil.example;proto=https",
        "Accept: text/html",
        "Sec-Fetch-Mode: navigate",
        "Sec-Fetch-Dest: document",
    ];
    let clean = |loc: &str, what: &str| {
        assert!(
            !loc.contains("evil") && !loc.contains("gate.test"),
            "{what}: Location {loc:?}"
        );
    };
    let mut b = Agent::new();
    let begin = b
        .raw(
            proxy,
            &site.external,
            "GET",
            "/.jwtgate/login?rd=%2Fhome",
            &forged,
            b"",
        )
        .await;
    assert_eq!(begin.status, 302, "{}", begin.describe());
    clean(&begin.location_raw().unwrap(), "/.jwtgate/login");
    let auth = begin.location().unwrap();
    assert_eq!(
        query_param(&auth, "redirect_uri"),
        Some(site.url("/.jwtgate/callback")),
        "{auth}"
    );
    let cb = b.authorize(&auth, ALICE, "").await;
    let target = format!("{}?{}", cb.path(), cb.query().unwrap());
    let done = b
        .raw(proxy, &site.external, "GET", &target, &forged, b"")
        .await;
    assert_eq!(done.status, 302, "{}", done.describe());
    clean(&done.location_raw().unwrap(), "/.jwtgate/callback");
    assert_eq!(done.location().unwrap().as_str(), site.url("/home"));
    assert!(done.sets_live_cookie(SESSION_COOKIE), "{}", done.describe());

    // Sign-out: an Origin that matches the request's own (forged) host is
    // still a foreign origin.
    let (_, _, fields) = logout_form(&mut b, &site).await;
    let body = form_encode(
        &fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    );
    let post = |origin: String| {
        let mut h: Vec<String> = forged.iter().map(|s| s.to_string()).collect();
        h.push("Content-Type: application/x-www-form-urlencoded".into());
        h.push(origin);
        h
    };
    for origin in [
        "Origin: http://gate.test",
        "Origin: http://evil.example",
        "Origin: https://evil.example",
    ] {
        let headers = post(origin.to_string());
        let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let page = b
            .raw(
                proxy,
                &site.external,
                "POST",
                "/.jwtgate/logout",
                &refs,
                body.as_bytes(),
            )
            .await;
        assert!(
            (400..500).contains(&page.status),
            "{origin} with forged hosts was not refused:\n{}",
            page.describe()
        );
        site.assert_signed_in(&mut b, origin).await;
    }
    let headers = post(format!("Origin: {}", site.external));
    let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let out = b
        .raw(
            proxy,
            &site.external,
            "POST",
            "/.jwtgate/logout",
            &refs,
            body.as_bytes(),
        )
        .await;
    assert!(matches!(out.status, 302 | 303), "{}", out.describe());
    clean(&out.location_raw().unwrap(), "POST /.jwtgate/logout");
    assert_eq!(out.location().unwrap().as_str(), site.url("/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_fetches_get_401_and_no_cookie() {
    let (_op, site) = scripted(true, Opts::new()).await;
    let c = client();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let c = c.clone();
            let url = site.url(&format!("/app/data/{i}"));
            tokio::spawn(async move {
                let req = if i % 2 == 0 {
                    c.get(url)
                        .header("accept", "*/*")
                        .header("sec-fetch-mode", "cors")
                        .header("sec-fetch-dest", "empty")
                        .header("sec-fetch-site", "same-origin")
                } else {
                    c.get(url)
                        .header("accept", "text/html, */*; q=0.01")
                        .header("x-requested-with", "XMLHttpRequest")
                };
                let resp = req.send().await.expect("request");
                (
                    resp.status().as_u16(),
                    resp.headers().get_all("set-cookie").iter().count(),
                )
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let (status, cookies) = t.await.unwrap();
        assert_eq!((status, cookies), (401, 0), "request {i}");
    }
    assert_eq!(site.up.count(), 0);
    let page = Agent::new().navigate(&site.url("/app")).await;
    assert_login_redirect(&page, &site.external, "/app", "a navigation afterwards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_kib_cookie_header_is_refused_and_the_gate_keeps_serving() {
    let (_op, site) = scripted(true, Opts::new()).await;
    let mut b = Agent::new();
    let s = b.sign_in(&site.external, "/", ALICE, "").await;
    assert_landed(&s, &site.external, "/", "sign-in");
    let full = site.cookie_header(&b);
    let many: Vec<String> = (0..2000)
        .map(|i| {
            let sep = if i % 2 == 0 { '-' } else { '.' };
            format!("{SESSION_COOKIE}{sep}{i}=xxxxxxxxxxxxxxxx")
        })
        .collect();
    for (what, cookie) in [
        (
            "one 64 KiB session cookie",
            format!("{SESSION_COOKIE}={}", "A".repeat(64 * 1024)),
        ),
        (
            "a valid session and 64 KiB of chunk names",
            format!("{full}; {}", many.join("; ")),
        ),
    ] {
        let resp = raw_get(
            site.gate.proxy,
            "/app/x",
            &[
                format!("Cookie: {cookie}"),
                "Accept: text/html".into(),
                "Sec-Fetch-Mode: navigate".into(),
            ],
        )
        .await;
        assert!(
            matches!(resp.status, 400 | 431),
            "{what}: {} {:?}",
            resp.status,
            resp.headers
        );
    }
    site.assert_signed_in(&mut b, "after the oversized headers")
        .await;
    let page = Agent::new().navigate(&site.url("/app")).await;
    assert_login_redirect(&page, &site.external, "/app", "a new browser afterwards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_eight_flows_per_browser_the_oldest_dropped() {
    let (_op, site) = scripted(true, Opts::new()).await;
    let mut b = Agent::new();
    let root = Url::parse(&site.url("/")).unwrap();
    let mut auths = Vec::new();
    for i in 1..=10 {
        let begin = b.begin(&site.external, Some(&format!("/tab/{i}"))).await;
        assert_eq!(begin.status, 302, "flow {i}:\n{}", begin.describe());
        auths.push(begin.location().unwrap());
        let names = b.jar.names(&site.host);
        assert!(
            names.len() <= 8,
            "after {i} sign-ins the browser holds {} of the gate's cookies: {names:?}",
            names.len()
        );
        let len = b.jar.header_for(&root).map_or(0, |h| h.len());
        assert!(
            len <= 8 * 1024,
            "after {i} sign-ins the Cookie header is {len} bytes"
        );
        // "Oldest" must be decidable.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let callback = async |b: &mut Agent, i: usize| {
        let cb = b.authorize(&auths[i - 1], ALICE, "").await;
        b.callback(cb.as_str()).await
    };
    let held = b.jar.names(&site.host);
    for i in [1, 2] {
        let page = callback(&mut b, i).await;
        assert_refused(
            &page,
            &format!("flow {i} of 10 (the oldest: dropped); the browser held {held:?}"),
        );
    }
    for i in [3, 10] {
        let page = callback(&mut b, i).await;
        assert_eq!(page.status, 302, "flow {i} of 10:\n{}", page.describe());
        assert_eq!(
            page.location().unwrap().as_str(),
            site.url(&format!("/tab/{i}"))
        );
        assert!(page.sets_live_cookie(SESSION_COOKIE));
    }
}
