//! The Redis (or Valkey) store: revocations and login counters shared by
//! every gate that names the same server.
//!
//! Layout (every key shares the hash tag `{prefix}`, so a MULTI touches one
//! slot):
//! - `{prefix}:revocation:ID`: the entry as JSON, with TTL = its `expires`;
//! - `{prefix}:revocations`: a sorted set of ids scored by `expires`, so the
//!   full set loads with one range read and one MGET per thousand ids; its
//!   own TTL is the longest of its entries';
//! - channel `{prefix}:revocations:changes`: every add or remove, published
//!   in the same MULTI as the write;
//! - `{prefix}:login:user:NAME`, `{prefix}:login:addr:IP`: failure counters.
//!
//! Requests never wait on Redis: `sync` keeps the in-memory mirror, and the
//! login counters give up after a short timeout and fall back to the local
//! ones.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tracing::{info, warn};

use super::mirror::Mirror;
use super::revocation::{Change, Revocation, RevocationSet};
use crate::auth::claims::now;
use crate::config::store::redact_url;

/// How long one command may take before the gate treats Redis as down.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// Backoff between reconnection attempts of the subscription (and of the
/// command connection). The cap is what a gate can lag behind a Redis that
/// has come back: a revocation made right after an outage must reach every
/// replica about as fast as any other, so the cap stays well under a
/// second. Two connection attempts a second per gate (a refused TCP
/// connect each) is no load for Redis, even from many gates.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_millis(400);
/// Ids per MGET when loading the whole set.
const LOAD_CHUNK: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis holds an entry that is not a revocation: {0}")]
    Decode(String),
    #[error("{0}")]
    Sync(&'static str),
    #[error(transparent)]
    Random(#[from] crate::random::RandomError),
}

#[derive(Clone)]
pub struct Keys {
    tag: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            tag: format!("{{{prefix}}}"),
        }
    }
    fn entry(&self, id: &str) -> String {
        format!("{}:revocation:{id}", self.tag)
    }
    fn index(&self) -> String {
        format!("{}:revocations", self.tag)
    }
    /// A random value set once per Redis data set: when it changes or
    /// vanishes, Redis lost its data (a restart without persistence, a
    /// failover to an empty replica) and the gates re-seed what they know.
    fn epoch(&self) -> String {
        format!("{}:epoch", self.tag)
    }
    fn channel(&self) -> String {
        format!("{}:revocations:changes", self.tag)
    }
    /// The hash-tagged prefix every key of these gates starts with.
    pub fn prefix(&self) -> &str {
        &self.tag
    }
    pub fn login_user(&self, user: &str) -> String {
        format!("{}:login:user:{user}", self.tag)
    }
    pub fn login_addr(&self, addr: &str) -> String {
        format!("{}:login:addr:{addr}", self.tag)
    }
}

pub struct RedisStore {
    client: redis::Client,
    conn: ConnectionManager,
    pub keys: Keys,
    pub shown_url: String,
    /// Wakes the sync task out of its backoff: a change was queued while
    /// Redis seemed down, so try now rather than at the next tick.
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shown_url)
            .finish_non_exhaustive()
    }
}

pub(super) async fn timed<T>(
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, RedisStoreError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(RedisStoreError::Timeout(COMMAND_TIMEOUT)),
    }
}

