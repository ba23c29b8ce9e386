//! What operators see of a request decided by a session: the access log
//! says so (`jwtgate.reason` = `session`, the user), and holds no cookie
//! value; `jwtgate_requests_total` counts it under `reason="session"`.

use std::time::Duration;

use crate::support::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_request_is_logged_as_one_and_never_with_its_cookie() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("session.keys");
    let key = run_jwtgate(&["gen-key", "--session"]).run();
    assert_eq!(key.code, Some(0), "{key:?}");
    std::fs::write(&keys, &key.stdout).unwrap();
    // The provider is never asked: the cookie is sealed by create-token and
    // has no refresh token (the issuer's discovery fails in the background).
    let config = format!(
        "[upstream]\nurl = \"{}\"\n\
         [[auth.issuers]]\nissuer = \"http://127.0.0.1:9/realms/test\"\n\
         [login]\nissuer = \"http://127.0.0.1:9/realms/test\"\nclient_id = \"gate\"\n\
         external_url = \"http://127.0.0.1:8080\"\nsession_keys_file = \"{}\"\n",
        up.url(),
        keys.display()
    );
    let minted = run_jwtgate(&["create-token", "--session", "-u", "alice"])
        .toml(&config)
        .run();
    assert_eq!(minted.code, Some(0), "{minted:?}");
    let cookie = minted.stdout.trim().to_owned();
    let value = cookie.split_once('=').unwrap().1.to_owned();

    let gate = GateBuilder::toml(&config)
        .env("JWTGATE_LOG_FORMAT", "json")
        .process()
        .start();
    let r = client()
        .get(gate.url("/page"))
        .header("cookie", format!("theme=dark; {cookie}"))
        .header("x-request-id", "session-log-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        up.last().header_all("x-auth-user"),
        vec!["alice".to_owned()]
    );
    assert_eq!(
        up.last().header_all("cookie"),
        vec!["theme=dark".to_owned()]
    );

    let line = eventually(Duration::from_secs(5), "the access-log line", || async {
        gate.logs()
            .lines()
            .find(|l| l.contains("session-log-1"))
            .map(str::to_owned)
    })
    .await;
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["target"], "jwtgate::access", "{line}");
    assert_eq!(v["jwtgate.decision"], "allow", "{line}");
    assert_eq!(v["jwtgate.reason"], "session", "{line}");
    assert_eq!(v["user.id"], "alice", "{line}");
    let logs = gate.logs();
    assert!(!logs.contains(&value), "a session cookie value in the logs");
    assert!(
        !logs.contains(&value[..value.len() / 2]),
        "part of a cookie in the logs"
    );

    let metrics = client()
        .get(gate.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("jwtgate_requests_total{")
                && l.contains("reason=\"session\"")
                && l.contains("decision=\"allow\"")),
        "no request counted under reason=\"session\":\n{metrics}"
    );
}
