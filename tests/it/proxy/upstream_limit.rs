//! `upstream.max_connections` and `upstream.queue_timeout`: the upstream
//! never has more requests (HTTP/1.1: connections) in flight from the gate
//! than the cap, requests beyond it wait their turn, and one that waits
//! longer than the queue timeout is answered 503 with `Retry-After`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

const SECRET: &str = "upstream-limit-tests-secret-0123456789abcdef";

/// A backend that counts its open TCP connections and remembers the most it
/// ever had at once. Every request waits `delay` before the answer.
struct CountingBackend {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
}

impl CountingBackend {
    async fn start(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let (o, m, s) = (open.clone(), most.clone(), served.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                let (o, s) = (o.clone(), s.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: Request<Incoming>| {
                        let s = s.clone();
                        async move {
                            tokio::time::sleep(delay).await;
                            s.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                b"done",
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        CountingBackend {
            addr,
            open,
            most,
            served,
        }
    }
}

fn gate(backend: &CountingBackend, limits: &str) -> Gate {
    GateBuilder::toml(&format!(
        "[upstream]\nurl = \"http://{}\"\n{limits}\n[auth.secret]\nvalue = \"{SECRET}\"\n",
        backend.addr
    ))
    .start()
}

fn token() -> String {
    hs256(SECRET, &json!({"sub": "alice", "exp": now() + 600}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_never_sees_more_connections_than_the_cap_and_queued_requests_all_succeed() {
    let backend = CountingBackend::start(Duration::from_millis(400)).await;
    let gate = gate(&backend, "max_connections = 2\nqueue_timeout = \"30s\"");
    let started = Instant::now();
    let mut calls = Vec::new();
    for _ in 0..8 {
        // One client each: eight connections to the gate at once.
        let url = gate.url("/work");
        let token = token();
        calls.push(tokio::spawn(async move {
            client()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    for c in calls {
        assert_eq!(c.await.unwrap(), 200);
    }
    assert_eq!(backend.served.load(Ordering::SeqCst), 8);
    let most = backend.most.load(Ordering::SeqCst);
    assert!(most <= 2, "the backend had {most} connections open at once");
    // Eight requests of 400 ms, two at a time: at least four rounds.
    assert!(
        started.elapsed() >= Duration::from_millis(1600),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_waits_longer_than_queue_timeout_gets_503_with_retry_after() {
    let backend = CountingBackend::start(Duration::from_millis(2500)).await;
    let gate = gate(&backend, "max_connections = 1\nqueue_timeout = \"300ms\"");
    let slow = {
        let url = gate.url("/slow");
        let token = token();
        tokio::spawn(async move { client().get(url).bearer_auth(token).send().await })
    };
    // The first request has the one place once the backend has it.
    eventually(
        Duration::from_secs(10),
        "the first request upstream",
        || async { (backend.open.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;
    let started = Instant::now();
    let resp = client()
        .get(gate.url("/queued"))
        .bearer_auth(token())
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(resp.status(), 503);
    assert_eq!(header(&resp, "retry-after"), "1");
    assert_eq!(
        gate_error(&resp).as_deref(),
        Some("temporarily_unavailable")
    );
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_millis(2400), "{waited:?}");
    // The slow request still completes, and its place is given back when
    // its response has been sent: the next request goes through.
    let first = slow.await.unwrap().unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.text().await.unwrap(), "done");
    let after = client()
        .get(gate.url("/after"))
        .bearer_auth(token())
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200);
    let m = client()
        .get(gate.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric_sum_with(&m, "jwtgate_requests_total", &["reason=\"upstream_busy\""]),
        1.0,
        "{m}"
    );
    assert_eq!(backend.most.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_values_are_refused_by_name() {
    let out = run_jwtgate(&["check-config"])
        .toml(&format!(
            "[upstream]\nurl = \"http://127.0.0.1:1\"\nmax_connections = 2000000\nqueue_timeout = \"2h\"\n\
             [auth.secret]\nvalue = \"{SECRET}\"\n"
        ))
        .run();
    let text = out.all();
    assert_eq!(out.code, Some(1), "{text}");
    assert!(text.contains("upstream.max_connections"), "{text}");
    assert!(text.contains("upstream.queue_timeout"), "{text}");
}
