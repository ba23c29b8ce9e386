//! The verified-token cache: a token seen before skips signature
//! verification. Keyed by the whole token; an entry never outlives the
//! token's `exp`; bounded in size.
//!
//! An entry can only be used while the key material that verified it is
//! still current. Every key change (a reload, an issuer's new key set, a
//! forced refresh) advances the cache's generation; a verification reads the
//! generation *before* it looks at any key, and its result is stored tagged
//! with that generation, and served only while the generation is unchanged.
//! So a token verified with a key that was being replaced, even a moment
//! before the swap, is never served from the cache afterwards. Entries are
//! also tagged with the verifier (configuration generation) that made them:
//! a reloaded configuration never uses what the previous one verified.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;

use super::claims::now;
use super::identity::Identity;

#[derive(Clone)]
struct Entry {
    identity: Arc<Identity>,
    generation: u64,
    owner: u64,
}

struct UntilExp;

impl Expiry<Box<str>, Entry> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &Box<str>,
        value: &Entry,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            value.identity.exp.saturating_sub(now()),
        ))
    }
}

pub struct TokenCache {
    inner: moka::sync::Cache<Box<str>, Entry>,
    capacity: u64,
    generation: AtomicU64,
}

impl TokenCache {
    pub fn new(capacity: u64) -> Self {
        TokenCache {
            inner: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExp)
                .build(),
            capacity,
            generation: AtomicU64::new(0),
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The current key generation; read it before verifying, and pass it
    /// to `insert`.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Key material changed (call it after the new keys are in place):
    /// every entry made before is unusable from now on. Returns the new
    /// generation, which also serves as a fresh owner tag.
    pub(crate) fn advance(&self) -> u64 {
        let g = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        // Only to free memory: the generation check already refuses them.
        self.inner.invalidate_all();
        g
    }

    /// A cached identity verified by `owner` under the current generation,
    /// still before its `exp`.
    pub(crate) fn get(&self, token: &str, owner: u64) -> Option<Arc<Identity>> {
        let e = self.inner.get(token)?;
        // moka expires lazily; the exp check here is the guarantee.
        (e.owner == owner && e.generation == self.generation() && e.identity.exp > now())
            .then_some(e.identity)
    }

    /// Remembers a verification that started at `generation` (read before
    /// any key was looked at); dropped if the keys changed meanwhile.
    pub(crate) fn insert(&self, token: &str, identity: Arc<Identity>, generation: u64, owner: u64) {
        if identity.exp > now() && generation == self.generation() {
            self.inner.insert(
                token.into(),
                Entry {
                    identity,
                    generation,
                    owner,
                },
            );
        }
    }
}
