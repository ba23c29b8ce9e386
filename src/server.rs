//! The accept loop: HTTP/1.1 and cleartext HTTP/2 (prior knowledge) on one
//! port, optional TLS, header limits, a connection cap, and a graceful drain.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::{Semaphore, watch};
use tracing::{debug, info, warn};

use crate::config::LimitsConfig;
use crate::forward::ConnInfo;
use crate::listener::Listener;

/// Time a TLS client has to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One listener's settings.
pub struct ServeOptions {
    pub name: &'static str,
    /// Swapped on SIGHUP, so a renewed certificate is served to new connections.
    pub tls: Option<Arc<arc_swap::ArcSwap<rustls::ServerConfig>>>,
    pub limits: LimitsConfig,
    pub drain_timeout: Duration,
}

fn builder(limits: &LimitsConfig) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Requests whose head exceeds this are answered 431 by hyper.
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// Serves `listener` until `shutdown` turns true, then drains in-flight
/// requests for at most `drain_timeout`.
pub async fn serve<H, F, B>(
    listener: Listener,
    opts: ServeOptions,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(ConnInfo, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = Arc::new(builder(&opts.limits));
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(opts.limits.max_connections.max(1)));
    let name = opts.name;
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
        let conn_info = ConnInfo {
            peer,
            tls: opts.tls.is_some(),
        };
        let h = handler.clone();
        let svc = service_fn(move |req| h(conn_info, req));
        let builder = builder.clone();
        match &opts.tls {
            None => {
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .into_owned();
                let fut = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = fut.await {
                        debug!("connection from {peer}: {e}");
                    }
                    drop(permit);
                });
            }
            Some(tls_config) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls_config.load_full());
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let tls =
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                            .await
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
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                        .into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        debug!("connection from {peer}: {e}");
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    info!(
        listener = name,
        "stopped accepting; draining in-flight requests"
    );
    if tokio::time::timeout(opts.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            listener = name,
            "drain timeout reached; closing remaining connections"
        );
    }
}

/// Binds `addr` (`HOST:PORT` or `unix:/path`), naming the key on failure.
pub async fn bind(key: &str, addr: &str) -> Result<Listener, crate::StartError> {
    crate::listener::bind(key, addr).await
}
