//! The one path normaliser and the query helpers. A leaf: it imports nothing
//! of ours, so every module that reads a request target can use it.
//!
//! The rule the normaliser builds to: the path the gate decides on is the
//! path it forwards, and that path has one meaning on every mainstream
//! backend (Tomcat/Jetty/Spring, nginx, Go's `net/http`, WSGI/ASGI servers).
//! What some backend would read differently is refused instead of guessed.

use std::borrow::Cow;

/// Why a path cannot be decided on (answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
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
    /// `;` starts a path parameter for Java servers (Tomcat, Jetty, Spring),
    /// which strip it before routing; other servers keep it. Refused unless
    /// `paths.allow_path_parameters`.
    #[error("path contains a path parameter (;)")]
    PathParameter,
    /// `%3B` decodes to `;` on some servers after parameters were stripped,
    /// and before on others: refused even when parameters are allowed.
    #[error("path contains an encoded semicolon")]
    EncodedSemicolon,
    /// `%25` followed by two hex digits: a second decoding (which some
    /// backends and frameworks do) would read another character.
    #[error("path contains a double percent-encoding")]
    DoubleEncoding,
    #[error("path contains a control character")]
    ControlChar,
    #[error("path contains a fragment (#)")]
    Fragment,
}

/// How paths are read, from `[paths]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathRules {
    /// Keep `;` parameters: routes are matched on the path with every
    /// segment's parameters removed, and exactly that path is forwarded.
    pub allow_path_parameters: bool,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Bytes a normal path carries raw: RFC 3986 `pchar` less `;` (a path
/// parameter) and `%` (always an escape). Every other byte is carried as
/// an upper-case escape. Backends decode both spellings to the same byte,
/// so there must be only one: `%21` becomes `!`, a raw `é` becomes `%C3%A9`.
const fn raw_in_normal_path(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
        )
}

/// `raw_in_normal_path` as a table, with `/` added (for the fast path).
static FAST_OK: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = raw_in_normal_path(i as u8) || i as u8 == b'/';
        i += 1;
    }
    t
};

/// Normalises a request path under the default rules (path parameters
/// refused). See [`normalize_path_with`].
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    normalize_path_with(raw, PathRules::default())
}

/// Normalises a request path so that one resource has one spelling:
/// unreserved characters are percent-decoded, other escapes upper-cased,
/// `.`/`..` resolved (never above the root), `//` merged. A path that would
/// stay ambiguous for some backend is refused instead: an encoded `/`, `\`
/// or `;`, a raw backslash, a control character (raw or encoded, NUL
/// included), a double encoding (`%25` + two hex digits), a fragment,
/// invalid UTF-8 once decoded, and `;` path parameters unless
/// `rules.allow_path_parameters` (then they are removed from every segment
/// before the dot segments are resolved, as Tomcat does).
pub fn normalize_path_with(raw: &str, rules: PathRules) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Fast path, the common case: nothing to decode or check, no empty, `.`
    // or `..` segment. Such a path is already normal.
    if bytes.iter().all(|&b| FAST_OK[b as usize])
        && !raw.contains("//")
        && !raw.split('/').any(|seg| seg == "." || seg == "..")
    {
        return Ok(Cow::Borrowed(raw));
    }
    // Pass 1, per segment: drop parameters (when allowed), decode the
    // unreserved escapes, refuse what stays ambiguous, and check that the
    // fully decoded path is UTF-8.
    let mut segs: Vec<String> = Vec::new();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut last_is_dir = false;
    for raw_seg in raw[1..].split('/') {
        let seg = match raw_seg.find(';') {
            Some(_) if !rules.allow_path_parameters => return Err(PathError::PathParameter),
            Some(i) => &raw_seg[..i],
            None => raw_seg,
        };
        let seg = decode_segment(seg, &mut decoded)?;
        decoded.push(b'/');
        last_is_dir = matches!(seg.as_str(), "" | "." | "..");
        match seg.as_str() {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            _ => segs.push(seg),
        }
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(PathError::BadUtf8);
    }
    let mut norm = String::with_capacity(raw.len());
    for s in &segs {
        norm.push('/');
        norm.push_str(s);
    }
    if norm.is_empty() || last_is_dir {
        norm.push('/');
    }
    Ok(Cow::Owned(norm))
}

