//! The echo upstream: a hyper server on 127.0.0.1:0 that tells the tests what
//! it received.
//!
//! * any path: 200 JSON `{"method","path","query","headers":[[name,value],..],"body_len","body_sha256"}`
//!   (the body is read as a stream and hashed chunk by chunk);
//! * `/slow?ms=N`: the same after waiting N ms;
//! * `/big?bytes=N`: streams N bytes of [`big_byte`] back;
//! * `/code?status=N`: the echo JSON with status N (an upstream-made error);
//! * `/ws`: a WebSocket echo (text and binary).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::digest;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

type Body = BoxBody<Bytes, Infallible>;

/// What the upstream saw of one request (recorded when its head arrived).
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// All values of a header (name compared case-insensitively).
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The single value of a header; panics when it appears more than once.
    pub fn header(&self, name: &str) -> Option<String> {
        let all = self.header_all(name);
        assert!(
            all.len() <= 1,
            "header {name} seen {} times: {all:?}",
            all.len()
        );
        all.into_iter().next()
    }
}

#[derive(Default)]
struct State {
    count: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
}

/// A running echo upstream; the server stops when this is dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    /// Number of requests that reached the upstream (incremented on arrival).
    pub hits: Arc<AtomicUsize>,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The byte at offset `i` of a `/big` response.
pub fn big_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// SHA-256 (hex) of the first `n` bytes of a `/big` response.
pub fn big_sha256(n: u64) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut i = 0u64;
    while i < n {
        buf.clear();
        let end = (i + 64 * 1024).min(n);
        buf.extend((i..end).map(big_byte));
        ctx.update(&buf);
        i = end;
    }
    hex(ctx.finish().as_ref())
}

/// SHA-256 of a byte slice, hex-encoded.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Upstream {
    /// Starts the echo upstream on 127.0.0.1:0 (HTTP/1.1 and h2c).
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let hits = Arc::new(AtomicUsize::new(0));
        let (st, h) = (state.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (st, h) = (st.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, st.clone(), h.clone()));
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            hits,
            state,
            task,
        }
    }

    /// The same echo upstream on a Unix socket at `path` (HTTP/1.1 and h2c);
    /// `addr` is 0.0.0.0:0 and `url()` means nothing for it.
    pub async fn start_unix(path: &std::path::Path) -> Upstream {
        let listener = tokio::net::UnixListener::bind(path).expect("bind unix upstream");
        let state = Arc::new(State::default());
        let hits = Arc::new(AtomicUsize::new(0));
        let (st, h) = (state.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (st, h) = (st.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, st.clone(), h.clone()));
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            hits,
            state,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests that reached the upstream so far.
    pub fn count(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Every request head seen so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The most recent request head; panics when none arrived.
    pub fn last(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| v.to_string())
    })
}

fn full(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(body.into()).boxed())
        .unwrap()
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    hits: Arc<AtomicUsize>,
) -> Result<Response<Body>, Infallible> {
    let seen = Seen {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    state.seen.lock().unwrap().push(seen.clone());
    hits.fetch_add(1, Ordering::SeqCst);

    let query = seen.query.clone();
    match seen.path.as_str() {
        "/ws" => return Ok(websocket(req)),
        "/big" => {
            let n: u64 = query_param(query.as_deref(), "bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            return Ok(big(n));
        }
        "/slow" => {
            let ms: u64 = query_param(query.as_deref(), "ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        _ => {}
    }
    let status = if seen.path == "/code" {
        query_param(query.as_deref(), "status")
            .and_then(|v| v.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::OK)
    } else {
        StatusCode::OK
    };

    // Read the body as a stream, hashing chunk by chunk.
    let mut body = req.into_body();
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    len += d.len() as u64;
                    ctx.update(d);
                }
            }
            Err(e) => {
                return Ok(full(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    format!("upstream body error: {e}"),
                ));
            }
        }
    }
    let echo = json!({
        "method": seen.method,
        "path": seen.path,
        "query": seen.query,
        "headers": seen.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
        "body_len": len,
        "body_sha256": hex(ctx.finish().as_ref()),
    });
    Ok(full(
        status,
        "application/json",
        serde_json::to_vec(&echo).unwrap(),
    ))
}

fn big(n: u64) -> Response<Body> {
    const CHUNK: u64 = 64 * 1024;
    let stream = futures_util::stream::unfold(0u64, move |off| async move {
        if off >= n {
            return None;
        }
        let end = (off + CHUNK).min(n);
        let data: Vec<u8> = (off..end).map(big_byte).collect();
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(data))), end))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/octet-stream")
        .header("content-length", n.to_string())
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap()
}

fn websocket(req: Request<Incoming>) -> Response<Body> {
    let upgrade_ok = req
        .headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return full(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "no sec-websocket-key",
        );
    };
    if !upgrade_ok {
        return full(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "no upgrade: websocket",
        );
    }
    let accept = derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() || msg.is_binary() {
                if ws.send(msg).await.is_err() {
                    break;
                }
            } else if msg.is_close() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", accept)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap()
}
