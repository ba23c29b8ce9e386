//! Path normalisation and route matching.
//!
//! Input: first byte picks the method, the rest is the raw path (UTF-8).
//! Invariants: the output starts with `/`, has no `//`, no `.`/`..` segment
//! even percent-decoded, no encoded `/` or `\`, only upper-case escapes; it
//! is a fixed point; an input returned borrowed is the input unchanged;
//! routing the output equals routing it normalised again, and equals a
//! reference segment-wise matcher.

use std::borrow::Cow;
use std::sync::OnceLock;

use http::Method;
use jwtgate::config::{RouteAuth, RouteConfig};
use jwtgate::proxy::policy::Policy;
use jwtgate::uri::normalize_path;

const METHODS: &[&str] = &[
    "GET", "POST", "HEAD", "DELETE", "OPTIONS", "PATCH", "PUT", "BREW",
];

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| Policy::from_config(&crate::config(0)))
}

/// The reference matcher: the first configured route whose exact path or
/// whole-segment prefix and method match (routes compared by index).
fn reference_route(routes: &[RouteConfig], method: &Method, path: &str) -> Option<usize> {
    routes.iter().position(|r| {
        let path_ok = if r.path.is_empty() {
            let p = r.prefix.as_str();
            path == p
                || (p.ends_with('/') && path.starts_with(p))
                || path.starts_with(&format!("{p}/"))
        } else {
            path == r.path
        };
        // Configured methods are parsed (any case) into `http::Method`s.
        let method_ok = r.methods.is_empty() || r.methods.iter().any(|m| m.0 == *method);
        path_ok && method_ok
    })
}

pub fn run(data: &[u8]) {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let Ok(raw) = std::str::from_utf8(rest) else {
        return;
    };
    let method = Method::from_bytes(METHODS[m as usize % METHODS.len()].as_bytes()).unwrap();
    let Ok(norm) = normalize_path(raw) else {
        return;
    };
    let n: &str = &norm;
    assert!(n.starts_with('/'), "{raw:?} -> {n:?}");
    assert!(!n.contains("//"), "{raw:?} -> {n:?}");
    assert!(!n.contains('\\') && !n.contains('\0'), "{raw:?} -> {n:?}");
    let decoded = percent_encoding::percent_decode_str(n).collect::<Vec<u8>>();
    let decoded = String::from_utf8(decoded).expect("normalised path decodes to UTF-8");
    assert_eq!(
        decoded.matches('/').count(),
        n.matches('/').count(),
        "an encoded slash survived: {raw:?} -> {n:?}"
    );
    assert!(
        !decoded.split('/').any(|s| s == "." || s == ".."),
        "dot segment survives decoding: {raw:?} -> {n:?}"
    );
    // Escapes are upper-case and never of an unreserved character.
    let b = n.as_bytes();
    for (i, _) in n.match_indices('%') {
        let (h, l) = (b[i + 1], b[i + 2]);
        assert!(h.is_ascii_hexdigit() && l.is_ascii_hexdigit(), "{n:?}");
        assert!(!h.is_ascii_lowercase() && !l.is_ascii_lowercase(), "{n:?}");
        let c = u8::from_str_radix(&n[i + 1..i + 3], 16).unwrap();
        assert!(
            !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')),
            "unreserved character left encoded: {raw:?} -> {n:?}"
        );
    }
    // Fixed point. (A path with an escape takes the slow path and comes
    // back owned even when unchanged: only the value is compared.)
    let again = normalize_path(n).expect("a normalised path normalises");
    assert_eq!(again, n, "not idempotent: {raw:?}");
    if let Cow::Borrowed(_) = norm {
        assert_eq!(n, raw);
    }
    // An origin-form path the http crate accepts stays acceptable.
    if raw.parse::<http::uri::PathAndQuery>().is_ok() && !raw.contains('?') && !raw.contains('#') {
        assert!(
            n.parse::<http::uri::PathAndQuery>().is_ok(),
            "normalised path is no longer a valid request target: {raw:?} -> {n:?}"
        );
    }
    // Routing.
    let p = policy();
    let r1 = p.route(&method, n).map(|r| r.index());
    let r2 = p.route(&method, &again).map(|r| r.index());
    assert_eq!(r1, r2);
    let routes = crate::routes();
    let want = reference_route(&routes, &method, n);
    assert_eq!(r1, want, "route for {method} {n:?}");
    // The public prefix never covers a sibling like /publicx.
    if let Some(r) = p.route(&method, n)
        && r.auth == RouteAuth::None
    {
        assert!(
            n == "/public"
                || n.starts_with("/public/")
                || n == "/health"
                || n.starts_with("/static/")
                || n == "/caf%C3%A9",
            "public route for {n:?}"
        );
    }
}
