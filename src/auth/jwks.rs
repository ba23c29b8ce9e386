//! Keys of the trusted asymmetric issuers (`[[auth.issuers]]`).

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey};

use super::VerifyError;

/// One trusted issuer's keys.
pub struct IssuerKeys {
    algorithms: Vec<Algorithm>,
    audiences: Vec<String>,
}

impl IssuerKeys {
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }
    pub async fn keys_for(
        &self,
        _alg: Algorithm,
        _kid: Option<&str>,
    ) -> Result<Vec<Arc<DecodingKey>>, VerifyError> {
        Err(VerifyError::UnknownKid)
    }
}

/// All trusted issuers, by exact `iss`.
#[derive(Default)]
pub struct Issuers {
    map: HashMap<String, Arc<IssuerKeys>>,
}

impl Issuers {
    pub fn get(&self, iss: &str) -> Option<&Arc<IssuerKeys>> {
        self.map.get(iss)
    }

    /// Each issuer and whether it has usable keys.
    pub fn readiness(&self) -> Vec<(String, bool)> {
        self.map.keys().map(|k| (k.clone(), true)).collect()
    }

    /// Refetches every issuer's keys now; the number of keys or the error.
    pub async fn refresh_all(&self) -> Vec<(String, Result<usize, String>)> {
        Vec::new()
    }
}
