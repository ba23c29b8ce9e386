//! Revoking browser sessions as an administrator (issue 21): by session id
//! or by user, through `POST /revocations` and `jwtgate revoke`; the list
//! shows the kind; `jwtgate_sessions_active` counts the sessions this gate
//! has seen alive.
//!
//! The cookies are sealed by `create-token --session` with the gate's own
//! keys (no provider is asked: they carry no refresh token), and the gate
//! runs in front of the real echo upstream with the embedded store.

use reqwest::header::{ACCEPT, COOKIE, LOCATION};
use serde_json::{Value, json};

use crate::support::*;

/// A gate with `[login]` (its provider never reached) and the session
/// cookies of alice (two sessions) and bob, sealed with its keys.
struct Fixture {
    gate: Gate,
    up: Upstream,
    config: String,
    alice1: String,
    alice2: String,
    bob: String,
    _dir: tempfile::TempDir,
}

const EXTERNAL: &str = "http://127.0.0.1:8080";

async fn fixture() -> Fixture {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("session.keys");
    let key = run_jwtgate(&["gen-key", "--session"]).run();
    assert_eq!(key.code, Some(0), "{key:?}");
    std::fs::write(&keys, &key.stdout).unwrap();
    let config = format!(
        "[upstream]\nurl = \"{}\"\n\
         [[auth.issuers]]\nissuer = \"http://127.0.0.1:9/realms/test\"\n\
         [login]\nissuer = \"http://127.0.0.1:9/realms/test\"\nclient_id = \"gate\"\n\
         external_url = \"{EXTERNAL}\"\nsession_keys_file = \"{}\"\n",
        up.url(),
        keys.display()
    );
    let mint = |user: &str| {
        let out = run_jwtgate(&["create-token", "--session", "-u", user])
            .toml(&config)
            .run();
        assert_eq!(out.code, Some(0), "{out:?}");
        out.stdout.trim().to_owned()
    };
    let (alice1, alice2, bob) = (mint("alice"), mint("alice"), mint("bob"));
    let gate = GateBuilder::toml(&config).start();
    Fixture {
        gate,
        up,
        config,
        alice1,
        alice2,
        bob,
        _dir: dir,
    }
}

