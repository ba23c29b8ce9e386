//! Token endpoints for backends without an identity provider (`[issuer]`).
//! Work in progress: see issue 4.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::config::{Config, ConfigError};
use crate::forward::ConnInfo;
use crate::state::State;

/// Process-wide issuer state that survives configuration reloads
/// (failure counters of the rate limiter, the users file's last good copy).
#[derive(Default)]
pub struct Runtime {}

/// The token endpoints of one configuration generation.
pub struct Endpoints {}

impl Endpoints {
    /// `None` unless `issuer.enabled`.
    pub fn from_config(config: &Config, _runtime: Arc<Runtime>) -> Result<Option<Endpoints>, ConfigError> {
        if !config.issuer.enabled {
            return Ok(None);
        }
        Err(ConfigError::Invalid {
            key: "issuer.enabled".into(),
            origin: "configuration".into(),
            message: "not available yet".into(),
        })
    }

    /// Is `path` (normalised) one of the issuer's endpoints?
    pub fn handles(&self, _path: &str) -> bool {
        false
    }

    /// Answers a request for one of the issuer's endpoints.
    pub async fn handle(&self, _state: &State, _conn: ConnInfo, _path: &str, _req: Request<Incoming>) -> Response<Full<Bytes>> {
        Response::new(Full::new(Bytes::new()))
    }
}