/// One segment (no `/`, parameters already removed) in normal form: each
/// escape decoded, then every byte that a normal path does not carry raw
/// (`raw_in_normal_path`) re-encoded in upper case. The decoded bytes are
/// appended to `decoded` for the UTF-8 check.
fn decode_segment(seg: &str, decoded: &mut Vec<u8>) -> Result<String, PathError> {
    let bytes = seg.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let c = match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEncoding);
                };
                let c = h * 16 + l;
                match c {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    b';' => return Err(PathError::EncodedSemicolon),
                    0 => return Err(PathError::Nul),
                    _ => {}
                }
                i += 3;
                c
            }
            b'\\' => return Err(PathError::Backslash),
            b'#' => return Err(PathError::Fragment),
            _ => {
                i += 1;
                b
            }
        };
        if c == 0 {
            return Err(PathError::Nul);
        }
        if c < 0x20 || c == 0x7f {
            return Err(PathError::ControlChar);
        }
        decoded.push(c);
        // An encoded `%` followed by two hex digits (raw or decoded): a
        // second decoding would read another character.
        if let [.., b'%', h, l] = decoded[..]
            && hex(h).is_some()
            && hex(l).is_some()
        {
            return Err(PathError::DoubleEncoding);
        }
        if raw_in_normal_path(c) {
            out.push(c as char);
        } else {
            out.push('%');
            out.push(b"0123456789ABCDEF"[(c >> 4) as usize] as char);
            out.push(b"0123456789ABCDEF"[(c & 15) as usize] as char);
        }
    }
    Ok(out)
}

/// A path written in the configuration (a route's `path` or `prefix`, the
/// status path) in the form requests are compared in: normalised like a
/// request path (so `/café` and `/Admin/../x` mean what a request for them
/// sends). An error when no request could ever match it.
pub fn normalize_config_path(p: &str) -> Result<String, PathError> {
    normalize_path(p).map(Cow::into_owned)
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
    strip_query_params(q, &[name])
}

