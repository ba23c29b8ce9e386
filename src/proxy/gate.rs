//! The one place that sequences a request's phases:
//! route → token (or an exemption) → verify → authorize → forward.
//! Any phase may end the request with a `GateError`, answered by `respond`.
//! The work of each phase lives in its module; this one only orders them
//! and keeps the request's context (`Ctx`) for the access log and metrics.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{HOST, USER_AGENT};
use http::{HeaderValue, Method, Request, Response};
use http_body_util::Either;
use hyper::body::{Body, Incoming};

use crate::auth::Identity;
use crate::auth::bearer::{self, TokenSource};
use crate::net::server::ConnInfo;
use crate::observe::metrics;
use crate::observe::request_id::{self, X_REQUEST_ID};
use crate::observe::{self, AccessRecord, Observation, Observed};
pub use crate::proxy::conn_state::ConnState;
use crate::proxy::forward::{self, GateBody};
use crate::proxy::policy;
use crate::proxy::state::{Shared, State};
use crate::respond::{GateError, Style, respond};

/// Why a request was let through (for metrics and the access log).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allow {
    Token,
    Status,
    Public,
    Preflight,
    Issuer,
    /// A browser session (`[login]`).
    Session,
    /// The sign-in endpoints under `/.jwtgate/` answered.
    Login,
}

impl Allow {
    pub fn reason(self) -> &'static str {
        match self {
            Allow::Token => "token",
            Allow::Status => "status_token",
            Allow::Public => "public_route",
            Allow::Preflight => "cors_preflight",
            Allow::Issuer => "token_endpoint",
            Allow::Session => "session",
            Allow::Login => "login_endpoint",
        }
    }
}

/// The outcome of the decision phases.
#[doc(hidden)]
pub struct Decision {
    pub allow: Allow,
    pub identity: Option<Arc<Identity>>,
    /// The query to forward: every parameter that may carry a token (and
    /// the status token) removed.
    pub query: Option<String>,
    /// Where the verified token was read (`None` for an exemption).
    pub token_source: Option<TokenSource>,
    /// A session's cookie, re-sealed: set on the response.
    pub set_cookies: Vec<HeaderValue>,
    /// A session's access token for the upstream (`auth.forward_token`).
    pub bearer: Option<HeaderValue>,
}

/// Serves one proxied request.
pub async fn handle(
    shared: Arc<Shared>,
    conn: ConnInfo,
    conn_state: Option<Arc<ConnState>>,
    mut req: Request<Incoming>,
) -> Result<Response<Observed<GateBody>>, std::convert::Infallible> {
    let state = shared.current();
    // A gRPC client understands only grpc-status: decided once, here, so
    // that every refusal below is said in its language.
    let grpc = crate::proxy::grpc::GrpcCall::of(req.headers(), Instant::now());
    // Before anything can reject the request: every answer carries the id,
    // and the upstream receives it.
    let request_id = request_id::ensure(req.headers_mut());
    // What the access log needs, taken only when it is on (it is off in
    // benchmarks and for many operators).
    let access = tracing::enabled!(target: "jwtgate::access", tracing::Level::INFO)
        .then(|| access_record(&state, &req, &conn, &request_id));
    let mut observation = Observation::start(&shared.metrics.proxy, access);
    let mut ctx = Ctx {
        logging: observation.access.is_some(),
        ..Ctx::default()
    };
    let (mut resp, reason, decision) =
        // Boxed: hyper keeps the handler's future in a box of its size for
        // the connection's whole life, idle or not. The phases' state
        // (several KiB) then exists only while a request is in progress.
        match Box::pin(run(&state, &shared, conn, conn_state, req, grpc, &mut ctx)).await {
            Ok((resp, allow)) => (resp, allow.reason(), metrics::Decision::Allow),
            Err(err) => {
                let style = match grpc {
                    Some(call) => Style::Grpc {
                        deadline_given: call.deadline.is_some(),
                    },
                    None => Style::Gate,
                };
                let resp = respond(&err, style, &state.config.auth.realm).map(Either::Right);
                (resp, err.reason(), err.decision())
            }
        };
    resp.headers_mut().insert(X_REQUEST_ID, request_id);
    let status = resp.status().as_u16();
    shared
        .metrics
        .count_request(metrics::PROXY, decision, reason, status);
    if let Some(a) = observation.access.as_deref_mut() {
        ctx.fill(a, reason, status);
    }
    Ok(resp.map(|body| observation.respond(decision, body)))
}

/// The client's address as the access log reports it: the TCP peer, or,
/// behind a trusted proxy, the client named in `X-Forwarded-For`
/// (`forward.trusted_proxies`), as the rest of the gate sees it.
fn client_address(state: &State, conn: &ConnInfo, headers: &http::HeaderMap) -> IpAddr {
    state.headers.client_view(conn.peer.ip(), headers).client
}

