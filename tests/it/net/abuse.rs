//! Surviving abuse at the connection level: silent sockets and partial
//! HTTP/2 prefaces cannot hold every connection slot, idle connections are
//! closed, and the known HTTP/2 floods (rapid reset, CONTINUATION, SETTINGS,
//! PING) leave the gate serving with bounded memory. HTTP/2 is spoken with
//! hand-made frames so that nothing tidies the attack.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "abuse-tests-secret-0123456789abcdef";

fn config(up: &Upstream, limits: &str) -> String {
    format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n[limits]\n{limits}\n\
         [[routes]]\nprefix = \"/public/\"\nauth = \"none\"\n",
        up.url()
    )
}

/// A normal request through a fresh connection; returns its status.
async fn normal_request(addr: SocketAddr) -> u16 {
    raw_get(addr, "/public/ok", &[]).await.status
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

// ---- HTTP/2 frames, by hand

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn settings() -> Vec<u8> {
    frame(0x4, 0, 0, &[])
}

/// A HEADERS block for `GET path` (HPACK: indexed and literal fields only).
fn get_block(path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86]; // :method GET, :scheme http
    b.push(0x04);
    b.push(path.len() as u8);
    b.extend_from_slice(path.as_bytes());
    b.push(0x01);
    b.push(9);
    b.extend_from_slice(b"gate.test");
    b
}

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// Reads until EOF or `limit`; true when the peer closed (or sent GOAWAY).
async fn closed_by_peer(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(n)) => {
                seen.extend_from_slice(&buf[..n]);
                if has_goaway(&seen) {
                    return true;
                }
            }
            Err(_) => {}
        }
    }
    false
}

