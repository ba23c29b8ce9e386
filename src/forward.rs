//! Forwarding to the upstream: header hygiene, identity headers, and the
//! pooled client with its timeouts.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::Value;

use crate::auth::Identity;
use crate::auth::claims::lookup;
use crate::config::{ConfigError, ForwardConfig, UpstreamConfig};
use crate::respond::Rejection;

/// The body of every response the gate sends: the upstream's, streamed as
/// it comes, or one of the gate's own small replies.
pub type GateBody = Either<Incoming, Full<Bytes>>;

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy ones proxies know).
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];
const KEEP_ALIVE: &str = "keep-alive";
const PROXY_CONNECTION: &str = "proxy-connection";

/// Is this an HTTP/1.1 protocol upgrade request (WebSocket)?
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Removes hop-by-hop headers and every header named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
}

/// The identity headers of `[forward]`, compiled once per configuration.
#[derive(Debug)]
pub struct IdentityHeaders {
    user: HeaderName,
    claims: Vec<(String, HeaderName)>,
    payload: Option<HeaderName>,
}

impl IdentityHeaders {
    pub fn from_config(cfg: &ForwardConfig) -> Result<Self, ConfigError> {
        let name = |key: &str, v: &str| {
            HeaderName::from_bytes(v.as_bytes()).map_err(|_| ConfigError::Invalid {
                key: key.into(),
                origin: "configuration".into(),
                message: format!("{v:?} is not a header name"),
            })
        };
        Ok(IdentityHeaders {
            user: name("forward.user_header", &cfg.user_header)?,
            claims: cfg
                .claims_headers
                .iter()
                .map(|(claim, h)| Ok((claim.clone(), name("forward.claims_headers", h)?)))
                .collect::<Result<_, ConfigError>>()?,
            payload: if cfg.payload_header.is_empty() {
                None
            } else {
                Some(name("forward.payload_header", &cfg.payload_header)?)
            },
        })
    }

    /// Removes every copy of every identity header, whatever its case, so
    /// that a client can never supply one.
    pub fn strip(&self, headers: &mut HeaderMap) {
        headers.remove(&self.user);
        for (_, h) in &self.claims {
            headers.remove(h);
        }
        if let Some(h) = &self.payload {
            headers.remove(h);
        }
    }

    /// Sets the identity headers from a verified identity.
    pub fn set(&self, headers: &mut HeaderMap, id: &Identity) {
        if let Ok(v) = HeaderValue::from_str(&id.user) {
            headers.insert(self.user.clone(), v);
        }
        for (claim, h) in &self.claims {
            // A missing claim sets no header.
            if let Some(v) = lookup(&id.claims, claim).and_then(claim_header_value) {
                headers.insert(h.clone(), v);
            }
        }
        if let Some(h) = &self.payload
            && let Ok(v) = HeaderValue::from_str(&id.payload_b64)
        {
            headers.insert(h.clone(), v);
        }
    }

    /// The headers an identity produces (for the forward-auth answer).
    pub fn all_for(&self, id: &Identity) -> HeaderMap {
        let mut h = HeaderMap::new();
        self.set(&mut h, id);
        h
    }
}

