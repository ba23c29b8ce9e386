//! HTTP handling of the token endpoints.
//!
//! Every answer here is `Cache-Control: no-store` + `Pragma: no-cache`
//! (RFC 6749 §5.1: tokens must never sit in a cache), and every error
//! carries the `x-jwtgate-error` marker like the gate's other answers.
//! Passwords and tokens are never logged; user names are, escaped.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tracing::{info, warn};

mod logout;

use super::discovery;
use super::passwords::{Refusal, log_name};
use super::users::MAX_USER_BYTES;
use super::{Endpoints, Issued, SESSION_CLAIM};
use crate::auth::Verifier;
use crate::auth::bearer::{self, TokenSource};
use crate::auth::claims::now;
use crate::net::server::ConnInfo;
use crate::observe::metrics::{EndpointLabels, Metrics};
use crate::respond::{GateError, Style, respond};

/// How long a client has to send the whole (small) body: a login endpoint
/// must not let slow senders hold connections open for ever.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest password accepted (argon2 hashes any length, but nobody types more).
const MAX_PASSWORD_BYTES: usize = 4096;

fn json(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    // The gate's JSON reply (no-store), plus the HTTP/1.0 cache header
    // RFC 6749 §5.1 asks of token responses.
    let mut resp = crate::respond::json_response(status, body);
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// The media type of a request, lower-case, without parameters.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Reads a body of at most `max` bytes within `BODY_TIMEOUT`.
async fn read_body(req: Request<Incoming>, max: usize) -> Result<(HeaderMap, Bytes), GateError> {
    let too_large = || {
        GateError::endpoint(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!("the request body is larger than {max} bytes (issuer.max_body_bytes)"),
        )
    };
    // A declared length over the cap is refused before reading anything.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let collected = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, max).collect()).await;
    match collected {
        Err(_) => Err(GateError::endpoint(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive in time",
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(_)) => Err(GateError::bad_request("the request body could not be read")),
        Ok(Ok(c)) => Ok((parts.headers, c.to_bytes())),
    }
}

/// A form body (`application/x-www-form-urlencoded`, else 400), its fields
/// (at most 32, none repeated), of at most `max` bytes within 10 s. Also
/// read by the sign-in endpoints of `login`.
pub(crate) async fn read_form(
    req: Request<Incoming>,
    max: usize,
) -> Result<Vec<(String, String)>, GateError> {
    let (headers, body) = read_body(req, max).await?;
    if media_type(&headers) != "application/x-www-form-urlencoded" {
        return Err(GateError::bad_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    form_fields(&body)
}

/// Form fields accepted at most: the endpoints read four.
const MAX_FORM_FIELDS: usize = 32;

/// A form body's fields; a repeated field is an error (RFC 6749 §3.2).
/// Bounded and checked in linear time, before any password is hashed.
fn form_fields(body: &[u8]) -> Result<Vec<(String, String)>, GateError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| GateError::bad_request("the form body is not UTF-8"))?;
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (k, v) in crate::uri::query_pairs(text) {
        if fields.len() == MAX_FORM_FIELDS {
            return Err(GateError::bad_request(format!(
                "more than {MAX_FORM_FIELDS} form fields"
            )));
        }
        if !seen.insert(k.clone()) {
            let shown: String = k.chars().take(32).collect();
            return Err(GateError::bad_request(format!(
                "parameter {shown:?} is repeated"
            )));
        }
        fields.push((k, v));
    }
    Ok(fields)
}

/// `form_fields` for the fuzzer: the fields, or the refusal's text.
#[doc(hidden)]
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    form_fields(body).map_err(|f| f.description())
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Credentials from a request.
struct Credentials {
    user: String,
    password: String,
}

// The password never shows in Debug output.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Endpoints {
    /// Answers a request for one of the issuer's endpoints, and counts it
    /// in `jwtgate_issued_total` by endpoint and outcome.
    pub async fn handle(
        &self,
        verifier: &Verifier,
        metrics: &Metrics,
        conn: ConnInfo,
        path: &str,
        req: Request<Incoming>,
    ) -> Response<Full<Bytes>> {
        let (result, style) = self.answer(verifier, conn, path, req).await;
        let (resp, outcome) = match result {
            Ok(resp) => (resp, "ok"),
            Err(e) => {
                let outcome = match e.status().as_u16() {
                    429 => "rate_limited",
                    500.. => "error",
                    _ => "refused",
                };
                (respond(&e, style, ""), outcome)
            }
        };
        metrics
            .issued
            .get_or_create(&EndpointLabels {
                endpoint: self.endpoint_name(path),
                outcome,
            })
            .inc();
        resp
    }

    /// The answer, and the style its refusal is said in (a token endpoint's
    /// refusal never carries a bearer challenge, so it needs no realm).
    async fn answer(
        &self,
        verifier: &Verifier,
        conn: ConnInfo,
        path: &str,
        req: Request<Incoming>,
    ) -> (Result<Response<Full<Bytes>>, GateError>, Style) {
        if self.jwks_paths.iter().any(|p| p == path) {
            return (self.jwks(req.method()), Style::OAuth);
        }
        if self.discovery_paths.iter().any(|p| p == path) {
            return (self.discovery(req, conn), Style::OAuth);
        }
        let style = if path == self.token_path || path == self.revoke_path {
            Style::OAuth
        } else {
            Style::Rest
        };
        if req.method() != Method::POST {
            let f = GateError::endpoint(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "only POST is accepted here",
            )
            .with_allow("POST");
            return (Err(f), style);
        }
        let result = if path == self.token_path {
            self.password_grant(conn, req).await
        } else if path == self.login_path {
            self.login(conn, req).await
        } else if path == self.logout_path {
            self.logout(verifier, req).await
        } else if path == self.revoke_path {
            self.revoke(verifier, req).await
        } else {
            self.renew(verifier, req).await
        };
        (result, style)
    }

    fn jwks(&self, method: &Method) -> Result<Response<Full<Bytes>>, GateError> {
        if method != Method::GET && method != Method::HEAD {
            return Err(get_only());
        }
        // The shared secret is never published: there is nothing to show.
        let Some(jwks) = self.signer.jwks() else {
            return Err(GateError::endpoint(
                StatusCode::NOT_FOUND,
                "not_found",
                "this gate signs with a shared secret; it publishes no keys",
            ));
        };
        Ok(public(json(StatusCode::OK, &jwks), method))
    }

    fn discovery(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> Result<Response<Full<Bytes>>, GateError> {
        let method = req.method();
        if method != Method::GET && method != Method::HEAD {
            return Err(get_only());
        }
        if !self.signer.is_asymmetric() {
            return Err(GateError::endpoint(
                StatusCode::NOT_FOUND,
                "not_found",
                "this gate signs with a shared secret; it cannot be discovered",
            ));
        }
        let base = discovery::base_url(&self.issuer, req.headers(), req.uri(), conn.tls);
        let doc = discovery::document(
            &self.issuer,
            &base,
            &self.token_path,
            crate::auth::signature::alg_name(self.signer.algorithm()),
        );
        Ok(public(json(StatusCode::OK, &doc), method))
    }

    /// RFC 6749 §4.3: `grant_type=password&username=..&password=..`.
    async fn password_grant(
        &self,
        conn: ConnInfo,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, GateError> {
        let fields = read_form(req, self.max_body).await?;
        match field(&fields, "grant_type") {
            None => return Err(GateError::bad_request("grant_type is missing")),
            Some("password") => {}
            Some(_) => {
                return Err(GateError::endpoint(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "only grant_type=password is supported",
                ));
            }
        }
        let creds = credentials(
            field(&fields, "username"),
            field(&fields, "password"),
            "username",
        )?;
        let user = creds.user.clone();
        self.passwords
            .check(&creds.user, &creds.password, conn.peer.ip(), "token")
            .await
            .map_err(|r| match r {
                Refusal::BadCredentials => GateError::endpoint(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the user name or password is wrong",
                ),
                other => refusal_failure(other),
            })?;
        let issued = self.issue(&user, now(), "token")?;
        Ok(json(
            StatusCode::OK,
            &json!({
                "access_token": issued.token,
                "token_type": "bearer",
                "expires_in": issued.exp.saturating_sub(issued.iat),
            }),
        ))
    }

    /// Ampho-style `{login, password}` as JSON or a form.
    async fn login(
        &self,
        conn: ConnInfo,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, GateError> {
        let (headers, body) = read_body(req, self.max_body).await?;
        let creds = match media_type(&headers).as_str() {
            "application/json" => {
                let v: Value = serde_json::from_slice(&body)
                    .map_err(|_| GateError::bad_request("the body is not valid JSON"))?;
                let s = |k: &str| v.get(k).and_then(Value::as_str);
                credentials(s("login").or(s("username")), s("password"), "login")?
            }
            "application/x-www-form-urlencoded" => {
                let f = form_fields(&body)?;
                credentials(
                    field(&f, "login").or(field(&f, "username")),
                    field(&f, "password"),
                    "login",
                )?
            }
            _ => {
                return Err(GateError::bad_request(
                    "the body must be application/json or application/x-www-form-urlencoded",
                ));
            }
        };
        let user = creds.user.clone();
        self.passwords
            .check(&creds.user, &creds.password, conn.peer.ip(), "login")
            .await
            .map_err(refusal_failure)?;
        let issued = self.issue(&user, now(), "login")?;
        Ok(self.session_response(&issued))
    }

    /// A fresh token for the bearer of a valid token this gate issued,
    /// within the session's maximum age.
    async fn renew(
        &self,
        verifier: &Verifier,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, GateError> {
        let unauthorized = |text: &'static str| {
            GateError::endpoint(StatusCode::UNAUTHORIZED, "invalid_token", text)
        };
        let found = bearer::extract(req.headers(), None, &[TokenSource::Header]).map_err(|_| {
            GateError::bad_request("the Authorization header is not a usable bearer token")
        })?;
        let Some(found) = found else {
            return Err(GateError::NoToken);
        };
        // The normal verification first: signature, times, audience.
        let identity = verifier
            .verify(&found.token)
            .await
            .map_err(GateError::Verify)?;
        // Then: a token this gate issued for a login session.
        let claims = &identity.claims;
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(unauthorized("the token was not issued by this gate"));
        }
        let Some(auth_time) = claims.get(SESSION_CLAIM).and_then(Value::as_u64) else {
            return Err(unauthorized(
                "the token is not a login session of this gate",
            ));
        };
        let Some(user) = claims.get("sub").and_then(Value::as_str) else {
            return Err(unauthorized("the token names no subject"));
        };
        let now = now();
        if now >= auth_time.saturating_add(self.max_session)
            || auth_time > now.saturating_add(self.leeway)
        {
            warn!(target: "jwtgate::issuer", user = %log_name(user), "renew refused: session too old");
            return Err(unauthorized(
                "the session is older than issuer.max_session: log in again",
            ));
        }
        // A user removed from the file loses the session at the next renewal.
        let known = self.passwords.knows(user).await;
        if !known {
            warn!(target: "jwtgate::issuer", user = %log_name(user), "renew refused: user no longer in the users file");
            return Err(unauthorized("the user is no longer known"));
        }
        let issued = self.issue(user, auth_time, "renew")?;
        Ok(self.session_response(&issued))
    }

    fn session_response(&self, issued: &Issued) -> Response<Full<Bytes>> {
        json(
            StatusCode::OK,
            &json!({
                "token": issued.token,
                "starts": issued.iat,
                "expires": issued.exp,
                "ttl": issued.exp.saturating_sub(issued.iat),
                "leeway": self.leeway,
            }),
        )
    }

    fn issue(&self, user: &str, auth_time: u64, via: &'static str) -> Result<Issued, GateError> {
        let issued = self.mint(user, auth_time).map_err(|e| {
            warn!(target: "jwtgate::issuer", "cannot sign a token: {e}");
            GateError::endpoint(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the token could not be signed",
            )
        })?;
        info!(target: "jwtgate::issuer", user = %log_name(user), via, expires = issued.exp, "token issued");
        Ok(issued)
    }
}

fn credentials(
    user: Option<&str>,
    password: Option<&str>,
    user_field: &str,
) -> Result<Credentials, GateError> {
    let user = user
        .filter(|u| !u.is_empty())
        .ok_or_else(|| GateError::bad_request(format!("{user_field} is missing")))?;
    let password = password
        .filter(|p| !p.is_empty())
        .ok_or_else(|| GateError::bad_request("password is missing"))?;
    if user.len() > MAX_USER_BYTES || password.len() > MAX_PASSWORD_BYTES {
        return Err(GateError::bad_request(format!(
            "{user_field} or password is too long"
        )));
    }
    Ok(Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

/// The REST answer to a refusal (the token endpoint maps bad credentials itself).
fn refusal_failure(r: Refusal) -> GateError {
    match r {
        Refusal::Limited(wait) => {
            let secs = wait.as_secs().max(1);
            GateError::endpoint(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!("too many failed logins; retry in {secs}s"),
            )
            .with_retry_after(secs)
        }
        Refusal::BadCredentials => GateError::endpoint(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "the login or password is wrong",
        ),
        Refusal::NoUsers => GateError::endpoint(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the users file is not loaded",
        ),
    }
}

fn get_only() -> GateError {
    GateError::endpoint(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "only GET and HEAD are accepted here",
    )
    .with_allow("GET, HEAD")
}

/// Public documents may be cached for a while; HEAD gets the headers only.
fn public(mut resp: Response<Full<Bytes>>, method: &Method) -> Response<Full<Bytes>> {
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.remove(header::PRAGMA);
    if method == Method::HEAD {
        *resp.body_mut() = Full::new(Bytes::new());
    }
    resp
}