/// Walks the frames received (after the server's preface-less start) and
/// says whether one of them is GOAWAY.
fn has_goaway(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i + 9 <= bytes.len() {
        let len =
            ((bytes[i] as usize) << 16) | ((bytes[i + 1] as usize) << 8) | bytes[i + 2] as usize;
        if bytes[i + 3] == 0x7 {
            return true;
        }
        i += 9 + len;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_and_partial_prefaces_cannot_starve_the_gate() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(
        &up,
        "max_connections = 16\nheader_read_timeout = \"1s\"\n",
    ))
    .start();
    // Fill every slot, and more, with sockets that never finish a request:
    // silent, half an HTTP/2 preface, half a request head.
    let mut hogs = Vec::new();
    for i in 0..24 {
        let mut s = TcpStream::connect(gate.proxy).await.unwrap();
        match i % 3 {
            0 => {}
            1 => s.write_all(&PREFACE[..10]).await.unwrap(),
            _ => s
                .write_all(b"GET /public/x HTTP/1.1\r\nHost: a")
                .await
                .unwrap(),
        }
        hogs.push(s);
    }
    let started = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(30), normal_request(gate.proxy))
        .await
        .expect("the gate stopped answering");
    let took = started.elapsed();
    assert_eq!(status, 200);
    eprintln!("normal request served after {took:?} with 24 silent sockets on 16 slots");
    // The hogs were closed by the gate.
    for (i, s) in hogs.iter_mut().enumerate() {
        assert!(
            closed_by_peer(s, Duration::from_secs(10)).await,
            "hog {i} still open"
        );
    }
    // The admin listener kept answering all along (its own slots).
    let r = client()
        .get(gate.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_idle_timeout() {
    let up = Upstream::start().await;
    // A long header timeout, so that only the idle timeout can close them.
    let gate = GateBuilder::toml(&config(
        &up,
        "header_read_timeout = \"60s\"\nidle_timeout = \"1s\"\n",
    ))
    .start();
    // HTTP/2 with no open stream after one request.
    let mut s = TcpStream::connect(gate.proxy).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(settings());
    out.extend(frame(
        0x1,
        END_STREAM | END_HEADERS,
        1,
        &get_block("/public/h2"),
    ));
    s.write_all(&out).await.unwrap();
    assert!(
        closed_by_peer(&mut s, Duration::from_secs(15)).await,
        "idle HTTP/2 connection not closed"
    );
    assert_eq!(up.last().path, "/public/h2");
    // HTTP/1.1 keep-alive after one request.
    let mut s = TcpStream::connect(gate.proxy).await.unwrap();
    s.write_all(b"GET /public/h1 HTTP/1.1\r\nHost: gate.test\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_by_peer(&mut s, Duration::from_secs(15)).await,
        "idle HTTP/1.1 connection not closed"
    );
    assert_eq!(up.last().path, "/public/h1");
    // A connection that keeps working is not idle.
    let mut s = TcpStream::connect(gate.proxy).await.unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    for i in 0..6 {
        s.write_all(format!("GET /public/busy{i} HTTP/1.1\r\nHost: gate.test\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("no answer on a busy connection")
            .unwrap();
        assert!(n > 0, "busy connection closed after {i} requests");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

/// Rapid reset (CVE-2023-44487): streams opened and cancelled at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_leaves_the_gate_serving() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).process().start();
    let before = rss_kib(gate.pid());
    let mut s = TcpStream::connect(gate.proxy).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(settings());
    s.write_all(&out).await.unwrap();
    let block = get_block("/public/reset");
    let mut sent = 0;
    'outer: for batch in 0..50 {
        let mut out = Vec::new();
        for i in 0..200u32 {
            let id = 1 + 2 * (batch * 200 + i);
            out.extend(frame(0x1, END_STREAM | END_HEADERS, id, &block));
            out.extend(frame(0x3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
        }
        if s.write_all(&out).await.is_err() {
            break 'outer;
        }
        sent += 200;
    }
    // The attacker is cut off (GOAWAY / close), and everyone else is served.
    assert!(
        closed_by_peer(&mut s, Duration::from_secs(20)).await,
        "rapid-reset connection still open after {sent} reset streams"
    );
    assert_eq!(normal_request(gate.proxy).await, 200);
    let after = rss_kib(gate.pid());
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    assert!(
        up.count() < 2_000,
        "{} reset streams reached the upstream",
        up.count()
    );
}

/// CONTINUATION flood (CVE-2024-27316): a header block that never ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_cut_off_with_bounded_memory() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).process().start();
    let before = rss_kib(gate.pid());
    let mut s = TcpStream::connect(gate.proxy).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(settings());
    out.extend(frame(0x1, END_STREAM, 1, &get_block("/public/cont")));
    s.write_all(&out).await.unwrap();
    // Literal header fields, 16 KiB per frame, never END_HEADERS.
    let mut field = vec![0x00, 0x7f, 0x00]; // new name, length 127 (7-bit prefix, +0)
    field.extend(std::iter::repeat_n(b'x', 127));
    field.extend([0x7f, 0x80, 0x7f]); // value length 127 + 16256 (multi-byte)
    let payload: Vec<u8> = field
        .iter()
        .copied()
        .chain(std::iter::repeat(b'y'))
        .take(16 * 1024)
        .collect();
    let cont = frame(0x9, 0, 1, &payload);
    for _ in 0..2_000 {
        if s.write_all(&cont).await.is_err() {
            break;
        }
    }
    assert!(
        closed_by_peer(&mut s, Duration::from_secs(20)).await,
        "CONTINUATION flood not cut off"
    );
    assert_eq!(normal_request(gate.proxy).await, 200);
    let after = rss_kib(gate.pid());
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    assert!(up.seen().iter().all(|r| r.path != "/public/cont"));
}

/// SETTINGS and PING floods from a client that never reads its answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_ping_floods_keep_memory_bounded() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).process().start();
    let before = rss_kib(gate.pid());
    let mut s = TcpStream::connect(gate.proxy).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    let mut batch = Vec::new();
    for i in 0..1_000u64 {
        batch.extend(settings());
        batch.extend(frame(0x6, 0, 0, &i.to_be_bytes()));
    }
    // Up to 200,000 of each, while the gate's answers go unread; stop when
    // the gate stops reading or closes.
    let mut written = 0;
    for _ in 0..200 {
        match tokio::time::timeout(Duration::from_secs(2), s.write_all(&batch)).await {
            Ok(Ok(())) => written += 1_000,
            _ => break,
        }
    }
    // Whatever the gate did with that connection, others are served and
    // memory did not follow the flood.
    assert_eq!(normal_request(gate.proxy).await, 200);
    let after = rss_kib(gate.pid());
    eprintln!("flood: {written} SETTINGS+PING pairs written; RSS {before} -> {after} KiB");
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB after {written} frames of each"
    );
    drop(s);
}