impl RedisStore {
    /// Parses the URL and prepares a lazily connecting client: nothing here
    /// waits for the server (a gate starts even while Redis is down).
    pub fn new(url: &str, prefix: &str) -> Result<Self, String> {
        let shown_url = redact_url(url);
        // redis-rs errors do not echo the password, but say nothing more
        // than "invalid URL" to be sure.
        let client = redis::Client::open(url)
            .map_err(|e| format!("{shown_url} is not a usable Redis URL ({:?})", e.kind()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(MAX_BACKOFF);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| format!("{shown_url}: {:?}", e.kind()))?;
        Ok(RedisStore {
            client,
            conn,
            keys: Keys::new(prefix),
            shown_url,
            wake: tokio::sync::Notify::new(),
        })
    }

    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Asks the sync task to reconnect (and write what is queued) now
    /// instead of at the end of its backoff.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Makes sure the command connection works, once the subscription has
    /// shown that Redis answers again. The connection manager keeps the
    /// outcome of its last attempt: the first command after an outage can
    /// fail on that stale failure (and only starts a new attempt), so one
    /// failure is retried at once.
    async fn command_connection(&self) -> Result<(), RedisStoreError> {
        let mut conn = self.conn.clone();
        if timed(redis::cmd("PING").query_async::<()>(&mut conn))
            .await
            .is_ok()
        {
            return Ok(());
        }
        timed(redis::cmd("PING").query_async::<()>(&mut conn)).await
    }

    /// Stores one entry (TTL = its remaining lifetime) and tells the other
    /// gates, in one MULTI.
    pub async fn write(&self, rev: &Revocation) -> Result<(), RedisStoreError> {
        let now = now();
        let ttl = rev.expires.saturating_sub(now).max(1);
        let json =
            serde_json::to_string(rev).map_err(|e| RedisStoreError::Decode(e.to_string()))?;
        let msg = serde_json::to_string(&Change::Add(rev.clone()))
            .map_err(|e| RedisStoreError::Decode(e.to_string()))?;
        let index = self.keys.index();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.keys.entry(&rev.id))
            .arg(json)
            .arg("EX")
            .arg(ttl)
            .ignore()
            .cmd("ZADD")
            .arg(&index)
            .arg(rev.expires)
            .arg(&rev.id)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(format!("({now}"))
            .ignore()
            // NX gives a new index a TTL, GT lengthens it: together the
            // index lives as long as its longest entry.
            .cmd("EXPIRE")
            .arg(&index)
            .arg(ttl)
            .arg("NX")
            .ignore()
            .cmd("EXPIRE")
            .arg(&index)
            .arg(ttl)
            .arg("GT")
            .ignore()
            .cmd("PUBLISH")
            .arg(self.keys.channel())
            .arg(msg)
            .ignore();
        let mut conn = self.conn.clone();
        timed(pipe.query_async::<()>(&mut conn)).await
    }

    /// Removes one entry; `false` when it did not exist.
    pub async fn remove(&self, id: &str) -> Result<bool, RedisStoreError> {
        let msg = serde_json::to_string(&Change::Remove(id.to_owned()))
            .map_err(|e| RedisStoreError::Decode(e.to_string()))?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(self.keys.entry(id))
            .cmd("ZREM")
            .arg(self.keys.index())
            .arg(id)
            .ignore()
            .cmd("PUBLISH")
            .arg(self.keys.channel())
            .arg(msg)
            .ignore();
        let mut conn = self.conn.clone();
        let (deleted,): (i64,) = timed(pipe.query_async(&mut conn)).await?;
        Ok(deleted > 0)
    }

    /// The whole set, as Redis holds it now.
    pub async fn load_all(&self) -> Result<Vec<Revocation>, RedisStoreError> {
        let mut conn = self.conn.clone();
        let now = now();
        let index = self.keys.index();
        let ids: Vec<String> = timed(
            redis::cmd("ZRANGE")
                .arg(&index)
                .arg(now)
                .arg("+inf")
                .arg("BYSCORE")
                .query_async(&mut conn),
        )
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(LOAD_CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|id| self.keys.entry(id)).collect();
            let values: Vec<Option<String>> =
                timed(redis::cmd("MGET").arg(&keys).query_async(&mut conn)).await?;
            for v in values.into_iter().flatten() {
                // One bad entry must not hide the others.
                match serde_json::from_str::<Revocation>(&v) {
                    Ok(r) => out.push(r),
                    Err(e) => warn!("store: skipping an unreadable revocation in Redis: {e}"),
                }
            }
        }
        Ok(out)
    }
}

