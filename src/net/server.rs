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

/// Work a connection's requests leave behind that the connection's own task
/// must keep driving between and after them: the proxy's upstream
/// connection, which belongs to one client connection (`proxy::upstream`)
/// and whose connection future has to be polled while a response body
/// streams, after the request handler has returned.
pub(crate) trait Companion: Send + Sync + 'static {
    /// Makes progress; registers `cx` to be woken when there is more to do.
    fn poll_drive(&self, cx: &mut Context<'_>);

    /// The connection has had no request in progress for a whole tick of
    /// its timer: what it holds for its next request may be given back.
    fn idle(&self) {}
}

/// For listeners whose requests leave nothing behind.
impl Companion for () {
    fn poll_drive(&self, _: &mut Context<'_>) {}
}

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
        // Off: hyper's timer boxes a new sleep for every request head. The
        // connection's own timer in `drive` does the same job (a connection
        // waiting for a request head is closed after this) with one sleep
        // for the connection's whole life.
        .header_read_timeout(None)
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
    /// The connection speaks HTTP/2 (its requests say so).
    h2: std::sync::atomic::AtomicBool,
}

/// Held by a request from its start until its response body is finished
/// or dropped.
struct OpenGuard(Arc<ConnCounters>);

impl OpenGuard {
    fn new(c: &Arc<ConnCounters>, version: http::Version) -> Self {
        if version == http::Version::HTTP_2 {
            c.h2.store(true, Ordering::Relaxed);
        }
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
/// closed after `limits.idle_timeout` (HTTP/2 with GOAWAY), and an HTTP/1
/// connection waiting for its next request head after
/// `limits.header_read_timeout`.
pub(crate) async fn serve<H, F, B>(
    listener: Listener,
    opts: ServeOptions,
    handler: H,
    shutdown: watch::Receiver<bool>,
) where
    H: Fn(ConnInfo, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_with::<(), _, _, _>(
        listener,
        opts,
        move |conn, _: &Arc<()>, req| handler(conn, req),
        shutdown,
    )
    .await
}

/// `serve`, with a `C` made for each connection, handed to each of its
/// requests and driven by the connection's task for the connection's life.
pub(crate) async fn serve_with<C, H, F, B>(
    listener: Listener,
    opts: ServeOptions,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) where
    C: Companion + Default,
    H: Fn(ConnInfo, &Arc<C>, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = builder(&opts.limits);
    // Over TLS, ALPN has already said which protocol the client speaks: the
    // builders that skip the detection of the HTTP/2 preface (which reads
    // into a buffer of its own and then wraps every read of the connection).
    let by_alpn = Arc::new((builder.clone().http1_only(), builder.clone().http2_only()));
    let builder = Arc::new(builder);
    let max = opts.limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    let name = opts.name;
    let timers = Timers {
        header: opts.limits.header_read_timeout,
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
        let companion = Arc::new(C::default());
        let h = handler.clone();
        let c = counters.clone();
        let comp = companion.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let open = OpenGuard::new(&c, req.version());
            let fut = h(conn_info, &comp, req);
            async move {
                let resp = fut.await?;
                Ok::<_, Infallible>(resp.map(|inner| Tracked { inner, _open: open }))
            }
        });
        let builder = builder.clone();
        let by_alpn = by_alpn.clone();
        let shutdown = shutdown.clone();
        let open = ConnectionGauge::new(&opts.connections_open);
        let tls = opts
            .tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.load_full()));
        tokio::spawn(async move {
            let deadline = accepted + timers.header;
            let conn = Conn {
                counters: &counters,
                companion: &*companion,
                first_request_by: deadline,
                timers,
                peer,
            };
            match tls {
                None => {
                    let served = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    conn.drive(served, shutdown).await;
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
                    let builder = match tls.get_ref().1.alpn_protocol() {
                        Some(b"h2") => &by_alpn.1,
                        Some(_) => &by_alpn.0,
                        None => &*builder,
                    };
                    let served = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                    conn.drive(served, shutdown).await;
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
    /// `limits.header_read_timeout`.
    header: Duration,
    /// `limits.idle_timeout`.
    idle: Duration,
}

/// One accepted connection, as its task drives it.
struct Conn<'a, C> {
    counters: &'a ConnCounters,
    companion: &'a C,
    first_request_by: tokio::time::Instant,
    timers: Timers,
    peer: SocketAddr,
}

/// Drives one connection with its companion: closes it when no request has
/// started by `first_request_by`, when an HTTP/1 connection has waited
/// `header` for its next request head, shuts it down gracefully when it
/// has been idle for `idle`, and on `shutdown` (finishing the requests in
/// progress). One timer for the connection's life, ticking at half the
/// shorter period, rather than one per request: checking counters costs
/// nothing per request, and closing takes between 1 and 1.5 periods.
impl<C: Companion> Conn<'_, C> {
    async fn drive<I, S, B>(
        self,
        conn: UpgradeableConnection<'_, I, S, TokioExecutor>,
        mut shutdown: watch::Receiver<bool>,
    ) where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
        S::Future: 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: Body + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        TokioExecutor: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, B>,
    {
        let Conn {
            counters,
            companion,
            first_request_by,
            timers,
            peer,
        } = self;
        tokio::pin!(conn);
        let mut first_pending = true;
        let mut closing = *shutdown.borrow();
        if closing {
            conn.as_mut().graceful_shutdown();
        }
        let tick = (timers.idle.min(timers.header) / 2).max(Duration::from_millis(50));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_started = 0;
        let mut idle_since = tokio::time::Instant::now();
        // The companion never finishes: it is polled whenever the task wakes.
        let mut driving = std::pin::pin!(std::future::poll_fn(|cx| {
            companion.poll_drive(cx);
            Poll::<()>::Pending
        }));
        loop {
            tokio::select! {
                biased;
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!("connection from {peer}: {e}");
                    }
                    return;
                }
                _ = driving.as_mut() => {}
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
                now = ticks.tick() => {
                    let started = counters.started.load(Ordering::Relaxed);
                    if counters.open.load(Ordering::Relaxed) > 0 || started != last_started {
                        last_started = started;
                        idle_since = now;
                        continue;
                    }
                    companion.idle();
                    let quiet = now.duration_since(idle_since);
                    // Before the first request `first_request_by` applies.
                    if quiet >= timers.header
                        && started > 0
                        && !counters.h2.load(Ordering::Relaxed)
                    {
                        // As hyper's header timer did: an HTTP/1 connection
                        // that has not sent a whole request head in time
                        // (idle or slow) is closed, not drained.
                        debug!("connection from {peer}: no request head within the header read timeout");
                        return;
                    }
                    if quiet >= timers.idle && !closing {
                        debug!("connection from {peer}: idle, closing");
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}
