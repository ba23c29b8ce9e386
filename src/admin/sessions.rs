//! The admin listener's session listing (issue 21): `GET /sessions`, the
//! browser sessions this gate has seen alive within `login.idle_timeout`
//! (`login::active`; no store scan), optionally one user's
//! (`?user=NAME`), most recently seen first. A session listed here is ended
//! with `POST /revocations {"session": ID}`; all of a user's with
//! `{"user": NAME}`. Each replica lists the sessions it has served.
//! `admin.rs` authorises it like the revocation endpoints: who is signed in
//! is not for every peer.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use crate::proxy::state::State;
use crate::respond::json_response;

pub(crate) const PATH: &str = "/sessions";

/// At most this many sessions in one answer (`"truncated": true` beyond).
const MAX_LISTED: usize = 10_000;

/// Is `path` this endpoint?
pub(crate) fn handles(path: &str) -> bool {
    path == PATH
}

pub(crate) fn handle<B>(state: &State, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "method_not_allowed"}),
        );
    }
    let Some(login) = &state.login else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "not_found", "error_description": "no [login]: there are no sessions"}),
        );
    };
    let mut user = None;
    for (k, v) in req
        .uri()
        .query()
        .map(crate::uri::query_pairs)
        .into_iter()
        .flatten()
    {
        match k.as_str() {
            "user" if user.is_none() => user = Some(v),
            _ => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({
                        "error": "invalid_request",
                        "error_description": "the only parameter is user, given once",
                    }),
                );
            }
        }
    }
    let (sessions, truncated) = login.list_active(user.as_deref(), MAX_LISTED);
    let listed: Vec<_> = sessions
        .iter()
        .map(|(sid, s)| {
            json!({
                "session": sid,
                "user": s.user,
                "signed_in": s.signed_in,
                "last_seen": s.last_seen,
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"sessions": listed, "truncated": truncated}),
    )
}
