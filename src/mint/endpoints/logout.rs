//! Ending a token before its `exp`: Ampho-style `{rest_prefix}/logout`
//! (the bearer token revokes itself) and RFC 7009's `/revoke` (the token is
//! in the form body). Both revoke by `jti` in the shared store, so every
//! gate refuses the token within a second, `renew` included.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::{field, log_name, read_form};
use crate::auth::Verifier;
use crate::auth::bearer::{self, TokenSource};
use crate::auth::{Identity, VerifyError};
use crate::mint::Endpoints;
use crate::respond::GateError;
use crate::store::revocation::Rule;

impl Endpoints {
    /// `POST {rest_prefix}/logout` with the token as bearer: 200
    /// `{"message": "logged out"}`; the token is refused from then on.
    pub(super) async fn logout(
        &self,
        verifier: &Verifier,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, GateError> {
        let found = bearer::extract(req.headers(), None, &[TokenSource::Header]).map_err(|_| {
            GateError::bad_request("the Authorization header is not a usable bearer token")
        })?;
        let Some(found) = found else {
            return Err(GateError::NoToken);
        };
        let identity = verifier
            .verify(&found.token)
            .await
            .map_err(GateError::Verify)?;
        self.revoke_identity(&identity, "logout").await?;
        Ok(super::json(
            StatusCode::OK,
            &json!({"message": "logged out"}),
        ))
    }

    /// RFC 7009 §2: `token=...` (form); `token_type_hint` is accepted and
    /// ignored (only access tokens exist here). An invalid or unknown token
    /// is answered 200 too (§2.2): the client's aim is met either way.
    pub(super) async fn revoke(
        &self,
        verifier: &Verifier,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, GateError> {
        let fields = read_form(req, self.max_body).await?;
        let Some(token) = field(&fields, "token").filter(|t| !t.is_empty()) else {
            return Err(GateError::bad_request("token is missing"));
        };
        // Only a token that verifies can be revoked: a forged one must not
        // let anyone revoke someone else's jti.
        match verifier.verify(token).await {
            Ok(identity) => self.revoke_identity(&identity, "revoke").await?,
            Err(VerifyError::KeysUnavailable { retry_after })
            | Err(VerifyError::RevocationsStale { retry_after }) => {
                return Err(GateError::endpoint(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the token cannot be checked now; retry later",
                )
                .with_retry_after(retry_after));
            }
            Err(_) => {}
        }
        let mut resp = Response::new(Full::new(Bytes::new()));
        let h = resp.headers_mut();
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        h.insert(
            http::header::PRAGMA,
            http::HeaderValue::from_static("no-cache"),
        );
        Ok(resp)
    }

    /// Revokes a verified token by its jti, for as long as it could still
    /// be accepted (exp + leeway).
    async fn revoke_identity(
        &self,
        identity: &Identity,
        via: &'static str,
    ) -> Result<(), GateError> {
        let Some(jti) = identity
            .claims
            .get("jti")
            .and_then(Value::as_str)
            .filter(|j| !j.is_empty())
        else {
            return Err(GateError::bad_request(
                "the token has no jti, so it cannot be revoked alone",
            ));
        };
        let Some(store) = self.runtime.store() else {
            return Err(GateError::endpoint(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "revocation is not available",
            ));
        };
        let (_, outcome) = store
            .revoke(
                Rule::Token {
                    jti: jti.to_owned(),
                },
                Some(identity.exp.saturating_add(self.leeway)),
            )
            .await;
        if let Err(e) = outcome {
            // Already refused here; the other gates learn it when the
            // store returns.
            warn!(target: "jwtgate::issuer", user = %log_name(&identity.user), via, "token revoked on this gate only: {e}");
        } else {
            info!(target: "jwtgate::issuer", user = %log_name(&identity.user), via, "token revoked");
        }
        Ok(())
    }
}
