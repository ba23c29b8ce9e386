//! The one place where a rejection becomes an HTTP response.
//!
//! Every response jwtgate makes itself carries `x-jwtgate-error: CODE`, so
//! that operators (and tests) can tell the gate's answers from the backend's.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

pub const ERROR_HEADER: &str = "x-jwtgate-error";

/// A request ended by the gate.
#[derive(Debug, Clone)]
pub enum Rejection {
    /// No token at all: RFC 6750 §3.1, no error attribute.
    NoToken,
    InvalidToken(String),
    InvalidRequest(String),
    /// A method the gate never forwards (CONNECT): 405.
    MethodNotAllowed(String),
    Forbidden(String),
    Unavailable {
        description: String,
        retry_after: u64,
    },
    BadGateway(String),
    GatewayTimeout(String),
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::NoToken | Rejection::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Rejection::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Rejection::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::Forbidden(_) => StatusCode::FORBIDDEN,
            Rejection::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Rejection::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NoToken => "unauthorized",
            Rejection::InvalidToken(_) => "invalid_token",
            Rejection::InvalidRequest(_) | Rejection::MethodNotAllowed(_) => "invalid_request",
            Rejection::Forbidden(_) => "insufficient_scope",
            Rejection::Unavailable { .. } => "temporarily_unavailable",
            Rejection::BadGateway(_) => "bad_gateway",
            Rejection::GatewayTimeout(_) => "gateway_timeout",
        }
    }

    pub fn description(&self) -> &str {
        match self {
            Rejection::NoToken => "a bearer token is required",
            Rejection::InvalidToken(d)
            | Rejection::InvalidRequest(d)
            | Rejection::MethodNotAllowed(d)
            | Rejection::Forbidden(d)
            | Rejection::BadGateway(d)
            | Rejection::GatewayTimeout(d) => d,
            Rejection::Unavailable { description, .. } => description,
        }
    }

    fn www_authenticate(&self, realm: &str) -> Option<String> {
        let realm = quote(realm);
        match self {
            Rejection::NoToken => Some(format!("Bearer realm=\"{realm}\"")),
            Rejection::InvalidToken(d) => Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                quote(d)
            )),
            Rejection::InvalidRequest(d) | Rejection::MethodNotAllowed(d) => Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_request\", error_description=\"{}\"",
                quote(d)
            )),
            Rejection::Forbidden(d) => Some(format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{}\"",
                quote(d)
            )),
            _ => None,
        }
    }

    /// The response (hyper leaves the body out for HEAD requests).
    /// The headers every rendering of a refusal carries: the marker, the
    /// `WWW-Authenticate` challenge and `Retry-After`.
    fn mark(&self, h: &mut http::HeaderMap, realm: &str) {
        h.insert(ERROR_HEADER, HeaderValue::from_static(self.code()));
        if let Some(v) = self
            .www_authenticate(realm)
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            h.insert(WWW_AUTHENTICATE, v);
        }
        if let Rejection::Unavailable { retry_after, .. } = self {
            h.insert(RETRY_AFTER, HeaderValue::from(*retry_after));
        }
    }

    pub fn into_response(self, realm: &str) -> Response<Full<Bytes>> {
        let body = serde_json::json!({
            "error": self.code(),
            "error_description": self.description(),
        });
        let mut resp = json_response(self.status(), &body);
        let h = resp.headers_mut();
        self.mark(h, realm);
        resp
    }
}

impl Rejection {
    /// The same refusal for a gRPC client, which reads only `grpc-status`:
    /// a trailers-only response (HTTP 200, no body, the status in the one
    /// HEADERS frame). `grpc-message` is the description, and the
    /// `WWW-Authenticate` challenge, `Retry-After` and `x-jwtgate-error`
    /// stay as metadata. `deadline_given`: the client sent `grpc-timeout`,
    /// so a 504 is DEADLINE_EXCEEDED.
    pub fn into_grpc_response(self, realm: &str, deadline_given: bool) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(Bytes::new()));
        let status = crate::grpc::status_for(self.status().as_u16(), deadline_given);
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert("grpc-status", HeaderValue::from(status));
        if let Ok(v) = HeaderValue::from_str(&crate::grpc::encode_message(self.description())) {
            h.insert("grpc-message", v);
        }
        self.mark(h, realm);
        resp
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
        let r = Rejection::NoToken.into_response("jwtgate");
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer realm=\"jwtgate\"");
    }

    #[test]
    fn grpc_rejection_is_trailers_only() {
        use hyper::body::Body;
        let r = Rejection::Forbidden("missing scope \"a b\"".into()).into_grpc_response("r", false);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "7");
        assert_eq!(r.headers()["grpc-message"], "missing scope \"a b\"");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/grpc");
        assert!(
            r.headers()[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("insufficient_scope")
        );
        assert!(r.body().is_end_stream());
        let t = Rejection::GatewayTimeout("slow".into());
        assert_eq!(
            t.clone().into_grpc_response("r", true).headers()["grpc-status"],
            "4"
        );
        assert_eq!(
            t.into_grpc_response("r", false).headers()["grpc-status"],
            "14"
        );
    }

    #[test]
    fn description_is_sanitised() {
        let r = Rejection::InvalidToken("bad \"x\"\n".into()).into_response("r");
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"r\", error=\"invalid_token\", error_description=\"bad x\""
        );
    }
}
