//! Listener hardening: slow clients, request smuggling attempts, absolute-form
//! targets. Raw bytes over TCP, since HTTP clients refuse to send these.

use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "hardening-secret-0123456789abcdef";

fn gate(up: &Upstream, extra: &str) -> Gate {
    GateBuilder::toml(&format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n[status]\ntoken = \"st\"\n{extra}",
        up.url()
    ))
    .start()
}

fn token() -> String {
    hs256(SECRET, &json!({"sub": "alice", "exp": now() + 600}))
}

/// Reads until the server closes the connection (or `limit` passes).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_head_is_cut_off() {
    let up = Upstream::start().await;
    let gate = gate(&up, "[limits]\nheader_read_timeout = \"1s\"\n");
    let mut s = TcpStream::connect(gate.proxy).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        .await
        .unwrap();
    // The gate closes the connection by itself (bounded wait, no sleep).
    let closed = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "the slow client was never cut off");
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_never_smuggles_a_request() {
    let up = Upstream::start().await;
    let gate = gate(&up, "");
    let t = token();
    let attack = format!(
        "POST /a HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nContent-Length: 4\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    );
    let mut s = TcpStream::connect(gate.proxy).await.unwrap();
    s.write_all(attack.as_bytes()).await.unwrap();
    let _ = read_until_closed(&mut s, Duration::from_secs(5)).await;
    // Whatever the gate made of it, the upstream never saw an unauthenticated
    // request, nor a request with both framings.
    for seen in up.seen() {
        assert_ne!(
            seen.path, "/smuggled",
            "a smuggled request reached the upstream"
        );
        assert!(
            !(seen.header("content-length").is_some()
                && seen.header("transfer-encoding").is_some()),
            "both framings forwarded"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_content_lengths_are_refused() {
    let up = Upstream::start().await;
    let gate = gate(&up, "");
    let t = token();
    let req = format!(
        "POST /a HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"
    );
    let resp = raw_request(gate.proxy, req.as_bytes()).await;
    assert_eq!(resp.status, 400);
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_targets_are_judged_by_their_path_and_sent_to_the_upstream() {
    let up = Upstream::start().await;
    let gate = gate(&up, "");
    // The authority of an absolute-form target never chooses where the request goes.
    let resp = raw_request(
        gate.proxy,
        b"GET http://evil.example/status?token=st HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.count(), 1);
    assert_eq!(up.last().path, "/status");
    let resp = raw_request(
        gate.proxy,
        b"GET http://evil.example/private HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 401);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_serves_several_requests() {
    let up = Upstream::start().await;
    let gate = gate(&up, "");
    let t = token();
    let two = format!(
        "GET /one HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\n\r\n\
         GET /two HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nConnection: close\r\n\r\n"
    );
    let mut s = TcpStream::connect(gate.proxy).await.unwrap();
    s.write_all(two.as_bytes()).await.unwrap();
    let out = read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("the gate closes after the second request");
    let text = String::from_utf8_lossy(&out);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    let paths: Vec<String> = up.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, vec!["/one", "/two"]);
}
