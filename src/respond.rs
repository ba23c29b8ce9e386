//! The one place where an error becomes an HTTP response.
//!
//! Every phase that can end a request says *why* with a [`GateError`];
//! [`respond`] alone decides what the client sees: the status, the
//! `WWW-Authenticate` challenge, `Retry-After`, and the body in the style of
//! the endpoint asked (the gate's JSON, gRPC's trailers-only answer, or the
//! token endpoints' OAuth2/REST JSON). Every response jwtgate makes itself
//! carries `x-jwtgate-error: CODE`, so that operators (and tests) can tell
//! the gate's answers from the backend's.
//!
//! `respond/` (`grpc`, `page`): uses only `auth` (its error types),
//! `observe` and the leaves, so that `proxy`, `mint`, `login` and `admin`
//! all answer through it.

mod grpc;
mod page;

pub use page::{escape_html, html_response, page_response};

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_TYPE, LOCATION, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::auth::VerifyError;
use crate::auth::bearer::ExtractError;
use crate::observe::metrics::Decision;

/// Why a verified identity may not pass (`policy::authorize`'s answer).
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    UserNotAllowed,
    MissingClaim(String),
    MissingScope(String),
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::UserNotAllowed => f.write_str("user is not allowed"),
            Denied::MissingClaim(c) => write!(f, "required claim {c} is missing or differs"),
            Denied::MissingScope(s) => write!(f, "required scope {s} is missing"),
        }
    }
}

pub const ERROR_HEADER: &str = "x-jwtgate-error";