/// The access-log fields known on arrival: never the query, a token or a
/// cookie; text fields bounded.
fn access_record(
    state: &State,
    req: &Request<Incoming>,
    conn: &ConnInfo,
    request_id: &HeaderValue,
) -> Box<AccessRecord> {
    let h = req.headers();
    let host = observe::header_text(h.get(HOST))
        .or_else(|| req.uri().authority().map(|a| observe::bounded(a.as_str())))
        // Userinfo is never logged (a client may put credentials there).
        .map(|host| match host.rfind('@') {
            Some(i) => host[i + 1..].to_owned(),
            None => host,
        });
    Box::new(AccessRecord {
        method: req.method().clone(),
        path: observe::bounded(req.uri().path()),
        host,
        user_agent: observe::header_text(h.get(USER_AGENT)),
        client: Some(client_address(state, conn, h)),
        request_id: request_id.to_str().unwrap_or_default().to_owned(),
        trace_id: request_id::trace_id(h).map(str::to_owned),
        request_bytes: req.body().size_hint().exact(),
        ..AccessRecord::default()
    })
}

/// One request's context: what the phases learn on the way, read once at
/// the end by the access log (metrics take the reason and status).
#[derive(Default)]
pub(crate) struct Ctx {
    /// Fill in what only the log reads (it allocates).
    pub(crate) logging: bool,
    /// The verified user, once there is one (a refusal by policy names it).
    pub(crate) user: Option<String>,
    pub(crate) route: Option<String>,
    pub(crate) upstream_status: Option<u16>,
    pub(crate) upstream_us: Option<u64>,
}

impl Ctx {
    /// Hands what was learnt to the access-log record.
    pub(crate) fn fill(self, a: &mut AccessRecord, reason: &'static str, status: u16) {
        a.user = self.user;
        a.reason = reason;
        a.status = status;
        if self.route.is_some() {
            a.route = self.route;
        }
        a.upstream_status = self.upstream_status;
        a.upstream_us = self.upstream_us;
    }
}

async fn run(
    state: &State,
    shared: &Shared,
    conn: ConnInfo,
    conn_state: Option<Arc<ConnState>>,
    mut req: Request<Incoming>,
    grpc: Option<crate::proxy::grpc::GrpcCall>,
    ctx: &mut Ctx,
) -> Result<(Response<GateBody>, Allow), GateError> {
    // Phase 0: a request with one meaning. CONNECT would make the gate a
    // tunnel to wherever the client names; two hosts are two meanings.
    if req.method() == Method::CONNECT {
        return Err(GateError::Connect);
    }
    forward::check_host(&req).map_err(GateError::Host)?;
    // The client as the gate decides it (`forward.trusted_proxies`): what
    // the login limiter counts, and what X-Forwarded-For ends with.
    let view = state.headers.client_view(conn.peer.ip(), req.headers());
    // One spelling of the path for every decision below, and the one that
    // is forwarded. (A Uri clone shares its bytes; it lets the path borrow.)
    let original_uri = req.uri().clone();
    let path = crate::uri::normalize_path_with(original_uri.path(), state.path_rules)
        .map_err(|e| GateError::Path(e.to_string().into()))?;
    let query = original_uri.query();

    // The sign-in endpoints are answered here and never forwarded.
    if let Some(login) = &state.login
        && path.starts_with(crate::login::RESERVED_PREFIX)
    {
        let answer = login
            .handle(&state.verifier, &path, query, req, view.client)
            .await;
        return Ok((answer.response.map(Either::Right), Allow::Login));
    }

    // Token endpoints are answered here and never forwarded.
    if let Some(issuer) = &state.issuer
        && issuer.handles(&path)
    {
        let client = ConnInfo {
            peer: std::net::SocketAddr::new(view.client, conn.peer.port()),
            ..conn
        };
        let resp = issuer
            .handle(&state.verifier, &shared.metrics, client, &path, req)
            .await;
        return Ok((resp.map(Either::Right), Allow::Issuer));
    }

    // Phase 1: route.
    let route = state.policy.route(req.method(), &path);
    if ctx.logging {
        ctx.route = route.map(|r| r.pattern().to_owned());
    }

    // Phases 2-4: token, or an exemption; verify; authorise.
    let decision = match decide(state, req.method(), req.headers(), &path, query, route).await {
        Ok(d) => d,
        Err(d) => {
            ctx.user = d.user;
            return Err(
                sign_in_instead(state, &d.error, &req, route, &path, query).unwrap_or(d.error)
            );
        }
    };
    // Only the access log reads the user: no copy when it is off.
    if ctx.logging {
        ctx.user = decision.identity.as_ref().map(|i| i.user.clone());
    }

    // Phase 5: the request the upstream receives.
    let uri = state.upstream.uri_for(&path, decision.query.as_deref())?;
    let upgrade = forward::prepare(
        &state.headers,
        &mut req,
        forward::Verdict {
            identity: decision.identity.as_deref(),
            keep_authorization: state.config.auth.forward_token
                && matches!(decision.token_source, Some(TokenSource::Header)),
        },
        &view,
        conn.tls,
        uri,
        conn_state
            .as_deref()
            .filter(|_| !view.via_trusted_proxy)
            .and_then(|c| c.peer_text(view.client)),
    );
    if let Some(b) = decision.bearer {
        req.headers_mut().insert(http::header::AUTHORIZATION, b);
    }

    // Phase 6: upstream.
    let send = crate::proxy::upstream::SendOptions {
        grpc: grpc.is_some(),
        deadline: grpc.and_then(|g| g.deadline),
    };
    let sent = Instant::now();
    let upstream = state.upstream.send(req, send, conn_state.as_ref()).await;
    let waited = sent.elapsed();
    shared
        .metrics
        .upstream_seconds
        .observe(waited.as_secs_f64());
    ctx.upstream_us = Some(u64::try_from(waited.as_micros()).unwrap_or(u64::MAX));
    if let Ok(resp) = &upstream {
        ctx.upstream_status = Some(resp.status().as_u16());
    }
    // Phase 7: the response, and the tunnel when an upgrade was accepted.
    let mut resp = forward::finish(upstream?, upgrade)?;
    if decision.allow == Allow::Session {
        let h = resp.headers_mut();
        // Per-person content: no shared cache may keep it.
        if !h.contains_key(http::header::CACHE_CONTROL) {
            h.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            );
        }
        for c in decision.set_cookies {
            h.append(http::header::SET_COOKIE, c);
        }
    }
    Ok((resp.map(Either::Left), decision.allow))
}

