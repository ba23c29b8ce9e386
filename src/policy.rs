//! What a request needs before it may pass: path normalisation, the status
//! exemption, routes, and authorisation of a verified identity.

use std::borrow::Cow;

use http::Method;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::auth::Identity;
use crate::auth::claims::lookup;
use crate::config::{Config, RouteAuth, RouteConfig};

/// Why a path cannot be decided on.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must start with /")]
    NotAbsolute,
    #[error("path contains an encoded slash or backslash")]
    EncodedSeparator,
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path contains a backslash")]
    Backslash,
    #[error("path is not valid UTF-8 once decoded")]
    BadUtf8,
    #[error("path has an invalid percent-encoding")]
    BadEncoding,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Normalises a request path so that one resource has one spelling:
/// unreserved characters are percent-decoded, other escapes upper-cased,
/// `.`/`..` resolved (never above the root), `//` merged. A path that would
/// stay ambiguous for the upstream (encoded `/` or `\`, NUL, invalid UTF-8
/// after decoding) is refused instead.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Fast path, the common case: nothing to decode, no empty, `.` or `..`
    // segment, no backslash or NUL. Such a path is already normal.
    if !bytes.iter().any(|b| matches!(b, b'%' | b'\\' | 0))
        && !raw.contains("//")
        && !raw.split('/').any(|seg| seg == "." || seg == "..")
    {
        return Ok(Cow::Borrowed(raw));
    }
    // Pass 1: decode unreserved escapes, check the rest, and check that the
    // fully decoded path is UTF-8.
    let mut out = Vec::with_capacity(bytes.len());
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::BadEncoding);
            };
            let c = h * 16 + l;
            match c {
                b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                0 => return Err(PathError::Nul),
                _ => {}
            }
            decoded.push(c);
            if is_unreserved(c) {
                out.push(c);
            } else {
                out.push(b'%');
                out.push(b"0123456789ABCDEF"[(c >> 4) as usize]);
                out.push(b"0123456789ABCDEF"[(c & 15) as usize]);
            }
            i += 3;
        } else {
            if b == b'\\' {
                return Err(PathError::Backslash);
            }
            if b == 0 {
                return Err(PathError::Nul);
            }
            decoded.push(b);
            out.push(b);
            i += 1;
        }
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(PathError::BadUtf8);
    }
    // Only ASCII escapes were rewritten, so `out` is ASCII-safe UTF-8.
    let path = String::from_utf8(out).map_err(|_| PathError::BadUtf8)?;
    // Pass 2: segments.
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    let mut segs: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut norm = String::with_capacity(path.len());
    for s in &segs {
        norm.push('/');
        norm.push_str(s);
    }
    if norm.is_empty() || trailing {
        norm.push('/');
    }
    Ok(Cow::Owned(norm))
}

/// Splits a query into decoded `(name, value)` pairs (`+` is a space).
pub fn query_pairs(q: &str) -> impl Iterator<Item = (String, String)> + '_ {
    q.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (decode_component(k), decode_component(v))
    })
}

fn decode_component(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The query without the parameters named `name` (`None` if nothing remains).
pub fn strip_query_param(q: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| decode_component(p.split_once('=').map_or(p, |(k, _)| k)) != name)
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join("&"))
    }
}

/// A route, compiled from configuration.
#[derive(Debug)]
pub struct Route {
    matcher: PathMatch,
    methods: Vec<Method>,
    pub auth: RouteAuth,
    pub allowed_users: Vec<String>,
    pub require_claims: Vec<(String, Value)>,
    pub require_scopes: Vec<String>,
    pub allow_cors_preflight: bool,
}

#[derive(Debug)]
enum PathMatch {
    Exact(String),
    Prefix(String),
}

impl Route {
    fn from_config(c: &RouteConfig) -> Route {
        Route {
            matcher: if c.path.is_empty() {
                PathMatch::Prefix(c.prefix.clone())
            } else {
                PathMatch::Exact(c.path.clone())
            },
            methods: c
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
                .collect(),
            auth: c.auth.clone(),
            allowed_users: c.allowed_users.clone(),
            require_claims: c
                .require_claims
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            require_scopes: c.require_scopes.clone(),
            allow_cors_preflight: c.allow_cors_preflight,
        }
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        let path_ok = match &self.matcher {
            PathMatch::Exact(p) => path == p,
            // A prefix matches whole segments: "/api" matches "/api" and
            // "/api/x" but not "/apix".
            PathMatch::Prefix(p) => {
                path.starts_with(p.as_str())
                    && (p.ends_with('/')
                        || path.len() == p.len()
                        || path.as_bytes()[p.len()] == b'/')
            }
        };
        path_ok && (self.methods.is_empty() || self.methods.contains(method))
    }
}

