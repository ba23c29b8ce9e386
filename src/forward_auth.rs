//! The decision-only listener for nginx `auth_request` and Traefik
//! ForwardAuth. Each request asks about another request, described by
//! `X-Forwarded-Method`/`X-Forwarded-Uri` (Traefik) or
//! `X-Original-Method`/`X-Original-URI` (nginx). The answer is 200 with the
//! identity headers of `[forward]`, or the same rejection the proxy would
//! give. Nothing is forwarded from here, and the proxy listener never reads
//! these headers. Only the ingress may reach this listener: whoever can call
//! it can make it describe any request.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tracing::info;

use crate::gate::{Denial, decide};
use crate::policy;
use crate::respond::Rejection;
use crate::state::{Shared, State};

/// The first present header among `names`, as text.
fn first<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| headers.get(*n))
        .and_then(|v| v.to_str().ok())
}

pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let started = Instant::now();
    let state = shared.current();
    let (resp, decision, reason, user) = match answer(&state, &shared, req.headers()).await {
        Ok((resp, reason, user)) => (resp, "allow", reason, user),
        Err((rej, reason, user)) => (
            rej.into_response(&state.config.auth.realm),
            "deny",
            reason,
            user,
        ),
    };
    shared.metrics.count_request(decision, reason);
    info!(
        target: "jwtgate::access",
        listener = "forward-auth",
        user = user.as_deref().unwrap_or("-"),
        decision,
        reason,
        status = resp.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
    );
    Ok(resp)
}

async fn answer(
    state: &State,
    shared: &Shared,
    headers: &HeaderMap,
) -> Result<(Response<Full<Bytes>>, &'static str, Option<String>), Denial> {
    let bad = |d: &str| {
        (
            Rejection::InvalidRequest(d.to_string()),
            "bad_request",
            None,
        )
    };
    let method = first(headers, &["x-forwarded-method", "x-original-method"])
        .map(|m| Method::from_bytes(m.trim().as_bytes()))
        .transpose()
        .map_err(|_| bad("X-Forwarded-Method is not a method"))?
        .unwrap_or(Method::GET);
    let uri = first(headers, &["x-forwarded-uri", "x-original-uri"])
        .ok_or_else(|| bad("missing X-Forwarded-Uri or X-Original-URI"))?;
    let uri: http::Uri = uri
        .parse()
        .map_err(|_| bad("the described URI is invalid"))?;
    let path = policy::normalize_path(uri.path())
        .map_err(|e| (Rejection::InvalidRequest(e.to_string()), "bad_path", None))?;
    let route = state.policy.route(&method, &path);
    let decision = decide(state, shared, &method, headers, &path, uri.query(), route).await?;
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::OK;
    if let Some(id) = &decision.identity {
        *resp.headers_mut() = state.identity_headers.all_for(id);
    }
    let user = decision.identity.as_ref().map(|i| i.user.clone());
    Ok((resp, decision.allow.reason(), user))
}
