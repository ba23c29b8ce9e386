//! `[store]` (issue 14): revocations, logout and login limits shared by
//! several gates through a real Redis (redis-server, started here on a free
//! loopback port), and the embedded store that survives a restart.
//!
//! Without redis-server the Redis tests say SKIPPED, except under CI
//! (`CI` set), where .ci/run installs it and its absence is a failure.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{Value, json};

mod convergence;

const SECRET: &str = "store-tests-secret-0123456789abcdef";
/// The bound for a revocation to reach every gate.
const PROPAGATION: Duration = Duration::from_secs(1);

/// A redis-server of its own, without persistence; killed (its whole
/// process group) on drop.
struct Redis {
    program: PathBuf,
    port: u16,
    group: Option<ProcessGroup>,
}

impl Redis {
    fn start() -> Option<Redis> {
        let program = require_program("redis-server")?;
        let mut r = Redis {
            program,
            port: free_port(),
            group: None,
        };
        r.restart();
        Some(r)
    }

    /// Starts (again) on the same port, empty.
    fn restart(&mut self) {
        let group = ProcessGroup::spawn(
            Command::new(&self.program)
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "redis-server",
        );
        self.group = Some(group);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ping() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Runs one command over a fresh connection and returns the reply as
    /// text (a bulk string's content, a status, an integer, or an error),
    /// as the real redis-server answers it.
    fn command(&self, args: &[&str]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).unwrap();
        let mut r = std::io::BufReader::new(s);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut r, &mut line).unwrap();
        let line = line.trim_end().to_owned();
        match line.as_bytes().first() {
            Some(b'$') => {
                let n: i64 = line[1..].parse().unwrap();
                if n < 0 {
                    return String::new();
                }
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf).unwrap();
                String::from_utf8(buf[..n as usize].to_vec()).unwrap()
            }
            _ => line[1..].to_owned(),
        }
    }

    /// Kills it (its whole process group); dropping does too.
    fn kill(&mut self) {
        self.group = None;
    }
}

fn store_config(up: &Upstream, store: &str, rest: &str) -> String {
    format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n[store]\n{store}\n{rest}\n",
        up.url()
    )
}

fn redis_gate(up: &Upstream, redis: &Redis, rest: &str) -> Gate {
    redis_gate_builder(up, redis, rest).start()
}

fn redis_gate_builder(up: &Upstream, redis: &Redis, rest: &str) -> GateBuilder {
    GateBuilder::toml(&store_config(
        up,
        &format!("url = \"{}\"\nresync_interval = \"1s\"", redis.url()),
        rest,
    ))
}

fn token(user: &str, jti: &str) -> String {
    let t = now();
    hs256(
        SECRET,
        &json!({"sub": user, "iat": t, "exp": t + 600, "jti": jti}),
    )
}

