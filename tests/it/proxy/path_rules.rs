//! Property test: every path the gate forwards selects, under the path rules
//! of Tomcat, nginx and Go's `net/http`, the same route the gate decided on.
//!
//! The three backends are modelled from their documented (and source-level)
//! behaviour; the real programs are exercised end to end in
//! `real_backends.rs`:
//! - Tomcat (CoyoteAdapter): removes `;` path parameters from every segment,
//!   then percent-decodes (an encoded `/` or `\` is refused, 400), then
//!   normalises (`//` merged, `.`/`..` resolved; above the root is 400).
//! - nginx: percent-decodes, merges slashes, resolves dot segments (above the
//!   root is 400); `;` is an ordinary character.
//! - Go `net/http`: `URL.Path` is the decoded path; `ServeMux` cleans it with
//!   `path.Clean` (dots resolved, never above the root, slashes merged, a
//!   trailing slash kept).

use jwtgate::config::{Config, RouteAuth, RouteConfig};
use jwtgate::proxy::policy::Policy;
use jwtgate::uri::{PathRules, normalize_path, normalize_path_with};
use rand::Rng;

#[derive(Debug, Clone, Copy)]
enum Backend {
    Tomcat,
    Nginx,
    Go,
}

fn unhex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decodes; `None` on a broken escape (every backend answers 400).
fn decode(p: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'%' {
            let h = unhex(*p.get(i + 1)?)?;
            let l = unhex(*p.get(i + 2)?)?;
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(p[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Resolves dot segments and merges slashes; `None` when `..` climbs above
/// the root and `strict` (Tomcat, nginx), else clamps (Go).
fn resolve(p: &[u8], strict: bool) -> Option<Vec<u8>> {
    let mut segs: Vec<&[u8]> = Vec::new();
    let parts: Vec<&[u8]> = p.split(|b| *b == b'/').skip(1).collect();
    let mut trailing = false;
    for seg in &parts {
        trailing = matches!(*seg, b"" | b"." | b"..");
        match *seg {
            b"" | b"." => {}
            b".." => {
                if segs.pop().is_none() && strict {
                    return None;
                }
            }
            s => segs.push(s),
        }
    }
    let mut out = Vec::new();
    for s in segs {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() || trailing {
        out.push(b'/');
    }
    Some(out)
}

/// The decoded path a backend routes on, or `None` if it refuses the request.
fn backend_path(backend: Backend, raw: &str) -> Option<Vec<u8>> {
    let raw = raw.as_bytes();
    match backend {
        Backend::Tomcat => {
            let mut stripped = Vec::new();
            for (i, seg) in raw.split(|b| *b == b'/').enumerate() {
                if i > 0 {
                    stripped.push(b'/');
                }
                let end = seg.iter().position(|b| *b == b';').unwrap_or(seg.len());
                stripped.extend_from_slice(&seg[..end]);
            }
            let d = decode(&stripped)?;
            if d.contains(&b'\\') || d.contains(&0) {
                return None;
            }
            // An encoded slash is refused by default (ALLOW_ENCODED_SLASH off).
            if decode_keeps_encoded_slash(&stripped) {
                return None;
            }
            resolve(&d, true)
        }
        Backend::Nginx => {
            let d = decode(raw)?;
            if d.contains(&0) {
                return None;
            }
            resolve(&d, true)
        }
        Backend::Go => {
            let d = decode(raw)?;
            resolve(&d, false)
        }
    }
}

fn decode_keeps_encoded_slash(p: &[u8]) -> bool {
    let s = String::from_utf8_lossy(p).to_ascii_uppercase();
    s.contains("%2F") || s.contains("%5C")
}

/// A decoded path in the form the gate compares routes in (`None` when the
/// gate would not accept it at all, e.g. a `;` once decoded).
fn gate_form(decoded: &[u8]) -> Option<String> {
    let mut encoded = String::new();
    for &b in decoded {
        if b == b'/' || b.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    normalize_path(&encoded).ok().map(|c| c.into_owned())
}

fn policy(case_insensitive: bool) -> Policy {
    let mut c = Config::default();
    c.paths.case_insensitive = case_insensitive;
    let route = |prefix: &str, auth: RouteAuth| RouteConfig {
        prefix: prefix.into(),
        auth,
        ..Default::default()
    };
    c.routes = vec![
        route("/public/", RouteAuth::None),
        route("/a;b/", RouteAuth::Token),
        route("/admin", RouteAuth::Token),
        route("/x!y/", RouteAuth::None),
        route("/caf\u{e9}/", RouteAuth::None),
    ];
    // `/a;b/` can never match: the validator refuses it; here it shows that
    // no request selects it either.
    c.routes.remove(1);
    Policy::from_config(&c)
}

fn route_id(p: &Policy, path: &str) -> Option<String> {
    p.route(&http::Method::GET, path).map(|r| format!("{r:?}"))
}

const ALPHABET: &[&str] = &[
    "/",
    "/",
    "/",
    ".",
    "..",
    "%2e",
    "%2E",
    ";",
    "%3B",
    "a",
    "admin",
    "public",
    "x!y",
    "x%21y",
    "caf%C3%A9",
    "caf\u{e9}",
    "%41",
    "%2f",
    "%5c",
    "%25",
    "%252e",
    "=",
    "b",
    "%20",
    "A",
];

fn random_path(rng: &mut impl Rng) -> String {
    let mut p = String::from("/");
    for _ in 0..rng.random_range(1..10) {
        p.push_str(ALPHABET[rng.random_range(0..ALPHABET.len())]);
    }
    p
}

#[test]
fn every_forwarded_path_selects_the_same_route_on_every_backend() {
    let mut rng = rand::rng();
    let mut accepted = 0;
    for allow_params in [false, true] {
        let rules = PathRules {
            allow_path_parameters: allow_params,
        };
        for ci in [false, true] {
            let pol = policy(ci);
            for _ in 0..30_000 {
                let p = random_path(&mut rng);
                let Ok(n) = normalize_path_with(&p, rules) else {
                    continue;
                };
                accepted += 1;
                let decided = route_id(&pol, &n);
                for b in [Backend::Tomcat, Backend::Nginx, Backend::Go] {
                    // What each backend makes of the path the gate forwards.
                    let Some(seen) = backend_path(b, &n) else {
                        continue;
                    };
                    let Some(form) = gate_form(&seen) else {
                        panic!(
                            "{b:?} reads {p:?} (forwarded {n:?}) as {seen:?}, a path the gate refuses"
                        );
                    };
                    assert_eq!(
                        route_id(&pol, &form),
                        decided,
                        "{b:?}: {p:?} forwarded as {n:?} is {form:?} there"
                    );
                    // And, where the gate forwards the request's own reading,
                    // the backend reading the original agrees too.
                    let reads_original = !allow_params || matches!(b, Backend::Tomcat);
                    if reads_original && let Some(orig) = backend_path(b, &p) {
                        let Some(form) = gate_form(&orig) else {
                            continue;
                        };
                        assert_eq!(
                            route_id(&pol, &form),
                            decided,
                            "{b:?} reads the original {p:?} as {form:?}; the gate as {n:?}"
                        );
                    }
                }
            }
        }
    }
    assert!(accepted > 10_000, "too few accepted paths: {accepted}");
}

/// The attacks of issue 7, by name: what Tomcat resolves them to is never
/// a path the gate let through for another route.
#[test]
fn known_parameter_attacks_are_refused_or_resolved_like_tomcat() {
    let pol = policy(false);
    for p in [
        "/public/..;/admin/secret",
        "/public/..;x=1/admin/secret",
        "/admin;x=1/secret",
        "/public/%2e%2e;/admin",
        "/public/..%3B/admin",
    ] {
        assert!(normalize_path(p).is_err(), "{p} accepted by default");
        let with = normalize_path_with(
            p,
            PathRules {
                allow_path_parameters: true,
            },
        );
        if let Ok(n) = with {
            let tomcat = backend_path(Backend::Tomcat, p).unwrap();
            assert_eq!(gate_form(&tomcat).unwrap(), n.as_ref(), "{p}");
            assert_ne!(
                route_id(&pol, &n),
                route_id(&pol, "/public/x"),
                "{p} took the public route"
            );
        }
    }
}
