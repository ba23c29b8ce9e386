//! Forwarding to the upstream: header hygiene, identity headers, and the
//! pooled client with its timeouts.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Method, Request, Response, Uri, Version};
use http_body_util::{Either, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tracing::debug;

use crate::auth::Identity;
use crate::auth::claims::lookup;
use crate::config::ForwardConfig;
use crate::config::types::canonical_header;
use crate::respond::{GateError, UpstreamError};
use crate::upstream::UpstreamBody;

/// The body of every response the gate sends: the upstream's, streamed as
/// it comes, or one of the gate's own small replies.
pub(crate) type GateBody = Either<UpstreamBody, Full<Bytes>>;

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy ones proxies know).
/// `HTTP2-Settings` belongs to the h2c upgrade, which is never forwarded.
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
const HTTP2_SETTINGS: &str = "http2-settings";

/// Headers by which a client could make a backend (or a framework in it)
/// handle another method or path than the one the gate decided on, or
/// believe another client address. Removed on the proxy listener unless
/// named in `forward.pass_headers`.
const OVERRIDE_HEADERS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-method",
    // Path, host and scheme hints that frameworks apply to the request they
    // route (Spring's ForwardedHeaderFilter takes X-Forwarded-Prefix into the
    // request URI; Symfony and Rails honour host and scheme overrides).
    "x-forwarded-prefix",
    "x-forwarded-path",
    "x-forwarded-server",
    "x-forwarded-port",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-url-scheme",
    "front-end-https",
    "x-http-host-override",
    "x-host",
    "x-real-ip",
    "forwarded",
];

/// Headers the gate itself sets on every forwarded request.
const GATE_SET_HEADERS: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
];

/// Does `Connection` carry the `upgrade` option?
fn connection_has_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The protocol name of an `Upgrade` token (`websocket` of `websocket/13`).
fn protocol_name(token: &str) -> &str {
    token.split('/').next().unwrap_or(token).trim()
}

/// Removes hop-by-hop headers and every header named in `Connection`.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
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
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
    headers.remove(HTTP2_SETTINGS);
}

/// The identity headers of `[forward]`, compiled once per configuration.
#[derive(Debug)]
pub struct IdentityHeaders {
    user: HeaderName,
    claims: Vec<(String, HeaderName)>,
    payload: Option<HeaderName>,
}

impl IdentityHeaders {
    pub fn from_config(cfg: &ForwardConfig) -> Self {
        IdentityHeaders {
            user: cfg.user_header.name().clone(),
            claims: cfg
                .claims_headers
                .iter()
                .map(|(claim, h)| (claim.clone(), h.name().clone()))
                .collect(),
            payload: cfg.payload_header.as_ref().map(|h| h.name().clone()),
        }
    }