/// Why a verified identity may not pass.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    UserNotAllowed,
    MissingClaim(String),
    MissingScope(String),
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::UserNotAllowed => f.write_str("user is not allowed"),
            Denied::MissingClaim(c) => write!(f, "required claim {c} is missing or differs"),
            Denied::MissingScope(s) => write!(f, "required scope {s} is missing"),
        }
    }
}

/// The access policy of one configuration generation.
#[derive(Debug)]
pub struct Policy {
    routes: Vec<Route>,
    allowed_users: Vec<String>,
    status_path: String,
    status_token: Option<Vec<u8>>,
    allow_cors_preflight: bool,
}

impl Policy {
    pub fn from_config(c: &Config) -> Policy {
        Policy {
            routes: c.routes.iter().map(Route::from_config).collect(),
            allowed_users: c.auth.allowed_users.clone(),
            status_path: c.status.path.clone(),
            status_token: Some(c.status.token.expose().as_bytes().to_vec())
                .filter(|t| !t.is_empty()),
            allow_cors_preflight: c.auth.allow_cors_preflight,
        }
    }

    /// The first route whose path and method match.
    pub fn route(&self, method: &Method, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(method, path))
    }

    /// The status exemption: GET/HEAD on exactly the status path, with
    /// exactly one `token` parameter equal to `status.token`.
    pub fn status_exempt(&self, method: &Method, path: &str, query: Option<&str>) -> bool {
        let Some(expected) = &self.status_token else {
            return false;
        };
        if !(method == Method::GET || method == Method::HEAD) || path != self.status_path {
            return false;
        }
        let Some(q) = query else { return false };
        let mut given = query_pairs(q).filter(|(k, _)| k == "token").map(|(_, v)| v);
        let (Some(token), None) = (given.next(), given.next()) else {
            return false;
        };
        bool::from(token.as_bytes().ct_eq(expected))
    }

    /// A CORS preflight that may pass without a token: `OPTIONS` with
    /// `Origin` and `Access-Control-Request-Method`, allowed globally or by
    /// the route that the *requested* method would take (a route limited to
    /// `GET` still governs the preflight of its `GET`).
    pub fn cors_preflight_exempt(
        &self,
        method: &Method,
        headers: &http::HeaderMap,
        path: &str,
    ) -> bool {
        if method != Method::OPTIONS || !headers.contains_key(http::header::ORIGIN) {
            return false;
        }
        let Some(requested) = headers
            .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| Method::from_bytes(v.as_bytes()).ok())
        else {
            return false;
        };
        self.allow_cors_preflight
            || self
                .route(&requested, path)
                .is_some_and(|r| r.allow_cors_preflight)
    }

    /// May this verified identity use this route?
    pub fn authorize(&self, id: &Identity, route: Option<&Route>) -> Result<(), Denied> {
        if !self.allowed_users.is_empty() && !self.allowed_users.contains(&id.user) {
            return Err(Denied::UserNotAllowed);
        }
        let Some(route) = route else { return Ok(()) };
        if !route.allowed_users.is_empty() && !route.allowed_users.contains(&id.user) {
            return Err(Denied::UserNotAllowed);
        }
        for (name, want) in &route.require_claims {
            if !claim_matches(lookup(&id.claims, name), want) {
                return Err(Denied::MissingClaim(name.clone()));
            }
        }
        if !route.require_scopes.is_empty() {
            let granted: Vec<&str> = ["scope", "scp"]
                .iter()
                .filter_map(|c| id.claims.get(*c))
                .flat_map(|v| match v {
                    Value::String(s) => s.split(' ').collect::<Vec<_>>(),
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                })
                .collect();
            for s in &route.require_scopes {
                if !granted.contains(&s.as_str()) {
                    return Err(Denied::MissingScope(s.clone()));
                }
            }
        }
        Ok(())
    }
}

