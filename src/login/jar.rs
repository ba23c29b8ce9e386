//! The sign-in's cookies: reading a value (in chunks when it is larger than
//! one cookie allows) from the Cookie headers, the Set-Cookie headers that
//! write or clear it, and stripping the gate's cookies from what the
//! upstream receives. Pure: headers in, headers out.
//!
//! A value longer than [`CHUNK_LEN`] is split: the first chunk is `NAME`,
//! the next `NAME-1`, `NAME-2`, ... at most [`MAX_CHUNKS`] in all. Every
//! cookie is `Path=/; Secure; HttpOnly; SameSite=Lax` without `Domain`, so
//! `__Host-` names are accepted by browsers and no other host can set them.
//!
//! Hand-written rather than with the `cookie` crate: the grammar read here
//! is small (pairs split at `;`, the name before the first `=`), the gate
//! writes one fixed set of attributes, and what matters is what `cookie`
//! would leave to us anyway: reading every Cookie header, treating a
//! repeated name as absent, assembling chunks, and bounded work on a
//! hostile header. One dependency fewer to follow.

use std::borrow::Cow;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

/// The longest chunk, in bytes (browsers keep name + value up to 4,096).
pub const CHUNK_LEN: usize = 3_800;
/// The most cookies one value is split into.
pub const MAX_CHUNKS: usize = 4;
/// The longest value written or read.
pub const MAX_VALUE_LEN: usize = CHUNK_LEN * MAX_CHUNKS;
/// The longest cookie name accepted (with its chunk suffix it stays well
/// within a cookie next to a full chunk).
pub const MAX_NAME_LEN: usize = 128;

/// The attributes of every cookie the gate sets.
const ATTRIBUTES: &str = "Path=/; Secure; HttpOnly; SameSite=Lax";

/// Why Set-Cookie headers could not be made. Never holds the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JarError {
    #[error(
        "cookie name {0:?} is not an RFC 6265 token (without `*`) of at most {MAX_NAME_LEN} bytes"
    )]
    BadName(String),
    #[error("the cookie value is empty")]
    Empty,
    #[error("the cookie value holds a character a cookie cannot carry")]
    BadValue,
    #[error(
        "the cookie value is too large ({len} bytes; at most {MAX_CHUNKS} cookies of {CHUNK_LEN})"
    )]
    TooLarge { len: usize },
}

/// Is `name` a cookie name the jar accepts? An RFC 6265 token of at most
/// [`MAX_NAME_LEN`] bytes, without `*`: a trailing `*` makes a prefix
/// pattern for [`strip`], so a name holding one could not be told apart.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(crate::config::login::cookie_name_byte)
}

/// RFC 6265 §4.1.1 cookie-octet: visible ASCII except `"`, `,`, `;`, `\`.
fn cookie_octet(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\')
}

/// The name of chunk `i` (0: the name itself).
pub fn chunk_name(name: &str, i: usize) -> String {
    if i == 0 {
        name.to_owned()
    } else {
        format!("{name}-{i}")
    }
}

fn header(text: &str) -> Result<HeaderValue, JarError> {
    HeaderValue::from_str(text).map_err(|_| JarError::BadValue)
}

fn expire(name: &str, i: usize) -> Result<HeaderValue, JarError> {
    header(&format!(
        "{}=; Max-Age=0; {ATTRIBUTES}",
        chunk_name(name, i)
    ))
}

/// The Set-Cookie header values that store `value` under `name`, in as many
/// chunks as it needs, with `Max-Age` when given (else a browser-session
/// cookie); the chunk slots above those used are expired, so a value that
/// shrank leaves no stale chunk behind.
pub fn set_cookie_headers(
    name: &str,
    value: &str,
    max_age: Option<u64>,
) -> Result<Vec<HeaderValue>, JarError> {
    if !valid_name(name) {
        return Err(JarError::BadName(name.to_owned()));
    }
    if value.is_empty() {
        return Err(JarError::Empty);
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(JarError::TooLarge { len: value.len() });
    }
    if !value.bytes().all(cookie_octet) {
        return Err(JarError::BadValue);
    }
    let max_age = max_age
        .map(|s| format!("Max-Age={s}; "))
        .unwrap_or_default();
    // ASCII only (checked above): byte chunks are string chunks.
    let chunks: Vec<&str> = value
        .as_bytes()
        .chunks(CHUNK_LEN)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    let mut out = Vec::with_capacity(MAX_CHUNKS);
    for i in 0..MAX_CHUNKS {
        out.push(match chunks.get(i) {
            Some(chunk) => header(&format!(
                "{}={chunk}; {max_age}{ATTRIBUTES}",
                chunk_name(name, i)
            ))?,
            None => expire(name, i)?,
        });
    }
    Ok(out)
}

