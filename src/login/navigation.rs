//! Which requests without credentials are sent to sign in: a person's
//! navigation, never a script's call. A 302 to a sign-in page is useless to
//! XHR, fetch, a WebSocket or a gRPC client (and would set a flow cookie on
//! every one of them), so those keep their 401.
//!
//! `auto` (the default) redirects only what is positively a navigation:
//! `Sec-Fetch-Mode: navigate` or `Sec-Fetch-Dest: document`, or, from a
//! browser that sends neither, `Accept` naming `text/html` without
//! `X-Requested-With`. `redirect` redirects every GET and HEAD that is not
//! positively something else (a fetch mode other than `navigate`, a
//! destination other than a document or frame, `X-Requested-With`, an
//! upgrade, gRPC, an `Authorization` header): for clients that send
//! `Accept: */*`. `401` never redirects. Other methods are never
//! redirected: a redirected POST would lose its body.

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, UPGRADE};
use http::{HeaderMap, Method};

use crate::config::login::OnMissing;

const SEC_FETCH_MODE: &str = "sec-fetch-mode";
const SEC_FETCH_DEST: &str = "sec-fetch-dest";
const X_REQUESTED_WITH: &str = "x-requested-with";

fn value(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<&str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// What the Fetch Metadata headers say: `None` when the client sent
/// neither, else whether this is a navigation (`Sec-Fetch-Mode: navigate`
/// or `Sec-Fetch-Dest: document`).
fn fetch_metadata(headers: &HeaderMap) -> Option<bool> {
    let mode = value(headers, SEC_FETCH_MODE);
    let dest = value(headers, SEC_FETCH_DEST);
    if mode.is_none() && dest.is_none() {
        return None;
    }
    Some(
        mode.is_some_and(|m| m.eq_ignore_ascii_case("navigate"))
            || dest.is_some_and(|d| d.eq_ignore_ascii_case("document")),
    )
}

/// Marks of a script's or a program's request, whatever else it says.
fn programmatic(headers: &HeaderMap) -> bool {
    headers.contains_key(X_REQUESTED_WITH)
        || headers.contains_key(UPGRADE)
        || headers.contains_key(AUTHORIZATION)
        || value(headers, CONTENT_TYPE)
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/grpc"))
}

/// Positively a person's navigation.
pub fn is_navigation(headers: &HeaderMap) -> bool {
    if programmatic(headers) {
        return false;
    }
    if let Some(nav) = fetch_metadata(headers) {
        return nav;
    }
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/html"))
        })
}

/// Should this request, which has no credentials, be sent to sign in?
pub fn redirects(on_missing: OnMissing, method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    match on_missing {
        OnMissing::Unauthorized => false,
        OnMissing::Auto => is_navigation(headers),
        OnMissing::Redirect => !programmatic(headers) && fetch_metadata(headers) != Some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn navigations() {
        assert!(is_navigation(&h(&[
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document")
        ])));
        assert!(is_navigation(&h(&[("sec-fetch-dest", "document")])));
        assert!(is_navigation(&h(&[(
            "accept",
            "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"
        )])));
        assert!(is_navigation(&h(&[
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "iframe")
        ])));
    }

    #[test]
    fn scripts_and_programs_are_not() {
        assert!(!is_navigation(&h(&[
            ("sec-fetch-mode", "cors"),
            ("sec-fetch-dest", "empty"),
            ("accept", "text/html")
        ])));
        assert!(!is_navigation(&h(&[
            ("accept", "text/html"),
            ("x-requested-with", "XMLHttpRequest")
        ])));
        assert!(!is_navigation(&h(&[("accept", "*/*")])));
        assert!(!is_navigation(&h(&[])));
        assert!(!is_navigation(&h(&[
            ("sec-fetch-mode", "websocket"),
            ("upgrade", "websocket")
        ])));
        assert!(!is_navigation(&h(&[
            ("accept", "text/html"),
            ("upgrade", "websocket")
        ])));
        assert!(!is_navigation(&h(&[
            ("accept", "text/html"),
            ("content-type", "application/grpc")
        ])));
        assert!(!is_navigation(&h(&[("accept", "text/htmlx")])));
    }

    #[test]
    fn on_missing_modes() {
        let curl = h(&[("accept", "*/*")]);
        assert!(!redirects(OnMissing::Auto, &Method::GET, &curl));
        assert!(redirects(OnMissing::Redirect, &Method::GET, &curl));
        assert!(!redirects(OnMissing::Unauthorized, &Method::GET, &curl));
        let nav = h(&[("sec-fetch-mode", "navigate")]);
        assert!(!redirects(OnMissing::Auto, &Method::POST, &nav));
        assert!(!redirects(
            OnMissing::Redirect,
            &Method::GET,
            &h(&[("sec-fetch-mode", "cors")])
        ));
    }
}
