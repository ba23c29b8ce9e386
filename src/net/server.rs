//! The accept loop: HTTP/1.1 and cleartext HTTP/2 (prior knowledge) on one
//! port, optional TLS, header limits, a connection cap, and a graceful drain.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::{Builder, UpgradeableConnection};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, info, warn};

use crate::config::LimitsConfig;
use crate::net::listener::Listener;

/// How a request reached the gate: the peer, and whether over TLS.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub peer: std::net::SocketAddr,
    pub tls: bool,
}

/// One listener's settings.
pub(crate) struct ServeOptions {
    pub name: &'static str,
    /// Swapped on SIGHUP, so a renewed certificate is served to new connections.
    pub tls: Option<Arc<arc_swap::ArcSwap<rustls::ServerConfig>>>,
    pub limits: LimitsConfig,
    pub drain_timeout: Duration,
    /// `jwtgate_connections_open` of this listener.
    pub connections_open: prometheus_client::metrics::gauge::Gauge,
}

fn builder(limits: &LimitsConfig) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // hyper runs this timer whenever it waits for a request head, so an
        // idle keep-alive connection is also closed after it.
        .header_read_timeout(limits.header_read_timeout)
        // Requests whose head exceeds this are answered 431 by hyper.
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        // Bounded streams, and the h2 crate's defences against rapid reset
        // (CVE-2023-44487) and locally reset streams, named so that they
        // stay on whatever the defaults become.
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// Concurrent HTTP/2 streams per connection.
const MAX_CONCURRENT_STREAMS: u32 = 200;
/// Streams a client may reset before they are accepted, per connection.
const MAX_PENDING_RESETS: usize = 20;
/// Streams the gate may reset for a client's protocol errors before it
/// closes the connection.
const MAX_LOCAL_ERROR_RESETS: usize = 256;

/// Counts a connection in `jwtgate_connections_open` from its accept until
/// its task ends, however it ends.
struct ConnectionGauge(prometheus_client::metrics::gauge::Gauge);

impl ConnectionGauge {
    fn new(g: &prometheus_client::metrics::gauge::Gauge) -> Self {
        g.inc();
        ConnectionGauge(g.clone())
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Per-connection request accounting, read by the connection's watchdog.
#[derive(Default)]
struct ConnCounters {
    /// Requests whose response (body included) is not finished.
    open: AtomicUsize,
    /// Requests started on this connection, ever.
    started: AtomicUsize,
}

/// Held by a request from its start until its response body is finished
/// or dropped.
struct OpenGuard(Arc<ConnCounters>);

impl OpenGuard {
    fn new(c: &Arc<ConnCounters>) -> Self {
        c.open.fetch_add(1, Ordering::Relaxed);
        c.started.fetch_add(1, Ordering::Relaxed);
        OpenGuard(c.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as open until it ends.
pub(crate) struct Tracked<B> {
    inner: B,
    _open: OpenGuard,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `listener` until `shutdown` turns true, then drains in-flight
/// requests for at most `drain_timeout`.
///
/// Every connection must start its first request within
/// `limits.header_read_timeout` of being accepted, whatever it is doing
/// meanwhile (a TLS handshake, the HTTP/1-or-2 detection, a partial HTTP/2
/// preface): so silent sockets can hold the `max_connections` slots for no
/// longer than that. Afterwards a connection with no request in progress is
/// closed after `limits.idle_timeout` (HTTP/2 with GOAWAY).
pub(crate) async fn serve<H, F, B>(
    listener: Listener,
    opts: ServeOptions,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(ConnInfo, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = Arc::new(builder(&opts.limits));
    let max = opts.limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    let name = opts.name;
    let timers = Timers {
        first_request: opts.limits.header_read_timeout,
        idle: opts.limits.idle_timeout,
    };
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    warn!(listener = name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::time::Instant::now();
        let conn_info = ConnInfo {
            peer,
            tls: opts.tls.is_some(),
        };
        let counters = Arc::new(ConnCounters::default());
        let h = handler.clone();
        let c = counters.clone();
        let svc = service_fn(move |req| {
            let open = OpenGuard::new(&c);
            let fut = h(conn_info, req);
            async move {
                let resp = fut.await?;
                Ok::<_, Infallible>(resp.map(|inner| Tracked { inner, _open: open }))
            }
        });
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let open = ConnectionGauge::new(&opts.connections_open);
        let tls = opts
            .tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.load_full()));
        tokio::spawn(async move {
            let deadline = accepted + timers.first_request;
            match tls {
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    drive(conn, &counters, deadline, timers.idle, shutdown, peer).await;
                }
                Some(acceptor) => {
                    let tls = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            debug!("TLS handshake with {peer} failed: {e}");
                            return;
                        }
                        Err(_) => {
                            debug!("TLS handshake with {peer} timed out");
                            return;
                        }
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                    drive(conn, &counters, deadline, timers.idle, shutdown, peer).await;
                }
            }
            drop(permit);
            drop(open);
        });
    }
    drop(listener);
    info!(
        listener = name,
        "stopped accepting; draining in-flight requests"
    );
    // Every connection task holds a permit until it ends: all of them back
    // means every connection has closed.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(opts.drain_timeout, permits.acquire_many(all))
        .await
        .is_err()
    {
        warn!(
            listener = name,
            "drain timeout reached; closing remaining connections"
        );
    }
}

#[derive(Clone, Copy)]
struct Timers {
    first_request: Duration,
    idle: Duration,
}

/// Drives one connection: closes it when no request has started by
/// `first_request_by`, shuts it down gracefully when it has been idle for
/// `idle`, and on `shutdown` (finishing the requests in progress).
async fn drive<I, S, B>(
    conn: UpgradeableConnection<'_, I, S, TokioExecutor>,
    counters: &ConnCounters,
    first_request_by: tokio::time::Instant,
    idle: Duration,
    mut shutdown: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, B>,
{
    tokio::pin!(conn);
    let mut first_pending = true;
    let mut closing = *shutdown.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    let tick = (idle / 2).max(Duration::from_millis(50));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    let mut last_started = 0;
    let mut idle_since = tokio::time::Instant::now();
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!("connection from {peer}: {e}");
                }
                return;
            }
            _ = tokio::time::sleep_until(first_request_by), if first_pending => {
                first_pending = false;
                if counters.started.load(Ordering::Relaxed) == 0 {
                    debug!("connection from {peer}: no request within the header read timeout");
                    return;
                }
            }
            _ = shutdown.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            now = ticks.tick(), if !closing => {
                let started = counters.started.load(Ordering::Relaxed);
                if counters.open.load(Ordering::Relaxed) > 0 || started != last_started {
                    last_started = started;
                    idle_since = now;
                } else if now.duration_since(idle_since) >= idle {
                    debug!("connection from {peer}: idle, closing");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