/// The Set-Cookie header values that expire `name` and all its chunks.
pub fn clear_cookie_headers(name: &str) -> Result<Vec<HeaderValue>, JarError> {
    if !valid_name(name) {
        return Err(JarError::BadName(name.to_owned()));
    }
    (0..MAX_CHUNKS).map(|i| expire(name, i)).collect()
}

// `slot_of` reads one digit.
const _: () = assert!(MAX_CHUNKS >= 1 && MAX_CHUNKS <= 10);

/// Which chunk slot a cookie named `k` fills for the value `name`: 0 for
/// `name`, `i` for `name-i` (`1 <= i < MAX_CHUNKS`, no leading zero).
fn slot_of(k: &[u8], name: &[u8]) -> Option<usize> {
    if k == name {
        return Some(0);
    }
    let rest = k.strip_prefix(name)?.strip_prefix(b"-")?;
    match rest {
        [d @ b'1'..=b'9'] => Some(usize::from(d - b'0')).filter(|i| *i < MAX_CHUNKS),
        _ => None,
    }
}

/// The `(name, value)` pairs of one Cookie header value, leniently: split
/// at `;` (`auth::bearer::cookie_pieces`), trimmed, the name before the
/// first `=`; pieces without `=` are skipped.
fn pairs(value: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    crate::auth::bearer::cookie_pieces(value).filter_map(|pair| {
        let eq = memchr::memchr(b'=', pair)?;
        Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()))
    })
}

/// Are all of `bytes` cookie-octets? Without an early exit, so that the
/// compiler checks many bytes at a time.
fn all_cookie_octets(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |ok, &b| {
        ok & (b.wrapping_sub(0x21) < 0x5e) & (b != b'"') & (b != b',') & (b != b';') & (b != b'\\')
    })
}

/// Reads the value stored under `name`: the cookie `name` followed by its
/// consecutive chunks `name-1`, `name-2` ... (a chunk after a gap is
/// ignored). Every Cookie header is read (HTTP/2 splits them). None when
/// the cookie is absent, empty, given twice (under its name or a chunk's:
/// a second cookie can only come from elsewhere, e.g. a parent domain, so
/// neither is trusted), a chunk is longer than [`CHUNK_LEN`] or carries a
/// byte a cookie value cannot. One pass, no allocation but the result
/// (at most [`MAX_VALUE_LEN`] bytes), whatever the header holds.
pub fn read<'h>(headers: &'h HeaderMap, name: &str) -> Option<Cow<'h, str>> {
    if !valid_name(name) {
        return None;
    }
    let mut slots: [Option<&[u8]>; MAX_CHUNKS] = [None; MAX_CHUNKS];
    for value in headers.get_all(COOKIE) {
        for (k, v) in pairs(value.as_bytes()) {
            let Some(i) = slot_of(k, name.as_bytes()) else {
                continue;
            };
            if slots[i].is_some() {
                return None;
            }
            slots[i] = Some(v);
        }
    }
    let mut chunks = slots.iter().map_while(|s| *s).map(|chunk| {
        // RFC 6265 allows a value in double quotes.
        let chunk = match chunk {
            [b'"', inner @ .., b'"'] => inner,
            c => c,
        };
        // Cookie-octets are ASCII: the bytes are a str.
        (chunk.len() <= CHUNK_LEN && all_cookie_octets(chunk))
            .then(|| std::str::from_utf8(chunk).ok())
            .flatten()
    });
    // One chunk (the usual case): borrowed from the header, no copy.
    let first = chunks.next()??;
    let out = match chunks.next() {
        None => Cow::Borrowed(first),
        Some(second) => {
            let mut out = String::with_capacity(MAX_VALUE_LEN);
            out.push_str(first);
            out.push_str(second?);
            for c in chunks {
                out.push_str(c?);
            }
            Cow::Owned(out)
        }
    };
    (!out.is_empty()).then_some(out)
}

