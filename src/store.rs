//! Shared state of the gates (`[store]`): token revocations and, with
//! Redis, the login failure counters.
//!
//! Without `store.url` the store is embedded: revocations live in the
//! process and, with `store.path`, in a small file that survives a restart.
//! With `store.url = "redis://..."` (or `rediss://`) every gate naming the
//! same server shares them. Either way each request is checked against an
//! in-memory mirror only (see `mirror`); the store is never on the request
//! path.
//!
//! The pieces: `revocation` (what an entry is, the indexed set), `mirror`
//! (the copy requests read, and its freshness), `embedded` (the file),
//! `redis_store` (keys, writes, the sync task). The shared login limits
//! that use its connection are the issuer's (`mint::shared_limits`).
//!
//! Folder `store/`: uses `auth`, `config`, `observe` and the leaves.

pub mod embedded;
pub mod mirror;
pub mod records;
pub mod redis_store;
pub mod revocation;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tracing::{info, warn};

use crate::auth::claims::now;
use crate::auth::{Identity, VerifyError};
use crate::config::ConfigError;
pub use crate::config::store::{StoreConfig, StoreUrl};
use crate::observe::metrics::Metrics;
use mirror::Mirror;
use redis_store::RedisStore;
use revocation::{Change, Revocation, RevocationSet, Rule};

/// Why a change to the store did not reach it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the shared store is unreachable: the change applies on this gate now and is written \
         when the store returns"
    )]
    Unavailable,
    #[error("the revocation file could not be written: {0}")]
    File(String),
}

enum Kind {
    Embedded {
        path: Option<PathBuf>,
        /// One writer of the file at a time.
        file: Mutex<()>,
        /// Shared records (sessions, locks): in this process only.
        records: records::Embedded,
    },
    Redis(Arc<RedisStore>),
}

/// The process-wide store (it outlives configuration reloads).
pub struct Store {
    mirror: Arc<Mirror>,
    kind: Kind,
    max_stale_ms: u64,
    max_token_lifetime: u64,
    /// Changes made while Redis was unreachable, written when it returns.
    pending: Arc<Mutex<Vec<Change>>>,
}

impl Store {
    /// Opens the store of `[store]`. The embedded one reads its file now;
    /// Redis is connected in the background (a gate starts, and serves,
    /// while Redis is down).
    pub fn start(c: &StoreConfig, metrics: &Arc<Metrics>) -> Result<Arc<Store>, ConfigError> {
        let invalid =
            |key: &str, message: String| ConfigError::invalid(key, "configuration", message);
        let mirror = Arc::new(Mirror::default());
        let pending = Arc::new(Mutex::new(Vec::new()));
        let kind = if c.url.is_empty() {
            let path = c.path.clone();
            if let Some(p) = &path {
                let entries = embedded::load(p).map_err(|m| invalid("store.path", m))?;
                let now = now();
                let set =
                    RevocationSet::from_entries(entries.into_iter().filter(|e| e.expires >= now));
                info!(
                    "store: embedded, {} revocations loaded from {}",
                    set.len(),
                    p.display()
                );
                mirror.replace(set);
            }
            mirror.mark_synced(true);
            mirror.set_up(true);
            metrics.store_up.set(1);
            Kind::Embedded {
                path,
                file: Mutex::new(()),
                records: records::Embedded::default(),
            }
        } else {
            let redis = Arc::new(
                RedisStore::new(c.url.expose(), &c.prefix).map_err(|m| invalid("store.url", m))?,
            );
            info!(
                "store: redis at {} (connecting in the background)",
                redis.shown_url
            );
            metrics.store_up.set(0);
            let gauge = metrics.store_up.clone();
            let flush_store = redis.clone();
            let flush_pending = pending.clone();
            tokio::spawn(redis_store::sync(
                redis.clone(),
                mirror.clone(),
                c.resync_interval,
                move || {
                    let store = flush_store.clone();
                    let pending = flush_pending.clone();
                    Box::pin(async move { flush(&store, &pending).await })
                },
                move |up| {
                    gauge.set(i64::from(up));
                },
            ));
            Kind::Redis(redis)
        };
        Ok(Arc::new(Store {
            mirror,
            kind,
            max_stale_ms: c.max_stale.as_millis() as u64,
            max_token_lifetime: c.max_token_lifetime.as_secs(),
            pending,
        }))
    }

