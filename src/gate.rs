//! The one place that sequences a request's phases:
//! route → token (or an exemption) → verify → authorize → forward.
//! Any phase may end the request with a `Rejection`, answered by `respond`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{HOST, USER_AGENT};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Either;
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use tracing::debug;

use crate::auth::bearer::{self, ExtractError, TokenSource};
use crate::auth::{Identity, VerifyError};
use crate::forward::{self, ConnInfo, GateBody};
use crate::metrics;
use crate::observe::{self, AccessRecord, Observation, Observed};
use crate::policy::{self, Denied};
use crate::request_id::{self, X_REQUEST_ID};
use crate::respond::Rejection;
use crate::state::{Shared, State};

/// Why a request was let through (for metrics and the access log).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allow {
    Token,
    Status,
    Public,
    Preflight,
    Issuer,
}

impl Allow {
    pub fn reason(self) -> &'static str {
        match self {
            Allow::Token => "token",
            Allow::Status => "status_token",
            Allow::Public => "public_route",
            Allow::Preflight => "cors_preflight",
            Allow::Issuer => "token_endpoint",
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
}

/// Serves one proxied request.
pub async fn handle(
    shared: Arc<Shared>,
    conn: ConnInfo,
    mut req: Request<Incoming>,
) -> Result<Response<Observed<GateBody>>, std::convert::Infallible> {
    let state = shared.current();
    // A gRPC client understands only grpc-status: decided once, here, so
    // that every refusal below is said in its language.
    let grpc = crate::grpc::GrpcCall::of(req.headers(), Instant::now());
    // Before anything can reject the request: every answer carries the id,
    // and the upstream receives it.
    let request_id = request_id::ensure(req.headers_mut());
    // What the access log needs, taken only when it is on (it is off in
    // benchmarks and for many operators).
    let access = tracing::enabled!(target: "jwtgate::access", tracing::Level::INFO)
        .then(|| access_record(&state, &req, &conn, &request_id));
    let mut observation = Observation::start(&shared.metrics.proxy, access);
    let mut trail = Trail {
        logging: observation.access.is_some(),
        ..Trail::default()
    };
    let (mut resp, user, reason, decision) = match run(&state, &shared, conn, req, grpc, &mut trail)
        .await
    {
        Ok((resp, allow, user)) => (resp, user, allow.reason(), metrics::Decision::Allow),
        Err((rej, reason, user)) => {
            // The upstream failing after an allow is not a denial.
            let decision = match rej {
                Rejection::BadGateway(_) | Rejection::GatewayTimeout(_) => metrics::Decision::Error,
                _ => metrics::Decision::Deny,
            };
            let realm = &state.config.auth.realm;
            let resp = match grpc {
                Some(call) => rej.into_grpc_response(realm, call.deadline.is_some()),
                None => rej.into_response(realm),
            }
            .map(Either::Right);
            (resp, user, reason, decision)
        }
    };
    resp.headers_mut().insert(X_REQUEST_ID, request_id);
    let status = resp.status().as_u16();
    shared
        .metrics
        .count_request(metrics::PROXY, decision, reason, status);
    if let Some(a) = observation.access.as_deref_mut() {
        a.user = user;
        a.reason = reason;
        a.status = status;
        a.route = trail.route;
        a.upstream_status = trail.upstream_status;
        a.upstream_us = trail.upstream_us;
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

/// What the phases learn on the way that the access log reports.
#[derive(Default)]
pub(crate) struct Trail {
    /// Fill in what only the log reads (it allocates).
    pub(crate) logging: bool,
    pub(crate) route: Option<String>,
    pub(crate) upstream_status: Option<u16>,
    pub(crate) upstream_us: Option<u64>,
}

#[doc(hidden)]
pub type Denial = (Rejection, &'static str, Option<String>);

async fn run(
    state: &State,
    shared: &Shared,
    conn: ConnInfo,
    mut req: Request<Incoming>,
    grpc: Option<crate::grpc::GrpcCall>,
    trail: &mut Trail,
) -> Result<(Response<GateBody>, Allow, Option<String>), Denial> {
    // Phase 0: a request with one meaning. CONNECT would make the gate a
    // tunnel to wherever the client names; two hosts are two meanings.
    if req.method() == Method::CONNECT {
        return Err((
            Rejection::MethodNotAllowed("CONNECT is not supported".into()),
            "bad_method",
            None,
        ));
    }
    forward::check_host(&req)
        .map_err(|d| (Rejection::InvalidRequest(d.into()), "bad_host", None))?;
    // The client as the gate decides it (`forward.trusted_proxies`): what
    // the login limiter counts, and what X-Forwarded-For ends with.
    let view = state.headers.client_view(conn.peer.ip(), req.headers());
    let client_conn = ConnInfo {
        peer: std::net::SocketAddr::new(view.client, conn.peer.port()),
        ..conn
    };
    // One spelling of the path for every decision below, and the one that
    // is forwarded. (A Uri clone shares its bytes; it lets the path borrow.)
    let original_uri = req.uri().clone();
    let path = crate::uri::normalize_path_with(original_uri.path(), state.path_rules)
        .map_err(|e| (Rejection::InvalidRequest(e.to_string()), "bad_path", None))?;
    let query = original_uri.query();

    // Token endpoints are answered here and never forwarded.
    if let Some(issuer) = &state.issuer
        && issuer.handles(&path)
    {
        let resp = issuer.handle(state, client_conn, &path, req).await;
        let outcome = match resp.status().as_u16() {
            200..=299 => "ok",
            429 => "rate_limited",
            400..=499 => "refused",
            _ => "error",
        };
        shared
            .metrics
            .issued
            .get_or_create(&crate::metrics::EndpointLabels {
                endpoint: issuer.endpoint_name(&path),
                outcome,
            })
            .inc();
        return Ok((resp.map(Either::Right), Allow::Issuer, None));
    }

    // Phase 1: route.
    let route = state.policy.route(req.method(), &path);
    if trail.logging {
        trail.route = route.map(|r| r.pattern().to_owned());
    }

    // Phases 2-4: token, or an exemption; verify; authorise.
    let decision = decide(state, req.method(), req.headers(), &path, query, route).await?;
    let user = decision.identity.as_ref().map(|i| i.user.clone());

    // Phase 5: the request the upstream receives.
    let upgrade = state.headers.upgrade_for(&req);
    let uri = state
        .upstream
        .uri_for(&path, decision.query.as_deref())
        .map_err(|r| (r, "bad_path", user.clone()))?;
    forward::prepare(
        &state.headers,
        &mut req,
        forward::Verdict {
            identity: decision.identity.as_deref(),
            keep_authorization: state.config.auth.forward_token
                && matches!(decision.token_source, Some(TokenSource::Header)),
            upgrade: upgrade.as_ref(),
        },
        &view,
        conn.tls,
        uri,
    );

    // Phase 6: upstream.
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let send = forward::SendOptions {
        grpc: grpc.is_some(),
        deadline: grpc.and_then(|g| g.deadline),
    };
    let sent = Instant::now();
    let upstream = state.upstream.send(req, send).await;
    let waited = sent.elapsed();
    shared
        .metrics
        .upstream_seconds
        .observe(waited.as_secs_f64());
    trail.upstream_us = Some(waited.as_micros() as u64);
    if let Ok(resp) = &upstream {
        trail.upstream_status = Some(resp.status().as_u16());
    }
    let mut resp = upstream.map_err(|r| {
        let reason = if r.status() == StatusCode::GATEWAY_TIMEOUT {
            "upstream_timeout"
        } else {
            "upstream_error"
        };
        (r, reason, user.clone())
    })?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // Only the protocol that was asked for, and allowed, may be spliced:
        // anything else would hand the connection to a protocol the gate
        // never sees into.
        if let (Some(client_upgrade), Some(asked)) = (client_upgrade, &upgrade)
            && forward::HeaderRules::upgrade_accepted(asked, resp.headers())
        {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((client, upstream)) => {
                        let mut client = TokioIo::new(client);
                        let mut upstream = TokioIo::new(upstream);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                    Err(e) => debug!("upgrade failed: {e}"),
                }
            });
            return Ok((resp.map(Either::Left), decision.allow, user));
        }
        return Err((
            Rejection::BadGateway("upstream switched to a protocol that was not asked for".into()),
            "upstream_error",
            user,
        ));
    }
    forward::remove_hop_by_hop(resp.headers_mut());
    Ok((resp.map(Either::Left), decision.allow, user))
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
    if state.policy.status_exempt(method, path, query) {
        return Ok(Decision {
            allow: Allow::Status,
            identity: None,
            query: clean_query(Some("token")),
            token_source: None,
        });
    }
    if route.is_some_and(|r| r.auth == crate::config::RouteAuth::None) {
        return Ok(Decision {
            allow: Allow::Public,
            identity: None,
            query: clean_query(None),
            token_source: None,
        });
    }
    if state.policy.cors_preflight_exempt(method, headers, path) {
        return Ok(Decision {
            allow: Allow::Preflight,
            identity: None,
            query: clean_query(None),
            token_source: None,
        });
    }

    // Phase 2: the token.
    let found = bearer::extract(headers, query, &state.token_sources).map_err(|e| match e {
        ExtractError::Ambiguous(d) => {
            (Rejection::InvalidRequest(d.into()), "ambiguous_token", None)
        }
        ExtractError::Malformed => (
            Rejection::InvalidToken("malformed bearer credential".into()),
            "malformed",
            None,
        ),
    })?;
    let Some(found) = found else {
        return Err((Rejection::NoToken, "no_token", None));
    };

    // Phase 3: verify (observed in the verify histogram by the verifier,
    // which alone knows a cache hit from a signature check).
    let verified = state.verifier.verify(&found.token).await;
    let identity = verified.map_err(|e| (rejection_for(&e), e.reason(), None))?;

    // Phase 4: authorise.
    state.policy.authorize(&identity, route).map_err(|d| {
        let reason = match d {
            Denied::UserNotAllowed => "user_not_allowed",
            Denied::MissingClaim(_) => "missing_claim",
            Denied::MissingScope(_) => "missing_scope",
        };
        (
            Rejection::Forbidden(d.to_string()),
            reason,
            Some(identity.user.clone()),
        )
    })?;

    Ok(Decision {
        allow: Allow::Token,
        identity: Some(identity),
        query: clean_query(None),
        token_source: Some(found.source),
    })
}

/// A failed verification as the client sees it.
pub fn rejection_for(e: &VerifyError) -> Rejection {
    match e {
        VerifyError::KeysUnavailable { retry_after }
        | VerifyError::RevocationsStale { retry_after } => Rejection::Unavailable {
            description: e.to_string(),
            retry_after: *retry_after,
        },
        other => Rejection::InvalidToken(other.to_string()),
    }
}
