//! The HTTP side of remote keys: the client (CA, timeouts, redirects) and
//! a GET that refuses anything but a 200 with a body under the cap.

use std::time::Duration;

use super::invalid;
use crate::config::ConfigError;

/// Largest discovery document or JWKS accepted.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Redirects followed when fetching.
const MAX_REDIRECTS: usize = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an issuer's keys could not be fetched. The message is what the log
/// line (`key fetch failed: ...`), `POST /keys/refresh` and `verify-token`
/// show; every failure counts as `outcome="error"` in `jwtgate_key_fetches`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The request failed: connection, TLS, timeout, redirects, or reading
    /// the body (`reason` is the whole error chain).
    #[error("GET {url}: {reason}")]
    Request { url: String, reason: String },
    #[error("GET {url}: status {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("GET {url}: response larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge { url: String },
    /// The discovery document was refused (see `parse_discovery`).
    #[error("{0}")]
    Discovery(String),
    /// The JWKS was refused (see `parse_jwks`).
    #[error("{0}")]
    Jwks(String),
    /// The issuer's keys are local (a file or a pinned key).
    #[error("no remote key source")]
    NoRemoteSource,
    /// No fetch has succeeded, and none has failed with a reason.
    #[error("keys not loaded")]
    NotLoaded,
    /// A lock was poisoned.
    #[error("internal error")]
    Internal,
}

/// Serialised as its message: the `error` of `POST /keys/refresh`.
impl serde::Serialize for FetchError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

pub(super) fn http_client(
    ca_key: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<reqwest::Client, ConfigError> {
    let tls = crate::net::tls::client_config(ca_key, ca_file)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .user_agent(concat!("jwtgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| invalid(ca_key.into(), format!("cannot build the HTTP client: {e}")))
}

/// GETs `url`, refusing non-200 answers and bodies over the cap; returns
/// the body and the `Cache-Control: max-age`.
pub(super) async fn get_capped(
    client: &reqwest::Client,
    url: &str,
) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
    let request_error = |e: reqwest::Error| FetchError::Request {
        url: url.to_string(),
        reason: error_chain(&e),
    };
    let too_large = || FetchError::TooLarge {
        url: url.to_string(),
    };
    let mut resp = client
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(request_error)?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(FetchError::Status {
            url: url.to_string(),
            status: resp.status(),
        });
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(too_large());
    }
    let max_age = resp
        .headers()
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|d| {
            d.trim()
                .strip_prefix("max-age=")
                .and_then(|s| s.trim().parse::<u64>().ok())
        })
        .map(Duration::from_secs);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(request_error)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, max_age))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages are those the fetch errors had as strings.
    #[test]
    fn messages_are_unchanged() {
        let url = "https://idp.example/jwks".to_string();
        assert_eq!(
            FetchError::Status {
                url: url.clone(),
                status: reqwest::StatusCode::NOT_FOUND
            }
            .to_string(),
            "GET https://idp.example/jwks: status 404 Not Found"
        );
        assert_eq!(
            FetchError::TooLarge { url: url.clone() }.to_string(),
            "GET https://idp.example/jwks: response larger than 1048576 bytes"
        );
        assert_eq!(
            FetchError::Request {
                url,
                reason: "error sending request: connection refused".into()
            }
            .to_string(),
            "GET https://idp.example/jwks: error sending request: connection refused"
        );
        assert_eq!(
            FetchError::Jwks("JWKS is not JSON".into()).to_string(),
            "JWKS is not JSON"
        );
        assert_eq!(
            serde_json::to_value(FetchError::NotLoaded).unwrap(),
            serde_json::json!("keys not loaded")
        );
    }
}
