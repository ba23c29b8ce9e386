//! Bearer extraction from the header, the query and a cookie.
//!
//! Input: byte 0 is a mask of the sources read (bit 0 header, bit 1
//! `query:access_token`, bit 2 `cookie:jwt`; none set: all three). The rest
//! is lines: a line starting with `?` is the query (the last one wins),
//! others are `name: value` headers (lines that are not valid headers are
//! dropped).
//!
//! Invariants: a token found is non-empty token68 (so never contains
//! whitespace, `,` or `;`), comes from a listed source and is exactly what
//! that source holds; extracting from all sources equals combining the
//! sources one at a time (first error wins, two tokens are ambiguous);
//! stripping the token's cookie or query parameter leaves none of it and
//! keeps everything else.

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue};
use jwtgate::auth::bearer::{ExtractError, TokenSource, extract, strip_cookie};
use jwtgate::uri::{query_pairs, strip_query_param};

const QUERY_NAME: &str = "access_token";
const COOKIE_NAME: &str = "jwt";

fn token68(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)
}

fn cookie_pairs(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn is_named(pair: &str, name: &str) -> bool {
    pair.split_once('=').map(|(k, _)| k.trim()) == Some(name)
}

pub fn run(data: &[u8]) {
    let Some((&mask, rest)) = data.split_first() else {
        return;
    };
    let all = [
        TokenSource::Header,
        TokenSource::Query(QUERY_NAME.into()),
        TokenSource::Cookie(COOKIE_NAME.into()),
    ];
    let sources: Vec<TokenSource> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & 7 == 0 || mask & (1 << i) != 0)
        .map(|(_, s)| s.clone())
        .collect();
    let mut headers = HeaderMap::new();
    let mut query: Option<String> = None;
    for line in rest.split(|&b| b == b'\n') {
        if let Some(q) = line.strip_prefix(b"?") {
            if let Ok(q) = std::str::from_utf8(q) {
                query = Some(q.to_owned());
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    let q = query.as_deref();
    let result = extract(&headers, q, &sources);

    // Compositional: the sources one at a time.
    let mut expected: Result<Option<(String, TokenSource)>, ExtractError> = Ok(None);
    for s in &sources {
        match extract(&headers, q, std::slice::from_ref(s)) {
            Err(e) => {
                expected = Err(e);
                break;
            }
            Ok(Some(f)) => {
                assert_eq!(&f.source, s);
                if matches!(expected, Ok(Some(_))) {
                    expected = Err(ExtractError::Ambiguous("token sent in more than one place"));
                    break;
                }
                expected = Ok(Some((f.token, f.source)));
            }
            Ok(None) => {}
        }
    }
    let got = result.map(|o| o.map(|f| (f.token, f.source)));
    assert_eq!(got, expected);

    let Ok(Some((token, source))) = got else {
        return;
    };
    assert!(!token.is_empty());
    assert!(
        token.bytes().all(token68),
        "token is not token68: {token:?}"
    );
    assert!(!token.chars().any(char::is_whitespace));
    assert!(sources.contains(&source));
    match &source {
        TokenSource::Header => {
            let values: Vec<_> = headers.get_all(AUTHORIZATION).iter().collect();
            assert_eq!(values.len(), 1);
            let v = values[0].to_str().unwrap();
            let (scheme, rest) = v.split_once(' ').unwrap();
            assert!(scheme.eq_ignore_ascii_case("bearer"));
            assert_eq!(rest.trim_matches(' '), token);
        }
        TokenSource::Query(name) => {
            let q = q.expect("a query token needs a query");
            let matching: Vec<_> = query_pairs(q).filter(|(k, _)| k == name).collect();
            assert_eq!(matching.len(), 1);
            assert_eq!(matching[0].1, token);
            // Forwarded without it, everything else kept in order.
            let before: Vec<_> = query_pairs(q).filter(|(k, _)| k != name).collect();
            let stripped = strip_query_param(q, name);
            let after: Vec<_> = stripped
                .as_deref()
                .map(|s| query_pairs(s).collect())
                .unwrap_or_default();
            assert_eq!(before, after, "strip_query_param({q:?})");
        }
        TokenSource::Cookie(name) => {
            let pairs = cookie_pairs(&headers);
            assert!(pairs.iter().any(|p| is_named(p, name)
                && p.split_once('=').unwrap().1.trim().trim_matches('"') == token));
            let kept: Vec<String> = pairs
                .iter()
                .filter(|p| !is_named(p, name))
                .cloned()
                .collect();
            let mut stripped = headers.clone();
            strip_cookie(&mut stripped, name);
            assert_eq!(cookie_pairs(&stripped), kept);
            assert!(
                extract(&stripped, None, std::slice::from_ref(&source))
                    .unwrap()
                    .is_none(),
                "the token cookie survived strip_cookie"
            );
        }
    }
}
