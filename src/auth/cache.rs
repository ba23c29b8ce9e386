//! The verified-token cache: a token seen before skips signature
//! verification. Keyed by the whole token; an entry never outlives the
//! token's `exp`; bounded in size; cleared when keys change.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;

use super::Identity;
use super::claims::now;

struct UntilExp;

impl Expiry<Box<str>, Arc<Identity>> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &Box<str>,
        value: &Arc<Identity>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(value.exp.saturating_sub(now())))
    }
}

pub struct TokenCache {
    inner: moka::sync::Cache<Box<str>, Arc<Identity>>,
    capacity: u64,
}

impl TokenCache {
    pub fn new(capacity: u64) -> Self {
        TokenCache {
            inner: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExp)
                .build(),
            capacity,
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// A cached identity still before its `exp`.
    pub fn get(&self, token: &str) -> Option<Arc<Identity>> {
        let id = self.inner.get(token)?;
        // moka expires lazily; the exp check here is the guarantee.
        if id.exp > now() { Some(id) } else { None }
    }

    pub fn insert(&self, token: &str, identity: Arc<Identity>) {
        if identity.exp > now() {
            self.inner.insert(token.into(), identity);
        }
    }

    pub fn clear(&self) {
        self.inner.invalidate_all();
    }
}
