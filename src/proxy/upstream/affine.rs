//! Connection-affine HTTP/1.1 to the upstream, as HAProxy (`http-reuse`)
//! and sozu do it: the task that serves a client connection owns an
//! upstream connection, made on its first forwarded request, reused for
//! the next ones, and polled by that same task (`net::server::Companion`)
//! for as long as it is in use, response bodies included. No channel, no
//! second task, no pool checkout per request.
//!
//! When the client connection closes, or has been idle for a tick of its
//! timer (`net::server`: half the shorter of the header and idle timeouts,
//! 5 s by default), its upstream connection goes to the upstream's idle
//! list (bounded, closed after `IDLE_TIMEOUT`), which the next client
//! connection takes from before it connects: an idle keep-alive client does
//! not hold an upstream connection and its buffers for long. Under
//! `upstream.max_connections` a connection is a client connection's only
//! for one request: it goes back to the idle list when its response ends,
//! so that the places are shared the way they were with the pool.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::{Request, Response, Uri, header};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tower_service::Service;

use super::limit::Limit;
use crate::net::unix::UnixConnector;
use crate::respond::GateError;

/// How long an idle upstream connection is kept (HAProxy's
/// `pool-purge-delay`): after a burst the memory is given back in seconds.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle connections kept per upstream, at most.
const IDLE_MAX: usize = 64;

/// A connection's future, boxed so that TCP, TLS and Unix sockets share
/// one type.
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// One HTTP/1.1 connection to the upstream.
struct UpConn {
    sender: http1::SendRequest<Incoming>,
    driver: Driver,
    /// Its place under `upstream.max_connections`.
    _place: Option<OwnedSemaphorePermit>,
    /// The idle list of the upstream (the configuration generation) it
    /// was made for.
    home: Weak<IdleList>,
}

impl UpConn {
    /// Polls the connection; false once it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        self.driver.as_mut().poll(cx).is_pending()
    }

    /// Whether it can carry a request now, polled once by whoever holds it
    /// (an idle connection is polled by nobody, so a close by the upstream
    /// is seen here).
    fn usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.drive(&mut cx) && self.sender.is_ready()
    }
}

/// The upstream's idle connections.
pub(super) struct IdleList {
    conns: Mutex<VecDeque<(UpConn, Instant)>>,
    /// A connection came back (for requests waiting for a place).
    returned: Notify,
    /// A purge task is running.
    purging: AtomicBool,
}

impl IdleList {
    fn new() -> Arc<Self> {
        Arc::new(IdleList {
            conns: Mutex::new(VecDeque::new()),
            returned: Notify::new(),
            purging: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<(UpConn, Instant)>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently parked connection that is still usable.
    fn take(&self) -> Option<UpConn> {
        let now = Instant::now();
        let mut conns = self.lock();
        while let Some((mut c, since)) = conns.pop_back() {
            if now.duration_since(since) < IDLE_TIMEOUT && c.usable() {
                return Some(c);
            }
        }
        None
    }

    /// Keeps `c` for the next client connection, if it can carry a request.
    fn park(self: &Arc<Self>, mut c: UpConn) {
        if !c.usable() {
            return;
        }
        let evicted = {
            let mut conns = self.lock();
            let evicted = (conns.len() >= IDLE_MAX).then(|| conns.pop_front());
            conns.push_back((c, Instant::now()));
            evicted
        };
        drop(evicted);
        self.returned.notify_one();
        if !self.purging.swap(true, Ordering::AcqRel) {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(purge(Arc::downgrade(self)));
                }
                Err(_) => self.purging.store(false, Ordering::Release),
            }
        }
    }
}

/// Closes idle connections older than `IDLE_TIMEOUT`; ends when the list
/// is empty or its upstream is gone (a reload), and is started again by
/// the next `park`.
async fn purge(list: Weak<IdleList>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(list) = list.upgrade() else { return };
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut conns = list.lock();
        while conns
            .front()
            .is_some_and(|(_, since)| now.duration_since(*since) >= IDLE_TIMEOUT)
        {
            expired.extend(conns.pop_front().map(|(c, _)| c));
        }
        if conns.is_empty() {
            list.purging.store(false, Ordering::Release);
            return;
        }
        drop(conns);
        drop(expired);
    }
}