    /// The per-request check: in memory only. Refuses a revoked token, and
    /// every token once the mirror is older than `store.max_stale`.
    #[inline]
    pub fn check(&self, id: &Identity) -> Result<(), VerifyError> {
        let set = self.fresh_set()?;
        if !set.is_empty() && set.revokes(id) {
            return Err(VerifyError::Revoked);
        }
        Ok(())
    }

    /// The mirrored set, or the refusal once it is older than
    /// `store.max_stale` (every per-request check goes through here).
    #[inline]
    fn fresh_set(&self) -> Result<arc_swap::Guard<Arc<RevocationSet>>, VerifyError> {
        if self.max_stale_ms > 0 && self.mirror.stale_ms() > self.max_stale_ms {
            return Err(VerifyError::RevocationsStale { retry_after: 5 });
        }
        Ok(self.mirror.load())
    }

    pub fn redis(&self) -> Option<&RedisStore> {
        match &self.kind {
            Kind::Redis(r) => Some(r),
            Kind::Embedded { .. } => None,
        }
    }

    /// Makes a revocation. `expires` defaults to `before` (or now) plus
    /// `store.max_token_lifetime`. Applied on this gate at once; an error
    /// means it could not be shared or saved yet.
    pub async fn revoke(
        &self,
        rule: Rule,
        expires: Option<u64>,
    ) -> (Revocation, Result<(), StoreError>) {
        let now = now();
        let from = match &rule {
            Rule::User { before, .. } => (*before).max(now),
            Rule::Token { .. } => now,
        };
        let expires = expires.unwrap_or(from.saturating_add(self.max_token_lifetime));
        let rev = Revocation::new(rule, now, expires);
        let outcome = self.change(Change::Add(rev.clone())).await;
        (rev, outcome)
    }

    /// Removes a revocation by id; `Ok(false)` when there was none.
    pub async fn remove(&self, id: &str) -> Result<bool, StoreError> {
        let known = self.mirror.load().get(id).is_some();
        match &self.kind {
            Kind::Redis(r) => {
                self.mirror.apply(&[Change::Remove(id.to_owned())]);
                match r.remove(id).await {
                    Ok(deleted) => Ok(deleted || known),
                    Err(e) => {
                        warn!("store: cannot remove revocation {id} in redis: {e}");
                        self.queue(Change::Remove(id.to_owned()));
                        Err(StoreError::Unavailable)
                    }
                }
            }
            Kind::Embedded { .. } => {
                if !known {
                    return Ok(false);
                }
                self.change(Change::Remove(id.to_owned()))
                    .await
                    .map(|_| true)
            }
        }
    }

    async fn change(&self, change: Change) -> Result<(), StoreError> {
        self.mirror.apply(std::slice::from_ref(&change));
        match &self.kind {
            Kind::Embedded { path, file, .. } => {
                let Some(path) = path else { return Ok(()) };
                let _w = file.lock().unwrap_or_else(|p| p.into_inner());
                let now = now();
                let entries = self
                    .mirror
                    .load()
                    .entries()
                    .filter(|e| e.expires >= now)
                    .cloned()
                    .collect();
                embedded::save(path, entries).map_err(|m| {
                    warn!("store: {m}");
                    StoreError::File(m)
                })
            }
            Kind::Redis(r) => {
                let result = match &change {
                    Change::Add(rev) => r.write(rev).await.map(|_| ()),
                    Change::Remove(id) => r.remove(id).await.map(|_| ()),
                };
                result.map_err(|e| {
                    warn!(
                        "store: redis at {} did not take a change ({e}); it applies on this gate \
                         and is written when redis returns",
                        r.shown_url
                    );
                    self.queue(change);
                    StoreError::Unavailable
                })
            }
        }
    }

