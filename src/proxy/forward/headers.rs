//! Header hygiene: the hop-by-hop headers, the override headers a client
//! could steer a backend with, and the rules (`HeaderRules`) compiled once
//! per configuration that strip what no client may send.

use http::header::{self, HeaderMap, HeaderName};

use super::identity::IdentityHeaders;
use crate::config::ForwardConfig;
use crate::config::types::canonical_header;

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

/// Whether `name` is hop-by-hop whatever `Connection` says.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
        || matches!(
            name.as_str(),
            KEEP_ALIVE | PROXY_CONNECTION | HTTP2_SETTINGS
        )
}

/// The headers a `Connection` header names (RFC 9110 §7.6.1).
fn connection_named(headers: &HeaderMap) -> impl Iterator<Item = HeaderName> + '_ {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
}

/// Removes hop-by-hop headers and every header named in `Connection`.
/// One pass over the names the message has (a handful), rather than one
/// lookup for each name that could be there: this runs on every response.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if is_hop_by_hop(name) {
            doomed.push(name.clone());
        }
    }
    remove_all(headers, doomed);
}

/// Removes `doomed`, and first what a `Connection` among them names.
fn remove_all(headers: &mut HeaderMap, mut doomed: Vec<HeaderName>) {
    if doomed.is_empty() {
        return;
    }
    if doomed.contains(&header::CONNECTION) {
        let named: Vec<HeaderName> = connection_named(headers).collect();
        doomed.extend(named);
    }
    for name in doomed {
        headers.remove(name);
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
    /// Names removed from every request, sorted: hop-by-hop ones, the
    /// identity headers, the override headers not in `pass_headers`.
    stripped: Vec<HeaderName>,
    pub(super) pass_real_ip: bool,
    pub(super) pass_forwarded: bool,
    pub(super) trust_forwarded: bool,
    /// `forward.trusted_proxies`.
    pub(super) trusted_proxies: Vec<ipnet::IpNet>,
    /// `forward.upgrades`, lower-cased protocol names.
    pub(super) upgrades: Vec<String>,
    /// Query parameters and cookies that may carry a token
    /// (`auth.token_from`): never forwarded.
    token_params: Vec<String>,
    token_cookies: Vec<String>,
    /// The sign-in's own cookies (`login::jar::strip` patterns): never
    /// forwarded.
    gate_cookies: Vec<String>,
}

impl HeaderRules {
    pub fn from_config(
        forward: &ForwardConfig,
        token_sources: &[crate::auth::bearer::TokenSource],
        gate_cookies: Vec<String>,
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
        let mut stripped: Vec<HeaderName> = HOP_BY_HOP
            .iter()
            .cloned()
            .chain(
                [KEEP_ALIVE, PROXY_CONNECTION, HTTP2_SETTINGS]
                    .into_iter()
                    .map(HeaderName::from_static),
            )
            .chain(identity.names().cloned())
            .chain(
                OVERRIDE_HEADERS
                    .iter()
                    .filter(|h| !passed.iter().any(|p| p == *h))
                    .map(|h| HeaderName::from_static(h)),
            )
            .collect();
        stripped.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        stripped.dedup();
        HeaderRules {
            gate_cookies,
            identity,
            owned,
            stripped,
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

    /// Removes every header a client must not send to the upstream: hop-by-hop
    /// ones, identity headers (any case, any copy), aliases of the headers the
    /// gate owns (`X_Auth_User`), override headers not passed, and cookies
    /// that may carry a token.
    ///
    /// One pass over the names the request has, each looked up in the
    /// sorted list, instead of a map lookup for each of the forty-odd names
    /// that could be there.
    pub(super) fn strip(&self, headers: &mut HeaderMap) {
        let mut doomed: Vec<HeaderName> = Vec::new();
        let mut cookie = false;
        for name in headers.keys() {
            if name == header::COOKIE {
                cookie = true;
                continue;
            }
            let n = name.as_str();
            let listed = self
                .stripped
                .binary_search_by(|s| s.as_str().cmp(n))
                .is_ok();
            // Aliases: only names with `_` can be one (names are lower case).
            if listed || (n.contains('_') && self.owned.binary_search(&canonical_header(n)).is_ok())
            {
                doomed.push(name.clone());
            }
        }
        remove_all(headers, doomed);
        if cookie {
            for name in &self.token_cookies {
                crate::auth::bearer::strip_cookie(headers, name);
            }
            if !self.gate_cookies.is_empty() {
                crate::login::jar::strip(headers, &self.gate_cookies);
            }
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
}