/// A claim equals the wanted value, or is an array containing it.
fn claim_matches(have: Option<&Value>, want: &Value) -> bool {
    match have {
        None => false,
        Some(v @ Value::Array(items)) => items.contains(want) || v == want,
        Some(v) => v == want,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalize_path("/a/./b/../c").unwrap(), "/a/c");
        assert_eq!(normalize_path("//status").unwrap(), "/status");
        assert_eq!(normalize_path("/st%61tus").unwrap(), "/status");
        assert_eq!(normalize_path("/status/").unwrap(), "/status/");
        assert_eq!(normalize_path("/status/../admin").unwrap(), "/admin");
        assert_eq!(normalize_path("/../../etc").unwrap(), "/etc");
        assert_eq!(normalize_path("/%2e%2e/x").unwrap(), "/x");
        assert_eq!(normalize_path("/a/..").unwrap(), "/");
        assert_eq!(normalize_path("/a%20b").unwrap(), "/a%20b");
        assert_eq!(normalize_path("/a%3fb").unwrap(), "/a%3Fb");
        assert_eq!(normalize_path("/status;x").unwrap(), "/status;x");
        assert_eq!(normalize_path("/caf%C3%A9").unwrap(), "/caf%C3%A9");
        assert_eq!(
            normalize_path("/status%2F..").unwrap_err(),
            PathError::EncodedSeparator
        );
        assert_eq!(
            normalize_path("/a%5cb").unwrap_err(),
            PathError::EncodedSeparator
        );
        assert_eq!(normalize_path("/a%00").unwrap_err(), PathError::Nul);
        assert_eq!(normalize_path("/a%FF").unwrap_err(), PathError::BadUtf8);
        assert_eq!(normalize_path("/a%G1").unwrap_err(), PathError::BadEncoding);
        assert_eq!(normalize_path("/a\\b").unwrap_err(), PathError::Backslash);
        assert_eq!(normalize_path("*").unwrap_err(), PathError::NotAbsolute);
    }

    /// Random paths over the characters that matter: whatever comes out is
    /// normal (no empty, `.` or `..` segment, even once decoded), and
    /// normalising it again changes nothing.
    #[test]
    fn normalisation_is_idempotent_and_leaves_no_dot_segments() {
        use rand::Rng;
        const ALPHABET: &[u8] = b"/./%2eEfF5cC00a;";
        let mut rng = rand::rng();
        for _ in 0..20_000 {
            let len = rng.random_range(1..24);
            let mut p = String::from("/");
            for _ in 0..len {
                p.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
            }
            let Ok(n) = normalize_path(&p) else { continue };
            assert!(n.starts_with('/'), "{p:?} -> {n:?}");
            assert!(!n.contains("//"), "{p:?} -> {n:?}");
            let decoded = percent_encoding::percent_decode_str(&n)
                .decode_utf8_lossy()
                .into_owned();
            assert!(
                !decoded.split('/').any(|seg| seg == "." || seg == ".."),
                "{p:?} -> {n:?}"
            );
            assert!(
                !decoded.contains('/') || !n.to_ascii_uppercase().contains("%2F"),
                "{p:?} -> {n:?}"
            );
            assert_eq!(normalize_path(&n).unwrap(), n, "not idempotent for {p:?}");
        }
    }

    #[test]
    fn query_helpers() {
        assert_eq!(
            strip_query_param("token=x&a=1", "token").as_deref(),
            Some("a=1")
        );
        assert_eq!(strip_query_param("tok%65n=x", "token"), None);
        let p: Vec<_> = query_pairs("a=1+2&b=%41").collect();
        assert_eq!(
            p,
            vec![("a".into(), "1 2".into()), ("b".into(), "A".into())]
        );
    }

    #[test]
    fn preflight_follows_the_route_of_the_requested_method() {
        let mut c = Config::default();
        c.routes.push(RouteConfig {
            prefix: "/api".into(),
            methods: vec!["GET".into()],
            allow_cors_preflight: true,
            ..Default::default()
        });
        let p = Policy::from_config(&c);
        let mut h = http::HeaderMap::new();
        h.insert(http::header::ORIGIN, "https://app".parse().unwrap());
        h.insert(
            http::header::ACCESS_CONTROL_REQUEST_METHOD,
            "GET".parse().unwrap(),
        );
        assert!(p.cors_preflight_exempt(&Method::OPTIONS, &h, "/api/x"));
        assert!(!p.cors_preflight_exempt(&Method::GET, &h, "/api/x"));
        assert!(!p.cors_preflight_exempt(&Method::OPTIONS, &h, "/other"));
        h.insert(
            http::header::ACCESS_CONTROL_REQUEST_METHOD,
            "DELETE".parse().unwrap(),
        );
        assert!(!p.cors_preflight_exempt(&Method::OPTIONS, &h, "/api/x"));
    }

    #[test]
    fn prefix_on_segment_boundary() {
        let r = Route::from_config(&RouteConfig {
            prefix: "/api".into(),
            ..Default::default()
        });
        assert!(r.matches(&Method::GET, "/api"));
        assert!(r.matches(&Method::GET, "/api/x"));
        assert!(!r.matches(&Method::GET, "/apix"));
    }
}
