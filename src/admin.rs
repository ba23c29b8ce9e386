//! The admin listener: liveness, readiness, metrics, and key refresh.
//!
//! Read-only endpoints are open (the kubelet probes the pod IP). Mutating
//! ones are accepted from a loopback peer, or from anywhere with
//! `admin.token` presented as a bearer token; others get 403.
//!
//! Folder `admin/`: the admin listener (here), `revocations` (the API),
//! `sessions` (the listing of browser sessions) and `forward_auth` (the
//! decision-only listener); uses `proxy`, `store`,
//! `respond`, `auth`, `net`, `config`, `observe` and the leaves.

pub(crate) mod forward_auth;
pub(crate) mod revocations;
pub(crate) mod sessions;

use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use crate::auth::jwks::Refresh;
use crate::net::server::ConnInfo;
use crate::proxy::state::Shared;
use crate::respond::json_response;

/// May this request use a mutating endpoint?
pub(crate) fn may_mutate(peer: std::net::IpAddr, headers: &http::HeaderMap, token: &str) -> bool {
    if peer.to_canonical().is_loopback() {
        return true;
    }
    if token.is_empty() {
        return false;
    }
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return false;
    };
    let Some((scheme, given)) = v.to_str().ok().and_then(|v| v.split_once(' ')) else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            given.trim().as_bytes(),
            token.as_bytes(),
        ))
}

pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let state = shared.current();
    // The revocation and session endpoints, reads included, are for
    // operators only.
    let guarded = req.method() == Method::POST
        || req.method() == Method::DELETE
        || crate::admin::revocations::handles(req.uri().path())
        || crate::admin::sessions::handles(req.uri().path());
    if guarded
        && !may_mutate(
            conn.peer.ip(),
            req.headers(),
            state.config.admin.token.expose(),
        )
    {
        return Ok(json_response(
            StatusCode::FORBIDDEN,
            &json!({
                "error": "forbidden",
                "error_description": "mutating admin endpoints need a loopback peer or admin.token",
            }),
        ));
    }
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => {
            json_response(StatusCode::OK, &json!({"status": "ok"}))
        }
        (&Method::GET | &Method::HEAD, "/readyz") => {
            let issuers = state.verifier.issuers().readiness();
            let store = state.store.as_ref();
            // A store past store.max_stale makes the gate answer 503: not ready.
            let ready = issuers.iter().all(|(_, ok)| *ok) && store.is_none_or(|s| s.ready());
            let body = json!({
                "ready": ready,
                "issuers": issuers.iter().map(|(i, ok)| json!({"issuer": i, "ready": ok})).collect::<Vec<_>>(),
                "store": store.map(|s| s.status()),
            });
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_response(status, &body)
        }
        (&Method::GET, "/metrics") => {
            state.verifier.issuers().update_age_metrics();
            let active = state.login.as_ref().map_or(0, |l| l.active_sessions());
            shared
                .metrics
                .sessions_active
                .set(i64::try_from(active).unwrap_or(i64::MAX));
            let mut r = Response::new(Full::new(Bytes::from(shared.metrics.encode())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        (&Method::POST, "/keys/refresh") => {
            let outcomes = state.verifier.issuers().refresh_all().await;
            let failed = outcomes
                .iter()
                .any(|(_, r)| matches!(r, Refresh::Done(Err(_))));
            let retry_after = outcomes
                .iter()
                .filter_map(|(_, r)| match r {
                    Refresh::RateLimited { retry_after } => Some(*retry_after),
                    Refresh::Done(_) => None,
                })
                .max();
            let body = json!({
                "issuers": outcomes.iter().map(|(i, r)| match r {
                    Refresh::Done(Ok(n)) => json!({"issuer": i, "ok": true, "keys": n}),
                    Refresh::Done(Err(e)) => json!({"issuer": i, "ok": false, "error": e}),
                    Refresh::RateLimited { retry_after } => json!({
                        "issuer": i, "ok": false, "error": "rate_limited", "retry_after": retry_after,
                    }),
                }).collect::<Vec<_>>(),
            });
            let status = match (failed, retry_after) {
                (true, _) => StatusCode::SERVICE_UNAVAILABLE,
                (false, Some(_)) => StatusCode::TOO_MANY_REQUESTS,
                (false, None) => StatusCode::OK,
            };
            let mut resp = json_response(status, &body);
            if let Some(secs) = retry_after {
                resp.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
            }
            resp
        }
        (_, p) if crate::admin::revocations::handles(p) => {
            crate::admin::revocations::handle(&state, req).await
        }
        (_, p) if crate::admin::sessions::handles(p) => {
            crate::admin::sessions::handle(&state, &req)
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/keys/refresh") => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "method_not_allowed"}),
        ),
        _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"})),
    };
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_need_loopback_or_the_admin_token() {
        let none = http::HeaderMap::new();
        let mut good = http::HeaderMap::new();
        good.insert("authorization", "Bearer s3cret-admin".parse().unwrap());
        let mut bad = http::HeaderMap::new();
        bad.insert("authorization", "Bearer wrong".parse().unwrap());
        let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let lo6: std::net::IpAddr = "::1".parse().unwrap();
        let mapped: std::net::IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let pod: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        assert!(may_mutate(lo, &none, ""));
        assert!(may_mutate(lo6, &none, ""));
        assert!(may_mutate(mapped, &none, ""));
        assert!(!may_mutate(pod, &none, ""));
        assert!(!may_mutate(pod, &good, ""));
        assert!(!may_mutate(pod, &none, "s3cret-admin"));
        assert!(!may_mutate(pod, &bad, "s3cret-admin"));
        assert!(may_mutate(pod, &good, "s3cret-admin"));
        let mut two = good.clone();
        two.append("authorization", "Bearer s3cret-admin".parse().unwrap());
        assert!(!may_mutate(pod, &two, "s3cret-admin"));
    }
}
