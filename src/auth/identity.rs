//! What a verified token tells about its caller.

use serde_json::{Map, Value};

/// A verified caller.
#[derive(Debug)]
pub struct Identity {
    pub user: String,
    pub claims: Map<String, Value>,
    pub exp: u64,
    /// The token's payload segment: base64url of exactly the verified claims JSON.
    pub payload_b64: Box<str>,
    /// The `[[auth.issuers]]` entry that verified it, or `None` for the local secret.
    pub issuer: Option<String>,
}
