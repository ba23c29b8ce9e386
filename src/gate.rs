//! The one place that sequences a request's phases:
//! route → token (or an exemption) → verify → authorize → forward.
//! Any phase may end the request with a `Rejection`, answered by `respond`.

use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tracing::{debug, info};

use crate::auth::bearer::{self, ExtractError, TokenSource};
use crate::auth::{Identity, VerifyError};
use crate::forward::{self, ConnInfo, GateBody};
use crate::policy::{self, Denied};
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
    /// The query to forward (the status token or a query-borne JWT removed).
    pub query: Option<String>,
    /// A cookie to remove before forwarding.
    pub strip_cookie: Option<String>,
}

/// Serves one proxied request.
pub async fn handle(
    shared: Arc<Shared>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<GateBody>, std::convert::Infallible> {
    let state = shared.current();
    // What the access log needs, taken only when it is on (it is off in
    // benchmarks and for many operators): the path as received, without the
    // query (which may carry tokens), bounded so that a huge path cannot
    // flood the log.
    let access = tracing::enabled!(target: "jwtgate::access", tracing::Level::INFO).then(|| {
        let path: String = req.uri().path().chars().take(256).collect();
        (Instant::now(), req.method().clone(), path)
    });
    let (resp, user, reason, decision) = match run(&state, &shared, conn, req).await {
        Ok((resp, allow, user)) => (resp, user, allow.reason(), "allow"),
        Err((rej, reason, user)) => {
            // The upstream failing after an allow is not a denial.
            let decision = match rej {
                Rejection::BadGateway(_) | Rejection::GatewayTimeout(_) => "error",
                _ => "deny",
            };
            let resp = rej
                .into_response(&state.config.auth.realm)
                .map(Either::Right);
            (resp, user, reason, decision)
        }
    };
    shared.metrics.count_request(decision, reason);
    if let Some((started, method, path)) = access {
        info!(
            target: "jwtgate::access",
            method = %method,
            path = %path,
            user = user.as_deref().unwrap_or("-"),
            decision,
            reason,
            status = resp.status().as_u16(),
            latency_us = started.elapsed().as_micros() as u64,
        );
    }
    Ok(resp)
}

#[doc(hidden)]
pub type Denial = (Rejection, &'static str, Option<String>);

async fn run(
    state: &State,
    shared: &Shared,
    conn: ConnInfo,
    mut req: Request<Incoming>,
) -> Result<(Response<GateBody>, Allow, Option<String>), Denial> {
    // Phase 0: one spelling of the path for every decision below. (A Uri
    // clone shares its bytes; it lets the path borrow from it.)
    let original_uri = req.uri().clone();
    let path = policy::normalize_path(original_uri.path())
        .map_err(|e| (Rejection::InvalidRequest(e.to_string()), "bad_path", None))?;
    let query = original_uri.query();

    // Token endpoints are answered here and never forwarded.
    if let Some(issuer) = &state.issuer
        && issuer.handles(&path)
    {
        let resp = issuer.handle(state, conn, &path, req).await;
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

    // Phase 2: token, or an exemption.
    let decision = decide(
        state,
        shared,
        req.method(),
        req.headers(),
        &path,
        query,
        route,
    )
    .await?;
    let user = decision.identity.as_ref().map(|i| i.user.clone());

    // Phase 5: header hygiene and identity.
    let upgrade = forward::upgrade_protocol(req.headers());
    let uri = state
        .upstream
        .uri_for(&path, decision.query.as_deref())
        .map_err(|r| (r, "bad_path", user.clone()))?;
    {
        let headers = req.headers_mut();
        forward::remove_hop_by_hop(headers);
        state.identity_headers.strip(headers);
        if !state.config.auth.forward_token {
            headers.remove(header::AUTHORIZATION);
        }
        if let Some(name) = &decision.strip_cookie {
            bearer::strip_cookie(headers, name);
        }
        if let Some(id) = &decision.identity {
            state.identity_headers.set(headers, id);
        }
        forward::set_forwarded(
            headers,
            &original_uri,
            conn,
            state.config.forward.trust_forwarded_headers,
        );
        if !headers.contains_key(header::HOST)
            && let Some(a) = original_uri.authority()
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            headers.insert(header::HOST, v);
        }
        if let Some(proto) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, proto.clone());
        }
    }
    *req.uri_mut() = uri;

    // Phase 6: upstream.
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let mut resp = state.upstream.send(req).await.map_err(|r| {
        let reason = if r.status() == StatusCode::GATEWAY_TIMEOUT {
            "upstream_timeout"
        } else {
            "upstream_error"
        };
        (r, reason, user.clone())
    })?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
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
        // An upstream that switches protocols unasked is broken.
        return Err((
            Rejection::BadGateway("upstream switched protocols unasked".into()),
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
    shared: &Shared,
    method: &Method,
    headers: &http::HeaderMap,
    path: &str,
    query: Option<&str>,
    route: Option<&policy::Route>,
) -> Result<Decision, Denial> {
    if state.policy.status_exempt(method, path, query) {
        return Ok(Decision {
            allow: Allow::Status,
            identity: None,
            query: query.and_then(|q| policy::strip_query_param(q, "token")),
            strip_cookie: None,
        });
    }
    if route.is_some_and(|r| r.auth == crate::config::RouteAuth::None) {
        return Ok(Decision {
            allow: Allow::Public,
            identity: None,
            query: query.map(str::to_owned),
            strip_cookie: None,
        });
    }
    if state.policy.cors_preflight_exempt(method, headers, path) {
        return Ok(Decision {
            allow: Allow::Preflight,
            identity: None,
            query: query.map(str::to_owned),
            strip_cookie: None,
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

    // Phase 3: verify.
    let started = Instant::now();
    let verified = state.verifier.verify(&found.token).await;
    shared
        .metrics
        .verify_seconds
        .observe(started.elapsed().as_secs_f64());
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

    let (query, strip_cookie) = match &found.source {
        TokenSource::Query(name) => (query.and_then(|q| policy::strip_query_param(q, name)), None),
        TokenSource::Cookie(name) => (query.map(str::to_owned), Some(name.clone())),
        TokenSource::Header => (query.map(str::to_owned), None),
    };
    Ok(Decision {
        allow: Allow::Token,
        identity: Some(identity),
        query,
        strip_cookie,
    })
}

/// A failed verification as the client sees it.
pub fn rejection_for(e: &VerifyError) -> Rejection {
    match e {
        VerifyError::KeysUnavailable { retry_after } => Rejection::Unavailable {
            description: e.to_string(),
            retry_after: *retry_after,
        },
        other => Rejection::InvalidToken(other.to_string()),
    }
}
