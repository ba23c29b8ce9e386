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
use crate::proxy::gate::{Allow, Denial, decide};
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
            Err(refusal) => {
                let d = refusal.denial;
                let mut resp = respond(&d.error, Style::Gate, &state.config.auth.realm);
                if let Some(url) = refusal.sign_in {
                    resp.headers_mut().insert(X_JWTGATE_SIGNIN, url);
                }
                (resp, d.error.decision(), d.error.reason(), d.user)
            }
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

/// Where nginx finds the sign-in URL of a navigation it must send to sign
/// in (nginx `auth_request` understands only 2xx, 401 and 403, so the
/// answer is a 401 carrying the URL: `auth_request_set $signin
/// $upstream_http_x_jwtgate_signin;` then `error_page 401 = @signin;`).
const X_JWTGATE_SIGNIN: http::HeaderName = http::HeaderName::from_static("x-jwtgate-signin");

/// A refusal, and for an nginx navigation without credentials the sign-in
/// URL to carry in `X-Jwtgate-Signin`.
struct Refusal {
    denial: Denial,
    sign_in: Option<http::HeaderValue>,
}

impl From<Denial> for Refusal {
    fn from(denial: Denial) -> Self {
        Refusal {
            denial,
            sign_in: None,
        }
    }
}

impl From<GateError> for Refusal {
    fn from(error: GateError) -> Self {
        Denial::from(error).into()
    }
}

/// Which ingress asked, by the URI header it sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Asker {
    /// `X-Forwarded-Uri`: Traefik ForwardAuth passes a non-2xx answer to
    /// the browser as it is, so a 302 reaches it.
    Traefik,
    /// `X-Original-URI`: nginx `auth_request`.
    Nginx,
}

/// The verdict on the described request. `access`: the access-log record,
/// given the described method, path (never its query) and route.
async fn answer(
    state: &State,
    headers: &HeaderMap,
    access: Option<&mut AccessRecord>,
) -> Result<(Response<Full<Bytes>>, &'static str, Option<String>), Refusal> {
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
        return Err(bad("CONNECT is not supported").into());
    }
    let (raw, asker) = match (
        first(headers, &["x-forwarded-uri"]),
        first(headers, &["x-original-uri"]),
    ) {
        (Some(u), _) => (u, Asker::Traefik),
        (None, Some(u)) => (u, Asker::Nginx),
        (None, None) => return Err(bad("missing X-Forwarded-Uri or X-Original-URI").into()),
    };
    if raw.contains('#') {
        return Err(bad_path(crate::uri::PathError::Fragment.to_string()).into());
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
        )
        .into());
    }
    let empty = || {
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::OK;
        resp
    };
    let route = state.policy.route(&method, &path);
    if let Some(a) = access {
        a.method = method.clone();
        a.path = observe::bounded(&path);
        a.route = route.map(|r| r.pattern().to_owned());
    }
    // The sign-in endpoints are the gate's own (the ingress routes them to
    // the proxy listener): a middleware in front of the whole site lets
    // them through, or signing in would itself need a session. Only those
    // paths: anything else under the prefix is decided like any request,
    // so an ingress that sent the prefix to the app by mistake would not
    // open the app's `/.jwtgate/...` to everyone.
    if state.login.is_some() && crate::login::endpoints::is_endpoint(&path) {
        return Ok((empty(), Allow::Login.reason(), None));
    }
    let decision = match decide(state, &method, headers, &path, uri.query(), route).await {
        Ok(d) => d,
        Err(d) => {
            return Err(sign_in_instead(
                state, d, asker, &method, headers, route, &uri,
            ));
        }
    };
    let mut resp = empty();
    if let Some(id) = &decision.identity {
        *resp.headers_mut() = state.headers.identity.all_for(id);
    }
    // A session re-sealed to move its idle deadline on: the ingress hands
    // the cookie to the browser (README: nginx `add_header Set-Cookie`,
    // Traefik `addAuthCookiesToResponse`), or the session ends after
    // `idle_timeout` however busy it is.
    for c in decision.set_cookies {
        resp.headers_mut().append(http::header::SET_COOKIE, c);
    }
    let user = decision.identity.as_ref().map(|i| i.user.clone());
    Ok((resp, decision.allow.reason(), user))
}

/// A navigation without credentials on a route that needs them, with
/// `[login]` on, is sent to sign in as the proxy would send it: Traefik
/// gets the 302 itself; nginx, which turns any answer but 2xx, 401 and 403
/// into a 500, gets the 401 with the URL in `X-Jwtgate-Signin`.
fn sign_in_instead(
    state: &State,
    denial: Denial,
    asker: Asker,
    method: &Method,
    headers: &HeaderMap,
    route: Option<&crate::proxy::policy::Route>,
    uri: &http::Uri,
) -> Refusal {
    let Some(login) = state.login.as_ref() else {
        return denial.into();
    };
    if !matches!(denial.error, GateError::NoToken) {
        return denial.into();
    }
    let on_missing = route
        .and_then(|r| r.on_missing)
        .unwrap_or(login.on_missing());
    if !crate::login::navigation::redirects(on_missing, method, headers) {
        return denial.into();
    }
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = login.sign_in_location_for(
        first(headers, &["x-forwarded-proto"]),
        first(headers, &["x-forwarded-host"]),
        path_and_query,
    );
    match asker {
        Asker::Traefik => GateError::SignIn(location).into(),
        Asker::Nginx => Refusal {
            sign_in: http::HeaderValue::from_str(&location).ok(),
            denial,
        },
    }
}
