//! `jwtgate healthcheck`: exit 0 when the admin listener's /readyz answers
//! 200, 1 when it answers otherwise or not at all; usable where no curl is.

use crate::support::*;

const SECRET: &str = "healthcheck-tests-secret-0123456789ab";

fn healthcheck(args: &[&str]) -> RunOutput {
    let mut all = vec!["healthcheck"];
    all.extend_from_slice(args);
    run_jwtgate(&all).run()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_0_when_ready_1_when_not_ready_or_unreachable() {
    let up = Upstream::start().await;
    let ready = GateBuilder::toml(&format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n",
        up.url()
    ))
    .start();
    let url = ready.admin_url("/readyz");
    let out = tokio::task::spawn_blocking(move || healthcheck(&["--url", &url]))
        .await
        .unwrap();
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(out.stdout.trim(), "ready");

    // An issuer whose keys cannot be fetched: /readyz is 503.
    let idp = Idp::start().await;
    idp.add_rsa("k1");
    idp.set_mode(IdpMode::Error500);
    let not_ready = GateBuilder::toml(&format!(
        "[upstream]\nurl = \"{}\"\n[[auth.issuers]]\nissuer = \"{}\"\n",
        up.url(),
        idp.issuer
    ))
    .start();
    let url = not_ready.admin_url("/readyz");
    let out = tokio::task::spawn_blocking(move || healthcheck(&["--url", &url]))
        .await
        .unwrap();
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.stdout.contains("HTTP 503"), "{}", out.all());

    // Nothing listening: 1, quickly, with no panic.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let url = format!("http://{addr}/readyz");
    let out = tokio::task::spawn_blocking(move || healthcheck(&["--url", &url, "--timeout", "1s"]))
        .await
        .unwrap();
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.stdout.starts_with("not ready"), "{}", out.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_target_is_admin_listen_of_the_config_even_on_a_unix_socket() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("admin.sock");
    let config = format!(
        "admin_listen = \"unix:{}\"\n[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n",
        sock.display(),
        up.url()
    );
    let gate = GateBuilder::toml(&config).no_admin().start();
    let cfg = config.clone();
    let out = tokio::task::spawn_blocking(move || run_jwtgate(&["healthcheck"]).toml(&cfg).run())
        .await
        .unwrap();
    assert_eq!(out.code, Some(0), "{}\n{}", out.all(), gate.diagnostics());
    drop(gate);

    // admin_listen = "" leaves nothing to ask: an error naming the key.
    let out = run_jwtgate(&["healthcheck"])
        .toml(&format!(
            "admin_listen = \"\"\n[auth.secret]\nvalue = \"{SECRET}\"\n"
        ))
        .run();
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.stderr.contains("admin_listen"), "{}", out.all());
}