/// Why the gate ended a request, by the phase that ended it.
#[derive(Debug)]
pub enum GateError {
    /// CONNECT: the gate is never a tunnel to where the client names.
    Connect,
    /// Two `Host` headers, or one that disagrees with the target.
    Host(&'static str),
    /// A forward-auth request whose description cannot be decided on.
    Described(&'static str),
    /// A path (or target) with more than one meaning, or none.
    Path(Cow<'static, str>),
    /// No token where one is needed.
    NoToken,
    /// A token that cannot be told apart (two of them, or not token68).
    Extract(ExtractError),
    Verify(VerifyError),
    Policy(Denied),
    /// The request was allowed and the upstream failed it.
    Upstream(UpstreamError),
    /// A token endpoint's own refusal (bad grant, too many logins, ...).
    Endpoint(EndpointError),
    /// A navigation without a token or session, on a route that needs
    /// one: 302 to sign in (the location, built from `login.external_url`).
    SignIn(String),
    /// A browser sign-in step refused (`/.jwtgate/...`).
    Login(LoginRefusal),
}

/// A browser sign-in step refused: the client is told no more than the
/// status's plain words (a detail could help an attacker probe the flow);
/// `reason` goes to the log and metrics.
#[derive(Debug, Clone, Copy)]
pub struct LoginRefusal {
    pub status: StatusCode,
    pub reason: &'static str,
}

/// The upstream failing an allowed request.
#[derive(Debug)]
pub enum UpstreamError {
    /// No response head within the time allowed: 504.
    Timeout(&'static str),
    /// Refused, reset, or answered with what was not asked for: 502.
    Failed(Cow<'static, str>),
    /// `upstream.max_connections` requests were in flight for all of
    /// `upstream.queue_timeout`: 503, come back after `retry_after` seconds.
    Saturated { retry_after: u64 },
}

/// A token endpoint's refusal, in the terms of RFC 6749 §5.2.
#[derive(Debug)]
pub struct EndpointError {
    status: StatusCode,
    code: &'static str,
    text: Cow<'static, str>,
    retry_after: Option<u64>,
    allow: Option<&'static str>,
}

impl GateError {
    /// A token endpoint's refusal with this status and OAuth2 error code.
    pub fn endpoint(
        status: StatusCode,
        code: &'static str,
        text: impl Into<Cow<'static, str>>,
    ) -> Self {
        GateError::Endpoint(EndpointError {
            status,
            code,
            text: text.into(),
            retry_after: None,
            allow: None,
        })
    }

    /// A token endpoint's 400 `invalid_request`.
    pub fn bad_request(text: impl Into<Cow<'static, str>>) -> Self {
        Self::endpoint(StatusCode::BAD_REQUEST, "invalid_request", text)
    }

    /// The same refusal, saying when to come back.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        if let GateError::Endpoint(e) = &mut self {
            e.retry_after = Some(secs);
        }
        self
    }

    /// The same refusal, naming the methods that are accepted (405).
    pub fn with_allow(mut self, methods: &'static str) -> Self {
        if let GateError::Endpoint(e) = &mut self {
            e.allow = Some(methods);
        }
        self
    }

    /// The status the client is given.
    pub fn status(&self) -> StatusCode {
        self.answer().status
    }

    /// The error code (`invalid_token`, ...) of the body and `x-jwtgate-error`.
    pub fn code(&self) -> &'static str {
        self.answer().code
    }

    /// The words the client is given.
    pub fn description(&self) -> String {
        self.answer().text.into_owned()
    }

    /// The label of metrics and the access log.
    pub fn reason(&self) -> &'static str {
        match self {
            GateError::Connect => "bad_method",
            GateError::Host(_) => "bad_host",
            GateError::Described(_) => "bad_request",
            GateError::Path(_) => "bad_path",
            GateError::NoToken => "no_token",
            GateError::Extract(ExtractError::Ambiguous(_)) => "ambiguous_token",
            GateError::Extract(ExtractError::Malformed) => "malformed",
            GateError::Verify(e) => e.reason(),
            GateError::Policy(Denied::UserNotAllowed) => "user_not_allowed",
            GateError::Policy(Denied::MissingClaim(_)) => "missing_claim",
            GateError::Policy(Denied::MissingScope(_)) => "missing_scope",
            GateError::Upstream(UpstreamError::Timeout(_)) => "upstream_timeout",
            GateError::Upstream(UpstreamError::Failed(_)) => "upstream_error",
            GateError::Upstream(UpstreamError::Saturated { .. }) => "upstream_busy",
            GateError::Endpoint(e) => e.code,
            GateError::SignIn(_) => "sign_in",
            GateError::Login(r) => r.reason,
        }
    }

    /// How the request counts: the upstream failing after an allow is an
    /// error, not a denial.
    pub fn decision(&self) -> Decision {
        match self {
            GateError::Upstream(_) => Decision::Error,
            _ => Decision::Deny,
        }
    }

    /// The status, code and words the client is given.
    fn answer(&self) -> Answer<'_> {
        let invalid_request = |text: Cow<'static, str>| Answer {
            challenge: Challenge::Error,
            ..Answer::new(StatusCode::BAD_REQUEST, "invalid_request", text)
        };
        match self {
            GateError::Connect => Answer {
                status: StatusCode::METHOD_NOT_ALLOWED,
                ..invalid_request("CONNECT is not supported".into())
            },
            GateError::Host(d) | GateError::Described(d) => invalid_request((*d).into()),
            GateError::Path(d) => invalid_request(Cow::Owned(d.to_string())),
            GateError::Extract(ExtractError::Ambiguous(d)) => invalid_request((*d).into()),
            GateError::NoToken => Answer {
                challenge: Challenge::Plain,
                ..Answer::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a bearer token is required".into(),
                )
            },
            GateError::Extract(ExtractError::Malformed) => {
                invalid_token(Cow::Borrowed("malformed bearer credential"))
            }
            GateError::Verify(
                e @ (VerifyError::KeysUnavailable { retry_after }
                | VerifyError::RevocationsStale { retry_after }),
            ) => Answer {
                retry_after: Some(*retry_after),
                ..Answer::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    e.to_string().into(),
                )
            },
            GateError::Verify(e) => invalid_token(e.to_string().into()),
            GateError::Policy(d) => Answer {
                challenge: Challenge::Error,
                ..Answer::new(
                    StatusCode::FORBIDDEN,
                    "insufficient_scope",
                    d.to_string().into(),
                )
            },
            GateError::Upstream(UpstreamError::Timeout(d)) => {
                Answer::new(StatusCode::GATEWAY_TIMEOUT, "gateway_timeout", (*d).into())
            }
            GateError::Upstream(UpstreamError::Failed(d)) => Answer::new(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                Cow::Owned(d.to_string()),
            ),
            GateError::Upstream(UpstreamError::Saturated { retry_after }) => Answer {
                retry_after: Some(*retry_after),
                ..Answer::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the upstream is at upstream.max_connections; retry later".into(),
                )
            },
            GateError::Endpoint(e) => Answer {
                retry_after: e.retry_after,
                allow: e.allow,
                ..Answer::new(e.status, e.code, Cow::Borrowed(&e.text))
            },
            GateError::SignIn(location) => Answer {
                location: Some(location),
                ..Answer::new(StatusCode::FOUND, "sign_in", "sign in first".into())
            },
            GateError::Login(r) => {
                let (code, text) = match r.status {
                    StatusCode::UNAUTHORIZED => ("unauthorized", "sign in first"),
                    StatusCode::FORBIDDEN => ("forbidden", "refused"),
                    StatusCode::METHOD_NOT_ALLOWED => ("invalid_request", "method not allowed"),
                    StatusCode::NOT_FOUND => ("not_found", "no such page"),
                    StatusCode::SERVICE_UNAVAILABLE => (
                        "temporarily_unavailable",
                        "sign-in is unavailable, try again later",
                    ),
                    _ => ("invalid_request", "sign-in failed"),
                };
                Answer {
                    retry_after: (r.status == StatusCode::SERVICE_UNAVAILABLE).then_some(5),
                    ..Answer::new(r.status, code, text.into())
                }
            }
        }
    }
}