    /// Every identity header name.
    pub fn names(&self) -> impl Iterator<Item = &HeaderName> {
        std::iter::once(&self.user)
            .chain(self.claims.iter().map(|(_, h)| h))
            .chain(self.payload.iter())
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

/// What a forwarded request may carry, compiled once per configuration:
/// the identity headers, the headers no client may send in any spelling,
/// the override headers removed, the upgrades allowed, and where tokens hide.
#[derive(Debug)]
pub struct HeaderRules {
    pub identity: IdentityHeaders,
    /// Canonical names (lower case, `-`) that a client header must not
    /// equal once `_` is read as `-`: identity headers, the headers the gate
    /// sets, and the override headers (passed or not: an alias is never the
    /// header the operator chose to pass).
    owned: Vec<String>,
    /// Override headers removed from every request (not in `pass_headers`).
    removed: Vec<HeaderName>,
    pass_real_ip: bool,
    pass_forwarded: bool,
    trust_forwarded: bool,
    /// `forward.trusted_proxies`.
    trusted_proxies: Vec<ipnet::IpNet>,
    /// `forward.upgrades`, lower-cased protocol names.
    upgrades: Vec<String>,
    /// Query parameters and cookies that may carry a token
    /// (`auth.token_from`): never forwarded.
    token_params: Vec<String>,
    token_cookies: Vec<String>,
}

impl HeaderRules {
    pub fn from_config(
        forward: &ForwardConfig,
        token_sources: &[crate::auth::bearer::TokenSource],
    ) -> Self {
        use crate::auth::bearer::TokenSource;
        let identity = IdentityHeaders::from_config(forward);
        let passed: Vec<String> = forward
            .pass_headers
            .iter()
            .map(|h| canonical_header(h.as_str()))
            .collect();
        let mut owned: Vec<String> = identity
            .names()
            .map(|h| canonical_header(h.as_str()))
            .collect();
        owned.extend(GATE_SET_HEADERS.iter().map(|h| (*h).to_string()));
        owned.extend(OVERRIDE_HEADERS.iter().map(|h| (*h).to_string()));
        owned.sort();
        owned.dedup();
        HeaderRules {
            identity,
            owned,
            removed: OVERRIDE_HEADERS
                .iter()
                .filter(|h| !passed.iter().any(|p| p == *h))
                .map(|h| HeaderName::from_static(h))
                .collect(),
            pass_real_ip: passed.iter().any(|p| p == "x-real-ip"),
            pass_forwarded: passed.iter().any(|p| p == "forwarded"),
            trust_forwarded: forward.trust_forwarded_headers,
            trusted_proxies: forward.trusted_proxies.iter().map(|p| p.0).collect(),
            upgrades: forward
                .upgrades
                .iter()
                .map(|u| u.to_ascii_lowercase())
                .collect(),
            token_params: token_sources
                .iter()
                .filter_map(|s| match s {
                    TokenSource::Query(n) => Some(n.clone()),
                    _ => None,
                })
                .collect(),
            token_cookies: token_sources
                .iter()
                .filter_map(|s| match s {
                    TokenSource::Cookie(n) => Some(n.clone()),
                    _ => None,
                })
                .collect(),
        }
    }

    /// The query parameter names that may carry a token.
    pub fn token_params(&self) -> impl Iterator<Item = &str> {
        self.token_params.iter().map(String::as_str)
    }

    /// The upgrade this request may make: an HTTP/1.1 `GET` whose
    /// `Connection` asks for one and whose single `Upgrade` header offers an
    /// allowed protocol. The token to send on (`websocket`), or `None`: the
    /// request then goes on as plain HTTP/1.1, its upgrade removed.
    pub fn upgrade_for<B>(&self, req: &Request<B>) -> Option<HeaderValue> {
        if req.method() != Method::GET || req.version() != Version::HTTP_11 {
            return None;
        }
        let headers = req.headers();
        if !connection_has_upgrade(headers) {
            return None;
        }
        let mut values = headers.get_all(header::UPGRADE).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return None;
        };
        let offered = value.to_str().ok()?;
        offered
            .split(',')
            .map(str::trim)
            .find(|t| {
                let name = protocol_name(t);
                self.upgrades.iter().any(|u| u.eq_ignore_ascii_case(name))
            })
            .and_then(|t| HeaderValue::from_str(t).ok())
    }

    /// Did the upstream switch to the protocol that was asked for?
    pub fn upgrade_accepted(asked: &HeaderValue, resp: &HeaderMap) -> bool {
        let Some(asked) = asked.to_str().ok().map(protocol_name) else {
            return false;
        };
        let mut values = resp.get_all(header::UPGRADE).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => v
                .to_str()
                .is_ok_and(|v| protocol_name(v).eq_ignore_ascii_case(asked)),
            _ => false,
        }
    }

    /// Removes every header a client must not send to the upstream: hop-by-hop
    /// ones, identity headers (any case, any copy), aliases of the headers the
    /// gate owns (`X_Auth_User`), override headers not passed, and cookies
    /// that may carry a token.
    fn strip(&self, headers: &mut HeaderMap) {
        remove_hop_by_hop(headers);
        self.identity.strip(headers);
        for h in &self.removed {
            headers.remove(h);
        }
        // Aliases: only names with `_` can be one (names are lower case).
        if headers.keys().any(|k| k.as_str().contains('_')) {
            let aliases: Vec<HeaderName> = headers
                .keys()
                .filter(|k| k.as_str().contains('_'))
                .filter(|k| {
                    let canon = canonical_header(k.as_str());
                    self.owned.binary_search(&canon).is_ok()
                })
                .cloned()
                .collect();
            for h in aliases {
                headers.remove(h);
            }
        }
        for name in &self.token_cookies {
            crate::auth::bearer::strip_cookie(headers, name);
        }
    }

