//! The identity headers: the verified user and the claims the operator
//! names (`[forward]`), stripped from every client request and set by the
//! gate alone.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::auth::Identity;
use crate::auth::claims::lookup;
use crate::config::ForwardConfig;

/// The identity headers of `[forward]`, compiled once per configuration.
#[derive(Debug)]
pub struct IdentityHeaders {
    user: HeaderName,
    claims: Vec<(String, HeaderName)>,
    payload: Option<HeaderName>,
}

impl IdentityHeaders {
    pub fn from_config(cfg: &ForwardConfig) -> Self {
        IdentityHeaders {
            user: cfg.user_header.name().clone(),
            claims: cfg
                .claims_headers
                .iter()
                .map(|(claim, h)| (claim.clone(), h.name().clone()))
                .collect(),
            payload: cfg.payload_header.as_ref().map(|h| h.name().clone()),
        }
    }

    /// Every identity header name.
    pub fn names(&self) -> impl Iterator<Item = &HeaderName> {
        std::iter::once(&self.user)
            .chain(self.claims.iter().map(|(_, h)| h))
            .chain(self.payload.iter())
    }

    /// Sets the identity headers from a verified identity.
    pub fn set(&self, headers: &mut HeaderMap, id: &Identity) {
        if let Ok(v) = HeaderValue::from_str(&id.user) {
            headers.insert(self.user.clone(), v);
        }
        for (claim, h) in &self.claims {
            // A missing claim sets no header.
            if let Some(v) = lookup(&id.claims, claim).and_then(claim_header_value) {
                headers.insert(h.clone(), v);
            }
        }
        if let Some(h) = &self.payload
            && let Ok(v) = HeaderValue::from_str(&id.payload_b64)
        {
            headers.insert(h.clone(), v);
        }
    }

    /// The headers an identity produces (for the forward-auth answer).
    pub fn all_for(&self, id: &Identity) -> HeaderMap {
        let mut h = HeaderMap::new();
        self.set(&mut h, id);
        h
    }
}

/// A claim as a header value: strings as they are, arrays comma-joined,
/// anything else as JSON. Values that cannot be a header are left out.
fn claim_header_value(v: &Value) -> Option<HeaderValue> {
    fn scalar(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    let text = match v {
        Value::Null => return None,
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
        other => scalar(other),
    };
    HeaderValue::from_bytes(text.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_values() {
        assert_eq!(
            claim_header_value(&serde_json::json!(["a", "b", 3])).unwrap(),
            "a,b,3"
        );
        assert_eq!(claim_header_value(&serde_json::json!("x")).unwrap(), "x");
        assert!(claim_header_value(&serde_json::json!("bad\nvalue")).is_none());
    }
}
