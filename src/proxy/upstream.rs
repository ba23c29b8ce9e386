//! The upstream: one pooled client per protocol, the timeouts, and the cap
//! on requests in flight (`upstream.max_connections`) with its bounded
//! queue (`upstream.queue_timeout`), so that a backend that falls over under
//! many concurrent connections never sees more than the operator allows.

use std::sync::Arc;
use std::time::Duration;

use http::header;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tracing::debug;

use crate::config::{ConfigError, UpstreamConfig, UpstreamProtocol, UpstreamUrl};
use crate::proxy::conn_state::ConnState;
use crate::respond::{GateError, UpstreamError};

mod affine;
mod body;
mod limit;

pub(crate) use affine::Affinity;
use affine::{Affine, Connector, Failure};
pub(crate) use body::UpstreamBody;
pub(crate) use limit::Limit;

/// A pooled client: over TCP (http or https), or over a Unix socket.
enum UpstreamClient {
    Net(Client<HttpsConnector<HttpConnector>, Incoming>),
    Unix(Client<crate::net::unix::UnixConnector, Incoming>),
}

impl UpstreamClient {
    fn request(&self, req: Request<Incoming>) -> hyper_util::client::legacy::ResponseFuture {
        match self {
            UpstreamClient::Net(c) => c.request(req),
            UpstreamClient::Unix(c) => c.request(req),
        }
    }
}

/// Streams the gate opens on one HTTP/2 upstream connection before the
/// upstream's SETTINGS say how many it accepts; afterwards the upstream's
/// `SETTINGS_MAX_CONCURRENT_STREAMS` bounds them, and further requests wait
/// (in the h2 crate) for a stream to end rather than fail.
const H2_INITIAL_MAX_STREAMS: usize = 100;

/// How long an unused pooled upstream connection is kept for the next
/// request: as long as an idle connection-affine one.
const POOL_IDLE_TIMEOUT: Duration = affine::IDLE_TIMEOUT;

/// How the client for one protocol is built. `h2`: HTTP/2 is possible on
/// it; `h2_only`: it is the only protocol (prior knowledge, or TLS with
/// ALPN `h2` alone).
fn client_builder(
    cfg: &UpstreamConfig,
    h2: bool,
    h2_only: bool,
) -> hyper_util::client::legacy::Builder {
    let mut b = Client::builder(TokioExecutor::new());
    // Idle connections kept: never more than the cap allows in use.
    let idle = match cfg.max_connections {
        0 => 1024,
        n => n.min(1024),
    };
    // Idle upstream connections are closed after 5 s (HAProxy's
    // pool-purge-delay): a steady load keeps its connections busy, and after
    // a burst the memory they hold (buffers, a task each) is given back
    // within seconds instead of a minute.
    b.pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(idle);
    if h2 {
        // hyper-util shares one HTTP/2 connection per upstream among all
        // requests (multiplexed). Pings keep a silent long-lived stream's
        // connection checked; the adaptive window keeps large streamed
        // messages from stalling on the 64 KiB default.
        b.timer(TokioTimer::new())
            .http2_only(h2_only)
            .http2_initial_max_send_streams(H2_INITIAL_MAX_STREAMS)
            .http2_adaptive_window(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(20));
    }
    b
}

/// Options for one request to the upstream, decided in `gate::handle`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SendOptions {
    /// A gRPC call: it needs HTTP/2 to the upstream.
    pub grpc: bool,
    /// The client's gRPC deadline: the wait for the response head ends at
    /// the earlier of it and `upstream.response_timeout`.
    pub deadline: Option<std::time::Instant>,
}

/// The pooled clients to the one upstream.
pub struct Upstream {
    /// HTTP/1.1 (`None` with `protocol` `h2c` or `h2`).
    http1: Option<UpstreamClient>,
    /// HTTP/2: prior knowledge (h2c, or TLS with ALPN `h2` only), or, with
    /// `auto` and an https upstream, ALPN offering `h2` and `http/1.1`
    /// (`None` with `protocol = "http1"`).
    http2: Option<UpstreamClient>,
    protocol: UpstreamProtocol,
    /// `auto` over TLS: HTTP/2 clients go through `http2` too, since the
    /// upstream's ALPN answer says whether it speaks HTTP/2.
    alpn: bool,
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    response_timeout: Duration,
    /// `upstream.max_connections`; `None` when unlimited.
    limit: Option<Arc<Limit>>,
    /// HTTP/1.1 clients' requests over HTTP/1.1, owned by their client
    /// connection (`None` when `http1` is).
    affine: Option<Affine>,
}

