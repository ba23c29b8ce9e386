//! Sessions across replicas: two in-process gates with the same `[login]`
//! (the same client and session keys; each its own `external_url`, both
//! callbacks registered at the provider) sharing one real redis-server
//! (started here on a free loopback port, as tests/it/store.rs does) through
//! `[store] url`. A cookie made by one gate opens on the other; a sign-out
//! on one is refused by the other within about a second (pub/sub, not the
//! periodic reload: `resync_interval` is left at its 30 s default there);
//! a refresh after expiry happens once across both; with
//! `auth.forward_token` the replica that did not sign the session in reads
//! its access token from the store.
//!
//! Without redis-server these tests say SKIPPED, except under CI (`CI`
//! set), where .ci/run installs it and its absence is a failure; the same
//! for node and tests/browser/node_modules (the real provider).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::oidc::*;
use crate::support::*;

use super::common::*;

/// How long a sign-out may take to reach the other replica (README: "within
/// about a second"); the test polls for up to [`POLL_LIMIT`] and reports the
/// time it took.
const PROPAGATION: Duration = Duration::from_secs(1);
const POLL_LIMIT: Duration = Duration::from_secs(3);
const POLL_EVERY: Duration = Duration::from_millis(50);

/// A redis-server of its own, without persistence; killed (its whole
/// process group) on drop. (A copy of tests/it/store.rs's, whose is private.)
pub(super) struct Redis {
    port: u16,
    _group: ProcessGroup,
}

