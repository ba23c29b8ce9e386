//! The OpenID provider's token endpoint: redeeming an authorization code
//! and refreshing a session. One form POST each (RFC 6749 §4.1.3, §6),
//! client authentication by HTTP Basic when there is a secret (RFC 6749
//! §2.3.1), no redirects followed (a 307 would send the code and the
//! secret elsewhere), and the answer read under a size cap.
//!
//! The endpoints themselves come from the provider's discovery document,
//! which `auth` already fetches for the issuer's keys.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::config::ConfigError;

/// Longest token endpoint answer read.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(10);

/// What the token endpoint answered (RFC 6749 §5.1, OIDC Core §3.1.3.3).
/// `Debug` shows no token.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("id_token", &self.id_token.is_some())
            .field("refresh_token", &self.refresh_token.is_some())
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Why the token endpoint did not give tokens. Holds no token or secret.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// `invalid_grant`: the code or refresh token is spent, expired or
    /// revoked (a refresh then ends the session).
    #[error("the provider refused the grant (invalid_grant)")]
    InvalidGrant,
    #[error("the provider refused the request: status {status}, error {error:?}")]
    Refused { status: u16, error: String },
    #[error("the token endpoint could not be reached: {0}")]
    Unreachable(String),
    #[error("the token endpoint's answer is not usable: {0}")]
    BadResponse(&'static str),
}

/// The client of one `[login]` configuration.
pub struct TokenClient {
    http: reqwest::Client,
    client_id: String,
    /// `Basic base64(client_id:client_secret)`, form-encoded first as
    /// RFC 6749 §2.3.1 asks; `None` for a public client.
    basic: Option<String>,
}

impl std::fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenClient")
            .field("client_id", &self.client_id)
            .field("secret", &self.basic.is_some())
            .finish_non_exhaustive()
    }
}

impl TokenClient {
    pub fn new(
        client_id: &str,
        secret: Option<&str>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<TokenClient, ConfigError> {
        let tls = crate::net::tls::client_config("auth.issuers.ca_file", ca_file)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jwtgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                ConfigError::invalid(
                    "login",
                    "configuration",
                    format!("cannot build the HTTP client: {e}"),
                )
            })?;
        let form = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = secret.map(|s| {
            format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{}", form(client_id), form(s)))
            )
        });
        Ok(TokenClient {
            http,
            client_id: client_id.to_owned(),
            basic,
        })
    }

    /// Redeems an authorization code (with its PKCE verifier).
    pub async fn redeem(
        &self,
        endpoint: &str,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<TokenResponse, TokenError> {
        self.post(
            endpoint,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ],
        )
        .await
    }

    /// Trades a refresh token for new tokens.
    pub async fn refresh(
        &self,
        endpoint: &str,
        refresh_token: &str,
    ) -> Result<TokenResponse, TokenError> {
        self.post(
            endpoint,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    async fn post(
        &self,
        endpoint: &str,
        fields: &[(&str, &str)],
    ) -> Result<TokenResponse, TokenError> {
        // Built in a block: the serializer is not Send and must not live
        // across the awaits below.
        let body = {
            let mut body = url::form_urlencoded::Serializer::new(String::new());
            body.extend_pairs(fields.iter().copied());
            if self.basic.is_none() {
                // A public client names itself in the body (RFC 6749 §3.2.1).
                body.append_pair("client_id", &self.client_id);
            }
            body.finish()
        };
        let mut req = self
            .http
            .post(endpoint)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body);
        if let Some(b) = &self.basic {
            req = req.header(http::header::AUTHORIZATION, b);
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| TokenError::Unreachable(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| TokenError::Unreachable(error_chain(&e)))?
        {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(TokenError::BadResponse("answer too large"));
            }
            bytes.extend_from_slice(&chunk);
        }
        if status != 200 {
            #[derive(Deserialize)]
            struct OAuthError {
                error: String,
            }
            let error = serde_json::from_slice::<OAuthError>(&bytes)
                .map(|e| e.error)
                .unwrap_or_default();
            if error == "invalid_grant" {
                return Err(TokenError::InvalidGrant);
            }
            // The code is the provider's word, not ours: keep it short and plain.
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect();
            return Err(TokenError::Refused { status, error });
        }
        let tokens: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|_| TokenError::BadResponse("not a token response"))?;
        if tokens.access_token.is_empty() {
            return Err(TokenError::BadResponse("no access_token"));
        }
        Ok(tokens)
    }
}

/// The whole chain of a reqwest error (its Display alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