fn invalid_token<'a>(text: Cow<'a, str>) -> Answer<'a> {
    Answer {
        challenge: Challenge::Error,
        ..Answer::new(StatusCode::UNAUTHORIZED, "invalid_token", text)
    }
}

/// Which `WWW-Authenticate` challenge an answer carries (RFC 6750 §3).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Challenge {
    None,
    /// No credentials were sent: no error attribute (§3.1).
    Plain,
    /// With `error` and `error_description`.
    Error,
}

struct Answer<'a> {
    status: StatusCode,
    code: &'static str,
    text: Cow<'a, str>,
    challenge: Challenge,
    retry_after: Option<u64>,
    allow: Option<&'static str>,
    location: Option<&'a str>,
}

impl<'a> Answer<'a> {
    fn new(status: StatusCode, code: &'static str, text: Cow<'a, str>) -> Self {
        Answer {
            status,
            code,
            text,
            challenge: Challenge::None,
            retry_after: None,
            allow: None,
            location: None,
        }
    }
}

/// How the endpoint that was asked says a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// The proxy and forward-auth listeners: `{"error", "error_description"}`
    /// with the bearer challenge.
    Gate,
    /// A gRPC client, which reads only `grpc-status`: a trailers-only
    /// response. `deadline_given`: the client sent `grpc-timeout`, so a 504
    /// is DEADLINE_EXCEEDED.
    Grpc { deadline_given: bool },
    /// The OAuth2 token and revocation endpoints (RFC 6749 §5.2).
    OAuth,
    /// The Ampho-style REST endpoints: `{"error", "message"}`.
    Rest,
    /// A page for a person (the sign-in endpoints): a few words of HTML.
    Page,
}

