//! The decision-only listener for nginx `auth_request` and Traefik
//! ForwardAuth. Each request asks about another request, described by
//! `X-Forwarded-Method`/`X-Forwarded-Uri` (Traefik) or
//! `X-Original-Method`/`X-Original-URI` (nginx). The answer is 200 with the
//! identity headers of `[forward]`, or the same rejection the proxy would
//! give. Nothing is forwarded from here, and the proxy listener never reads
//! these headers. Only the ingress may reach this listener: whoever can call
//! it can make it describe any request.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::net::server::ConnInfo;
use crate::observe::metrics::{self, Decision};
use crate::observe::request_id::{self, X_REQUEST_ID};
use crate::observe::{self, AccessRecord, Observation, Observed};
use crate::proxy::gate::{Denial, decide};
use crate::proxy::state::{Shared, State};
use crate::respond::{GateError, Style, respond};

/// The first present header among `names`, as text.
fn first<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| headers.get(*n))
        .and_then(|v| v.to_str().ok())
}

pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: ConnInfo,
    mut req: Request<Incoming>,
) -> Result<Response<Observed<Full<Bytes>>>, std::convert::Infallible> {
    let state = shared.current();
    // The ingress's id, or a new one, answered back so that the ingress
    // can log or forward it.
    let request_id = request_id::ensure(req.headers_mut());
    let access = tracing::enabled!(target: "jwtgate::access", tracing::Level::INFO).then(|| {
        let h = req.headers();
        Box::new(AccessRecord {
            client: Some(conn.peer.ip()),
            host: observe::header_text(
                first_value(h, &["x-forwarded-host"]).or_else(|| h.get(http::header::HOST)),
            ),
            user_agent: observe::header_text(h.get(http::header::USER_AGENT)),
            request_id: request_id.to_str().unwrap_or_default().to_owned(),
            trace_id: crate::observe::request_id::trace_id(h).map(str::to_owned),
            request_bytes: hyper::body::Body::size_hint(req.body()).exact(),
            ..AccessRecord::default()
        })
    });
    let mut observation = Observation::start(&shared.metrics.forward_auth, access);
    let (mut resp, decision, reason, user) =
        match answer(&state, req.headers(), observation.access.as_deref_mut()).await {
            Ok((resp, reason, user)) => (resp, Decision::Allow, reason, user),
            Err(d) => (
                respond(&d.error, Style::Gate, &state.config.auth.realm),
                d.error.decision(),
                d.error.reason(),
                d.user,
            ),
        };
    resp.headers_mut().insert(X_REQUEST_ID, request_id);
    let status = resp.status().as_u16();
    shared
        .metrics
        .count_request(metrics::FORWARD_AUTH, decision, reason, status);
    if let Some(a) = observation.access.as_deref_mut() {
        a.user = user;
        a.reason = reason;
        a.status = status;
    }
    Ok(resp.map(|body| observation.respond(decision, body)))
}

fn first_value<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a http::HeaderValue> {
    names.iter().find_map(|n| headers.get(*n))
}

/// The verdict on the described request. `access`: the access-log record,
/// given the described method, path (never its query) and route.
async fn answer(
    state: &State,
    headers: &HeaderMap,
    access: Option<&mut AccessRecord>,
) -> Result<(Response<Full<Bytes>>, &'static str, Option<String>), Denial> {
    let bad = |d: &'static str| Denial::from(GateError::Described(d));
    let bad_path = |d: String| Denial::from(GateError::Path(d.into()));
    // The verdict must hold for the request the ingress will forward, which
    // is the URI as described, not the gate's normal form of it: so the
    // description must already be normal (a method is required too; a
    // default would answer for a request nobody described).
    let method = first(headers, &["x-forwarded-method", "x-original-method"])
        .ok_or_else(|| bad("missing X-Forwarded-Method or X-Original-Method"))?;
    let method = Method::from_bytes(method.trim().as_bytes())
        .map_err(|_| bad("X-Forwarded-Method is not a method"))?;
    if method == Method::CONNECT {
        return Err(bad("CONNECT is not supported"));
    }
    let raw = first(headers, &["x-forwarded-uri", "x-original-uri"])
        .ok_or_else(|| bad("missing X-Forwarded-Uri or X-Original-URI"))?;
    if raw.contains('#') {
        return Err(bad_path(crate::uri::PathError::Fragment.to_string()));
    }
    let uri: http::Uri = raw
        .parse()
        .map_err(|_| bad("the described URI is invalid"))?;
    // Path parameters are refused here whatever `paths.allow_path_parameters`
    // says: the ingress forwards them as they are, so the backend would not
    // see the path the verdict was given for.
    let path = crate::uri::normalize_path(uri.path()).map_err(|e| bad_path(e.to_string()))?;
    if path != uri.path() {
        return Err(bad_path(
            "the described path is not in normal form (dot segments, //, or encoded \
             characters); the ingress would forward another spelling than the one decided on"
                .into(),
        ));
    }
    let route = state.policy.route(&method, &path);
    if let Some(a) = access {
        a.method = method.clone();
        a.path = observe::bounded(&path);
        a.route = route.map(|r| r.pattern().to_owned());
    }
    let decision = decide(state, &method, headers, &path, uri.query(), route).await?;
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::OK;
    if let Some(id) = &decision.identity {
        *resp.headers_mut() = state.headers.identity.all_for(id);
    }
    let user = decision.identity.as_ref().map(|i| i.user.clone());
    Ok((resp, decision.allow.reason(), user))
}
