//! The token endpoints of `[issuer]` signing with the shared secret: the
//! OAuth2 password grant (a FastAPI client's flow), Ampho-style login and
//! renew, the users file (argon2id from `jwtgate hash-password`, bcrypt
//! from `htpasswd -B`, reloads), and abuse resistance (429, body cap,
//! methods, nothing secret in the logs).

use std::path::PathBuf;
use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};
use tempfile::TempDir;

const SECRET: &str = "issuer-tests-secret-0123456789abcdef";

/// Files the gate reads (users file, keys), kept alive by the test.
struct Files(TempDir);

impl Files {
    fn new() -> Self {
        Files(tempfile::tempdir().expect("tempdir"))
    }

    /// Writes (atomically, by rename) and returns the absolute path.
    fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.path().join(name);
        let tmp = self.0.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &p).expect("rename");
        p.to_string_lossy().into_owned()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// `USER:$argon2id$...` made by `jwtgate hash-password`.
async fn hash_password_line(user: &str, password: &str) -> String {
    let pw = format!("{password}\n");
    let out = tokio::task::spawn_blocking(move || {
        run_jwtgate(&["hash-password"]).stdin(pw.as_bytes()).run()
    })
    .await
    .unwrap();
    assert_eq!(out.code, Some(0), "{}", out.all());
    let hash = out.stdout.trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    format!("{user}:{hash}")
}

fn config(up: &Upstream, users_file: &str, issuer_keys: &str, rest: &str) -> String {
    format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n\
         [issuer]\nenabled = true\nusers_file = \"{users_file}\"\n{issuer_keys}\n{rest}\n",
        up.url()
    )
}

const FORM: &str = "application/x-www-form-urlencoded";