    /// Sets `X-Real-IP` and `Forwarded` from the gate's own view when the
    /// operator trusts forwarding headers (and did not pass the client's).
    fn set_client_view(&self, headers: &mut HeaderMap, view: &ClientView, tls: bool) {
        if !self.trust_forwarded && self.trusted_proxies.is_empty() {
            return;
        }
        let ip = view.client;
        if !self.pass_real_ip
            && let Ok(v) = HeaderValue::from_str(&ip.to_string())
        {
            headers.insert("x-real-ip", v);
        }
        if !self.pass_forwarded {
            let node = match ip {
                std::net::IpAddr::V4(a) => a.to_string(),
                std::net::IpAddr::V6(a) => format!("[{a}]"),
            };
            let mut v = format!(
                "for=\"{node}\";proto={}",
                if tls { "https" } else { "http" }
            );
            if let Some(host) = headers
                .get("x-forwarded-host")
                .and_then(|h| h.to_str().ok())
                .filter(|h| !h.contains('"') && !h.contains('\\'))
            {
                v.push_str(&format!(";host=\"{host}\""));
            }
            if let Ok(v) = HeaderValue::from_str(&v) {
                headers.insert(header::FORWARDED, v);
            }
        }
    }
}

/// What the decision phases let through, as `prepare` needs it.
pub(crate) struct Verdict<'a> {
    pub identity: Option<&'a Identity>,
    /// The verified token came from `Authorization` on this request and
    /// `auth.forward_token` is on: keep that header.
    pub keep_authorization: bool,
}

/// An upgrade (WebSocket) the request asked for and may make: the protocol
/// asked, and the client's side of the connection once it is switched.
pub(crate) struct Upgrade {
    asked: HeaderValue,
    client: hyper::upgrade::OnUpgrade,
}

/// Phase 5: makes the request the upstream will receive. Header hygiene,
/// identity headers, forwarding headers, the allowed upgrade, and `uri`
/// (the normalised path with the cleaned query) as the target. The upstream
/// receives exactly the request the decision was made on. Returns the
/// upgrade that was kept, which `finish` completes.
pub(crate) fn prepare<B>(
    rules: &HeaderRules,
    req: &mut Request<B>,
    verdict: Verdict<'_>,
    view: &ClientView,
    tls: bool,
    uri: Uri,
) -> Option<Upgrade> {
    let upgrade = rules.upgrade_for(req);
    let original_authority = req.uri().authority().cloned();
    let headers = req.headers_mut();
    // gRPC servers may insist on `TE: trailers` (it says the client reads
    // trailers, where gRPC puts its status). It is the one TE value HTTP/2
    // allows, so it survives the hop-by-hop cleaning for gRPC alone.
    let keep_te = crate::grpc::is_grpc(headers) && crate::grpc::asks_for_trailers(headers);
    rules.strip(headers);
    if keep_te {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if !verdict.keep_authorization {
        headers.remove(header::AUTHORIZATION);
    }
    if let Some(id) = verdict.identity {
        rules.identity.set(headers, id);
    }
    if !headers.contains_key(header::HOST)
        && let Some(a) = &original_authority
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        headers.insert(header::HOST, v);
    }
    set_forwarded(
        headers,
        original_authority.as_ref(),
        view,
        tls,
        rules.trusts_forwarding(view),
    );
    rules.set_client_view(headers, view, tls);
    if let Some(proto) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, proto.clone());
    }
    *req.uri_mut() = uri;
    upgrade.map(|asked| Upgrade {
        asked,
        client: hyper::upgrade::on(req),
    })
}

/// Phase 7: the upstream's response as the client gets it. A 101 is
/// accepted only for the upgrade that was asked for and allowed; the two
/// connections are then spliced. Any other switch would hand the
/// connection to a protocol the gate never sees into: 502.
pub(crate) fn finish(
    mut resp: Response<UpstreamBody>,
    upgrade: Option<Upgrade>,
) -> Result<Response<UpstreamBody>, GateError> {
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        remove_hop_by_hop(resp.headers_mut());
        return Ok(resp);
    }
    let Some(upgrade) = upgrade.filter(|u| HeaderRules::upgrade_accepted(&u.asked, resp.headers()))
    else {
        return Err(GateError::Upstream(UpstreamError::Failed(
            "upstream switched to a protocol that was not asked for".into(),
        )));
    };
    let upstream = hyper::upgrade::on(&mut resp);
    // The tunnel holds the upstream connection: it keeps its place under
    // `upstream.max_connections` until it closes.
    let place = resp.body_mut().take_permit();
    tokio::spawn(async move {
        let _place = place;
        match tokio::try_join!(upgrade.client, upstream) {
            Ok((client, upstream)) => {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            Err(e) => debug!("upgrade failed: {e}"),
        }
    });
    Ok(resp)
}