impl Redis {
    pub(super) fn start() -> Option<Redis> {
        let program: PathBuf = require_program("redis-server")?;
        let port = free_port();
        let group = ProcessGroup::spawn(
            Command::new(&program)
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "redis-server",
        );
        let r = Redis {
            port,
            _group: group,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !r.ping() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(r)
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    pub(super) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Runs one command over a fresh connection; the reply's strings (a
    /// bulk string or status as one, an array of bulk strings as many).
    pub(super) fn command(&self, args: &[&str]) -> Vec<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let mut out = Vec::new();
        read_reply(&mut r, &mut out);
        out
    }
}

fn read_reply(r: &mut BufReader<TcpStream>, out: &mut Vec<String>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let line = line.trim_end();
    let n = || line[1..].parse::<i64>().unwrap();
    match line.as_bytes().first() {
        Some(b'*') => (0..n().max(0)).for_each(|_| read_reply(r, out)),
        Some(b'$') if n() >= 0 => {
            let mut buf = vec![0u8; n() as usize + 2];
            r.read_exact(&mut buf).unwrap();
            buf.truncate(n() as usize);
            out.push(String::from_utf8_lossy(&buf).into_owned());
        }
        Some(b'$') => {}
        _ => out.push(line[1..].to_owned()),
    }
}

/// The options of both replicas: `o` plus the shared Redis store (and the
/// same session key).
fn replica_opts(o: Opts, redis: &Redis, key: [u8; 32]) -> Opts {
    o.keys(&[key])
        .tail(&format!("[store]\nurl = \"{}\"", redis.url()))
}

/// The gate's client at provider.mjs, with the callback and post-logout
/// URLs of every replica.
pub(super) fn client_of_replicas(externals: &[&str]) -> Value {
    let mut c = client_config(externals[0]);
    c["redirect_uris"] = externals
        .iter()
        .map(|e| json!(format!("{e}/.jwtgate/callback")))
        .collect();
    c["post_logout_redirect_uris"] = externals.iter().map(|e| json!(format!("{e}/"))).collect();
    c
}

/// Waits until the gate's store says it is up and in sync (its
/// subscription open), as tests/it/store.rs does.
pub(super) async fn store_up(site: &Site) {
    let url = site.gate.admin_url("/readyz");
    eventually(Duration::from_secs(10), "the store to be up", || async {
        let body: Value = client().get(&url).send().await.ok()?.json().await.ok()?;
        (body["store"]["up"] == true && body["store"]["in_sync"] == true).then_some(())
    })
    .await;
}

/// Two replicas for `issuer` (ports reserved by the caller), both up with
/// the store.
pub(super) async fn two_replicas(
    ports: (u16, u16),
    issuer: &str,
    o: Opts,
    redis: &Redis,
) -> (Site, Site) {
    let o = replica_opts(o, redis, new_key());
    let a = Site::start(ports.0, issuer, o.clone()).await;
    let b = Site::start(ports.1, issuer, o).await;
    store_up(&a).await;
    store_up(&b).await;
    (a, b)
}

/// A same-origin `fetch()` to `url` with exactly this `Cookie` header.
pub(super) async fn fetch_with(url: &str, cookie: &str) -> Page {
    let mut headers: Vec<(&str, &str)> = FETCH.to_vec();
    headers.push(("cookie", cookie));
    Agent::new().send("GET", url, &headers, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_out_on_one_replica_is_refused_by_the_other_within_a_second() {
    let Some(redis) = Redis::start() else { return };
    let op = ScriptedOp::start(true).await;
    let ((pa, _), (pb, _)) = (reserve(), reserve());
    let (a, b) = two_replicas((pa, pb), &op.issuer, Opts::new(), &redis).await;

    let mut browser = Agent::new();
    let s = browser.sign_in(&a.external, "/app/home", ALICE, "").await;
    assert_landed(&s, &a.external, "/app/home", "sign-in on A");
    let cookie = a.cookie_header(&browser);

    // The same cookie on B: the same keys open it, B's upstream sees alice.
    // (The poller of the sign-out below: its connection to B is open.)
    let mut poller = b.replaying(&cookie);
    let hits = b.up.count();
    let on_b = poller.fetch(&b.url("/app/on-b")).await;
    assert_eq!(on_b.status, 200, "A's cookie on B:\n{}", on_b.describe());
    assert_eq!(b.up.count(), hits + 1);
    assert_eq!(last_user(&b.up).as_deref(), Some(ALICE));
    b.assert_signed_in(&mut b.replaying(&cookie), "A's cookie on B")
        .await;

    // Sign out on A (a same-origin POST of A's form).
    let (_, _, fields) = logout_form(&mut browser, &a).await;
    let sent = Instant::now();
    let out = post_logout(&mut browser, &a, &fields, Some(&a.external), &[]).await;
    let signed_out = Instant::now();
    assert!(matches!(out.status, 302 | 303), "{}", out.describe());

    // B flips: poll every 50 ms.
    let mut polls = 0;
    let flipped = loop {
        polls += 1;
        let page = poller.fetch(&b.url("/app/poll")).await;
        if page.status != 200 {
            assert_plain_401(&page, "the old cookie on B after the sign-out");
            break signed_out.elapsed();
        }
        assert!(
            signed_out.elapsed() < POLL_LIMIT,
            "B still accepts the signed-out session after {POLL_LIMIT:?} ({polls} polls)"
        );
        tokio::time::sleep(POLL_EVERY).await;
    };
    eprintln!(
        "sign-out on A reached B {:.1} ms after A answered the POST ({:.1} ms after it \
         was sent; {polls} polls, every {} ms)",
        flipped.as_secs_f64() * 1e3,
        (flipped + (signed_out - sent)).as_secs_f64() * 1e3,
        POLL_EVERY.as_millis()
    );
    assert!(
        flipped <= PROPAGATION,
        "B refused the old cookie only after {flipped:?} (README: within about a second)"
    );
    a.assert_signed_out(&mut a.replaying(&cookie), "the old cookie on A")
        .await;
    // Refused for good, as a navigation too (302 to sign in on B), and the
    // upstream is not reached.
    b.assert_signed_out(&mut b.replaying(&cookie), "the old cookie on B")
        .await;
}

/// Waits until tokens issued at `signed_in`, living `ttl`, have expired
/// (with 1.5 s to spare, as tests/it/login/refresh.rs does).
async fn past_expiry(signed_in: Instant, ttl: u64) {
    let until = Duration::from_millis(ttl * 1000 + 1500);
    tokio::time::sleep(until.saturating_sub(signed_in.elapsed())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_after_expiry_happens_once_across_replicas() {
    const TTL: u64 = 4;
    if !provider_available() {
        return;
    }
    let Some(redis) = Redis::start() else { return };
    let ((pa, ea), (pb, eb)) = (reserve(), reserve());
    let op = Provider::start(&provider_config(
        vec![client_of_replicas(&[&ea, &eb])],
        &json!({"accessTokenTTL": TTL, "idTokenTTL": TTL}),
    ));
    let o = Opts::new()
        .auth("leeway = \"0s\"")
        .login("scopes = [\"openid\", \"profile\", \"email\", \"offline_access\"]");
    let (a, b) = two_replicas((pa, pb), &op.issuer, o, &redis).await;

    let mut browser = Agent::new();
    let s = browser
        .sign_in_from(&a.url("/app/start"), ALICE, ALICE_PASSWORD)
        .await;
    let signed_in = Instant::now();
    assert_landed(&s, &a.external, "/app/start", "sign-in on A");
    let stale = a.cookie_header(&browser);
    assert_eq!(stat(&op.stats().await, "token.refresh_token"), 0);

    past_expiry(signed_in, TTL).await;
    let (hits_a, hits_b) = (a.up.count(), b.up.count());
    // 10 to A and 10 to B, all at once, with the same expired cookie.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let site = if i % 2 == 0 { &a } else { &b };
            let url = site.url(&format!("/app/burst/{i}"));
            let cookie = stale.clone();
            tokio::spawn(async move { fetch_with(&url, &cookie).await })
        })
        .collect();
    let mut pages = Vec::new();
    for t in tasks {
        pages.push(t.await.unwrap());
    }
    let failed: Vec<String> = pages
        .iter()
        .filter(|p| p.status != 200)
        .map(Page::describe)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 20 requests after expiry failed:\n{}\nprovider log:\n{}",
        failed.len(),
        failed.join("\n"),
        op.log()
    );
    assert_eq!((a.up.count(), b.up.count()), (hits_a + 10, hits_b + 10));
    for site in [&a, &b] {
        assert!(
            site.up
                .seen()
                .iter()
                .rev()
                .take(10)
                .all(|s| s.header("x-auth-user").as_deref() == Some(ALICE))
        );
    }
    let stats = op.stats().await;
    assert_eq!(
        (
            stat(&stats, "token.refresh_token"),
            stat(&stats, "refresh_failures")
        ),
        (1, 0),
        "20 concurrent requests on two replicas: refreshes at the provider, failures.\n\
         {stats}\n{}",
        op.log()
    );

    // The cookie B re-sealed from A's refresh works on A, with no new refresh.
    let from_b = pages
        .iter()
        .skip(1)
        .step_by(2)
        .find_map(|p| p.set_cookie(SESSION_COOKIE).filter(SetCookie::is_live))
        .expect("B re-sealed the refreshed session into a cookie");
    let again = fetch_with(
        &a.url("/app/after"),
        &format!("{SESSION_COOKIE}={}", from_b.value),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.describe());
    let stats = op.stats().await;
    assert_eq!(stat(&stats, "token.refresh_token"), 1, "{stats}");
    assert_eq!(stat(&stats, "refresh_failures"), 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_token_on_a_replica_that_did_not_sign_in_reads_the_store() {
    if !provider_available() {
        return;
    }
    let Some(redis) = Redis::start() else { return };
    let ((pa, ea), (pb, eb)) = (reserve(), reserve());
    let op = Provider::start(&provider_config(
        vec![client_of_replicas(&[&ea, &eb])],
        &defaults(),
    ));
    let o = Opts::new().auth("forward_token = true");
    let (a, b) = two_replicas((pa, pb), &op.issuer, o, &redis).await;

    let mut browser = Agent::new();
    let s = browser
        .sign_in_from(&a.url("/app/start"), ALICE, ALICE_PASSWORD)
        .await;
    assert_landed(&s, &a.external, "/app/start", "sign-in on A");
    let session = a.cookie_header(&browser);

    // First use anywhere, on B, with a cookie of the application's beside.
    let hits = b.up.count();
    let page = fetch_with(
        &b.url("/app/first"),
        &format!("theme=dark; {session}; lang=en"),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.describe());
    assert_eq!(b.up.count(), hits + 1, "B's upstream was not reached");
    let seen = b.up.last();
    assert_eq!(seen.header("x-auth-user").as_deref(), Some(ALICE));
    let auth = seen.header_all("authorization");
    assert_eq!(auth.len(), 1, "Authorization at the upstream: {auth:?}");
    let token = auth[0]
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("not a bearer: {:?}", auth[0]))
        .to_owned();
    let (header, claims, sig) = decode_parts(&token);
    assert_eq!(header["alg"], "RS256", "{header}");
    assert!(!sig.is_empty());
    assert_eq!(claims["iss"], op.issuer.as_str(), "{claims}");
    assert_eq!(claims["sub"], ALICE, "{claims}");
    assert!(claims["exp"].as_i64().unwrap_or(0) > now(), "{claims}");

    // The gate's cookies are not passed on; the application's are, as sent.
    let cookies = seen.header_all("cookie").join("; ");
    assert!(
        !cookies.contains(SESSION_COOKIE),
        "the session cookie reached B's upstream: {cookies:?}"
    );
    assert!(
        cookies.contains("theme=dark") && cookies.contains("lang=en"),
        "the application's cookies were lost: {cookies:?}"
    );

    // A genuine token of the provider (its signature included): A accepts it
    // as a bearer token of its [[auth.issuers]] entry.
    let r = client()
        .get(a.url("/app/as-bearer"))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "A refuses the forwarded token: {:?}",
        r.text().await
    );
    assert_eq!(last_user(&a.up).as_deref(), Some(ALICE));

    // The store holds the record, sealed: the token is not in it in clear.
    let keys = redis.command(&["KEYS", "*:rec:session:*"]);
    assert_eq!(keys.len(), 1, "session records in Redis: {keys:?}");
    let stored = redis.command(&["GET", &keys[0]]).concat();
    assert!(!stored.is_empty(), "the record {:?} is empty", keys[0]);
    let payload = token.split('.').nth(1).unwrap();
    assert!(
        !stored.contains(payload),
        "the store holds the access token in clear"
    );

    // B keeps it: a second request there gets the same token.
    let page = fetch_with(&b.url("/app/second"), &session).await;
    assert_eq!(page.status, 200, "{}", page.describe());
    assert_eq!(
        b.up.last().header("authorization"),
        Some(format!("Bearer {token}"))
    );
}

/// The session id of a cookie value, as `verify-token --session` prints it
/// with the site's configuration.
fn sid_of(site: &Site, value: &str) -> String {
    let config = site.gate.config_path().display().to_string();
    let out = run_jwtgate(&["verify-token", "--config", &config, "--session", value]).run();
    assert_eq!(out.code, Some(0), "{out:?}");
    let (_, rest) = out
        .stdout
        .split_once("session id ")
        .unwrap_or_else(|| panic!("no session id in {:?}", out.stdout));
    rest.split_whitespace().next().unwrap().to_owned()
}

/// Polls `site` with `cookie` until it answers 401, within [`POLL_LIMIT`].
async fn refused_within_limit(site: &Site, cookie: &str, what: &str) {
    let url = site.url("/app/poll");
    eventually(POLL_LIMIT, what, || async {
        (fetch_with(&url, cookie).await.status == 401).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_revocation_of_a_session_or_user_reaches_every_replica() {
    let Some(redis) = Redis::start() else { return };
    let op = ScriptedOp::start(true).await;
    let ((pa, _), (pb, _)) = (reserve(), reserve());
    let (a, b) = two_replicas((pa, pb), &op.issuer, Opts::new(), &redis).await;

    // Two sign-ins of alice: two sessions, both good on both replicas.
    let mut first = Agent::new();
    let s = first.sign_in(&a.external, "/app/one", ALICE, "").await;
    assert_landed(&s, &a.external, "/app/one", "first sign-in");
    let mut second = Agent::new();
    let s = second.sign_in(&b.external, "/app/two", ALICE, "").await;
    assert_landed(&s, &b.external, "/app/two", "second sign-in");
    let (c1, c2) = (a.cookie_header(&first), b.cookie_header(&second));
    for site in [&a, &b] {
        for c in [&c1, &c2] {
            assert_eq!(fetch_with(&site.url("/app/x"), c).await.status, 200);
        }
    }

    // The first session, revoked by id on A's admin listener.
    let sid = sid_of(&a, &a.session(&first).unwrap());
    let r = client()
        .post(a.gate.admin_url("/revocations"))
        .json(&json!({"session": sid}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["revocation"]["kind"], "session", "{body}");
    refused_within_limit(&b, &c1, "B refuses the revoked session").await;
    b.assert_signed_out(&mut b.replaying(&c1), "the revoked session on B")
        .await;
    assert_eq!(
        fetch_with(&b.url("/app/x"), &c2).await.status,
        200,
        "alice's other session still works on B"
    );
    // B lists it too, as a session.
    let list: Value = client()
        .get(b.gate.admin_url("/revocations"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        list["revocations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "session" && r["session"] == sid.as_str()),
        "{list}"
    );

    // Every session of alice, revoked on B: A refuses the second one too.
    let r = client()
        .post(b.gate.admin_url("/revocations"))
        .json(&json!({"user": ALICE}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    refused_within_limit(&a, &c2, "A refuses alice's other session").await;
    a.assert_signed_out(&mut a.replaying(&c2), "alice's other session on A")
        .await;
}