/// The query without any parameter whose decoded name is in `names`
/// (`None` if nothing remains).
pub fn strip_query_params(q: &str, names: &[&str]) -> Option<String> {
    let kept: Vec<&str> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let k = decode_component(p.split_once('=').map_or(p, |(k, _)| k));
            !names.contains(&k.as_str())
        })
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: PathRules = PathRules {
        allow_path_parameters: true,
    };

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
        assert_eq!(normalize_path("/a/.").unwrap(), "/a/");
        assert_eq!(normalize_path("/a%20b").unwrap(), "/a%20b");
        assert_eq!(normalize_path("/a%3fb").unwrap(), "/a%3Fb");
        assert_eq!(normalize_path("/caf%C3%A9").unwrap(), "/caf%C3%A9");
        assert_eq!(normalize_path("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(normalize_path("/café").unwrap(), "/caf%C3%A9");
        assert_eq!(normalize_path("/a%21b%3A%40").unwrap(), "/a!b:@");
        assert_eq!(normalize_path("/a!b:@").unwrap(), "/a!b:@");
        assert_eq!(normalize_path("/a\"b").unwrap(), "/a%22b");
        assert_eq!(normalize_path("/100%25").unwrap(), "/100%25");
        assert_eq!(normalize_path("/").unwrap(), "/");
        for (p, e) in [
            ("/status%2F..", PathError::EncodedSeparator),
            ("/a%5cb", PathError::EncodedSeparator),
            ("/a%00", PathError::Nul),
            ("/a%FF", PathError::BadUtf8),
            ("/a%c0%ae", PathError::BadUtf8),
            ("/a%G1", PathError::BadEncoding),
            ("/a%", PathError::BadEncoding),
            ("/a%u002e", PathError::BadEncoding),
            ("/a\\b", PathError::Backslash),
            ("*", PathError::NotAbsolute),
            ("/status;x", PathError::PathParameter),
            ("/public/..;/admin", PathError::PathParameter),
            ("/admin;x=1/secret", PathError::PathParameter),
            ("/a%3Bb", PathError::EncodedSemicolon),
            ("/a%3bb", PathError::EncodedSemicolon),
            ("/a%252e%252e/x", PathError::DoubleEncoding),
            ("/a%252F", PathError::DoubleEncoding),
            ("/a%0a", PathError::ControlChar),
            ("/a%7F", PathError::ControlChar),
            ("/a\tb", PathError::ControlChar),
            ("/a#/../b", PathError::Fragment),
        ] {
            assert_eq!(normalize_path(p).unwrap_err(), e, "{p}");
        }
    }

    #[test]
    fn path_parameters_when_allowed() {
        let n = |p| normalize_path_with(p, PARAMS);
        assert_eq!(n("/public/..;/admin/secret").unwrap(), "/admin/secret");
        assert_eq!(n("/admin;x=1/secret").unwrap(), "/admin/secret");
        assert_eq!(n("/a;jsessionid=1").unwrap(), "/a");
        assert_eq!(n("/a/;x/b").unwrap(), "/a/b");
        assert_eq!(n("/a/..;x").unwrap(), "/");
        assert_eq!(n("/a/.;x/b").unwrap(), "/a/b");
        assert_eq!(n("/a%3Bb").unwrap_err(), PathError::EncodedSemicolon);
        // The parameter's own content is never decoded or checked: it is gone.
        assert_eq!(n("/a;%2F/b").unwrap(), "/a/b");
    }

    #[test]
    fn config_paths() {
        assert_eq!(normalize_config_path("/café").unwrap(), "/caf%C3%A9");
        assert_eq!(normalize_config_path("/Admin/../x").unwrap(), "/x");
        assert_eq!(normalize_config_path("/api/").unwrap(), "/api/");
        assert_eq!(normalize_config_path("/a b").unwrap(), "/a%20b");
        assert!(normalize_config_path("/a;b").is_err());
    }

    /// Random paths over the characters that matter: whatever comes out is
    /// normal (no empty, `.` or `..` segment, even once decoded; no `;`),
    /// and normalising it again changes nothing.
    #[test]
    fn normalisation_is_idempotent_and_leaves_no_dot_segments() {
        use rand::Rng;
        const ALPHABET: &[u8] = b"/./%2eEfF5cC00a;3bB#41";
        let mut rng = rand::rng();
        for rules in [PathRules::default(), PARAMS] {
            for _ in 0..20_000 {
                let len = rng.random_range(1..24);
                let mut p = String::from("/");
                for _ in 0..len {
                    p.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
                }
                let Ok(n) = normalize_path_with(&p, rules) else {
                    continue;
                };
                assert!(n.starts_with('/'), "{p:?} -> {n:?}");
                assert!(!n.contains("//"), "{p:?} -> {n:?}");
                assert!(!n.contains(';'), "{p:?} -> {n:?}");
                let decoded = percent_encoding::percent_decode_str(&n)
                    .decode_utf8_lossy()
                    .into_owned();
                assert!(
                    !decoded.split('/').any(|seg| seg == "." || seg == ".."),
                    "{p:?} -> {n:?}"
                );
                assert!(!n.to_ascii_uppercase().contains("%2F"), "{p:?} -> {n:?}");
                assert_eq!(
                    normalize_path(&n).unwrap(),
                    n,
                    "not idempotent for {p:?} (under the strict rules too)"
                );
            }
        }
    }

    #[test]
    fn query_helpers() {
        assert_eq!(
            strip_query_param("token=x&a=1", "token").as_deref(),
            Some("a=1")
        );
        assert_eq!(strip_query_param("tok%65n=x", "token"), None);
        assert_eq!(
            strip_query_params("a=1&jwt=x&token=y", &["jwt", "token"]).as_deref(),
            Some("a=1")
        );
        let p: Vec<_> = query_pairs("a=1+2&b=%41").collect();
        assert_eq!(
            p,
            vec![("a".into(), "1 2".into()), ("b".into(), "A".into())]
        );
    }
}