/// Checks that the request names one host: at most one `Host` header, and
/// one that agrees with the authority of an absolute-form target or of
/// HTTP/2's `:authority`. A disagreement would let the gate and the
/// upstream (or a virtual-host router behind it) read different hosts.
pub(crate) fn check_host<B>(req: &Request<B>) -> Result<(), &'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host header");
    }
    if let (Some(host), Some(authority)) = (host, req.uri().authority()) {
        let default_port = match req.uri().scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        };
        let same = host
            .to_str()
            .ok()
            .and_then(|h| h.parse::<Authority>().ok())
            .is_some_and(|h| {
                h.host().eq_ignore_ascii_case(authority.host())
                    && h.port_u16().or(default_port) == authority.port_u16().or(default_port)
            });
        if !same {
            return Err("Host header disagrees with the request target");
        }
    }
    Ok(())
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

/// An `X-Forwarded-For` entry: a bare address, or one with a port
/// (`1.2.3.4:5678`, `[::1]:80`), as some proxies write it.
fn parse_xff_entry(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
}

/// Who the client is, as the gate decides it for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientView {
    /// The client's address: the TCP peer, or, when the peer is a trusted
    /// proxy, the right-most `X-Forwarded-For` address that is not one.
    pub client: IpAddr,
    /// The peer is a trusted proxy: its forwarding headers are believed.
    pub via_trusted_proxy: bool,
    /// With a trusted peer: the `X-Forwarded-For` entries up to and
    /// including the client (the trusted hops after it dropped).
    chain: Option<Vec<String>>,
}

impl HeaderRules {
    /// The client behind this request (`forward.trusted_proxies`).
    pub fn client_view(&self, peer: IpAddr, headers: &HeaderMap) -> ClientView {
        let peer = peer.to_canonical();
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|n| n.contains(ip));
        if self.trusted_proxies.is_empty() || !trusted(&peer) {
            return ClientView {
                client: peer,
                via_trusted_proxy: false,
                chain: None,
            };
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        let mut client = peer;
        let mut keep = entries.len();
        for (idx, e) in entries.iter().enumerate().rev() {
            // An entry that is not an address ends the walk: nothing left
            // of it can be attributed, so the last hop reached is the client.
            let Some(ip) = parse_xff_entry(e) else { break };
            client = ip;
            keep = idx + 1;
            if !trusted(&ip) {
                break;
            }
        }
        ClientView {
            client,
            via_trusted_proxy: true,
            chain: Some(entries[..keep].iter().map(|e| (*e).to_string()).collect()),
        }
    }

    /// Are the incoming `X-Forwarded-Proto`/`-Host` believed for this request?
    fn trusts_forwarding(&self, view: &ClientView) -> bool {
        if self.trusted_proxies.is_empty() {
            self.trust_forwarded
        } else {
            view.via_trusted_proxy
        }
    }
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host`. `X-Forwarded-For` ends
/// with the client as the gate decided it: the peer is appended, or, behind
/// a trusted proxy, the chain is cut after the client. `-Proto` and `-Host`
/// are the gate's own view unless `trust_incoming`, in which case a single
/// incoming value is kept.
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    authority: Option<&Authority>,
    view: &ClientView,
    tls: bool,
    trust_incoming: bool,
) {
    let xff = match &view.chain {
        Some(chain) if !chain.is_empty() => chain.join(", "),
        Some(_) => view.client.to_string(),
        None => {
            let peer = view.client.to_string();
            let prior: Vec<&str> = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if prior.is_empty() {
                peer
            } else {
                format!("{}, {peer}", prior.join(", "))
            }
        }
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
    let proto = proto.unwrap_or(HeaderValue::from_static(if tls { "https" } else { "http" }));
    headers.insert("x-forwarded-proto", proto);
    let host = single(headers, "x-forwarded-host")
        .filter(|_| trust_incoming)
        .or_else(|| headers.get(header::HOST).cloned())
        .or_else(|| authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    match host {
        Some(h) => {
            headers.insert("x-forwarded-host", h);
        }
        None => {
            headers.remove("x-forwarded-host");
        }
    }
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