/// The response to `err` in `style` (hyper leaves the body out for HEAD).
pub fn respond(err: &GateError, style: Style, realm: &str) -> Response<Full<Bytes>> {
    let a = err.answer();
    let mut resp = match style {
        Style::Grpc { deadline_given } => {
            let mut resp = Response::new(Full::new(Bytes::new()));
            let status = grpc::status_for(a.status.as_u16(), deadline_given);
            let h = resp.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            h.insert("grpc-status", HeaderValue::from(status));
            if let Ok(v) = HeaderValue::from_str(&grpc::encode_message(&a.text)) {
                h.insert("grpc-message", v);
            }
            resp
        }
        Style::Gate | Style::OAuth => json_response(
            a.status,
            &serde_json::json!({"error": a.code, "error_description": a.text}),
        ),
        Style::Rest => json_response(
            a.status,
            &serde_json::json!({"error": a.code, "message": a.text}),
        ),
        Style::Page => html_response(a.status, &a.text),
    };
    let h = resp.headers_mut();
    h.insert(ERROR_HEADER, HeaderValue::from_static(a.code));
    if matches!(style, Style::Gate | Style::Grpc { .. })
        && let Some(v) = challenge(&a, realm).and_then(|v| HeaderValue::from_str(&v).ok())
    {
        h.insert(WWW_AUTHENTICATE, v);
    }
    if matches!(style, Style::OAuth | Style::Rest) {
        // The HTTP/1.0 cache header RFC 6749 §5.1 asks of token responses.
        h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    }
    if let Some(s) = a.retry_after {
        h.insert(RETRY_AFTER, HeaderValue::from(s));
    }
    if let Some(m) = a.allow {
        h.insert(ALLOW, HeaderValue::from_static(m));
    }
    if let Some(v) = a.location.and_then(|l| HeaderValue::from_str(l).ok()) {
        h.insert(LOCATION, v);
    }
    resp
}

fn challenge(a: &Answer<'_>, realm: &str) -> Option<String> {
    let realm = quote(realm);
    match a.challenge {
        Challenge::None => None,
        Challenge::Plain => Some(format!("Bearer realm=\"{realm}\"")),
        Challenge::Error => Some(format!(
            "Bearer realm=\"{realm}\", error=\"{}\", error_description=\"{}\"",
            a.code,
            quote(&a.text)
        )),
    }
}

/// A quoted-string's content: no quotes, backslashes or control characters.
fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\' && c.is_ascii())
        .collect()
}

/// A JSON response that is never cached.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_token_has_no_error_attribute() {
        let r = respond(&GateError::NoToken, Style::Gate, "jwtgate");
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer realm=\"jwtgate\"");
        assert_eq!(r.headers()[ERROR_HEADER], "unauthorized");
    }

    #[test]
    fn grpc_rejection_is_trailers_only() {
        use hyper::body::Body;
        let denied = GateError::Policy(Denied::MissingScope("\"a b\"".into()));
        let r = respond(
            &denied,
            Style::Grpc {
                deadline_given: false,
            },
            "r",
        );
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "7");
        assert_eq!(
            r.headers()["grpc-message"],
            "required scope \"a b\" is missing"
        );
        assert_eq!(r.headers()[CONTENT_TYPE], "application/grpc");
        assert!(
            r.headers()[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("insufficient_scope")
        );
        assert!(r.body().is_end_stream());
        let t = GateError::Upstream(UpstreamError::Timeout("slow"));
        let grpc = |deadline_given| Style::Grpc { deadline_given };
        assert_eq!(respond(&t, grpc(true), "r").headers()["grpc-status"], "4");
        assert_eq!(respond(&t, grpc(false), "r").headers()["grpc-status"], "14");
        assert_eq!(t.decision(), Decision::Error);
    }

    #[test]
    fn description_is_sanitised() {
        let r = respond(&GateError::Path("bad \"x\"\n".into()), Style::Gate, "r");
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"r\", error=\"invalid_request\", error_description=\"bad x\""
        );
    }

    #[test]
    fn keys_unavailable_is_503_with_retry_after_in_every_style() {
        for style in [Style::Gate, Style::OAuth, Style::Rest] {
            let e = GateError::Verify(VerifyError::KeysUnavailable { retry_after: 7 });
            let r = respond(&e, style, "r");
            assert_eq!(r.status(), 503);
            assert_eq!(r.headers()[RETRY_AFTER], "7");
            assert_eq!(r.headers()[ERROR_HEADER], "temporarily_unavailable");
            assert_eq!(r.headers().contains_key(PRAGMA), style != Style::Gate);
            assert!(!r.headers().contains_key(WWW_AUTHENTICATE));
        }
    }

    #[test]
    fn endpoint_refusals_keep_their_code_and_allow() {
        let e = GateError::endpoint(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "x")
            .with_allow("POST");
        let r = respond(&e, Style::Rest, "r");
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()[ALLOW], "POST");
        assert_eq!(e.reason(), "method_not_allowed");
        assert!(!r.headers().contains_key(WWW_AUTHENTICATE));
    }
}
