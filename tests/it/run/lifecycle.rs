//! Signals: graceful drain on SIGTERM/SIGINT, drain timeout, SIGHUP reload.

use std::time::Duration;

use crate::support::*;

const SECRET: &str = "lifecycle-tests-secret-0123456789abcdef";

fn config(up: &Upstream, top: &str, secret: &str) -> String {
    format!(
        "{top}\n[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{secret}\"\n",
        up.url()
    )
}

async fn refused(addr: std::net::SocketAddr) -> Option<()> {
    match tokio::net::TcpStream::connect(addr).await {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    let up = Upstream::start().await;
    let mut gate = GateBuilder::toml(&config(&up, "", SECRET))
        .process()
        .start();
    let token = brevia_token(SECRET, "alice", 600);
    let url = gate.url("/slow?ms=3000");
    let inflight = tokio::spawn(async move {
        let resp = client()
            .get(url)
            .header("authorization", bearer(&token))
            .send()
            .await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    eventually(
        Duration::from_secs(10),
        "the slow request to reach the upstream",
        || async { (up.count() == 1).then_some(()) },
    )
    .await;

    gate.signal("TERM");
    let proxy = gate.proxy;
    eventually(
        Duration::from_secs(2),
        "the proxy listener to refuse connections",
        || refused(proxy),
    )
    .await;
    assert!(
        !inflight.is_finished(),
        "the listener was still open when the in-flight request ended"
    );
    if let Some(admin) = gate.admin {
        eventually(
            Duration::from_secs(2),
            "the admin listener to close",
            || refused(admin),
        )
        .await;
    }

    let (status, body) = inflight.await.unwrap().expect("in-flight request failed");
    assert_eq!(status, 200);
    assert_eq!(body["path"], "/slow");
    let exit = gate
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("did not exit");
    assert!(exit.success(), "exit status {exit}");
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_0() {
    let up = Upstream::start().await;
    let mut gate = GateBuilder::toml(&config(&up, "", SECRET))
        .process()
        .start();
    gate.signal("INT");
    let exit = gate
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("did not exit");
    assert!(exit.success(), "exit status {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_the_wait() {
    let up = Upstream::start().await;
    let mut gate = GateBuilder::toml(&config(&up, "drain_timeout = \"1s\"", SECRET))
        .process()
        .start();
    let token = brevia_token(SECRET, "alice", 600);
    let url = gate.url("/slow?ms=30000");
    let _inflight = tokio::spawn(async move {
        client()
            .get(url)
            .header("authorization", bearer(&token))
            .send()
            .await
            .map(|r| r.status())
    });
    eventually(
        Duration::from_secs(10),
        "the slow request to reach the upstream",
        || async { (up.count() == 1).then_some(()) },
    )
    .await;
    gate.signal("TERM");
    // 30 s of upstream work, 1 s of drain: it must be gone well before 30 s.
    let exit = gate
        .wait_exit(Duration::from_secs(12))
        .await
        .expect("still running long after drain_timeout");
    assert!(exit.success(), "exit status {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_configuration_and_keeps_old_one_when_bad() {
    let up = Upstream::start().await;
    let old_secret = "old-reload-secret-aaaaaaaaaaaaaaaaaaaa";
    let new_secret = "new-reload-secret-bbbbbbbbbbbbbbbbbbbb";
    let gate = GateBuilder::toml(&config(&up, "", old_secret))
        .process()
        .start();
    let old = brevia_token(old_secret, "alice", 600);
    let new = brevia_token(new_secret, "alice", 600);
    let c = client();
    let status = |token: String| {
        let c = c.clone();
        let url = gate.url("/");
        async move {
            c.get(url)
                .header("authorization", bearer(&token))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(old.clone()).await, 200);
    assert_eq!(status(new.clone()).await, 401);

    gate.rewrite_config(&config(&up, "", new_secret));
    gate.signal("HUP");
    eventually(
        Duration::from_secs(10),
        "the new secret to be accepted",
        || {
            let f = status(new.clone());
            async move { (f.await == 200).then_some(()) }
        },
    )
    .await;
    assert_eq!(status(old.clone()).await, 401, "the old secret still works");

    // A bad configuration is refused; the last good one keeps serving.
    gate.rewrite_config(&format!(
        "{}\n[auth]\nreload_bogus_key = 1\n",
        config(&up, "", old_secret)
    ));
    gate.signal("HUP");
    assert!(
        gate.wait_log(&["reload_bogus_key"], Duration::from_secs(10))
            .await,
        "no error log naming the bad key; logs:\n{}",
        gate.logs()
    );
    assert_eq!(
        status(new.clone()).await,
        200,
        "the good config stopped serving"
    );
    assert_eq!(status(old.clone()).await, 401, "the bad config was applied");
    assert!(!gate.logs().contains(old_secret) && !gate.logs().contains(new_secret));
}
