//! Upgrades (WebSocket): which the request may make, whether the upstream
//! switched to the one asked for, and the client's side of the connection
//! to splice once it did.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Version};

use super::headers::HeaderRules;

/// Does `Connection` carry the `upgrade` option?
fn connection_has_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The protocol name of an `Upgrade` token (`websocket` of `websocket/13`).
fn protocol_name(token: &str) -> &str {
    token.split('/').next().unwrap_or(token).trim()
}

/// An upgrade (WebSocket) the request asked for and may make: the protocol
/// asked, and the client's side of the connection once it is switched.
pub(crate) struct Upgrade {
    pub(super) asked: HeaderValue,
    pub(super) client: hyper::upgrade::OnUpgrade,
}

impl HeaderRules {
    /// The upgrade this request may make: an HTTP/1.1 `GET` whose
    /// `Connection` asks for one and whose single `Upgrade` header offers an
    /// allowed protocol. The token to send on (`websocket`), or `None`: the
    /// request then goes on as plain HTTP/1.1, its upgrade removed.
    pub fn upgrade_for<B>(&self, req: &Request<B>) -> Option<HeaderValue> {
        if req.method() != Method::GET || req.version() != Version::HTTP_11 {
            return None;
        }
        let headers = req.headers();
        if !connection_has_upgrade(headers) {
            return None;
        }
        let mut values = headers.get_all(header::UPGRADE).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return None;
        };
        let offered = value.to_str().ok()?;
        offered
            .split(',')
            .map(str::trim)
            .find(|t| {
                let name = protocol_name(t);
                self.upgrades.iter().any(|u| u.eq_ignore_ascii_case(name))
            })
            .and_then(|t| HeaderValue::from_str(t).ok())
    }

    /// Did the upstream switch to the protocol that was asked for?
    pub fn upgrade_accepted(asked: &HeaderValue, resp: &HeaderMap) -> bool {
        let Some(asked) = asked.to_str().ok().map(protocol_name) else {
            return false;
        };
        let mut values = resp.get_all(header::UPGRADE).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => v
                .to_str()
                .is_ok_and(|v| protocol_name(v).eq_ignore_ascii_case(asked)),
            _ => false,
        }
    }
}