impl Upstream {
    /// The upstream of `cfg`; `previous` is the one it replaces on reload,
    /// whose cap (and the places taken under it) carries over when
    /// `max_connections` and `queue_timeout` are unchanged.
    pub fn new(cfg: &UpstreamConfig, previous: Option<&Upstream>) -> Result<Upstream, ConfigError> {
        let mut upstream = Self::clients(cfg)?;
        upstream.limit =
            (cfg.max_connections > 0).then(|| match previous.and_then(|p| p.limit.as_ref()) {
                Some(l) if l.max == cfg.max_connections && l.queue_timeout == cfg.queue_timeout => {
                    l.clone()
                }
                _ => Arc::new(Limit::new(cfg.max_connections, cfg.queue_timeout)),
            });
        if let Some(a) = &mut upstream.affine {
            a.set_limit(upstream.limit.clone());
        }
        Ok(upstream)
    }

    fn clients(cfg: &UpstreamConfig) -> Result<Upstream, ConfigError> {
        let uri = match &cfg.url {
            UpstreamUrl::Unix(path) => return Ok(Self::unix(path, cfg)),
            UpstreamUrl::Http(uri) => uri,
        };
        let invalid = |m: String| ConfigError::invalid("upstream.url", "configuration", m);
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| invalid("no scheme".into()))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| invalid("no host".into()))?;
        let base_path = uri.path().trim_end_matches('/').to_string();
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(cfg.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let tls = crate::net::tls::client_config("upstream.ca_file", cfg.ca_file.as_deref())?;
        let protocols = || {
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http()
        };
        let h1 = || {
            let connector = protocols().enable_http1().wrap_connector(http.clone());
            UpstreamClient::Net(client_builder(cfg, false, false).build(connector))
        };
        let is_tls = scheme == Scheme::HTTPS;
        // Only ALPN `h2`: prior knowledge over TLS, and over cleartext the
        // connector offers nothing and the client speaks h2c.
        let h2_only = || {
            let connector = protocols().enable_http2().wrap_connector(http.clone());
            UpstreamClient::Net(client_builder(cfg, true, true).build(connector))
        };
        let affine = (cfg.protocol != UpstreamProtocol::H2c
            && cfg.protocol != UpstreamProtocol::H2)
            .then(|| {
                let connector = protocols().enable_http1().wrap_connector(http.clone());
                let target = Uri::builder()
                    .scheme(scheme.clone())
                    .authority(authority.clone())
                    .path_and_query("/")
                    .build();
                let host = http::HeaderValue::from_str(authority.as_str());
                match (target, host) {
                    (Ok(t), Ok(h)) => Some(Affine::new(Connector::Net(connector), t, h)),
                    _ => None,
                }
            })
            .flatten();
        let (http1, http2, alpn) = match cfg.protocol {
            UpstreamProtocol::Http1 => (Some(h1()), None, false),
            UpstreamProtocol::H2c | UpstreamProtocol::H2 => (None, Some(h2_only()), false),
            UpstreamProtocol::Auto if is_tls => {
                let connector = protocols()
                    .enable_all_versions()
                    .wrap_connector(http.clone());
                let negotiated =
                    UpstreamClient::Net(client_builder(cfg, true, false).build(connector));
                (Some(h1()), Some(negotiated), true)
            }
            UpstreamProtocol::Auto => (Some(h1()), Some(h2_only()), false),
        };
        Ok(Upstream {
            http1,
            http2,
            protocol: cfg.protocol,
            alpn,
            scheme,
            authority,
            base_path,
            response_timeout: cfg.response_timeout,
            limit: None,
            affine,
        })
    }

    /// `upstream.url = "unix:/path"`: plain HTTP over that socket (HTTP/1.1,
    /// or h2c). The request URI names `localhost` only because a URI needs
    /// an authority; the client's `Host` header is what the upstream sees.
    fn unix(path: &std::path::Path, cfg: &UpstreamConfig) -> Upstream {
        let connector = crate::net::unix::UnixConnector::new(path, cfg.connect_timeout);
        let h1 =
            || UpstreamClient::Unix(client_builder(cfg, false, false).build(connector.clone()));
        let h2 = || UpstreamClient::Unix(client_builder(cfg, true, true).build(connector.clone()));
        let affine = matches!(
            cfg.protocol,
            UpstreamProtocol::Http1 | UpstreamProtocol::Auto
        )
        .then(|| {
            Affine::new(
                Connector::Unix(connector.clone()),
                Uri::from_static("http://localhost/"),
                http::HeaderValue::from_static("localhost"),
            )
        });
        // `h2` over a socket is refused by the configuration check.
        let (http1, http2) = match cfg.protocol {
            UpstreamProtocol::Http1 => (Some(h1()), None),
            UpstreamProtocol::H2c | UpstreamProtocol::H2 => (None, Some(h2())),
            UpstreamProtocol::Auto => (Some(h1()), Some(h2())),
        };
        Upstream {
            http1,
            http2,
            protocol: cfg.protocol,
            alpn: false,
            scheme: Scheme::HTTP,
            authority: Authority::from_static("localhost"),
            base_path: String::new(),
            response_timeout: cfg.response_timeout,
            limit: None,
            affine,
        }
    }

    /// The upstream URI for a normalised path and (already cleaned) query.
    pub fn uri_for(&self, path: &str, query: Option<&str>) -> Result<Uri, GateError> {
        let mut pq = String::with_capacity(
            self.base_path.len() + path.len() + 1 + query.map_or(0, str::len),
        );
        pq.push_str(&self.base_path);
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|_| GateError::Path("request target cannot be forwarded".into()))
    }

    /// The client for this request and the version to ask it for, or the
    /// refusal when `upstream.protocol` cannot carry the request.
    fn pick(
        &self,
        req: &Request<Incoming>,
        opts: SendOptions,
    ) -> Result<(&UpstreamClient, Version), GateError> {
        let proto = match self.protocol {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2c => "h2c",
            UpstreamProtocol::H2 => "h2",
            UpstreamProtocol::Auto => "auto",
        };
        let client_h2 = req.version() == Version::HTTP_2;
        let upgrade = req.headers().contains_key(header::UPGRADE);
        let picked = match (&self.http1, &self.http2) {
            // gRPC has no HTTP/1.1 form: say so rather than send a request
            // the backend can only garble.
            (_, None) if opts.grpc => {
                return Err(failed(format!(
                    "gRPC needs HTTP/2 to the upstream, and upstream.protocol is \"{proto}\""
                )));
            }
            (Some(h1), _) if upgrade => (h1, Version::HTTP_11),
            (None, Some(_)) if upgrade => {
                return Err(failed(format!(
                    "an upgrade (WebSocket) needs HTTP/1.1 to the upstream, and upstream.protocol is \"{proto}\""
                )));
            }
            (_, Some(h2)) if opts.grpc => (h2, Version::HTTP_2),
            // `auto` over TLS: an HTTP/2 client's request is offered to the
            // upstream as `h2` or `http/1.1`; its ALPN answer decides.
            (Some(_), Some(h2)) if self.alpn && client_h2 => (h2, Version::HTTP_11),
            (Some(h1), _) => (h1, Version::HTTP_11),
            (None, Some(h2)) => (h2, Version::HTTP_2),
            (None, None) => {
                return Err(failed("no upstream client"));
            }
        };
        Ok(picked)
    }

    /// Sends the prepared request; maps failures to 502 and slowness to 504.
    /// The timeout bounds only the wait for the response head: a streamed
    /// body (a long download, a gRPC stream) runs as long as it runs. Under
    /// `upstream.max_connections` the request first waits for a place (at
    /// most `queue_timeout`, then 503), which it holds until its response
    /// body has been sent on.
    ///
    /// An HTTP/1 client's request to an HTTP/1.1 upstream goes over the
    /// client connection's own upstream connection (`affinity`), unless it
    /// asks for an upgrade (the tunnel takes the connection away). HTTP/2
    /// clients (whose streams run in tasks of their own), gRPC, upgrades and
    /// HTTP/2 upstreams use the shared pools.
    pub async fn send(
        &self,
        req: Request<Incoming>,
        opts: SendOptions,
        conn: Option<&Arc<ConnState>>,
    ) -> Result<Response<UpstreamBody>, GateError> {
        if let (Some(affine), Some(conn)) = (&self.affine, conn)
            && req.version() != Version::HTTP_2
            && !opts.grpc
            && !req.headers().contains_key(header::UPGRADE)
        {
            return self.send_affine(affine, conn, req, opts).await;
        }
        let permit = match &self.limit {
            Some(l) => Some(l.acquire().await?),
            None => None,
        };
        let resp = self.send_now(req, opts).await?;
        Ok(resp.map(|inner| UpstreamBody::new(inner, permit, None)))
    }

    async fn send_affine(
        &self,
        affine: &Affine,
        conn: &Arc<ConnState>,
        mut req: Request<Incoming>,
        opts: SendOptions,
    ) -> Result<Response<UpstreamBody>, GateError> {
        *req.version_mut() = Version::HTTP_11;
        let release = affine.releases().then(|| conn.clone());
        match tokio::time::timeout(self.wait_limit(opts), affine.send(&conn.upstream, req)).await {
            Ok(Ok(resp)) => Ok(resp.map(|inner| UpstreamBody::new(inner, None, release))),
            Ok(Err(Failure::Saturated(e))) => Err(e),
            Ok(Err(Failure::Connect(e))) if is_timeout(&*e) => {
                Err(timeout("upstream connect timed out"))
            }
            Ok(Err(Failure::Connect(_))) => Err(failed("upstream refused the connection")),
            Ok(Err(Failure::Send(e))) if is_timeout(&e) => {
                Err(timeout("upstream did not answer in time"))
            }
            Ok(Err(Failure::Send(_))) => Err(failed("upstream failed")),
            Err(_) => Err(timeout("upstream did not answer in time")),
        }
    }

    /// How long to wait for the response head: `upstream.response_timeout`,
    /// or the gRPC deadline when that comes first.
    fn wait_limit(&self, opts: SendOptions) -> Duration {
        match opts.deadline {
            Some(d) => self
                .response_timeout
                .min(d.saturating_duration_since(std::time::Instant::now())),
            None => self.response_timeout,
        }
    }

    async fn send_now(
        &self,
        mut req: Request<Incoming>,
        opts: SendOptions,
    ) -> Result<Response<Incoming>, GateError> {
        let (client, version) = self.pick(&req, opts)?;
        // The upstream's version is the gate's choice, not the client's.
        *req.version_mut() = version;
        if version == Version::HTTP_2 {
            // Over HTTP/2 the authority travels in `:authority`, which the
            // client takes from the upstream URL; a `Host` that differs makes
            // the request malformed (RFC 9113 §8.3.1; nginx answers 400). The
            // client's host still reaches the upstream in X-Forwarded-Host.
            req.headers_mut().remove(http::header::HOST);
        }
        match tokio::time::timeout(self.wait_limit(opts), client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                if is_timeout(&e) {
                    Err(timeout("upstream connect timed out"))
                } else if e.is_connect() {
                    Err(failed("upstream refused the connection"))
                } else if version == Version::HTTP_2 {
                    debug!("upstream HTTP/2 request failed: {e:?}");
                    Err(failed("upstream failed (over HTTP/2)"))
                } else {
                    Err(failed("upstream failed"))
                }
            }
            Err(_) => Err(timeout("upstream did not answer in time")),
        }
    }
}

fn failed(why: impl Into<std::borrow::Cow<'static, str>>) -> GateError {
    GateError::Upstream(UpstreamError::Failed(why.into()))
}

fn timeout(why: &'static str) -> GateError {
    GateError::Upstream(UpstreamError::Timeout(why))
}

fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        cur = err.source();
    }
    false
}
