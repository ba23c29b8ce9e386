//! The admin listener: liveness, readiness, metrics, and key refresh.

use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use crate::respond::json_response;
use crate::state::Shared;

pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let state = shared.current();
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => {
            json_response(StatusCode::OK, &json!({"status": "ok"}))
        }
        (&Method::GET | &Method::HEAD, "/readyz") => {
            let issuers = state.verifier.issuers().readiness();
            let ready = issuers.iter().all(|(_, ok)| *ok);
            let body = json!({
                "ready": ready,
                "issuers": issuers.iter().map(|(i, ok)| json!({"issuer": i, "ready": ok})).collect::<Vec<_>>(),
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
            let ok = outcomes.iter().all(|(_, r)| r.is_ok());
            let body = json!({
                "issuers": outcomes.iter().map(|(i, r)| match r {
                    Ok(n) => json!({"issuer": i, "ok": true, "keys": n}),
                    Err(e) => json!({"issuer": i, "ok": false, "error": e}),
                }).collect::<Vec<_>>(),
            });
            if let Some(cache) = state.verifier.cache() {
                cache.clear();
            }
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_response(status, &body)
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/keys/refresh") => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "method_not_allowed"}),
        ),
        _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"})),
    };
    Ok(resp)
}