impl Fixture {
    /// A page script's request with this cookie: its status.
    async fn fetch(&self, cookie: &str) -> u16 {
        client()
            .get(self.gate.url("/app/data"))
            .header(COOKIE, cookie)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// A navigation with this cookie: status and Location.
    async fn navigate(&self, cookie: &str) -> (u16, String) {
        let r = client()
            .get(self.gate.url("/app/page?x=1"))
            .header(COOKIE, cookie)
            .header(ACCEPT, "text/html")
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-dest", "document")
            .send()
            .await
            .unwrap();
        let loc = r
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (r.status().as_u16(), loc)
    }

    /// The session id of a cookie, as `verify-token --session` prints it.
    fn sid(&self, cookie: &str) -> String {
        let value = cookie.split_once('=').unwrap().1;
        let out = run_jwtgate(&["verify-token", "--session", value])
            .toml(&self.config)
            .run();
        assert_eq!(out.code, Some(0), "{out:?}");
        let (_, rest) = out
            .stdout
            .split_once("session id ")
            .unwrap_or_else(|| panic!("no session id in {:?}", out.stdout));
        rest.split_whitespace().next().unwrap().to_owned()
    }

    async fn active(&self) -> Option<f64> {
        let m = client()
            .get(self.gate.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric_sum(&m, "jwtgate_sessions_active")
    }

    async fn cli(&self, args: &[&str]) -> RunOutput {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(["--url".into(), self.gate.admin_url("")]);
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            run_jwtgate(&refs).run()
        })
        .await
        .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_by_id_or_by_user_is_refused_and_the_others_pass() {
    let f = fixture().await;
    for c in [&f.alice1, &f.alice2, &f.bob] {
        assert_eq!(f.fetch(c).await, 200);
    }
    assert_eq!(
        f.up.last().header_all("x-auth-user"),
        vec!["bob".to_owned()]
    );
    assert_eq!(f.active().await, Some(3.0), "three sessions seen alive");

    // One session by id, with the command line.
    let sid = f.sid(&f.alice1);
    assert_ne!(sid, f.sid(&f.alice2), "two sign-ins, two sessions");
    let out = f.cli(&["revoke", "--session", &sid]).await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(out.stdout.contains("revoked:"), "{}", out.all());
    let hits = f.up.count();
    assert_eq!(f.fetch(&f.alice1).await, 401, "the revoked session");
    let (status, location) = f.navigate(&f.alice1).await;
    assert_eq!(status, 302, "a navigation is sent to sign in");
    assert_eq!(
        location,
        format!("{EXTERNAL}/.jwtgate/login?rd=%2Fapp%2Fpage%3Fx%3D1")
    );
    assert_eq!(f.up.count(), hits, "the upstream saw nothing of it");
    assert_eq!(f.fetch(&f.alice2).await, 200, "alice's other session");
    assert_eq!(f.fetch(&f.bob).await, 200);

    // The list says what it is.
    let out = f.cli(&["revocations", "list"]).await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains(&sid))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        line.contains(" session ") && line.contains(&format!("session={sid}")),
        "{line}"
    );
    let list: Value = client()
        .get(f.gate.admin_url("/revocations"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = &list["revocations"][0];
    assert_eq!(entry["kind"], "session", "{list}");
    assert_eq!(entry["session"], sid.as_str(), "{list}");
    assert!(entry.get("jti").is_none(), "{list}");
    // At most max_lifetime (12 h by default) from now.
    let ttl = entry["expires"].as_i64().unwrap() - now();
    assert!((12 * 3600 - 60..=12 * 3600).contains(&ttl), "{entry}");

    // Every session of a user, through the API.
    let r = client()
        .post(f.gate.admin_url("/revocations"))
        .json(&json!({"user": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(f.fetch(&f.alice2).await, 401, "alice's other session too");
    assert_eq!(f.fetch(&f.bob).await, 200, "bob is not alice");
    assert_eq!(
        f.active().await,
        Some(1.0),
        "the refused sessions left the count"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_session_revocations_are_refused_with_a_reason() {
    let f = fixture().await;
    let post = |body: Value| {
        client()
            .post(f.gate.admin_url("/revocations"))
            .json(&body)
            .send()
    };
    for (body, why) in [
        (json!({"session": "short"}), "session must be a session id"),
        (
            json!({"session": "a/b/c/d/e/f/g/h/i/j/k/l"}),
            "session must be a session id",
        ),
        (json!({"session": ""}), "session must be a non-empty string"),
        (
            json!({"session": "abcdefghijklmnopqrstuv", "user": "alice"}),
            "exactly one",
        ),
        (
            json!({"session": "abcdefghijklmnopqrstuv", "before": 5}),
            "go with user",
        ),
    ] {
        let r = post(body.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let text = r.text().await.unwrap();
        assert!(text.contains(why), "{body}: {text}");
    }
    // Two kinds at once, or none, is bad usage of the command (exit 2).
    for args in [
        &[
            "revoke",
            "--session",
            "abcdefghijklmnopqrstuv",
            "--jti",
            "x",
        ][..],
        &["revoke"][..],
    ] {
        let out = f.cli(args).await;
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.all());
    }
    assert_eq!(f.fetch(&f.alice1).await, 200, "nothing was revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessions_this_gate_served_are_listed_by_user_and_leave_the_list_when_revoked() {
    let f = fixture().await;
    // Nothing is listed before a session has made a request here.
    let list = |query: &'static str| {
        let url = f.gate.admin_url(&format!("/sessions{query}"));
        async move {
            let r = client().get(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = list("").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessions"], json!([]));
    for c in [&f.alice1, &f.alice2, &f.bob] {
        assert_eq!(f.fetch(c).await, 200);
    }
    let (_, body) = list("").await;
    let listed = body["sessions"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{body}");
    assert_eq!(body["truncated"], json!(false));
    let (sid1, sid2, sid_bob) = (f.sid(&f.alice1), f.sid(&f.alice2), f.sid(&f.bob));
    let ids = |b: &Value| -> Vec<String> {
        let mut v: Vec<String> = b["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["session"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    let mut want = vec![sid1.clone(), sid2.clone(), sid_bob.clone()];
    want.sort();
    assert_eq!(ids(&body), want);
    assert!(listed.iter().all(|s| s["last_seen"].as_u64().unwrap() > 0));
    // One user's sessions.
    let (_, alice) = list("?user=alice").await;
    let mut want = vec![sid1.clone(), sid2.clone()];
    want.sort();
    assert_eq!(ids(&alice), want);
    assert!(
        alice["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["user"] == "alice")
    );
    // A session revoked by its listed id is refused and leaves the list.
    let r = client()
        .post(f.gate.admin_url("/revocations"))
        .json(&json!({"session": sid1}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    assert_eq!(f.fetch(&f.alice1).await, 401);
    let (_, after) = list("?user=alice").await;
    assert_eq!(ids(&after), vec![sid2]);
    // Bad queries and methods.
    assert_eq!(list("?user=a&user=b").await.0, 400);
    assert_eq!(list("?who=alice").await.0, 400);
    let r = client()
        .delete(f.gate.admin_url("/sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}