/// A client connection's upstream connection: the companion its task
/// drives (`net::server::serve_with`).
#[derive(Default)]
pub(crate) struct Affinity {
    // Locked by the client connection's own task only (and by its last
    // response body when that is dropped): never contended.
    slot: Mutex<Option<UpConn>>,
}

impl Affinity {
    fn lock(&self) -> MutexGuard<'_, Option<UpConn>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives the connection back: to the idle list, or closed when the
    /// last response was not read to its end (`ended` false). Under a cap
    /// at the end of each response; otherwise when the client connection
    /// has been quiet for a tick of its timer.
    pub(crate) fn release(&self, ended: bool) {
        let Some(c) = self.lock().take() else { return };
        if ended && let Some(home) = c.home.upgrade() {
            home.park(c);
        }
    }

    /// Polls the connection (`ConnState` is the connection task's companion).
    pub(crate) fn poll_drive(&self, cx: &mut Context<'_>) {
        let mut slot = self.lock();
        if let Some(c) = slot.as_mut()
            && !c.drive(cx)
        {
            *slot = None;
        }
    }
}

impl Drop for Affinity {
    fn drop(&mut self) {
        // The client connection has closed: its upstream connection serves
        // the next one (if its last response was read to the end, which
        // `park` checks).
        self.release(true);
    }
}

/// How a connection to the upstream is opened.
pub(super) enum Connector {
    Net(HttpsConnector<HttpConnector>),
    Unix(UnixConnector),
}

/// Why a request could not be sent.
pub(super) enum Failure {
    /// No connection could be opened.
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// The connection failed with the request (or part of it) sent.
    Send(hyper::Error),
    /// No place under `upstream.max_connections` in time.
    Saturated(GateError),
}

/// The connection-affine HTTP/1.1 upstream of one configuration generation.
pub(super) struct Affine {
    connector: Connector,
    /// `scheme://authority` of the upstream, what the connector dials.
    target: Uri,
    /// The `Host` for a request that has none (HTTP/1.0).
    host: http::HeaderValue,
    builder: http1::Builder,
    idle: Arc<IdleList>,
    limit: Option<Arc<Limit>>,
}

impl Affine {
    pub(super) fn new(connector: Connector, target: Uri, host: http::HeaderValue) -> Self {
        Affine {
            connector,
            target,
            host,
            builder: http1::Builder::new(),
            idle: IdleList::new(),
            limit: None,
        }
    }

    /// `upstream.max_connections`, once the upstream has decided it.
    pub(super) fn set_limit(&mut self, limit: Option<Arc<Limit>>) {
        self.limit = limit;
    }

    /// Whether each response hands its connection back (under a cap).
    pub(super) fn releases(&self) -> bool {
        self.limit.is_some()
    }