/// A claim as a header value: strings as they are, arrays comma-joined,
/// anything else as JSON. Values that cannot be a header are left out.
fn claim_header_value(v: &Value) -> Option<HeaderValue> {
    fn scalar(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    let text = match v {
        Value::Null => return None,
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
        other => scalar(other),
    };
    HeaderValue::from_bytes(text.as_bytes()).ok()
}

/// How the request reached the gate.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Sets `X-Forwarded-For` (appending the peer), `-Proto` and `-Host`.
/// `-Proto` and `-Host` are the gate's own view unless `trust_incoming`
/// (`forward.trust_forwarded_headers`: the gate sits behind an ingress that
/// sets them), in which case a single incoming value is kept.
pub fn set_forwarded(headers: &mut HeaderMap, uri: &Uri, conn: ConnInfo, trust_incoming: bool) {
    let peer = conn.peer.ip().to_string();
    let prior: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let xff = if prior.is_empty() {
        peer
    } else {
        format!("{}, {peer}", prior.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    let single = |h: &HeaderMap, name: &str| {
        let mut values = h.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(v), None) if !v.is_empty() => Some(v.clone()),
            _ => None,
        }
    };
    let proto = single(headers, "x-forwarded-proto").filter(|_| trust_incoming);
    let proto = proto.unwrap_or(HeaderValue::from_static(if conn.tls {
        "https"
    } else {
        "http"
    }));
    headers.insert("x-forwarded-proto", proto);
    let host = single(headers, "x-forwarded-host")
        .filter(|_| trust_incoming)
        .or_else(|| headers.get(header::HOST).cloned())
        .or_else(|| {
            uri.authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
    match host {
        Some(h) => {
            headers.insert("x-forwarded-host", h);
        }
        None => {
            headers.remove("x-forwarded-host");
        }
    }
}

/// The pooled client: over TCP (http or https), or over a Unix socket.
enum UpstreamClient {
    Net(Client<HttpsConnector<HttpConnector>, Incoming>),
    Unix(Client<crate::unix::UnixConnector, Incoming>),
}

impl UpstreamClient {
    fn request(&self, req: Request<Incoming>) -> hyper_util::client::legacy::ResponseFuture {
        match self {
            UpstreamClient::Net(c) => c.request(req),
            UpstreamClient::Unix(c) => c.request(req),
        }
    }
}

/// The pooled client to the one upstream.
pub struct Upstream {
    client: UpstreamClient,
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    response_timeout: Duration,
}

impl Upstream {
    pub fn new(cfg: &UpstreamConfig) -> Result<Upstream, ConfigError> {
        if let Some(path) = crate::unix::socket_path(&cfg.url) {
            return Ok(Self::unix(path, cfg));
        }
        let invalid = |m: String| ConfigError::Invalid {
            key: "upstream.url".into(),
            origin: "configuration".into(),
            message: m,
        };
        let uri: Uri = cfg.url.parse().map_err(|e| invalid(format!("{e}")))?;
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
        let tls = crate::tls::client_config("upstream.ca_file", &cfg.ca_file)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build(connector);
        Ok(Upstream {
            client: UpstreamClient::Net(client),
            scheme,
            authority,
            base_path,
            response_timeout: cfg.response_timeout,
        })
    }

    /// `upstream.url = "unix:/path"`: plain HTTP/1.1 over that socket. The
    /// request URI names `localhost` only because a URI needs an authority;
    /// the client's `Host` header is what the upstream sees.
    fn unix(path: &std::path::Path, cfg: &UpstreamConfig) -> Upstream {
        let connector = crate::unix::UnixConnector::new(path, cfg.connect_timeout);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build(connector);
        Upstream {
            client: UpstreamClient::Unix(client),
            scheme: Scheme::HTTP,
            authority: Authority::from_static("localhost"),
            base_path: String::new(),
            response_timeout: cfg.response_timeout,
        }
    }

    /// The upstream URI for a normalised path and (already cleaned) query.
    pub fn uri_for(&self, path: &str, query: Option<&str>) -> Result<Uri, Rejection> {
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
            .map_err(|_| Rejection::InvalidRequest("request target cannot be forwarded".into()))
    }

    /// Sends the prepared request; maps failures to 502 and slowness to 504.
    pub async fn send(&self, mut req: Request<Incoming>) -> Result<Response<Incoming>, Rejection> {
        // The upstream speaks HTTP/1.1 whatever the client spoke to us.
        *req.version_mut() = Version::HTTP_11;
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                if is_timeout(&e) {
                    Err(Rejection::GatewayTimeout(
                        "upstream connect timed out".into(),
                    ))
                } else if e.is_connect() {
                    Err(Rejection::BadGateway(
                        "upstream refused the connection".into(),
                    ))
                } else {
                    Err(Rejection::BadGateway("upstream failed".into()))
                }
            }
            Err(_) => Err(Rejection::GatewayTimeout(
                "upstream did not answer in time".into(),
            )),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            "keep-alive, X-Auth-User, x-secret".parse().unwrap(),
        );
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn claim_values() {
        assert_eq!(
            claim_header_value(&serde_json::json!(["a", "b", 3])).unwrap(),
            "a,b,3"
        );
        assert_eq!(claim_header_value(&serde_json::json!("x")).unwrap(), "x");
        assert!(claim_header_value(&serde_json::json!("bad\nvalue")).is_none());
    }
}
