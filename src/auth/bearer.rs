//! Finding the token in a request: only in the places `auth.token_from` lists.

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};

/// A place a token may be read from (parsed with the configuration).
pub use crate::config::TokenSource;

/// Why no usable token could be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ExtractError {
    /// RFC 6750 §3.1 invalid_request: more than one token or Authorization header.
    Ambiguous(&'static str),
    /// A bearer credential that is not even token68.
    Malformed,
}

/// A token found in the request, and where.
#[derive(Debug)]
pub struct Found {
    pub token: String,
    pub source: TokenSource,
}

/// Reads the one token of the request from the configured places.
/// `Ok(None)`: no token at all (a plain 401 without an error attribute).
pub fn extract(
    headers: &HeaderMap,
    query: Option<&str>,
    sources: &[TokenSource],
) -> Result<Option<Found>, ExtractError> {
    let mut found: Option<Found> = None;
    for source in sources {
        let token = match source {
            TokenSource::Header => from_header(headers)?,
            TokenSource::Query(name) => from_query(query, name)?,
            TokenSource::Cookie(name) => from_cookie(headers, name)?,
        };
        if let Some(token) = token {
            if found.is_some() {
                // RFC 6750 §2: a client must not use more than one method.
                return Err(ExtractError::Ambiguous("token sent in more than one place"));
            }
            found = Some(Found {
                token,
                source: source.clone(),
            });
        }
    }
    Ok(found)
}

fn from_header(headers: &HeaderMap) -> Result<Option<String>, ExtractError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ExtractError::Ambiguous(
            "more than one Authorization header",
        ));
    }
    let value = value.to_str().map_err(|_| ExtractError::Malformed)?;
    let Some((scheme, rest)) = value.split_once(' ') else {
        // "Bearer" alone is a malformed bearer credential; another scheme alone
        // is simply not a bearer token.
        return if value.eq_ignore_ascii_case("bearer") {
            Err(ExtractError::Malformed)
        } else {
            Ok(None)
        };
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = rest.trim_matches(' ');
    if token.is_empty() || !token.bytes().all(is_token68) {
        return Err(ExtractError::Malformed);
    }
    Ok(Some(token.to_string()))
}

/// RFC 7235 token68 characters.
/// The bytes of RFC 6750's `b64token`, as a table: one load per byte of
/// every token on every request, where the chain of comparisons cost five
/// times as many instructions.
const TOKEN68: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        b += 1;
    }
    t
};

fn is_token68(b: u8) -> bool {
    TOKEN68[b as usize]
}

fn from_query(query: Option<&str>, name: &str) -> Result<Option<String>, ExtractError> {
    let Some(q) = query else { return Ok(None) };
    let mut found = None;
    for (k, v) in crate::uri::query_pairs(q) {
        if k == name {
            if found.is_some() {
                return Err(ExtractError::Ambiguous("token parameter given twice"));
            }
            found = Some(v);
        }
    }
    match found {
        Some(v) if v.is_empty() => Err(ExtractError::Malformed),
        Some(v) if !v.bytes().all(is_token68) => Err(ExtractError::Malformed),
        other => Ok(other),
    }
}

fn from_cookie(headers: &HeaderMap, name: &str) -> Result<Option<String>, ExtractError> {
    let mut found = None;
    for value in headers.get_all(COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if k.trim() == name {
                if found.is_some() {
                    return Err(ExtractError::Ambiguous("token cookie given twice"));
                }
                found = Some(v.trim().trim_matches('"').to_string());
            }
        }
    }
    match found {
        Some(v) if v.is_empty() || !v.bytes().all(is_token68) => Err(ExtractError::Malformed),
        other => Ok(other),
    }
}

/// Removes the cookie `name` from the Cookie headers (a token read from a
/// cookie is not forwarded). A Cookie header that is not visible ASCII is
/// dropped whole, as the token reader skips it (so the bearer fuzz target's
/// model of the kept cookies holds); the rest is [`strip_cookies`].
pub fn strip_cookie(headers: &mut HeaderMap, name: &str) {
    if headers.get_all(COOKIE).iter().any(|v| v.to_str().is_err()) {
        let readable: Vec<http::HeaderValue> = headers
            .get_all(COOKIE)
            .iter()
            .filter(|v| v.to_str().is_ok())
            .cloned()
            .collect();
        headers.remove(COOKIE);
        for v in readable {
            headers.append(COOKIE, v);
        }
    }
    strip_cookies(headers, |k| k == name.as_bytes());
}

/// The non-empty pieces of one Cookie header value, split at `;` and
/// trimmed of spaces and tabs. Split with memchr: this runs on every
/// request that carries cookies, over values of hundreds of bytes.
pub fn cookie_pieces(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(v);
    std::iter::from_fn(move || {
        loop {
            let v = rest?;
            let (pair, next) = match memchr::memchr(b';', v) {
                Some(i) => (&v[..i], Some(&v[i + 1..])),
                None => (v, None),
            };
            rest = next;
            let pair = pair.trim_ascii();
            if !pair.is_empty() {
                return Some(pair);
            }
        }
    })
}

