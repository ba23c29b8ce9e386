//! Connection-affine upstream connections (src/proxy/upstream/affine.rs):
//! a client connection's requests reach the upstream over one upstream
//! connection, a connection the upstream closed between requests is
//! replaced without an error the client sees, a request the upstream
//! received is never sent twice, the idle list is bounded and purged, and
//! pipelined requests are answered in order.
//!
//! The backend here speaks HTTP/1.1 by hand, so that the tests decide
//! exactly when it closes a connection and can count its sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "affinity-tests-secret-0123456789abcdef0123";

/// What the backend does after it has read a request.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Answers `conn=<its connection number> path=<target>`, keeps alive.
    Answer,
    /// Answers, then closes the connection 50 ms later (no
    /// `Connection: close`: a keep-alive timeout on the backend's side).
    AnswerThenClose,
    /// Closes without answering once it has read the whole request.
    CloseUnanswered,
}

struct Backend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Backend {
    async fn start(behaviour: Behaviour, delay: Duration) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (a, o, r) = (accepted.clone(), open.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let id = a.fetch_add(1, Ordering::SeqCst) + 1;
                o.fetch_add(1, Ordering::SeqCst);
                let (o, r) = (o.clone(), r.clone());
                tokio::spawn(async move {
                    serve(stream, id, behaviour, delay, &r).await;
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Backend {
            addr,
            accepted,
            open,
            requests,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads requests (head and Content-Length body) until the peer closes.
async fn serve(
    mut s: TcpStream,
    id: usize,
    behaviour: Behaviour,
    delay: Duration,
    requests: &AtomicUsize,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some((target, used)) = (loop {
            if let Some(parsed) = parse_request(&buf) {
                break Some(parsed);
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }) else {
            return;
        };
        buf.drain(..used);
        requests.fetch_add(1, Ordering::SeqCst);
        if behaviour == Behaviour::CloseUnanswered {
            return;
        }
        tokio::time::sleep(delay).await;
        let body = format!("conn={id} path={target}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
        if behaviour == Behaviour::AnswerThenClose {
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
    }
}

/// The target and the bytes used by one complete request in `buf`.
fn parse_request(buf: &[u8]) -> Option<(String, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let target = head.split(' ').nth(1)?.to_owned();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    (buf.len() >= end + length).then_some((target, end + length))
}

fn gate(backend: &Backend) -> Gate {
    gate_with(backend, "")
}

fn gate_with(backend: &Backend, limits: &str) -> Gate {
    GateBuilder::toml(&format!(
        "[limits]\n{limits}\n[upstream]\nurl = \"http://{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n",
        backend.addr
    ))
    .start()
}

fn token() -> String {
    hs256(SECRET, &json!({"sub": "alice", "exp": now() + 600}))
}

/// A keep-alive client connection to the gate that sends requests by hand.
struct ClientConn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl ClientConn {
    async fn open(gate: &Gate) -> ClientConn {
        ClientConn {
            s: TcpStream::connect(gate.proxy).await.unwrap(),
            buf: Vec::new(),
        }
    }

    fn request(method: &str, target: &str, body: &str) -> String {
        format!(
            "{method} {target} HTTP/1.1\r\nHost: gate.test\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n{body}",
            token(),
            body.len()
        )
    }

    async fn send(&mut self, raw: &str) {
        self.s.write_all(raw.as_bytes()).await.unwrap();
    }

    /// The next response's status and body (Content-Length delimited).
    async fn response(&mut self) -> (u16, String) {
        let mut chunk = [0u8; 4096];
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                    let length: usize = head
                        .lines()
                        .filter_map(|l| l.split_once(':'))
                        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.trim().parse().ok())
                        .unwrap_or(0);
                    if self.buf.len() >= end + 4 + length {
                        let body = String::from_utf8_lossy(&self.buf[end + 4..end + 4 + length])
                            .to_string();
                        self.buf.drain(..end + 4 + length);
                        let status = head[9..12].parse().unwrap();
                        return (status, body);
                    }
                }
                let n = self.s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the gate closed the connection; had {:?}", self.buf);
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("no response in time")
    }

    async fn get(&mut self, target: &str) -> (u16, String) {
        self.send(&Self::request("GET", target, "")).await;
        self.response().await
    }
}

fn conn_of(body: &str) -> &str {
    body.split(' ').next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connections_requests_share_one_upstream_connection() {
    let backend = Backend::start(Behaviour::Answer, Duration::ZERO).await;
    let gate = gate(&backend);
    let mut a = ClientConn::open(&gate).await;
    let mut bodies = Vec::new();
    for i in 0..20 {
        let (status, body) = a.get(&format!("/a/{i}")).await;
        assert_eq!(status, 200, "{body}");
        bodies.push(body);
    }
    assert_eq!(
        backend.accepted(),
        1,
        "one upstream connection for 20 requests"
    );
    assert!(bodies.iter().all(|b| conn_of(b) == "conn=1"), "{bodies:?}");
    // A second client connection open at the same time has its own.
    let mut b = ClientConn::open(&gate).await;
    let (_, body) = b.get("/b").await;
    assert_eq!(conn_of(&body), "conn=2");
    let (_, body) = a.get("/a/again").await;
    assert_eq!(conn_of(&body), "conn=1");
    assert_eq!(backend.accepted(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_client_connections_upstream_connection_serves_the_next_one() {
    let backend = Backend::start(Behaviour::Answer, Duration::ZERO).await;
    let gate = gate(&backend);
    for i in 0..5 {
        let mut c = ClientConn::open(&gate).await;
        let (status, body) = c.get(&format!("/{i}")).await;
        assert_eq!(status, 200);
        assert_eq!(conn_of(&body), "conn=1", "client connection {i}");
        drop(c);
        // The gate sees the close before the next client connects.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_closes_between_requests_is_reconnected_without_an_error() {
    let backend = Backend::start(Behaviour::AnswerThenClose, Duration::ZERO).await;
    let gate = gate(&backend);
    let mut c = ClientConn::open(&gate).await;
    for i in 0..5 {
        let (status, body) = c.get(&format!("/{i}")).await;
        assert_eq!(status, 200, "request {i}: {body}");
        // Each answer comes on a new upstream connection.
        assert_eq!(conn_of(&body), format!("conn={}", i + 1));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(backend.requests(), 5, "no request was sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_the_upstream_received_is_never_sent_again() {
    let backend = Backend::start(Behaviour::CloseUnanswered, Duration::ZERO).await;
    let gate = gate(&backend);
    let mut c = ClientConn::open(&gate).await;
    c.send(&ClientConn::request("POST", "/orders", "{\"qty\":1}"))
        .await;
    let (status, _) = c.response().await;
    assert_eq!(status, 502);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(backend.requests(), 1, "the POST reached the backend once");
    // Nor a GET that the upstream read: it may have acted on it.
    let mut c = ClientConn::open(&gate).await;
    c.send(&ClientConn::request("GET", "/report", "")).await;
    let (status, _) = c.response().await;
    assert_eq!(status, 502);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(backend.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_over_one_upstream_connection() {
    let backend = Backend::start(Behaviour::Answer, Duration::from_millis(20)).await;
    let gate = gate(&backend);
    let mut c = ClientConn::open(&gate).await;
    let all: String = (0..5)
        .map(|i| ClientConn::request("GET", &format!("/p/{i}"), ""))
        .collect();
    c.send(&all).await;
    for i in 0..5 {
        let (status, body) = c.response().await;
        assert_eq!(status, 200);
        assert_eq!(body, format!("conn=1 path=/p/{i}"));
    }
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_list_is_bounded_and_purged() {
    // 80 client connections with a request in flight at once: 80 upstream
    // connections. When the clients leave, at most 64 are kept, and those
    // are closed about 5 s later.
    let backend = Backend::start(Behaviour::Answer, Duration::from_millis(500)).await;
    let gate = gate(&backend);
    let mut clients = Vec::new();
    for _ in 0..80 {
        let mut c = ClientConn::open(&gate).await;
        c.send(&ClientConn::request("GET", "/slow", "")).await;
        clients.push(c);
    }
    for c in &mut clients {
        assert_eq!(c.response().await.0, 200);
    }
    assert_eq!(backend.accepted(), 80);
    drop(clients);
    eventually(
        Duration::from_secs(3),
        "at most 64 idle upstream connections kept",
        || async { (backend.open() <= 64).then_some(()) },
    )
    .await;
    assert!(backend.open() >= 1, "some are kept for the next clients");
    eventually(
        Duration::from_secs(10),
        "the idle upstream connections closed",
        || async { (backend.open() == 0).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_client_gives_its_upstream_connection_back() {
    // The connection timer ticks every second (half the idle timeout).
    let backend = Backend::start(Behaviour::Answer, Duration::ZERO).await;
    let gate = gate_with(
        &backend,
        "idle_timeout = \"2s\"\nheader_read_timeout = \"60s\"",
    );
    let mut a = ClientConn::open(&gate).await;
    assert_eq!(conn_of(&a.get("/a").await.1), "conn=1");
    // Quiet for two ticks (the first one after a request still counts it),
    // still open: another client connection gets the same upstream
    // connection, no new one.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let mut b = ClientConn::open(&gate).await;
    assert_eq!(conn_of(&b.get("/b").await.1), "conn=1");
    assert_eq!(backend.accepted(), 1);
    // The first client is still served (on a connection of its own now).
    let (status, body) = a.get("/a/again").await;
    assert_eq!(status, 200);
    assert_eq!(conn_of(&body), "conn=2");
}
