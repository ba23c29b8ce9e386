//! `unix:/path` sockets: an upstream reached only through a Unix socket (it
//! listens on no TCP port at all), and the gate itself serving on one.

use std::path::Path;

use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::json;

const SECRET: &str = "unix-socket-tests-secret-0123456789ab";

fn token(user: &str) -> String {
    hs256(SECRET, &json!({"sub": user, "exp": now() + 600}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_upstream_gets_authenticated_requests_only() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("app.sock");
    let up = Upstream::start_unix(&sock).await;
    let gate = GateBuilder::toml(&format!(
        "[upstream]\nurl = \"unix:{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n",
        sock.display()
    ))
    .start();

    let r = client()
        .get(gate.url("/hello/../world?x=1"))
        .bearer_auth(token("alice"))
        .header("host", "app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", gate.diagnostics());
    let seen = up.last();
    assert_eq!(seen.path, "/world");
    assert_eq!(seen.query.as_deref(), Some("x=1"));
    assert_eq!(seen.header("x-auth-user").as_deref(), Some("alice"));
    // The client's Host reaches the app, not the placeholder authority.
    assert_eq!(seen.header("host").as_deref(), Some("app.example"));
    assert_eq!(seen.header("authorization"), None);

    // No token: answered by the gate, the socket never sees it.
    let before = up.count();
    let r = client().get(gate.url("/world")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(up.count(), before);

    // No app on the socket: 502 from the gate, as for a refused TCP connect.
    let missing = dir.path().join("missing.sock");
    let gate = GateBuilder::toml(&format!(
        "[upstream]\nurl = \"unix:{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n",
        missing.display()
    ))
    .start();
    let r = client()
        .get(gate.url("/world"))
        .bearer_auth(token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(gate_error(&r).as_deref(), Some("bad_gateway"));
}

/// One HTTP/1.1 request over a Unix socket.
async fn get_over_unix(sock: &Path, path: &str, bearer: Option<&str>) -> (u16, String) {
    let stream = tokio::net::UnixStream::connect(sock)
        .await
        .expect("connect to the gate's socket");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::get(path).header("host", "gate.local");
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_serves_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gate.sock");
    // A stale socket file from an earlier run is replaced, not an error.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&format!(
        "listen = \"unix:{}\"\n[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n",
        sock.display(),
        up.url()
    ))
    .no_listen_flag()
    .process()
    .start();
    assert!(
        gate.logs()
            .contains(&format!("proxy listening on unix:{}", sock.display())),
        "{}",
        gate.logs()
    );

    let (status, _) = get_over_unix(&sock, "/via/socket", Some(&token("bob"))).await;
    assert_eq!(status, 200, "{}", gate.logs());
    let seen = up.last();
    assert_eq!(seen.path, "/via/socket");
    assert_eq!(seen.header("x-auth-user").as_deref(), Some("bob"));
    // A peer on the socket counts as a local client.
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));

    let before = up.count();
    let (status, body) = get_over_unix(&sock, "/via/socket", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(up.count(), before);

    // The admin listener still answers on TCP beside it.
    let r = client()
        .get(gate.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn a_relative_unix_path_is_refused_naming_the_key() {
    for (cfg, key) in [
        ("[upstream]\nurl = \"unix:app.sock\"\n", "upstream.url"),
        ("listen = \"unix:gate.sock\"\n", "listen"),
        ("admin_listen = \"unix:\"\n", "admin_listen"),
    ] {
        let out = run_jwtgate(&["check-config"])
            .toml(&format!("{cfg}[auth.secret]\nvalue = \"{SECRET}\"\n"))
            .run();
        assert_eq!(out.code, Some(1), "{}", out.all());
        assert!(out.stderr.contains(key), "{key}: {}", out.all());
        assert!(out.stderr.contains("unix:/absolute"), "{}", out.all());
    }
}