/// A navigation without credentials on a route that needs them, with
/// `[login]` on: a redirect to sign in instead of the 401 (see
/// `login::navigation` for who counts as navigating).
fn sign_in_instead(
    state: &State,
    err: &GateError,
    req: &Request<Incoming>,
    route: Option<&policy::Route>,
    path: &str,
    query: Option<&str>,
) -> Option<GateError> {
    let login = state.login.as_ref()?;
    if !matches!(err, GateError::NoToken) {
        return None;
    }
    let on_missing = route
        .and_then(|r| r.on_missing)
        .unwrap_or(login.on_missing());
    crate::login::navigation::redirects(on_missing, req.method(), req.headers())
        .then(|| GateError::SignIn(login.sign_in_location(path, query)))
}

/// A refusal by the decision phases, with the user when one was verified
/// (a refusal by policy names who was refused).
#[doc(hidden)]
#[derive(Debug)]
pub struct Denial {
    pub error: GateError,
    pub user: Option<String>,
}

impl From<GateError> for Denial {
    fn from(error: GateError) -> Self {
        Denial { error, user: None }
    }
}

/// Phases 2–4: an exemption, or a verified and authorised token. Shared
/// with the forward-auth listener, which asks the same question about a
/// request described in headers.
#[doc(hidden)]
pub async fn decide(
    state: &State,
    method: &Method,
    headers: &http::HeaderMap,
    path: &str,
    query: Option<&str>,
    route: Option<&policy::Route>,
) -> Result<Decision, Denial> {
    // Nothing that may carry a token is forwarded, whoever is let through:
    // an exempt route never passes on a token nobody verified.
    let clean_query = |extra: Option<&str>| {
        query.and_then(|q| {
            let mut names: Vec<&str> = state.headers.token_params().collect();
            names.extend(extra);
            if names.is_empty() {
                Some(q.to_owned())
            } else {
                crate::uri::strip_query_params(q, &names)
            }
        })
    };
    let exempt = |allow, extra| Decision {
        allow,
        identity: None,
        query: clean_query(extra),
        token_source: None,
        set_cookies: Vec::new(),
        bearer: None,
    };
    if state.policy.status_exempt(method, path, query) {
        return Ok(exempt(Allow::Status, Some("token")));
    }
    if route.is_some_and(|r| r.auth == crate::config::RouteAuth::None) {
        return Ok(exempt(Allow::Public, None));
    }
    if state.policy.cors_preflight_exempt(method, headers, path) {
        return Ok(exempt(Allow::Preflight, None));
    }

    // Phase 2: the token, or else a browser's session.
    let found = bearer::extract(headers, query, &state.config.auth.token_from)
        .map_err(GateError::Extract)?;
    let Some(found) = found else {
        let hit = match &state.login {
            Some(login) => login.session(&state.verifier, headers).await?,
            None => None,
        };
        let hit = hit.ok_or(GateError::NoToken)?;
        if let Err(d) = state.policy.authorize(&hit.identity, route) {
            return Err(Denial {
                error: GateError::Policy(d),
                user: Some(hit.identity.user.clone()),
            });
        }
        return Ok(Decision {
            allow: Allow::Session,
            identity: Some(hit.identity),
            query: clean_query(None),
            token_source: None,
            set_cookies: hit.set_cookies,
            bearer: hit.bearer,
        });
    };

    // Phase 3: verify (observed in the verify histogram by the verifier,
    // which alone knows a cache hit from a signature check).
    let identity = state
        .verifier
        .verify(&found.token)
        .await
        .map_err(GateError::Verify)?;

    // Phase 4: authorise.
    if let Err(d) = state.policy.authorize(&identity, route) {
        return Err(Denial {
            error: GateError::Policy(d),
            user: Some(identity.user.clone()),
        });
    }

    Ok(Decision {
        allow: Allow::Token,
        identity: Some(identity),
        query: clean_query(None),
        token_source: Some(found.source),
        set_cookies: Vec::new(),
        bearer: None,
    })
}