async fn post_form(url: &str, body: &str) -> reqwest::Response {
    client()
        .post(url)
        .header("content-type", FORM)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn post_json(url: &str, body: &Value) -> reqwest::Response {
    client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn assert_no_store(resp: &reqwest::Response) {
    assert_eq!(header(resp, "cache-control"), "no-store");
    assert_eq!(header(resp, "pragma"), "no-cache");
}

/// A 4xx/5xx issuer answer: status, JSON `{"error": code, <text_field>}`.
async fn assert_issuer_error(
    resp: reqwest::Response,
    status: u16,
    code: &str,
    text_field: &str,
) -> Value {
    let got = resp.status().as_u16();
    assert_no_store(&resp);
    let body: Value = resp.json().await.expect("JSON error body");
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body[text_field].is_string(),
        "{text_field} missing in {body}"
    );
    body
}

async fn login(gate: &Gate, user: &str, password: &str) -> Value {
    let resp = post_json(
        &gate.url("/api/security/login"),
        &json!({"login": user, "password": password}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

// ---------------------------------------------------------------- point 1

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_is_off_by_default_and_its_paths_are_ordinary_paths() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n",
        up.url()
    ))
    .start();
    // Without a token the gate refuses, as for any path.
    let resp = post_form(
        &gate.url("/token"),
        "grant_type=password&username=a&password=b",
    )
    .await;
    assert_rejection(resp, 401, "unauthorized").await;
    let resp = client()
        .get(gate.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_rejection(resp, 401, "unauthorized").await;
    // With one, /token is the upstream's like any other path.
    let resp = client()
        .post(gate.url("/token"))
        .header("authorization", bearer(&brevia_token(SECRET, "alice", 600)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().path, "/token");
}

// ------------------------------------------------------------ points 2, 3, 5, 7

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastapi_password_flow_reaches_the_upstream_as_the_user() {
    let up = Upstream::start().await;
    let files = Files::new();
    let users = format!(
        "# made by hash-password and htpasswd -B\n{}\n{}\n",
        hash_password_line("alice", "wonderland").await,
        htpasswd_bcrypt("bob", "builder")
    );
    let users_file = files.write("users", &users);
    let gate = GateBuilder::toml(&config(
        &up,
        &users_file,
        "",
        "[issuer.claims]\nalice = { role = \"admin\", groups = [\"a\", \"b\"] }\n",
    ))
    .process()
    .start();

    // What Swagger UI / a FastAPI client posts to tokenUrl.
    let resp = post_form(
        &gate.url("/token"),
        "grant_type=password&username=alice&password=wonderland&scope=&client_id=&client_secret=",
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_no_store(&resp);
    assert!(header(&resp, "content-type").starts_with("application/json"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    let token = body["access_token"].as_str().unwrap().to_string();

    // Signed with auth.secret (first algorithm), with every promised claim.
    let (h, p) = verify_hmac(&token, SECRET.as_bytes());
    assert_eq!(h["alg"], "HS256");
    for c in ["sub", "user", "login"] {
        assert_eq!(p[c], "alice", "{p}");
    }
    for c in ["iat", "nbf", "exp", "auth_time"] {
        assert!(p[c].is_u64(), "{c} in {p}");
    }
    assert_eq!(p["exp"].as_u64().unwrap() - p["iat"].as_u64().unwrap(), 900);
    assert!(p["jti"].as_str().is_some_and(|j| j.len() >= 16), "{p}");
    assert_eq!(p["iss"], "jwtgate");
    assert_eq!(p["role"], "admin");
    assert_eq!(p["groups"], json!(["a", "b"]));

    // The token endpoint itself was never forwarded.
    assert_eq!(up.count(), 0);

    // The bearer call of the FastAPI dependency.
    let resp = client()
        .get(gate.url("/items/1"))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.count(), 1);
    assert_eq!(up.last().header("x-auth-user").as_deref(), Some("alice"));

    // The htpasswd -B user logs in too, with a form on the REST endpoint.
    let resp = post_form(
        &gate.url("/api/security/login"),
        "login=bob&password=builder",
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let (_, p) = verify_hmac(body["token"].as_str().unwrap(), SECRET.as_bytes());
    assert_eq!(p["sub"], "bob");
    assert!(p.get("role").is_none(), "alice's claims are hers only: {p}");

    // Neither password nor token ever shows in the logs.
    let logs = gate.logs();
    assert!(logs.contains("token issued"), "{logs}");
    for secret in ["wonderland", "builder", token.as_str(), SECRET] {
        assert!(!logs.contains(secret), "a secret leaked into the logs");
    }
}

// ---------------------------------------------------------------- point 3, 6

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_speaks_rfc6749_errors_and_guards_its_input() {
    let up = Upstream::start().await;
    let files = Files::new();
    let users_file = files.write("users", &format!("{}\n", htpasswd_bcrypt("bob", "builder")));
    let gate = GateBuilder::toml(&config(&up, &users_file, "max_body_bytes = 1024", "")).start();
    let url = gate.url("/token");

    let cases: &[(&str, &str, &str)] = &[
        (FORM, "username=bob&password=builder", "invalid_request"),
        (
            FORM,
            "grant_type=password&password=builder",
            "invalid_request",
        ),
        (FORM, "grant_type=password&username=bob", "invalid_request"),
        (
            FORM,
            "grant_type=password&username=bob&username=eve&password=builder",
            "invalid_request",
        ),
        (
            "application/json",
            "{\"grant_type\":\"password\"}",
            "invalid_request",
        ),
        (
            FORM,
            "grant_type=client_credentials&username=bob&password=builder",
            "unsupported_grant_type",
        ),
        (
            FORM,
            "grant_type=password&username=bob&password=wrong",
            "invalid_grant",
        ),
        (
            FORM,
            "grant_type=password&username=nobody&password=builder",
            "invalid_grant",
        ),
    ];
    for (ctype, body, code) in cases {
        let resp = client()
            .post(&url)
            .header("content-type", *ctype)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let b = assert_issuer_error(resp, 400, code, "error_description").await;
        assert!(!b.to_string().contains("builder"), "{b}");
    }

    // Only POST; the answer says so.
    let resp = client().get(&url).send().await.unwrap();
    assert_eq!(header(&resp, "allow"), "POST");
    assert_issuer_error(resp, 405, "method_not_allowed", "error_description").await;
    let resp = client()
        .get(gate.url("/api/security/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "allow"), "POST");
    assert_issuer_error(resp, 405, "method_not_allowed", "message").await;

    // Bodies are capped, declared or streamed.
    let big = format!(
        "grant_type=password&username=bob&password={}",
        "x".repeat(2000)
    );
    let resp = post_form(&url, &big).await;
    assert_issuer_error(resp, 413, "request_too_large", "error_description").await;
    // Chunked, so that no Content-Length announces the size.
    let mut raw = b"POST /token HTTP/1.1\r\nHost: gate.test\r\nConnection: close\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..4 {
        raw.extend_from_slice(format!("258\r\n{}\r\n", "x".repeat(600)).as_bytes());
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let resp = raw_request(gate.proxy, &raw).await;
    assert_eq!(resp.status, 413, "{}", resp.text());

    // A well-formed request still works, and nothing reached the upstream.
    let resp = post_form(&url, "grant_type=password&username=bob&password=builder").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(up.count(), 0);
}

// ---------------------------------------------------------------- point 4

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_renew_keep_the_session_start() {
    let up = Upstream::start().await;
    let files = Files::new();
    let users_file = files.write(
        "users",
        &format!("{}\n", htpasswd_bcrypt("carol", "c-pass")),
    );
    let gate =
        GateBuilder::toml(&config(&up, &users_file, "", "[auth]\nleeway = \"30s\"\n")).start();

    let body = login(&gate, "carol", "c-pass").await;
    let token = body["token"].as_str().unwrap().to_string();
    let starts = body["starts"].as_u64().unwrap();
    assert_eq!(body["expires"].as_u64().unwrap(), starts + 900);
    assert_eq!(body["ttl"], 900);
    assert_eq!(body["leeway"], 30);
    let (_, first) = verify_hmac(&token, SECRET.as_bytes());

    let resp = client()
        .post(gate.url("/api/security/renew"))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_no_store(&resp);
    let renewed: Value = resp.json().await.unwrap();
    let (_, second) = verify_hmac(renewed["token"].as_str().unwrap(), SECRET.as_bytes());
    assert_eq!(second["sub"], "carol");
    assert_eq!(
        second["auth_time"], first["auth_time"],
        "renew keeps the login time"
    );
    assert_ne!(second["jti"], first["jti"]);

    // Failures: 401 with {"error", "message"} (Ampho clients read message).
    let resp = post_json(
        &gate.url("/api/security/login"),
        &json!({"login": "carol", "password": "nope"}),
    )
    .await;
    let b = assert_issuer_error(resp, 401, "invalid_credentials", "message").await;
    assert!(!b.to_string().contains("nope"));
    let resp = client()
        .post(gate.url("/api/security/renew"))
        .send()
        .await
        .unwrap();
    assert_issuer_error(resp, 401, "unauthorized", "message").await;
    let resp = post_json(&gate.url("/api/security/login"), &json!({"login": "carol"})).await;
    assert_issuer_error(resp, 400, "invalid_request", "message").await;
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ampho_environment_names_set_prefix_and_ttl() {
    let up = Upstream::start().await;
    let files = Files::new();
    let users_file = files.write("users", &format!("{}\n", htpasswd_bcrypt("dan", "d-pass")));
    let gate = GateBuilder::toml(&config(&up, &users_file, "", ""))
        .env("AMPHO_SECURITY_REST_PREFIX", "/auth")
        .env("AMPHO_SECURITY_TOKEN_TTL", "120")
        .process()
        .start();
    let resp = post_json(
        &gate.url("/auth/login"),
        &json!({"login": "dan", "password": "d-pass"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["ttl"], 120);
    // The default prefix is now an ordinary (protected) path.
    let resp = post_json(
        &gate.url("/api/security/login"),
        &json!({"login": "dan", "password": "d-pass"}),
    )
    .await;
    assert_rejection(resp, 401, "unauthorized").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_refuses_expired_foreign_and_too_old_sessions() {
    let up = Upstream::start().await;
    let files = Files::new();
    let users_file = files.write("users", &format!("{}\n", htpasswd_bcrypt("erin", "e-pass")));
    let gate = GateBuilder::toml(&config(&up, &users_file, "max_session = \"1h\"", "")).start();
    let t = now();
    let session = |extra: Value| {
        let mut p = json!({"sub": "erin", "user": "erin", "login": "erin", "iss": "jwtgate",
                           "iat": t, "nbf": t, "exp": t + 600, "auth_time": t - 60});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                p.as_object_mut().unwrap().remove(k);
            } else {
                p[k] = v.clone();
            }
        }
        p
    };
    let renew = |token: String| {
        let url = gate.url("/api/security/renew");
        async move {
            client()
                .post(url)
                .header("authorization", bearer(&token))
                .send()
                .await
                .unwrap()
        }
    };

    // The control: a token shaped like the gate's own renews.
    let resp = renew(hs256(SECRET, &session(json!({})))).await;
    assert_eq!(resp.status(), 200);

    let other_key = StandaloneKey::new("k1", "RS256");
    let refused = [
        (
            "expired",
            hs256(
                SECRET,
                &session(json!({"iat": t - 1000, "nbf": t - 1000, "exp": t - 500})),
            ),
        ),
        (
            "another secret",
            hs256("not-the-gate-secret-0123456789", &session(json!({}))),
        ),
        (
            "another key",
            other_key.sign(&json!({}), &session(json!({}))),
        ),
        (
            "another issuer",
            hs256(SECRET, &session(json!({"iss": "someone-else"}))),
        ),
        ("no issuer", hs256(SECRET, &session(json!({"iss": null})))),
        (
            "not a login session",
            hs256(SECRET, &session(json!({"auth_time": null}))),
        ),
        (
            "past max_session",
            hs256(SECRET, &session(json!({"auth_time": t - 3601}))),
        ),
        (
            "unknown user",
            hs256(
                SECRET,
                &session(json!({"sub": "mallory", "user": "mallory", "login": "mallory"})),
            ),
        ),
    ];
    for (what, token) in refused {
        let resp = renew(token).await;
        assert_eq!(resp.status(), 401, "{what}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_token", "{what}: {body}");
        assert!(body["message"].is_string(), "{what}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_session_caps_every_token_of_the_session() {
    let up = Upstream::start().await;
    let files = Files::new();
    let users_file = files.write("users", &format!("{}\n", htpasswd_bcrypt("fay", "f-pass")));
    let gate = GateBuilder::toml(&config(&up, &users_file, "max_session = \"40s\"", "")).start();
    let body = login(&gate, "fay", "f-pass").await;
    let (_, p) = verify_hmac(body["token"].as_str().unwrap(), SECRET.as_bytes());
    let auth_time = p["auth_time"].as_u64().unwrap();
    assert_eq!(body["expires"].as_u64().unwrap(), auth_time + 40);
    let resp = client()
        .post(gate.url("/api/security/renew"))
        .header("authorization", bearer(body["token"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    let renewed: Value = resp.json().await.unwrap();
    assert!(
        renewed["expires"].as_u64().unwrap() <= auth_time + 40,
        "{renewed}"
    );
}

// ---------------------------------------------------------------- point 6

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_are_refused_with_429() {
    let up = Upstream::start().await;
    let files = Files::new();
    let users = format!(
        "{}\n{}\n",
        htpasswd_bcrypt("gus", "g-pass"),
        htpasswd_bcrypt("hal", "h-pass")
    );
    let users_file = files.write("users", &users);
    let gate = GateBuilder::toml(&config(
        &up,
        &users_file,
        "max_failures = 3\nmax_failures_per_address = 5\nfailure_window = \"10m\"",
        "",
    ))
    .process()
    .start();
    let url = gate.url("/api/security/login");
    for _ in 0..3 {
        let resp = post_json(&url, &json!({"login": "gus", "password": "wrong"})).await;
        assert_eq!(resp.status(), 401);
    }
    // Locked: even the right password is refused, without a hash computed.
    let resp = post_json(&url, &json!({"login": "gus", "password": "g-pass"})).await;
    let retry: u64 = header(&resp, "retry-after").parse().expect("Retry-After");
    assert!(retry > 500 && retry <= 600, "{retry}");
    assert_issuer_error(resp, 429, "too_many_requests", "message").await;
    let resp = post_form(
        &gate.url("/token"),
        "grant_type=password&username=gus&password=g-pass",
    )
    .await;
    assert!(!header(&resp, "retry-after").is_empty());
    assert_issuer_error(resp, 429, "too_many_requests", "error_description").await;

    // Another user from the same address is not locked by gus's failures...
    let resp = post_json(&url, &json!({"login": "hal", "password": "h-pass"})).await;
    assert_eq!(resp.status(), 200);
    // ...and once the address itself has failed too often (unknown users
    // count), attempts from it are delayed.
    for name in ["pa55word-typed-as-name-1", "pa55word-typed-as-name-2"] {
        let resp = post_json(&url, &json!({"login": name, "password": "guess"})).await;
        assert_eq!(resp.status(), 401, "{name}");
    }
    // Past the per-address limit, hal is slowed down, never locked out:
    // behind an ingress every user shares one address (issue 8).
    let started = std::time::Instant::now();
    let resp = post_json(&url, &json!({"login": "hal", "password": "h-pass"})).await;
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(400),
        "not slowed down: {:?}",
        started.elapsed()
    );
    let logs = gate.logs();
    assert!(logs.contains("too many failures"), "{logs}");
    assert!(!logs.contains("g-pass") && !logs.contains("h-pass") && !logs.contains("guess"));
    // Unknown names may be mistyped passwords: they are not logged either.
    assert!(!logs.contains("pa55word-typed-as-name"), "{logs}");
    assert!(logs.contains("gus"), "known names are logged: {logs}");
}

// ---------------------------------------------------------------- point 2

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_file_is_reloaded_and_a_broken_one_keeps_the_old_users() {
    let up = Upstream::start().await;
    let files = Files::new();
    let ivy = htpasswd_bcrypt("ivy", "i-pass");
    let users_file = files.write("users", &format!("{ivy}\n"));
    let gate = GateBuilder::toml(&config(
        &up,
        &users_file,
        "max_failures = 1000\nmax_failures_per_address = 1000",
        "",
    ))
    .process()
    .start();
    let url = gate.url("/api/security/login");
    let ok = |user: &'static str, pw: &'static str| {
        let url = url.clone();
        async move {
            post_json(&url, &json!({"login": user, "password": pw}))
                .await
                .status()
                == 200
        }
    };
    assert!(ok("ivy", "i-pass").await);
    assert!(!ok("jay", "j-pass").await);

    // A change is picked up without a signal.
    files.write(
        "users",
        &format!("{ivy}\n{}\n", htpasswd_bcrypt("jay", "j-pass")),
    );
    eventually(Duration::from_secs(15), "jay can log in", || async {
        ok("jay", "j-pass").await.then_some(())
    })
    .await;

    // A broken file is refused and logged; the last good users stay.
    files.write("users", "ivy:$apr1$legacy$md5hash\njay\n");
    // The change is noticed at a login.
    eventually(
        Duration::from_secs(15),
        "the broken file is refused",
        || async {
            ok("ivy", "i-pass").await;
            gate.logs()
                .contains("keeping the last good copy")
                .then_some(())
        },
    )
    .await;
    assert!(ok("ivy", "i-pass").await);
    assert!(ok("jay", "j-pass").await);
    assert!(!gate.logs().contains("md5hash"), "hashes are never logged");

    // SIGHUP with the broken file: the configuration reloads, users stay.
    gate.signal("HUP");
    assert!(gate.wait_log(&["SIGHUP"], Duration::from_secs(15)).await);
    assert!(ok("jay", "j-pass").await);

    // Fixed file + SIGHUP: jay is gone at once.
    files.write("users", &format!("{ivy}\n"));
    gate.signal("HUP");
    eventually(Duration::from_secs(15), "jay is removed", || async {
        (!ok("jay", "j-pass").await).then_some(())
    })
    .await;
    assert!(ok("ivy", "i-pass").await);
    let _ = files.path("users");
}

#[test]
fn a_broken_users_file_at_start_is_an_error_naming_the_key() {
    let files = Files::new();
    let users_file = files.write("users", "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n");
    let out = run_jwtgate(&["check-config"])
        .toml(&format!(
            "[auth.secret]\nvalue = \"{SECRET}\"\n[issuer]\nenabled = true\nusers_file = \"{users_file}\"\n"
        ))
        .run();
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.stderr.contains("issuer.users_file"), "{}", out.all());
    assert!(out.stderr.contains("line 1"), "{}", out.all());
    assert!(!out.all().contains("W6ph5"), "the hash is never printed");
}

#[test]
fn issuer_and_secret_issuer_must_agree() {
    let files = Files::new();
    let users_file = files.write("users", &format!("{}\n", htpasswd_bcrypt("a", "b")));
    let out = run_jwtgate(&["check-config"])
        .toml(&format!(
            "[auth.secret]\nvalue = \"{SECRET}\"\nissuer = \"https://gate.example\"\n\
             [issuer]\nenabled = true\nusers_file = \"{users_file}\"\n"
        ))
        .run();
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.stderr.contains("issuer.issuer"), "{}", out.all());
    let out = run_jwtgate(&["check-config"])
        .toml(&format!(
            "[auth.secret]\nvalue = \"{SECRET}\"\n[issuer]\nenabled = true\n\
             users_file = \"{users_file}\"\n[issuer.claims]\na = {{ sub = \"root\" }}\n"
        ))
        .run();
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.stderr.contains("issuer.claims.a.sub"), "{}", out.all());
}

// ---------------------------------------------------------------- point 5

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_shared_secret_nothing_is_published() {
    let up = Upstream::start().await;
    let files = Files::new();
    let users_file = files.write("users", &format!("{}\n", htpasswd_bcrypt("kim", "k-pass")));
    let gate = GateBuilder::toml(&config(&up, &users_file, "", "")).start();
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
    ] {
        let resp = client().get(gate.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        let text = resp.text().await.unwrap();
        assert!(!text.contains(SECRET), "{text}");
    }
    let resp = client()
        .post(gate.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "allow"), "GET, HEAD");
    assert_eq!(resp.status(), 405);
    assert_eq!(up.count(), 0);
}

#[test]
fn create_token_signs_like_the_issuer() {
    let files = Files::new();
    let users_file = files.write("users", &format!("{}\n", htpasswd_bcrypt("lee", "l-pass")));
    let out = run_jwtgate(&["create-token", "-u", "lee", "-d", "5"])
        .toml(&format!(
            "[auth.secret]\nvalue = \"{SECRET}\"\nalgorithms = [\"HS384\", \"HS256\"]\n\
             [issuer]\nenabled = true\nusers_file = \"{users_file}\"\nissuer = \"gate-a\"\n\
             [issuer.claims]\nlee = {{ role = \"editor\" }}\n"
        ))
        .run();
    assert_eq!(out.code, Some(0), "{}", out.all());
    let (h, p) = verify_hmac(out.stdout.trim(), SECRET.as_bytes());
    assert_eq!(h["alg"], "HS384");
    assert_eq!(p["iss"], "gate-a");
    assert_eq!(p["sub"], "lee");
    assert_eq!(p["role"], "editor");
    assert_eq!(p["exp"].as_i64().unwrap() - p["iat"].as_i64().unwrap(), 300);
    assert!(
        p.get("auth_time").is_none(),
        "create-token makes no login session"
    );
}