async fn status(gate: &Gate, token: &str) -> u16 {
    client()
        .get(gate.url("/things"))
        .header("authorization", bearer(token))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn readyz(gate: &Gate) -> (u16, Value) {
    let r = client()
        .get(gate.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

/// Waits until the gate's store says it is up and in sync.
async fn store_up(gate: &Gate) {
    eventually(Duration::from_secs(10), "the store to be up", || async {
        let (_, body) = readyz(gate).await;
        (body["store"]["up"] == true && body["store"]["in_sync"] == true).then_some(())
    })
    .await;
}

async fn revoke(gate: &Gate, body: Value) -> (u16, Value) {
    let r = client()
        .post(gate.admin_url("/revocations"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

/// Polls until the gate answers `want` for the token, within `limit`.
async fn answers(gate: &Gate, token: &str, want: u16, limit: Duration, what: &str) {
    eventually(limit, what, || async {
        (status(gate, token).await == want).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_revocation_on_one_gate_is_enforced_by_the_other_within_a_second() {
    let Some(redis) = Redis::start() else { return };
    let up = Upstream::start().await;
    // A is the process: its logs are read at the end.
    let a = redis_gate_builder(&up, &redis, "").process().start();
    let b = redis_gate(&up, &redis, "");
    store_up(&a).await;
    store_up(&b).await;

    let stolen = token("alice", "jti-stolen");
    let other = token("alice", "jti-other");
    // Both gates accept, and B now has the token in its verified cache.
    assert_eq!(status(&a, &stolen).await, 200);
    assert_eq!(status(&b, &stolen).await, 200);

    let (s, body) = revoke(&a, json!({"jti": "jti-stolen"})).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["shared"], true);
    let id = body["revocation"]["id"].as_str().unwrap().to_owned();
    answers(&b, &stolen, 401, PROPAGATION, "B refuses the revoked token").await;
    let r = client()
        .get(b.url("/things"))
        .header("authorization", bearer(&stolen))
        .send()
        .await
        .unwrap();
    assert_eq!(gate_error(&r).as_deref(), Some("invalid_token"));
    let text = r.text().await.unwrap();
    assert!(text.contains("token has been revoked"), "{text}");
    assert_eq!(status(&a, &stolen).await, 401);
    assert_eq!(status(&b, &other).await, 200, "other tokens are untouched");

    // A user revocation on B: A refuses alice's older tokens, not newer ones.
    let (s, body) = revoke(&b, json!({"user": "alice"})).await;
    assert_eq!(s, 201, "{body}");
    let user_id = body["revocation"]["id"].as_str().unwrap().to_owned();
    answers(
        &a,
        &other,
        401,
        PROPAGATION,
        "A refuses alice's older token",
    )
    .await;
    let t = now();
    let later = hs256(
        SECRET,
        &json!({"sub": "alice", "iat": t + 2, "exp": t + 600, "jti": "later"}),
    );
    assert_eq!(
        status(&a, &later).await,
        200,
        "a token issued afterwards passes"
    );
    assert_eq!(status(&a, &token("bob", "bob-1")).await, 200);

    // The list, the same on both gates; then removal.
    let list: Value = client()
        .get(a.admin_url("/revocations"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["revocations"].as_array().unwrap().len(), 2, "{list}");
    for id in [&id, &user_id] {
        let r = client()
            .delete(b.admin_url(&format!("/revocations/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    answers(
        &a,
        &stolen,
        200,
        PROPAGATION,
        "A accepts again after removal",
    )
    .await;
    answers(&a, &other, 200, PROPAGATION, "A accepts alice again").await;
    let metrics = client()
        .get(a.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric_sum(&metrics, "jwtgate_store_up"), Some(1.0));
    // Several resyncs ran meanwhile (every 1 s): none lost the connection.
    assert!(!a.logs().contains("unreachable"), "{}", a.logs());
}

fn users_file(dir: &Path) -> String {
    let p = dir.join("users");
    std::fs::write(&p, format!("{}\n", htpasswd_bcrypt("alice", "a-pass"))).unwrap();
    p.display().to_string()
}

async fn login(gate: &Gate, password: &str) -> reqwest::Response {
    client()
        .post(gate.url("/api/security/login"))
        .json(&json!({"login": "alice", "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn logout_and_rfc7009_revoke_refuse_the_token_on_both_gates() {
    let Some(redis) = Redis::start() else { return };
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let issuer = format!(
        "[issuer]\nenabled = true\nusers_file = \"{}\"\n",
        users_file(dir.path())
    );
    let a = redis_gate(&up, &redis, &issuer);
    let b = redis_gate(&up, &redis, &issuer);
    store_up(&a).await;
    store_up(&b).await;

    let r = login(&a, "a-pass").await;
    assert_eq!(r.status().as_u16(), 200);
    let first = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(status(&b, &first).await, 200);
    let renew = |gate: &Gate, t: &str| {
        client()
            .post(gate.url("/api/security/renew"))
            .header("authorization", bearer(t))
            .send()
    };
    let r = renew(&b, &first).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let second = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let r = client()
        .post(a.url("/api/security/logout"))
        .header("authorization", bearer(&first))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    answers(
        &b,
        &first,
        401,
        PROPAGATION,
        "B refuses the logged-out token",
    )
    .await;
    assert_eq!(status(&a, &first).await, 401);
    let r = renew(&b, &first).await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "renew refuses a revoked token");
    assert_eq!(
        status(&a, &second).await,
        200,
        "the renewed token is another"
    );

    // RFC 7009 on B revokes the second one everywhere; an unknown token is 200 too.
    let revoke7009 = |t: &str| {
        client()
            .post(b.url("/revoke"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={t}&token_type_hint=access_token"))
            .send()
    };
    let r = revoke7009(&second).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    answers(
        &a,
        &second,
        401,
        PROPAGATION,
        "A refuses the token revoked on B",
    )
    .await;
    let r = revoke7009("not-a-token").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn login_failures_on_two_gates_count_together() {
    let Some(redis) = Redis::start() else { return };
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let issuer = format!(
        "[issuer]\nenabled = true\nusers_file = \"{}\"\nmax_failures = 3\n",
        users_file(dir.path())
    );
    let a = redis_gate(&up, &redis, &issuer);
    let b = redis_gate(&up, &redis, &issuer);
    store_up(&a).await;
    store_up(&b).await;
    for gate in [&a, &b, &a] {
        assert_eq!(login(gate, "wrong").await.status().as_u16(), 401);
    }
    // Each gate alone has seen fewer than 3; together they have seen 3.
    let r = login(&b, "a-pass").await;
    assert_eq!(r.status().as_u16(), 429, "the shared per-user limit");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(login(&a, "a-pass").await.status().as_u16(), 429);
}

#[tokio::test]
async fn gates_keep_serving_without_redis_and_resynchronise_when_it_returns() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let up = Upstream::start().await;
    let a = redis_gate(&up, &redis, "");
    // B is the process: its logs are read.
    let b = redis_gate_builder(&up, &redis, "").process().start();
    // This one would rather refuse than serve with an old list.
    let c = GateBuilder::toml(&store_config(
        &up,
        &format!(
            "url = \"{}\"\nresync_interval = \"1s\"\nmax_stale = \"2s\"",
            redis.url()
        ),
        "",
    ))
    .start();
    for g in [&a, &b, &c] {
        store_up(g).await;
    }
    let known = token("carol", "known");
    let fine = token("carol", "fine");
    assert_eq!(revoke(&a, json!({"jti": "known"})).await.0, 201);
    answers(&b, &known, 401, PROPAGATION, "B knows the revocation").await;

    redis.kill();
    eventually(Duration::from_secs(10), "B sees the store down", || async {
        (readyz(&b).await.1["store"]["up"] == false).then_some(())
    })
    .await;
    assert!(b.wait_log(&["unreachable"], Duration::from_secs(5)).await);
    // Both keep serving, with the revocations they knew.
    for g in [&a, &b] {
        assert_eq!(status(g, &fine).await, 200);
        assert_eq!(status(g, &known).await, 401);
    }
    let metrics = client()
        .get(b.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric_sum(&metrics, "jwtgate_store_up"), Some(0.0));
    // A revocation made while Redis is away applies here at once, and is
    // shared when Redis returns.
    let (s, body) = revoke(&a, json!({"jti": "fine"})).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(status(&a, &fine).await, 401);
    // The strict gate answers 503 once its list is older than max_stale.
    answers(
        &c,
        &fine,
        503,
        Duration::from_secs(10),
        "C refuses when stale",
    )
    .await;
    assert_eq!(readyz(&c).await.0, 503);

    // Redis returns empty (no persistence): the gates write back what they
    // know, and a new revocation flows again.
    redis.restart();
    for g in [&a, &b, &c] {
        store_up(g).await;
    }
    answers(
        &b,
        &fine,
        401,
        Duration::from_secs(5),
        "B learns the revocation made during the outage",
    )
    .await;
    assert_eq!(
        status(&b, &known).await,
        401,
        "B still refuses the known one"
    );
    assert_eq!(
        status(&c, &token("carol", "x")).await,
        200,
        "C serves again"
    );
    assert_eq!(revoke(&b, json!({"jti": "after"})).await.0, 201);
    answers(
        &a,
        &token("carol", "after"),
        401,
        PROPAGATION,
        "A follows B again",
    )
    .await;
}

#[tokio::test]
async fn the_embedded_store_survives_a_restart_and_the_cli_revokes() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.json");
    let config = store_config(&up, &format!("path = \"{}\"", path.display()), "");
    let gate = GateBuilder::toml(&config).start();
    let victim = token("dan", "cli-jti");
    assert_eq!(status(&gate, &victim).await, 200);

    let admin = gate.admin_url("");
    let out = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || run_jwtgate(&["revoke", "--jti", "cli-jti", "--url", &admin]).run()
    })
    .await
    .unwrap();
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(out.stdout.contains("revoked:"), "{}", out.all());
    assert_eq!(status(&gate, &victim).await, 401);
    let t = now();
    let erin = hs256(
        SECRET,
        &json!({"sub": "erin", "iat": t - 5, "exp": t + 600}),
    );
    let out = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || {
            run_jwtgate(&[
                "revoke", "--user", "erin", "--before", "now", "--url", &admin,
            ])
            .run()
        }
    })
    .await
    .unwrap();
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(status(&gate, &erin).await, 401);
    // Bad usage is exit 2.
    let out = run_jwtgate(&["revoke", "--issuer", "x"]).run();
    assert_eq!(out.code, Some(2), "{}", out.all());
    drop(gate);

    let gate = GateBuilder::toml(&config).start();
    assert_eq!(status(&gate, &victim).await, 401, "the revocation survived");
    assert_eq!(status(&gate, &erin).await, 401);
    assert_eq!(status(&gate, &token("dan", "other")).await, 200);
    let admin = gate.admin_url("");
    let out = tokio::task::spawn_blocking(move || {
        run_jwtgate(&["revocations", "list", "--url", &admin]).run()
    })
    .await
    .unwrap();
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(out.stdout.contains("jti=cli-jti"), "{}", out.stdout);
    assert!(out.stdout.contains("user=erin"), "{}", out.stdout);
    assert!(
        out.stdout.contains("2 revocations; store: embedded up"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn store_urls_are_checked_and_passwords_never_shown() {
    let out = run_jwtgate(&["check-config"])
        .env("TOKENS_SECRET", SECRET)
        .toml("[store]\nurl = \"http://cache:6379\"\n")
        .run();
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.all().contains("store.url"), "{}", out.all());
    let out = run_jwtgate(&["check-config"])
        .env("TOKENS_SECRET", SECRET)
        .toml("[store]\nurl = \"redis://:hunter2-secret@127.0.0.1:1/0\"\n")
        .run();
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(!out.all().contains("hunter2"), "{}", out.all());
    assert!(
        out.stdout.contains("redis://<redacted>@127.0.0.1:1/0"),
        "{}",
        out.stdout
    );
    // Nor when the gate runs against an unreachable Redis, and it serves.
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&store_config(
        &up,
        "url = \"redis://:hunter2-secret@127.0.0.1:1/0\"",
        "",
    ))
    .process()
    .start();
    assert_eq!(status(&gate, &token("fay", "f")).await, 200);
    assert!(
        gate.wait_log(&["unreachable"], Duration::from_secs(10))
            .await
    );
    assert!(!gate.logs().contains("hunter2"), "{}", gate.logs());
    let (s, body) = readyz(&gate).await;
    assert_eq!(s, 200, "without max_stale the gate stays ready: {body}");
    assert_eq!(body["store"]["up"], false);
    assert!(!body.to_string().contains("hunter2"));
}

/// A replica that missed a change (here: an entry written to Redis with no
/// message published, as if the gate had been cut off when it was sent)
/// converges at its next resynchronisation.
#[tokio::test]
async fn a_gate_that_missed_a_change_converges_at_the_next_resync() {
    let Some(redis) = Redis::start() else { return };
    let up = Upstream::start().await;
    let a = redis_gate(&up, &redis, "");
    let b = redis_gate(&up, &redis, "");
    store_up(&a).await;
    store_up(&b).await;
    let missed = token("dave", "jti-missed");
    assert_eq!(status(&b, &missed).await, 200);

    // A real entry, as a gate writes it, to copy the stored form from.
    let (s, body) = revoke(&a, json!({"jti": "jti-model"})).await;
    assert_eq!(s, 201, "{body}");
    let model_id = body["revocation"]["id"].as_str().unwrap().to_owned();
    let stored = redis.command(&["GET", &format!("{{jwtgate}}:revocation:{model_id}")]);
    let mut entry: Value = serde_json::from_str(&stored).expect("the stored entry is JSON");
    assert_eq!(entry["jti"], "jti-model", "{entry}");
    entry["jti"] = json!("jti-missed");
    entry["id"] = json!("missed-by-every-subscriber");
    let expires = entry["expires"].as_u64().unwrap().to_string();
    // Written behind the gates' backs: no PUBLISH, so no gate is told.
    redis.command(&[
        "SET",
        "{jwtgate}:revocation:missed-by-every-subscriber",
        &entry.to_string(),
        "EX",
        "600",
    ]);
    redis.command(&[
        "ZADD",
        "{jwtgate}:revocations",
        &expires,
        "missed-by-every-subscriber",
    ]);
    // resync_interval is 1 s: both gates find it at their next look.
    answers(&b, &missed, 401, Duration::from_secs(5), "B converges").await;
    answers(&a, &missed, 401, Duration::from_secs(5), "A converges").await;
}
