//! The return path (issue, rule 5): taken from `rd` at the start, kept only
//! when it is a path on this origin (or a URL on a `redirect_hosts` host),
//! refused back to `/` otherwise; the original query survives the round
//! trip. Each case is a whole sign-in through the scripted provider, and
//! every case is checked before the test fails, so that a failure lists
//! them all.

use crate::support::oidc::*;

use super::common::*;

/// What a case must end on.
enum Expect {
    /// Exactly `/` of the gate.
    Root,
    /// Exactly this (a path on the gate, or an absolute URL).
    Kept(&'static str),
    /// Anywhere on the gate's own origin (either answer is safe).
    SameOrigin,
}

/// Runs each case as a sign-in (the scripted provider answers at once) and
/// returns the failures.
async fn run_cases(site: &Site, cases: &[(&str, Expect)]) -> Vec<String> {
    let mut b = Agent::new();
    let mut failures = Vec::new();
    for (rd, expect) in cases {
        let s = b.sign_in(&site.external, rd, ALICE, "").await;
        if !matches!(s.done.status, 302 | 303) || !s.done.sets_live_cookie(SESSION_COOKIE) {
            failures.push(format!(
                "rd={rd:?}: the sign-in did not complete:\n{}",
                s.done.describe()
            ));
            continue;
        }
        let raw = s.done.location_raw().unwrap_or_default();
        let landing = s.landing();
        let ok = match expect {
            Expect::Root => landing.as_str() == format!("{}/", site.external),
            Expect::Kept(want) => {
                let want = if want.starts_with('/') {
                    format!("{}{want}", site.external)
                } else {
                    want.to_string()
                };
                landing.as_str() == want
            }
            Expect::SameOrigin => origin_of(&landing) == site.external,
        };
        // Whatever the expectation, a Location a browser could read as
        // another host is a failure.
        let bad_spelling = raw.contains('\\')
            || raw.contains('\t')
            || raw.contains('\n')
            || raw.starts_with("//")
            || raw.to_ascii_lowercase().starts_with("javascript:")
            || raw.to_ascii_lowercase().starts_with("data:");
        if !ok || bad_spelling {
            failures.push(format!(
                "rd={rd:?}: Location {raw:?} (a browser goes to {landing})"
            ));
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn return_paths_off_this_origin_fall_back_to_root() {
    let (_op, site) = scripted(true, Opts::new()).await;
    let cases = [
        ("//evil.com", Expect::Root),
        ("///evil.com", Expect::Root),
        ("/\\evil.com", Expect::Root),
        ("\\/evil.com", Expect::Root),
        ("\\\\evil.com", Expect::Root),
        ("/\t/evil.com", Expect::Root),
        ("/%2F%2Fevil.com", Expect::Root),
        ("/%2f/evil.com", Expect::Root),
        ("/%5Cevil.com", Expect::Root),
        ("/%5c%5cevil.com", Expect::Root),
        ("https:evil.com", Expect::Root),
        ("https://evil.com", Expect::Root),
        ("http://evil.com/ok", Expect::Root),
        ("HTTPS://EVIL.COM", Expect::Root),
        ("javascript:alert(1)", Expect::Root),
        ("JavaScript:alert(1)", Expect::Root),
        (" javascript:alert(1)", Expect::Root),
        ("data:text/html,x", Expect::Root),
        ("https://good@evil.com", Expect::Root),
        ("//good@evil.com", Expect::Root),
        ("http://127.0.0.1.evil.com/", Expect::Root),
        ("evil.com", Expect::Root),
        ("/ok\tx", Expect::Root),
        ("/ok\nx", Expect::Root),
        ("/ok\rx", Expect::Root),
        ("/\n/evil.com", Expect::Root),
        ("\t//evil.com", Expect::Root),
        ("", Expect::Root),
        ("/%09/evil.com", Expect::SameOrigin),
        ("/.//evil.com", Expect::SameOrigin),
        ("/a/..//evil.com", Expect::SameOrigin),
        ("/ok?x=1&y=2", Expect::Kept("/ok?x=1&y=2")),
        ("/a/b/c", Expect::Kept("/a/b/c")),
        (
            "/search?q=a%26b%3Dc&lang=en",
            Expect::Kept("/search?q=a%26b%3Dc&lang=en"),
        ),
    ];
    let failures = run_cases(&site, &cases).await;
    assert!(
        failures.is_empty(),
        "{} of {} return paths went wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Without rd at all: `/`.
    let mut b = Agent::new();
    let begin = b.begin(&site.external, None).await;
    let s = b.finish_sign_in(begin, ALICE, "").await;
    assert_landed(&s, &site.external, "/", "no rd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_query_survives_the_round_trip_byte_for_byte() {
    let (_op, site) = scripted(true, Opts::new()).await;
    for pq in [
        "/app/search?q=a%26b%3Dc&lang=en",
        "/app/page?x=1&y=2&x=3",
        "/app/page?flag&empty=&sp=a+b%20c",
        "/app/%C3%A9t%C3%A9?q=%C3%A9",
    ] {
        let mut b = Agent::new();
        let s = b.sign_in_from(&site.url(pq), ALICE, "").await;
        assert_landed(&s, &site.external, pq, pq);
        let page = b.navigate(s.landing().as_str()).await;
        assert_eq!(page.status, 200, "{pq}:\n{}", page.describe());
        let seen = site.up.last();
        let (path, query) = pq.split_once('?').unwrap();
        assert_eq!(seen.path, path, "{pq}");
        assert_eq!(seen.query.as_deref(), Some(query), "{pq}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_return_urls_only_on_redirect_hosts() {
    let (_op, site) = scripted(
        true,
        Opts::new().login("redirect_hosts = [\"app.example.test\", \".corp.example.test\"]"),
    )
    .await;
    let cases = [
        (
            "https://app.example.test/x?y=1",
            Expect::Kept("https://app.example.test/x?y=1"),
        ),
        (
            "https://a.corp.example.test/p",
            Expect::Kept("https://a.corp.example.test/p"),
        ),
        ("https://app.example.test.evil.net/", Expect::Root),
        ("https://evil.net/?https://app.example.test/", Expect::Root),
        ("https://evilcorp.example.test/", Expect::Root),
        ("https://corp.example.test.evil.net/", Expect::Root),
        ("https://user@app.example.test/", Expect::Root),
        ("https://app.example.test@evil.net/", Expect::Root),
        ("https://app.example.test\\@evil.net/", Expect::Root),
        ("javascript://app.example.test/%0aalert(1)", Expect::Root),
        ("/local?x=1", Expect::Kept("/local?x=1")),
    ];
    let failures = run_cases(&site, &cases).await;
    assert!(
        failures.is_empty(),
        "{} of {} return URLs went wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