/// Does the cookie named `k` belong to `entry` (see [`strip`])?
fn is_ours(k: &[u8], entry: &str) -> bool {
    let starts = |p: &[u8]| k.len() >= p.len() && k[..p.len()].eq_ignore_ascii_case(p);
    match entry.strip_suffix('*') {
        Some(prefix) => starts(prefix.as_bytes()),
        None => {
            let n = entry.as_bytes();
            k.eq_ignore_ascii_case(n)
                || (starts(n)
                    && k.len() > n.len() + 1
                    && k[n.len()] == b'-'
                    && k[n.len() + 1..].iter().all(u8::is_ascii_digit))
        }
    }
}

/// Removes the gate's cookies from the Cookie headers the upstream will
/// receive: for each entry of `names`, the cookie of that name and its
/// chunks (`NAME-` followed by digits); an entry ending in `*` is a prefix
/// (`"__Host-jwtgate-flow-*"`: every flow cookie). Names are compared
/// ignoring ASCII case, so no spelling of them reaches the upstream. The
/// other cookies are kept byte for byte and in order, in one Cookie header
/// (none when nothing remains): `auth::bearer::strip_cookies`.
pub fn strip<S: AsRef<str>>(headers: &mut HeaderMap, names: &[S]) {
    if !headers.contains_key(COOKIE) {
        return;
    }
    crate::auth::bearer::strip_cookies(headers, |k| names.iter().any(|e| is_ours(k, e.as_ref())));
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "__Host-jwtgate";

    fn cookies(values: &[&str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for v in values {
            m.append(COOKIE, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    /// The `name=value` part of each Set-Cookie value, as a browser would
    /// send it back (expired ones left out).
    fn sent_back(set: &[HeaderValue]) -> String {
        set.iter()
            .map(|v| v.to_str().unwrap())
            .filter(|v| !v.contains("Max-Age=0"))
            .map(|v| v.split(';').next().unwrap())
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn value(len: usize) -> String {
        (0..len)
            .map(|i| {
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[i % 64] as char
            })
            .collect()
    }

    #[test]
    fn names_are_tokens() {
        for ok in [NAME, "a", "jwtgate_flow", "x-1", "a!#$%&'+.^`|~"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "a b", "a=b", "a;b", "a,b", "\"a\"", "a/b", "a\tb", "é", "a\u{7f}", "a:b", "[a]",
            "a*",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
            assert!(matches!(
                set_cookie_headers(bad, "v", None),
                Err(JarError::BadName(_))
            ));
            assert!(clear_cookie_headers(bad).is_err());
            assert_eq!(read(&cookies(&["a=1"]), bad), None);
        }
        assert!(!valid_name(&"a".repeat(MAX_NAME_LEN + 1)));
        assert!(valid_name(&"a".repeat(MAX_NAME_LEN)));
    }

    #[test]
    fn one_chunk_with_attributes_and_the_other_slots_expired() {
        let set = set_cookie_headers(NAME, "abc", Some(3600)).unwrap();
        assert_eq!(set.len(), MAX_CHUNKS);
        assert_eq!(
            set[0],
            "__Host-jwtgate=abc; Max-Age=3600; Path=/; Secure; HttpOnly; SameSite=Lax"
        );
        for (i, v) in set.iter().enumerate().skip(1) {
            assert_eq!(
                v.to_str().unwrap(),
                format!("__Host-jwtgate-{i}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax")
            );
        }
        let session = set_cookie_headers(NAME, "abc", None).unwrap();
        assert_eq!(
            session[0],
            "__Host-jwtgate=abc; Path=/; Secure; HttpOnly; SameSite=Lax"
        );
        for v in set.iter().chain(&session) {
            let v = v.to_str().unwrap();
            assert!(!v.to_ascii_lowercase().contains("domain"));
        }
    }

    #[test]
    fn large_values_are_chunked_and_read_back() {
        for len in [
            1,
            CHUNK_LEN - 1,
            CHUNK_LEN,
            CHUNK_LEN + 1,
            2 * CHUNK_LEN + 17,
            MAX_VALUE_LEN,
        ] {
            let v = value(len);
            let set = set_cookie_headers(NAME, &v, Some(60)).unwrap();
            assert_eq!(set.len(), MAX_CHUNKS);
            let used = len.div_ceil(CHUNK_LEN);
            let expired = set
                .iter()
                .filter(|h| h.to_str().unwrap().contains("Max-Age=0"))
                .count();
            assert_eq!(expired, MAX_CHUNKS - used, "{len}");
            for h in &set {
                let (pair, _) = h.to_str().unwrap().split_once(';').unwrap();
                assert!(pair.len() <= NAME.len() + 3 + CHUNK_LEN);
            }
            let back = sent_back(&set);
            assert_eq!(read(&cookies(&[&back]), NAME).as_deref(), Some(&v[..]));
            // Split over several Cookie headers (HTTP/2), in another order.
            let mut parts: Vec<&str> = back.split("; ").collect();
            parts.reverse();
            assert_eq!(read(&cookies(&parts), NAME).as_deref(), Some(&v[..]));
        }
        assert_eq!(
            set_cookie_headers(NAME, &value(MAX_VALUE_LEN + 1), None).unwrap_err(),
            JarError::TooLarge {
                len: MAX_VALUE_LEN + 1
            }
        );
    }

    #[test]
    fn bad_values_are_refused_without_being_named() {
        assert_eq!(
            set_cookie_headers(NAME, "", None).unwrap_err(),
            JarError::Empty
        );
        for bad in ["a b", "a;b", "a,b", "a\"b", "a\\b", "é", "a\nb"] {
            let e = set_cookie_headers(NAME, bad, None).unwrap_err();
            assert_eq!(e, JarError::BadValue);
            assert!(!format!("{e} {e:?}").contains(bad));
        }
        let secret = "s3cr3t-session-value";
        let e = set_cookie_headers("bad name", secret, None).unwrap_err();
        assert!(!format!("{e} {e:?}").contains(secret));
    }

    #[test]
    fn clearing_expires_every_slot() {
        let clear = clear_cookie_headers(NAME).unwrap();
        assert_eq!(clear.len(), MAX_CHUNKS);
        for (i, h) in clear.iter().enumerate() {
            let h = h.to_str().unwrap();
            assert!(h.starts_with(&format!("{}=;", chunk_name(NAME, i))), "{h}");
            assert!(h.contains("Max-Age=0") && h.contains("Path=/") && h.contains("Secure"));
        }
    }

    #[test]
    fn reading_is_lenient_about_other_cookies() {
        let m = cookies(&[
            "theme=dark;;  ; noequals; =x; __Host-jwtgate = abc ; other=1=2",
            "junk",
        ]);
        assert_eq!(read(&m, NAME).as_deref(), Some("abc"));
        let m = cookies(&["a=1; __Host-jwtgate=\"quoted\"; b=2"]);
        assert_eq!(read(&m, NAME).as_deref(), Some("quoted"));
        let mut m = HeaderMap::new();
        m.append(
            COOKIE,
            HeaderValue::from_bytes(b"pref=caf\xc3\xa9").unwrap(),
        );
        m.append(
            COOKIE,
            HeaderValue::from_bytes(b"x=\xff; __Host-jwtgate=v1").unwrap(),
        );
        assert_eq!(read(&m, NAME).as_deref(), Some("v1"));
    }

    #[test]
    fn absent_empty_ambiguous_or_malformed_is_none() {
        for (headers, why) in [
            (vec![], "no header"),
            (vec!["a=1; b=2"], "absent"),
            (vec!["__Host-jwtgate="], "empty"),
            (vec!["__Host-jwtgate-1=abc"], "chunk without its head"),
            (vec!["__Host-jwtgate=a; __Host-jwtgate=b"], "twice"),
            (
                vec!["__Host-jwtgate=a", "__Host-jwtgate=a"],
                "twice, two headers",
            ),
            (
                vec!["__Host-jwtgate=a; __Host-jwtgate-1=b; __Host-jwtgate-1=c"],
                "chunk twice",
            ),
            (vec!["__Host-jwtgate=a b"], "space in value"),
            (vec!["__Host-jwtgate=a\"b"], "quote in value"),
            (vec!["__Host-jwtgate=a\\b"], "backslash in value"),
            (vec!["__Host-jwtgate=a,b"], "comma in value"),
        ] {
            assert_eq!(read(&cookies(&headers), NAME), None, "{why}");
        }
        let mut m = HeaderMap::new();
        m.append(
            COOKIE,
            HeaderValue::from_bytes(b"__Host-jwtgate=caf\xc3\xa9").unwrap(),
        );
        assert_eq!(read(&m, NAME), None, "non-ASCII value");
        let long = format!("{NAME}={}", value(CHUNK_LEN + 1));
        assert_eq!(read(&cookies(&[&long]), NAME), None, "chunk too long");
    }

    #[test]
    fn chunks_are_read_in_order_up_to_the_first_gap() {
        let m = cookies(&["__Host-jwtgate-2=C; __Host-jwtgate=A; x=1; __Host-jwtgate-1=B"]);
        assert_eq!(read(&m, NAME).as_deref(), Some("ABC"));
        let m = cookies(&["__Host-jwtgate=A; __Host-jwtgate-2=C"]);
        assert_eq!(read(&m, NAME).as_deref(), Some("A"));
        // Not chunks: other spellings of the suffix, and slots past the last.
        let m = cookies(&[
            "__Host-jwtgate=A; __Host-jwtgate-01=X; __Host-jwtgate-1x=X; __Host-jwtgate-4=X; \
             __Host-jwtgate-10=X; __host-jwtgate-1=X; __Host-jwtgate_1=X; __Host-jwtgate--1=X",
        ]);
        assert_eq!(read(&m, NAME).as_deref(), Some("A"));
        assert_eq!(read(&cookies(&["__host-jwtgate=A"]), NAME), None);
    }

    #[test]
    fn a_hostile_header_is_read_in_one_bounded_pass() {
        // 64 KiB of pairs: thousands of near-miss names, then the cookie.
        let mut h = String::new();
        let mut i = 0;
        while h.len() < 64 * 1024 - 100 {
            h.push_str(&format!("__Host-jwtgate-{}{}=x; ", i % 7 + 4, i));
            i += 1;
        }
        h.push_str("__Host-jwtgate=ok");
        assert!(i > 2_000);
        let m = cookies(&[&h]);
        let start = std::time::Instant::now();
        for _ in 0..10 {
            assert_eq!(read(&m, NAME).as_deref(), Some("ok"));
        }
        // Linear: well under a second even unoptimised on a busy machine.
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        // Full chunks everywhere, bounded result.
        let full = value(CHUNK_LEN);
        let big: Vec<String> = (0..MAX_CHUNKS)
            .map(|i| format!("{}={full}", chunk_name(NAME, i)))
            .collect();
        let headers = cookies(&[&big.join("; ")]);
        let got = read(&headers, NAME).unwrap();
        assert_eq!(got.len(), MAX_VALUE_LEN);
    }

    #[test]
    fn strip_removes_ours_and_keeps_the_rest_in_order() {
        let mut m = cookies(&[
            "a=1; __Host-jwtgate=x; b=2; __Host-jwtgate-1=y",
            "__Host-jwtgate-flow-abc=s; c=3;__HOST-JWTGATE-12=z; __Host-jwtgatex=keep",
            "d=\"q\"; __Host-jwtgate-=keep2; noequals",
        ]);
        strip(&mut m, &[NAME, "__Host-jwtgate-flow-*"]);
        assert_eq!(m.get_all(COOKIE).iter().count(), 1);
        assert_eq!(
            m.get(COOKIE).unwrap(),
            "a=1; b=2; c=3; __Host-jwtgatex=keep; d=\"q\"; __Host-jwtgate-=keep2; noequals"
        );
        assert_eq!(read(&m, NAME), None);
        let mut only = cookies(&[
            "__Host-jwtgate=x",
            "__Host-jwtgate-flow-1=y; __Host-jwtgate-3=z",
        ]);
        strip(&mut only, &[NAME, "__Host-jwtgate-flow-*"]);
        assert!(only.get(COOKIE).is_none());
        let mut none = HeaderMap::new();
        strip(&mut none, &[NAME]);
        assert!(none.is_empty());
        // Bytes outside ASCII in other cookies are kept.
        let mut m = HeaderMap::new();
        m.append(
            COOKIE,
            HeaderValue::from_bytes(b"pref=caf\xc3\xa9; __Host-jwtgate=x").unwrap(),
        );
        strip(&mut m, &[NAME]);
        assert_eq!(m.get(COOKIE).unwrap().as_bytes(), b"pref=caf\xc3\xa9");
    }
}
