//! The admin listener's revocation endpoints (issue 14):
//! `POST /revocations`, `GET /revocations`, `DELETE /revocations/{id}`.
//! A revocation names one token (`jti`), one browser session (`session`,
//! issue 21) or a user's tokens and sessions (`user`).
//! `admin.rs` authorises them like the other mutating endpoints (a list of
//! revoked users is not for every peer either).

use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::auth::claims::now;
use crate::login::session::{plausible_sid, revocation_id, sid_of_revocation};
use crate::proxy::state::State;
use crate::respond::json_response;
use crate::store::revocation::{MAX_FIELD_BYTES, Revocation, Rule};

/// A revocation request is a few hundred bytes.
const MAX_BODY: usize = 16 * 1024;

pub(crate) const PATH: &str = "/revocations";

/// Is `path` one of these endpoints?
pub(crate) fn handles(path: &str) -> bool {
    path == PATH || path.starts_with("/revocations/")
}

fn error(status: StatusCode, code: &str, text: impl Into<String>) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({"error": code, "error_description": text.into()}),
    )
}

pub(crate) async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(store) = state.store.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "no revocation store",
        );
    };
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET | Method::HEAD, PATH) => {
            let list: Vec<Value> = store.list().iter().map(shown).collect();
            json_response(
                StatusCode::OK,
                &json!({"revocations": list, "store": store.status()}),
            )
        }
        (Method::POST, PATH) => {
            let (rule, expires) = match read_rule(req).await {
                Ok(r) => r,
                Err(resp) => return *resp,
            };
            // No session outlives max_lifetime from now: its revocation
            // need not either.
            let is_session =
                matches!(&rule, Rule::Token { jti } if sid_of_revocation(jti).is_some());
            let expires = expires.or_else(|| {
                let login = state.login.as_ref().filter(|_| is_session)?;
                Some(now().saturating_add(login.max_lifetime().as_secs()))
            });
            let (rev, outcome) = store.revoke(rule, expires).await;
            let rev = shown(&rev);
            match outcome {
                Ok(()) => json_response(
                    StatusCode::CREATED,
                    &json!({"revocation": rev, "shared": true}),
                ),
                Err(e) => json_response(
                    StatusCode::ACCEPTED,
                    &json!({"revocation": rev, "shared": false, "warning": e.to_string()}),
                ),
            }
        }
        (Method::DELETE, p) if p.len() > PATH.len() + 1 => {
            let id = &p[PATH.len() + 1..];
            if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return error(StatusCode::NOT_FOUND, "not_found", "no such revocation");
            }
            match store.remove(id).await {
                Ok(true) => json_response(StatusCode::OK, &json!({"removed": id})),
                Ok(false) => error(StatusCode::NOT_FOUND, "not_found", "no such revocation"),
                Err(e) => json_response(
                    StatusCode::ACCEPTED,
                    &json!({"removed": id, "shared": false, "warning": e.to_string()}),
                ),
            }
        }
        (_, PATH) => {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "GET or POST",
            );
            r.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, HEAD, POST"),
            );
            r
        }
        _ => {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "DELETE /revocations/{id}",
            );
            r.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("DELETE"),
            );
            r
        }
    }
}

/// A revocation as the API shows it: a browser session's (stored as the
/// `jti` `session:ID`, which every gate enforces) is of kind `session`.
fn shown(rev: &Revocation) -> Value {
    let mut v = serde_json::to_value(rev).unwrap_or(Value::Null);
    if let Rule::Token { jti } = &rev.rule
        && let Some(sid) = sid_of_revocation(jti)
        && let Some(obj) = v.as_object_mut()
    {
        obj.remove("jti");
        obj.insert("kind".into(), json!("session"));
        obj.insert("session".into(), json!(sid));
    }
    v
}

type Bad = Box<Response<Full<Bytes>>>;

fn bad(text: impl Into<String>) -> Bad {
    Box::new(error(StatusCode::BAD_REQUEST, "invalid_request", text))
}

/// `{"jti": ID}`, `{"session": SESSION_ID}` or `{"user": NAME,
/// "issuer"?: ISS, "before"?: TIME}`, each with an optional
/// `"expires": TIME`; a TIME is Unix seconds or an RFC 3339 date.
async fn read_rule(req: Request<Incoming>) -> Result<(Rule, Option<u64>), Bad> {
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| bad(format!("the body must be JSON of at most {MAX_BODY} bytes")))?
        .to_bytes();
    let v: Value = serde_json::from_slice(&body).map_err(|_| bad("the body is not JSON"))?;
    let Some(obj) = v.as_object() else {
        return Err(bad("the body must be a JSON object"));
    };
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "jti" | "session" | "user" | "issuer" | "before" | "expires"
        ) {
            return Err(bad(format!("unknown field {k:?}")));
        }
    }
    let text = |k: &str| -> Result<Option<String>, Bad> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_FIELD_BYTES => {
                Ok(Some(s.clone()))
            }
            Some(_) => Err(bad(format!(
                "{k} must be a non-empty string of at most {MAX_FIELD_BYTES} bytes"
            ))),
        }
    };
    let time = |k: &str| -> Result<Option<u64>, Bad> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => parse_time(v)
                .map(Some)
                .ok_or_else(|| bad(format!("{k} must be Unix seconds or an RFC 3339 time"))),
        }
    };
    let expires = time("expires")?;
    let rule = match (text("jti")?, text("session")?, text("user")?) {
        (Some(jti), None, None) => {
            if obj.contains_key("issuer") || obj.contains_key("before") {
                return Err(bad("issuer and before go with user, not jti"));
            }
            Rule::Token { jti }
        }
        (None, Some(sid), None) => {
            if obj.contains_key("issuer") || obj.contains_key("before") {
                return Err(bad("issuer and before go with user, not session"));
            }
            if !plausible_sid(&sid) {
                return Err(bad(
                    "session must be a session id: 16 to 64 base64url characters, as \
                     jwtgate verify-token --session prints it",
                ));
            }
            Rule::Token {
                jti: revocation_id(&sid),
            }
        }
        (None, None, Some(user)) => Rule::User {
            user,
            issuer: text("issuer")?,
            before: time("before")?.unwrap_or_else(now),
        },
        _ => return Err(bad("give exactly one of jti, session and user")),
    };
    Ok((rule, expires))
}

/// Unix seconds (a number or digits) or an RFC 3339 time.
pub(crate) fn parse_time(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() => {
            s.parse().ok()
        }
        Value::String(s) => humantime::parse_rfc3339_weak(s)
            .ok()?
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time(&json!(5)), Some(5));
        assert_eq!(parse_time(&json!("17")), Some(17));
        assert_eq!(parse_time(&json!("1970-01-01T00:01:00Z")), Some(60));
        assert_eq!(parse_time(&json!("yesterday")), None);
        assert_eq!(parse_time(&json!(-1)), None);
    }
}