    /// Sends `req` over the client connection's upstream connection (made
    /// or taken from the idle list when it has none). A request that was
    /// not sent at all because the connection turned out closed is sent
    /// again on a fresh one when its method is idempotent; anything that
    /// was sent is never sent twice.
    pub(super) async fn send(
        &self,
        affinity: &Affinity,
        mut req: Request<Incoming>,
    ) -> Result<Response<Incoming>, Failure> {
        // Origin form: the request line names the path, `Host` the host.
        if let Some(pq) = req.uri().path_and_query().cloned() {
            *req.uri_mut() = Uri::from(pq);
        }
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut().insert(header::HOST, self.host.clone());
        }
        let idempotent = req.method().is_idempotent();
        let mut retried = false;
        loop {
            let reused = self.ready(affinity).await?;
            let sending = {
                let mut slot = affinity.lock();
                let Some(c) = slot.as_mut() else {
                    // `ready` left a connection in the slot; nothing else
                    // touches it meanwhile.
                    continue;
                };
                c.sender.try_send_request(req)
            };
            let mut sending = std::pin::pin!(sending);
            // Poll the connection here too: the request is written at once
            // rather than when the task next wakes.
            let answer = std::future::poll_fn(|cx| {
                affinity.poll_drive(cx);
                sending.as_mut().poll(cx)
            })
            .await;
            match answer {
                Ok(resp) => return Ok(resp),
                Err(mut e) => {
                    affinity.lock().take();
                    match e.take_message() {
                        Some(back) if reused && idempotent && !retried => {
                            retried = true;
                            req = back;
                        }
                        _ => return Err(Failure::Send(e.into_error())),
                    }
                }
            }
        }
    }

    /// Leaves a connection ready for a request in the slot; says whether
    /// it had carried requests before.
    async fn ready(&self, affinity: &Affinity) -> Result<bool, Failure> {
        {
            let mut slot = affinity.lock();
            // A connection of a previous configuration is not reused.
            if slot
                .as_ref()
                .is_some_and(|c| !std::ptr::eq(c.home.as_ptr(), Arc::as_ptr(&self.idle)))
            {
                slot.take();
            }
        }
        let mut fresh = false;
        loop {
            // Ready, or gone (none in the slot, or closed: the slot is
            // emptied).
            let ready = std::future::poll_fn(|cx| {
                let mut slot = affinity.lock();
                let Some(c) = slot.as_mut() else {
                    return Poll::Ready(false);
                };
                if !c.drive(cx) {
                    *slot = None;
                    return Poll::Ready(false);
                }
                match c.sender.poll_ready(cx) {
                    Poll::Ready(Ok(())) => Poll::Ready(true),
                    Poll::Ready(Err(_)) => {
                        *slot = None;
                        Poll::Ready(false)
                    }
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            if ready {
                return Ok(!fresh);
            }
            if fresh {
                return Err(Failure::Connect("upstream closed a new connection".into()));
            }
            let (c, made) = self.obtain().await?;
            fresh = made;
            *affinity.lock() = Some(c);
        }
    }

    /// An idle connection, or a new one (after a place under the cap).
    /// Says whether it is new.
    async fn obtain(&self) -> Result<(UpConn, bool), Failure> {
        if let Some(c) = self.idle.take() {
            return Ok((c, false));
        }
        let place = match &self.limit {
            None => None,
            Some(limit) => match limit.try_acquire() {
                Some(p) => Some(p),
                None => match tokio::time::timeout(limit.queue_timeout, self.wait(limit)).await {
                    Ok(Ok(p)) => Some(p),
                    Ok(Err(c)) => return Ok((c, false)),
                    Err(_) => return Err(Failure::Saturated(limit.saturated())),
                },
            },
        };
        let io = self.connect().await.map_err(Failure::Connect)?;
        let (sender, conn) = self
            .builder
            .handshake(io)
            .await
            .map_err(|e| Failure::Connect(e.into()))?;
        Ok((
            UpConn {
                sender,
                driver: Box::pin(conn),
                _place: place,
                home: Arc::downgrade(&self.idle),
            },
            true,
        ))
    }

    /// Waits for a place or for a connection handed back, whichever first.
    async fn wait(&self, limit: &Limit) -> Result<OwnedSemaphorePermit, UpConn> {
        loop {
            tokio::select! {
                p = limit.wait() => return Ok(p),
                _ = self.idle.returned.notified() => {
                    if let Some(c) = self.idle.take() {
                        return Err(c);
                    }
                }
            }
        }
    }

    async fn connect(&self) -> Result<Box<dyn Io>, Box<dyn std::error::Error + Send + Sync>> {
        match &self.connector {
            Connector::Net(c) => {
                let mut c = c.clone();
                std::future::poll_fn(|cx| c.poll_ready(cx)).await?;
                Ok(Box::new(c.call(self.target.clone()).await?))
            }
            Connector::Unix(c) => {
                let mut c = c.clone();
                std::future::poll_fn(|cx| c.poll_ready(cx)).await?;
                Ok(Box::new(c.call(self.target.clone()).await?))
            }
        }
    }
}

/// What a connection runs over: TCP, TLS over TCP, or a Unix socket.
trait Io: hyper::rt::Read + hyper::rt::Write + Unpin + Send {}
impl<T: hyper::rt::Read + hyper::rt::Write + Unpin + Send> Io for T {}