/// Loads the whole set into `mirror`. When Redis has lost its data since
/// this gate last saw it (its epoch changed or vanished), the entries this
/// gate still knows are written back first: what was known is never lost
/// with Redis. Returns the number of entries now in force.
async fn resync(
    store: &RedisStore,
    mirror: &Mirror,
    epoch: &mut Option<String>,
) -> Result<usize, RedisStoreError> {
    let mut conn = store.conn();
    let key = store.keys.epoch();
    let current: Option<String> = timed(redis::cmd("GET").arg(&key).query_async(&mut conn)).await?;
    let lost = match (&current, &*epoch) {
        (None, _) => true,
        (Some(c), Some(e)) => c != e,
        (Some(_), None) => false,
    };
    let mut entries = store.load_all().await?;
    if lost {
        let now = now();
        let present: std::collections::HashSet<String> =
            entries.iter().map(|e| e.id.clone()).collect();
        let missing: Vec<Revocation> = mirror
            .load()
            .entries()
            .filter(|e| e.expires >= now && !present.contains(&e.id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            warn!(
                "store: redis at {} lost its data; writing back the {} revocations this gate knows",
                store.shown_url,
                missing.len()
            );
        }
        for e in missing {
            store.write(&e).await?;
            entries.push(e);
        }
        let fresh = crate::random::token(12)?;
        let _: Option<String> = timed(
            redis::cmd("SET")
                .arg(&key)
                .arg(&fresh)
                .arg("NX")
                .query_async(&mut conn),
        )
        .await?;
    }
    *epoch = timed(redis::cmd("GET").arg(&key).query_async(&mut conn)).await?;
    let count = entries.len();
    mirror.replace(RevocationSet::from_entries(entries));
    mirror.mark_synced(true);
    Ok(count)
}

/// Keeps `mirror` in step with Redis for as long as the process runs:
/// subscribe first, then load the whole set (so nothing published in
/// between is missed), then apply each published change; every
/// `resync` load the whole set again (a missed message heals there) and
/// ping the subscription (a dead connection is noticed there). Any failure
/// reconnects with a growing backoff (at most `MAX_BACKOFF`, cut short by
/// `RedisStore::wake`); every reconnection loads the whole set again, so
/// what was written while this gate was away is in it. Requests keep using
/// the last set meanwhile.
pub async fn sync(
    store: Arc<RedisStore>,
    mirror: Arc<Mirror>,
    resync: Duration,
    on_connect: impl Fn() -> futures_util::future::BoxFuture<'static, bool> + Send + 'static,
    up_gauge: impl Fn(bool) + Send + 'static,
) {
    let mut backoff = MIN_BACKOFF;
    let mut logged_down = false;
    let mut epoch = None;
    loop {
        if let Err(e) = session(&store, &mirror, resync, &mut epoch, &on_connect, &up_gauge).await {
            mirror.mark_unsynced();
            up_gauge(false);
            let was_up = mirror.set_up(false);
            if was_up {
                // A connection that worked for a while: retry quickly.
                backoff = MIN_BACKOFF;
            }
            {
                if was_up || !logged_down {
                    warn!(
                        "store: redis at {} is unreachable ({e}); serving with the last known {} \
                         revocations, login limits fall back to local counters",
                        store.shown_url,
                        mirror.load().len()
                    );
                    logged_down = true;
                }
            }
        }
        // A queued change cuts the wait short, but two attempts are never
        // closer than MIN_BACKOFF (a burst of sign-outs while Redis is down
        // does not turn into a burst of connections).
        let ended = tokio::time::Instant::now();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = store.wake.notified() => tokio::time::sleep_until(ended + MIN_BACKOFF).await,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connected period; returns when the connection fails.
async fn session(
    store: &RedisStore,
    mirror: &Mirror,
    every: Duration,
    epoch: &mut Option<String>,
    on_connect: &(impl Fn() -> futures_util::future::BoxFuture<'static, bool> + Send),
    up_gauge: &(impl Fn(bool) + Send),
) -> Result<(), RedisStoreError> {
    let pubsub = timed(store.client.get_async_pubsub()).await?;
    let (mut sink, mut stream) = pubsub.split();
    timed(sink.subscribe(store.keys.channel())).await?;
    store.command_connection().await?;
    // Changes made here while Redis was away are written first, so that
    // the load below includes them.
    if !on_connect().await {
        return Err(RedisStoreError::Sync("queued changes could not be written"));
    }
    let count = resync(store, mirror, epoch).await?;
    up_gauge(true);
    if !mirror.set_up(true) {
        info!(
            "store: connected to redis at {}; {count} revocations loaded",
            store.shown_url
        );
    }
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else {
                    return Err(RedisStoreError::Sync("the subscription ended"));
                };
                // Apply everything already waiting in one copy of the set.
                let mut changes = Vec::new();
                push_change(&mut changes, &msg);
                while let Some(Some(more)) = futures_util::FutureExt::now_or_never(stream.next()) {
                    push_change(&mut changes, &more);
                }
                mirror.apply(&changes);
            }
            _ = tick.tick() => {
                timed(sink.ping::<redis::Value>()).await?;
                if !on_connect().await {
                    return Err(RedisStoreError::Sync("queued changes could not be written"));
                }
                resync(store, mirror, epoch).await?;
            }
        }
    }
}

fn push_change(changes: &mut Vec<Change>, msg: &redis::Msg) {
    match serde_json::from_slice::<Change>(msg.get_payload_bytes()) {
        Ok(c) => changes.push(c),
        Err(e) => warn!("store: ignoring an unreadable change message: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("redis://:hunter2@cache:6379/0"),
            "redis://<redacted>@cache:6379/0"
        );
        assert_eq!(
            redact_url("rediss://user:p%40ss@h"),
            "rediss://<redacted>@h"
        );
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(
            redact_url("redis://u:pw@h/?x=@y"),
            "redis://<redacted>@h/?x=@y"
        );
    }
}
