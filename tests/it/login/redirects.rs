//! Who is sent to sign in (issue, rule 3): a request with neither a bearer
//! token nor a session gets a 302 to `/.jwtgate/login?rd=...` only when it
//! is a navigation (`Sec-Fetch-Mode: navigate`, `Sec-Fetch-Dest: document`,
//! or, without `Sec-Fetch-*`, `Accept` naming `text/html` and no
//! `X-Requested-With`); everything else keeps its 401 with no cookie set; a
//! bearer token keeps its path; `on_missing` globally and per route. The
//! provider is the scripted one (no node needed).

use crate::support::oidc::*;
use crate::support::*;

use super::common::*;

const PAGE: &str = "/app/page?x=1&y=2";

/// Request headers of a case.
type Headers<'a> = &'a [(&'a str, &'a str)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn navigations_without_credentials_are_sent_to_sign_in() {
    let (_op, site) = scripted(true, Opts::new()).await;
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("a browser navigation", NAVIGATE),
        (
            "Sec-Fetch-Mode: navigate only",
            &[("sec-fetch-mode", "navigate"), ("accept", "*/*")],
        ),
        (
            "Sec-Fetch-Dest: document only",
            &[("sec-fetch-dest", "document"), ("accept", "*/*")],
        ),
        (
            "no Sec-Fetch-*, Accept text/html (an old browser)",
            &[(
                "accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            )],
        ),
        (
            "no Sec-Fetch-*, Accept: text/html",
            &[("accept", "text/html")],
        ),
    ];
    for (what, headers) in cases {
        let mut b = Agent::new();
        let page = b.send("GET", &site.url(PAGE), headers, None).await;
        assert_login_redirect(&page, &site.external, PAGE, what);
    }
    assert_eq!(site.up.count(), 0, "the upstream was reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_else_keeps_its_401_without_a_cookie() {
    let (_op, site) = scripted(true, Opts::new()).await;
    let mut b = Agent::new();
    let cases: &[(&str, &str, Headers)] = &[
        ("fetch()", "GET", FETCH),
        (
            "fetch() asking for HTML",
            "GET",
            &[
                ("accept", "text/html"),
                ("sec-fetch-mode", "cors"),
                ("sec-fetch-dest", "empty"),
                ("sec-fetch-site", "same-origin"),
            ],
        ),
        (
            "an image",
            "GET",
            &[
                ("accept", "image/avif,image/webp,*/*"),
                ("sec-fetch-mode", "no-cors"),
                ("sec-fetch-dest", "image"),
            ],
        ),
        (
            "same-origin mode",
            "GET",
            &[("sec-fetch-mode", "same-origin"), ("accept", "text/html")],
        ),
        (
            "XMLHttpRequest of a library (X-Requested-With), Accept text/html",
            "GET",
            &[
                ("accept", "text/html, */*; q=0.01"),
                ("x-requested-with", "XMLHttpRequest"),
            ],
        ),
        ("an API client", "GET", &[("accept", "application/json")]),
        ("curl", "GET", &[("accept", "*/*")]),
        ("no headers at all", "GET", &[]),
        (
            "a JSON POST from a script",
            "POST",
            &[
                ("accept", "application/json"),
                ("content-type", "application/json"),
                ("sec-fetch-mode", "cors"),
                ("sec-fetch-dest", "empty"),
            ],
        ),
    ];
    for (what, method, headers) in cases {
        let body = (*method == "POST").then(|| b"{}".to_vec());
        let page = b.send(method, &site.url(PAGE), headers, body).await;
        assert_plain_401(&page, what);
        assert!(
            page.header("www-authenticate")
                .is_some_and(|w| w.starts_with("Bearer")),
            "{what}: not the usual 401:\n{}",
            page.describe()
        );
        assert_eq!(
            page.header("x-jwtgate-error").as_deref(),
            Some("unauthorized"),
            "{what}"
        );
    }

    // WebSocket handshakes, from a browser and with an HTML Accept.
    for (what, extra) in [
        (
            "a browser's WebSocket",
            "Sec-Fetch-Mode: websocket\r\nSec-Fetch-Dest: websocket\r\nSec-Fetch-Site: same-origin",
        ),
        ("a WebSocket asking for HTML", "Accept: text/html"),
    ] {
        let req = format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nOrigin: {}\r\n{extra}",
            site.external
        );
        let resp = raw_get(site.gate.proxy, "/app/ws", &[req]).await;
        assert_eq!(resp.status, 401, "{what}: {resp:?}");
        assert!(resp.header("set-cookie").is_none(), "{what}: {resp:?}");
    }

    // gRPC: its rejection (HTTP 401, or grpc-status 16), never a redirect.
    let grpc = b
        .send(
            "POST",
            &site.url("/pkg.Service/Method"),
            &[
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("accept", "text/html"),
            ],
            Some(vec![0, 0, 0, 0, 0]),
        )
        .await;
    assert!(
        grpc.status == 401 || grpc.header("grpc-status").as_deref() == Some("16"),
        "gRPC:\n{}",
        grpc.describe()
    );
    assert!(
        grpc.headers_named("set-cookie").is_empty(),
        "{}",
        grpc.describe()
    );
    assert_eq!(site.up.count(), 0, "the upstream was reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_keeps_its_path() {
    let (_op, site) = scripted(true, Opts::new()).await;
    let mut b = Agent::new();
    let bob = bearer_for("bob");

    // A valid token on a navigation: forwarded, no cookie, no redirect.
    let page = b
        .navigate_with(&site.url(PAGE), &[("authorization", &bob)])
        .await;
    assert_eq!(page.status, 200, "{}", page.describe());
    assert!(
        page.headers_named("set-cookie").is_empty(),
        "{}",
        page.describe()
    );
    assert_eq!(last_user(&site.up).as_deref(), Some("bob"));

    // A bad token on a navigation: the token's 401, not a sign-in.
    let forged = bearer(&hs256("not-the-secret-0123456789abcdef", &claims("bob")));
    for token in [forged.as_str(), "Bearer not.a.token"] {
        let page = b
            .navigate_with(&site.url(PAGE), &[("authorization", token)])
            .await;
        assert_eq!(page.status, 401, "{token}:\n{}", page.describe());
        assert_eq!(
            page.header("x-jwtgate-error").as_deref(),
            Some("invalid_token"),
            "{}",
            page.describe()
        );
        assert!(
            page.headers_named("set-cookie").is_empty(),
            "{}",
            page.describe()
        );
    }

    // With a session too, the token decides.
    let s = b.sign_in(&site.external, "/", ALICE, "").await;
    assert_landed(&s, &site.external, "/", "sign-in");
    let page = b
        .navigate_with(&site.url("/app/both"), &[("authorization", &bob)])
        .await;
    assert_eq!(page.status, 200, "{}", page.describe());
    assert_eq!(
        last_user(&site.up).as_deref(),
        Some("bob"),
        "the session won over the token"
    );
    let page = b
        .navigate_with(&site.url("/app/both"), &[("authorization", &forged)])
        .await;
    assert_eq!(
        page.status,
        401,
        "a bad token was excused by the session:\n{}",
        page.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_missing_per_route_and_globally() {
    let (op, auto) = scripted(
        true,
        Opts::new().tail(
            "[[routes]]\nprefix = \"/api/\"\non_missing = \"401\"\n\
             [[routes]]\nprefix = \"/spa/\"\non_missing = \"redirect\"\n",
        ),
    )
    .await;
    let mut b = Agent::new();
    let page = b.navigate(&auto.url("/api/items")).await;
    assert_plain_401(&page, "a navigation on an on_missing = \"401\" route");
    // "redirect" also sends to sign in a GET that "auto" would not call a
    // navigation (no HTML in Accept, no Sec-Fetch-*), which "auto" refuses.
    let curl = [("accept", "*/*")];
    let page = b.send("GET", &auto.url("/spa/data?x=1"), &curl, None).await;
    assert_login_redirect(
        &page,
        &auto.external,
        "/spa/data?x=1",
        "a plain GET on an on_missing = \"redirect\" route",
    );
    let page = b.send("GET", &auto.url("/other"), &curl, None).await;
    assert_plain_401(&page, "the same GET elsewhere (auto)");
    let page = b.navigate(&auto.url("/other")).await;
    assert_login_redirect(
        &page,
        &auto.external,
        "/other",
        "a navigation elsewhere (auto)",
    );

    let (port, _) = reserve();
    let never = Site::start(
        port,
        &op.issuer,
        Opts::new()
            .login("on_missing = \"401\"")
            .tail("[[routes]]\nprefix = \"/web/\"\non_missing = \"redirect\"\n"),
    )
    .await;
    let page = b.navigate(&never.url("/app")).await;
    assert_plain_401(&page, "a navigation with login.on_missing = \"401\"");
    let page = b.navigate(&never.url("/web/home")).await;
    assert_login_redirect(
        &page,
        &never.external,
        "/web/home",
        "a route's on_missing overrides the global one",
    );

    // /public/ (auth = "none") needs nothing, navigation or not.
    let page = b.navigate(&auto.url("/public/x")).await;
    assert_eq!(page.status, 200, "{}", page.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_redirect_never_names_the_request_host() {
    let (_op, site) = scripted(true, Opts::new()).await;
    let mut b = Agent::new();
    // Host: gate.test (what raw requests send), and forwarded hosts.
    let page = b
        .raw(
            site.gate.proxy,
            &site.external,
            "GET",
            PAGE,
            &[
                "Accept: text/html",
                "Sec-Fetch-Mode: navigate",
                "Sec-Fetch-Dest: document",
                "X-Forwarded-Host: evil.example",
                "X-Forwarded-Proto: https",
                "Forwarded: host=evil.example;proto=https",
            ],
            b"",
        )
        .await;
    assert_login_redirect(&page, &site.external, PAGE, "with forged hosts");
    let loc = page.location_raw().unwrap();
    assert!(
        !loc.contains("evil") && !loc.contains("gate.test") && !loc.starts_with("https:"),
        "Location {loc:?}"
    );
}
