//! Small records the gates share by key, each with a lifetime: browser
//! sessions' server-side parts (refresh and ID tokens, kept off the
//! cookie) and the short locks that make a refresh happen once across
//! replicas. The store keeps opaque bytes; `login/` decides what they mean
//! (and seals them, so Redis never holds a token in the clear).
//!
//! Embedded: a map in this process, bounded (the oldest records go first
//! when it is full; a record lost that way ends that session at its access
//! token's expiry, as a restart does). Redis: `{prefix}:rec:{key}` with
//! `EX`/`PX`, read only off the per-request path (sign-in, refresh,
//! logout, and the first request a replica sees of a session when the
//! access token is forwarded).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::redis_store::{RedisStore, RedisStoreError};

/// Most records the embedded store holds.
const MAX_EMBEDDED_RECORDS: usize = 100_000;
/// Longest key accepted.
pub const MAX_KEY_BYTES: usize = 256;

/// The embedded map: value and the moment it expires.
#[derive(Default)]
pub(super) struct Embedded {
    map: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
}

impl Embedded {
    pub(super) fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_EMBEDDED_RECORDS && !map.contains_key(key) {
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= MAX_EMBEDDED_RECORDS
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (_, until))| *until)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(key.to_owned(), (value, now + ttl));
    }

    pub(super) fn get(&self, key: &str) -> Option<Vec<u8>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(v, _)| v.clone())
    }

    pub(super) fn delete(&self, key: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Sets `key` only when absent (or expired): true when it was set.
    pub(super) fn put_new(&self, key: &str, ttl: Duration) -> bool {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((_, until)) if *until > now => false,
            _ => {
                map.insert(key.to_owned(), (Vec::new(), now + ttl));
                true
            }
        }
    }
}

impl RedisStore {
    fn record_key(&self, key: &str) -> String {
        format!("{}:rec:{key}", self.keys.prefix())
    }

    pub(super) async fn put_record(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), RedisStoreError> {
        let mut conn = self.conn();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        super::redis_store::timed(
            redis::cmd("SET")
                .arg(self.record_key(key))
                .arg(value)
                .arg("PX")
                .arg(ms)
                .query_async::<()>(&mut conn),
        )
        .await
    }

    pub(super) async fn get_record(&self, key: &str) -> Result<Option<Vec<u8>>, RedisStoreError> {
        let mut conn = self.conn();
        super::redis_store::timed(
            redis::cmd("GET")
                .arg(self.record_key(key))
                .query_async::<Option<Vec<u8>>>(&mut conn),
        )
        .await
    }

    pub(super) async fn delete_record(&self, key: &str) -> Result<(), RedisStoreError> {
        let mut conn = self.conn();
        super::redis_store::timed(
            redis::cmd("DEL")
                .arg(self.record_key(key))
                .query_async::<()>(&mut conn),
        )
        .await
    }

    /// `SET key "" NX PX ttl`: true when this gate took it.
    pub(super) async fn put_new_record(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<bool, RedisStoreError> {
        let mut conn = self.conn();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: Option<String> = super::redis_store::timed(
            redis::cmd("SET")
                .arg(self.record_key(key))
                .arg("")
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .query_async(&mut conn),
        )
        .await?;
        Ok(set.is_some())
    }
}
