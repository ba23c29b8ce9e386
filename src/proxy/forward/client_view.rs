//! Who the client is (`forward.trusted_proxies`) and the forwarding
//! headers the upstream receives: `X-Forwarded-For`/`-Proto`/`-Host`,
//! `X-Real-IP` and `Forwarded`.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;

use super::headers::HeaderRules;

// Names the gate sets on every forwarded request, parsed once.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

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
    pub(super) fn trusts_forwarding(&self, view: &ClientView) -> bool {
        if self.trusted_proxies.is_empty() {
            self.trust_forwarded
        } else {
            view.via_trusted_proxy
        }
    }
}

impl HeaderRules {
    /// Sets `X-Real-IP` and `Forwarded` from the gate's own view when the
    /// operator trusts forwarding headers (and did not pass the client's).
    pub(super) fn set_client_view(&self, headers: &mut HeaderMap, view: &ClientView, tls: bool) {
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

/// Sets `X-Forwarded-For`, `-Proto` and `-Host`. `X-Forwarded-For` ends
/// with the client as the gate decided it: the peer is appended, or, behind
/// a trusted proxy, the chain is cut after the client. `-Proto` and `-Host`
/// are the gate's own view unless `trust_incoming`, in which case a single
/// incoming value is kept.
///
/// `peer_text` is the client connection's address as text, when the gate
/// keeps it for the connection: the usual value of `X-Forwarded-For`, made
/// once per connection rather than formatted on every request.
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    authority: Option<&Authority>,
    view: &ClientView,
    tls: bool,
    trust_incoming: bool,
    peer_text: Option<&HeaderValue>,
) {
    let xff = match &view.chain {
        Some(chain) if !chain.is_empty() => HeaderValue::from_str(&chain.join(", ")).ok(),
        Some(_) => HeaderValue::from_str(&view.client.to_string()).ok(),
        None => {
            let mut prior = headers
                .get_all(X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .peekable();
            if prior.peek().is_none() {
                match peer_text {
                    Some(v) => Some(v.clone()),
                    None => HeaderValue::from_str(&view.client.to_string()).ok(),
                }
            } else {
                let prior: Vec<&str> = prior.collect();
                HeaderValue::from_str(&format!("{}, {}", prior.join(", "), view.client)).ok()
            }
        }
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    let single = |h: &HeaderMap, name: &HeaderName| {
        let mut values = h.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(v), None) if !v.is_empty() => Some(v.clone()),
            _ => None,
        }
    };
    let proto = single(headers, &X_FORWARDED_PROTO).filter(|_| trust_incoming);
    let proto = proto.unwrap_or(HeaderValue::from_static(if tls { "https" } else { "http" }));
    headers.insert(X_FORWARDED_PROTO, proto);
    let host = single(headers, &X_FORWARDED_HOST)
        .filter(|_| trust_incoming)
        .or_else(|| headers.get(header::HOST).cloned())
        .or_else(|| authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    match host {
        Some(h) => {
            headers.insert(X_FORWARDED_HOST, h);
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
}