/// Removes from the Cookie headers every cookie whose name `remove` picks.
/// The other `name=value` pairs (and pieces without `=`) are kept byte for
/// byte and in order, bytes outside ASCII included, in one Cookie header
/// (the HTTP/2 split ones joined with `"; "`, as RFC 9113 §8.2.3 does for
/// HTTP/1.1); no Cookie header is left when nothing remains. Pairs are
/// split at `;` and trimmed of spaces and tabs; the name is what precedes
/// the first `=`, trimmed.
pub fn strip_cookies(headers: &mut HeaderMap, remove: impl Fn(&[u8]) -> bool) {
    // The name of each `name=value` piece (trimmed); pieces without `=`
    // have no name and are kept.
    fn pieces(v: &[u8]) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        cookie_pieces(v).map(|pair| {
            let name = memchr::memchr(b'=', pair).map(|eq| pair[..eq].trim_ascii());
            (pair, name)
        })
    }
    // One header and nothing to remove (the usual case): it stays as it is.
    // (Several are always joined into one, as RFC 9113 §8.2.3 asks of an
    // HTTP/2 request's cookies on their way to HTTP/1.1.)
    let mut all = headers.get_all(COOKIE).iter();
    if let (Some(only), None) = (all.next(), all.next())
        && pieces(only.as_bytes()).next().is_some()
        && !pieces(only.as_bytes()).any(|(_, n)| n.is_some_and(&remove))
    {
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for value in headers.get_all(COOKIE) {
        for (pair, name) in pieces(value.as_bytes()) {
            if name.is_some_and(&remove) {
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(pair);
        }
    }
    headers.remove(COOKIE);
    if !kept.is_empty()
        && let Ok(v) = http::HeaderValue::from_bytes(&kept)
    {
        headers.insert(COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn header_forms() {
        let src = [TokenSource::Header];
        assert_eq!(
            extract(&h(&[("authorization", "Bearer a.b.c")]), None, &src)
                .unwrap()
                .unwrap()
                .token,
            "a.b.c"
        );
        assert_eq!(
            extract(&h(&[("authorization", "bearer  a.b.c")]), None, &src)
                .unwrap()
                .unwrap()
                .token,
            "a.b.c"
        );
        assert!(
            extract(&h(&[("authorization", "Basic abc")]), None, &src)
                .unwrap()
                .is_none()
        );
        assert!(extract(&h(&[]), None, &src).unwrap().is_none());
        assert_eq!(
            extract(&h(&[("authorization", "Bearer")]), None, &src).unwrap_err(),
            ExtractError::Malformed
        );
        assert!(matches!(
            extract(
                &h(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]),
                None,
                &src
            ),
            Err(ExtractError::Ambiguous(_))
        ));
    }

    #[test]
    fn query_and_cookie() {
        let src = [
            TokenSource::Header,
            TokenSource::Query("access_token".into()),
            TokenSource::Cookie("jwt".into()),
        ];
        let f = extract(&h(&[]), Some("x=1&access_token=a.b.c"), &src)
            .unwrap()
            .unwrap();
        assert_eq!(f.source, TokenSource::Query("access_token".into()));
        let f = extract(&h(&[("cookie", "a=1; jwt=x.y.z")]), None, &src)
            .unwrap()
            .unwrap();
        assert_eq!(f.token, "x.y.z");
        assert!(matches!(
            extract(
                &h(&[("authorization", "Bearer a.b.c")]),
                Some("access_token=a.b.c"),
                &src
            ),
            Err(ExtractError::Ambiguous(_))
        ));
        // Not listed: not read.
        assert!(
            extract(&h(&[]), Some("token=a.b.c"), &src)
                .unwrap()
                .is_none()
        );
        let mut m = h(&[("cookie", "a=1; jwt=x.y.z; b=2")]);
        strip_cookie(&mut m, "jwt");
        assert_eq!(m.get(COOKIE).unwrap(), "a=1; b=2");
    }

    #[test]
    fn stripping_cookies_keeps_the_rest_in_one_header() {
        let mut m = HeaderMap::new();
        m.append(COOKIE, "a=1;  jwt=x ;b".parse().unwrap());
        m.append(
            COOKIE,
            http::HeaderValue::from_bytes(b"c=\xc3\xa9; jwt=y").unwrap(),
        );
        m.append(COOKIE, "d=2".parse().unwrap());
        let mut all = m.clone();
        strip_cookies(&mut all, |k| k == b"jwt");
        assert_eq!(all.get_all(COOKIE).iter().count(), 1);
        assert_eq!(
            all.get(COOKIE).unwrap().as_bytes(),
            b"a=1; b; c=\xc3\xa9; d=2"
        );
        // strip_cookie drops what the token reader cannot read, as before.
        strip_cookie(&mut m, "jwt");
        assert_eq!(m.get(COOKIE).unwrap(), "a=1; b; d=2");
        strip_cookies(&mut m, |_| true);
        assert_eq!(m.get(COOKIE).unwrap(), "b");
        strip_cookie(&mut m, "x");
        assert_eq!(m.get(COOKIE).unwrap(), "b");
        let mut only = h(&[("cookie", "jwt=1"), ("cookie", " ; ")]);
        strip_cookie(&mut only, "jwt");
        assert!(only.get(COOKIE).is_none());
    }
}