    fn queue(&self, change: Change) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(change);
        if let Kind::Redis(r) = &self.kind {
            r.wake();
        }
    }

    /// Is the revocation id `jti` (a token's `jti`, or a browser session's
    /// id) revoked? In memory only, like `check`.
    pub fn revoked_jti(&self, jti: &str) -> Result<bool, VerifyError> {
        Ok(self.fresh_set()?.revokes_jti(jti))
    }

    /// `revocation::RevocationSet::revokes_principal` on the mirror (in
    /// memory); `Err` once it is older than `store.max_stale`.
    pub fn revoked_principal(
        &self,
        principal: &str,
        iss: Option<&str>,
        issued_at: u64,
    ) -> Result<bool, VerifyError> {
        let set = self.fresh_set()?;
        Ok(!set.is_empty() && set.revokes_principal(principal, iss, issued_at))
    }

    /// Keeps `value` under `key` for `ttl`, for every gate of this store.
    pub async fn put_record(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match &self.kind {
            Kind::Embedded { records, .. } => {
                records.put(key, value, ttl);
                Ok(())
            }
            Kind::Redis(r) => r.put_record(key, &value, ttl).await.map_err(|e| {
                warn!("store: redis at {} did not keep a record: {e}", r.shown_url);
                StoreError::Unavailable
            }),
        }
    }

    pub async fn get_record(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.kind {
            Kind::Embedded { records, .. } => Ok(records.get(key)),
            Kind::Redis(r) => r.get_record(key).await.map_err(|e| {
                warn!(
                    "store: redis at {} did not answer a record read: {e}",
                    r.shown_url
                );
                StoreError::Unavailable
            }),
        }
    }

    pub async fn delete_record(&self, key: &str) -> Result<(), StoreError> {
        match &self.kind {
            Kind::Embedded { records, .. } => {
                records.delete(key);
                Ok(())
            }
            Kind::Redis(r) => r.delete_record(key).await.map_err(|e| {
                warn!(
                    "store: redis at {} did not delete a record: {e}",
                    r.shown_url
                );
                StoreError::Unavailable
            }),
        }
    }

    /// Takes the lock `key` for `ttl` unless another holder has it (across
    /// every gate of this store): true when taken. Released by expiry or
    /// `delete_record`.
    pub async fn take_lock(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        match &self.kind {
            Kind::Embedded { records, .. } => Ok(records.put_new(key, ttl)),
            Kind::Redis(r) => r.put_new_record(key, ttl).await.map_err(|e| {
                warn!("store: redis at {} did not answer a lock: {e}", r.shown_url);
                StoreError::Unavailable
            }),
        }
    }

    /// The revocations in force, oldest first.
    pub fn list(&self) -> Vec<Revocation> {
        let now = now();
        let mut v: Vec<Revocation> = self
            .mirror
            .load()
            .entries()
            .filter(|e| e.expires >= now)
            .cloned()
            .collect();
        v.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        v
    }

    /// False once the mirror is older than `store.max_stale`.
    pub fn ready(&self) -> bool {
        self.max_stale_ms == 0 || self.mirror.stale_ms() <= self.max_stale_ms
    }

    /// The store's state for `/readyz` and `GET /revocations`.
    pub fn status(&self) -> Value {
        let (kind, url) = match &self.kind {
            Kind::Embedded { path, .. } => {
                ("embedded", path.as_ref().map(|p| p.display().to_string()))
            }
            Kind::Redis(r) => ("redis", Some(r.shown_url.clone())),
        };
        json!({
            "kind": kind,
            "location": url,
            "up": self.mirror.is_up(),
            "in_sync": self.mirror.is_live(),
            "stale_seconds": self.mirror.stale_ms() as f64 / 1000.0,
            "max_stale_seconds": self.max_stale_ms / 1000,
            "revocations": self.mirror.load().len(),
            "pending_writes": self.pending.lock().map_or(0, |p| p.len()),
            "ready": self.ready(),
        })
    }
}

/// Writes the changes queued while Redis was away (before the full load
/// that follows a reconnection, so they are part of it).
async fn flush(store: &RedisStore, pending: &Mutex<Vec<Change>>) -> bool {
    let queued: Vec<Change> =
        std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
    let mut left = Vec::new();
    for c in queued {
        let r = match &c {
            Change::Add(rev) => store.write(rev).await.map(|_| ()),
            Change::Remove(id) => store.remove(id).await.map(|_| ()),
        };
        if r.is_err() {
            left.push(c);
        }
    }
    if left.is_empty() {
        return true;
    }
    pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(left);
    false
}

impl crate::auth::Revocations for Store {
    fn check(&self, id: &Identity) -> Result<(), VerifyError> {
        Store::check(self, id)
    }
}
