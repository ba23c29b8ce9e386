//! Login failure counters shared through Redis, so that N gates allow the
//! same number of guesses as one.
//!
//! Each step is one Lua script, run atomically by the server: check both
//! counters, and only then count the attempt (INCR + PEXPIRE), exactly as
//! the local limiter does under its mutex; no read-modify-write crosses the
//! network. When Redis does not answer in time, the local counters of
//! `mint::limiter` take over (per process, as without Redis).

use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use crate::mint::limiter::{Attempt, Limiter, Thresholds, address_key};
use crate::store::redis_store::{COMMAND_TIMEOUT, RedisStore};

/// KEYS: user, address. ARGV: max user failures, max address failures,
/// window (ms). Returns {1, failures after this attempt, address excess}
/// or {0, wait ms, -1}: only the per-user limit refuses; an address past
/// its limit is slowed down (the caller waits), as in `mint::limiter`.
static BEGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then
  local t = redis.call('PTTL', KEYS[1])
  if t > 0 then return {0, t, -1} end
end
local excess = tonumber(redis.call('GET', KEYS[2]) or '0') - tonumber(ARGV[2])
local top = 0
for _, k in ipairs(KEYS) do
  local c = redis.call('INCR', k)
  redis.call('PEXPIRE', k, ARGV[3])
  if c > top then top = c end
end
return {1, top, excess}
",
    )
});

/// KEYS: user, address. The user's slate is wiped; the address gets this
/// attempt back.
static SUCCEEDED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('DEL', KEYS[1])
if redis.call('DECR', KEYS[2]) <= 0 then redis.call('DEL', KEYS[2]) end
return 1
",
    )
});

/// A reserved attempt, in whichever counters it was counted.
#[derive(Debug)]
pub(crate) enum SharedAttempt {
    Local(Attempt),
    Shared {
        user_key: String,
        addr_key: String,
        failures: u32,
    },
}

async fn run<T: redis::FromRedisValue>(
    redis: &RedisStore,
    inv: redis::ScriptInvocation<'_>,
) -> Option<T> {
    let mut conn = redis.conn();
    match tokio::time::timeout(COMMAND_TIMEOUT, inv.invoke_async(&mut conn)).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::debug!("store: shared login counter failed: {e}");
            None
        }
        Err(_) => None,
    }
}

/// Reserves an attempt or says how long to wait: in Redis when it answers,
/// locally otherwise.
pub(crate) async fn begin(
    redis: Option<&RedisStore>,
    local: &Limiter,
    user: &str,
    ip: IpAddr,
    t: &Thresholds,
) -> Result<(SharedAttempt, Duration), Duration> {
    if let Some(r) = redis {
        let user_key = r.keys.login_user(user);
        let addr_key = r.keys.login_addr(&address_key(ip).to_string());
        let mut inv = BEGIN.prepare_invoke();
        inv.key(&user_key)
            .key(&addr_key)
            .arg(t.max_user_failures)
            .arg(t.max_address_failures)
            .arg(t.window.as_millis() as u64);
        if let Some((ok, n, excess)) = run::<(u8, u64, i64)>(r, inv).await {
            return if ok == 1 {
                let delay = u32::try_from(excess)
                    .map(crate::mint::limiter::address_delay)
                    .unwrap_or(Duration::ZERO);
                Ok((
                    SharedAttempt::Shared {
                        user_key,
                        addr_key,
                        failures: u32::try_from(n).unwrap_or(u32::MAX),
                    },
                    delay,
                ))
            } else {
                Err(Duration::from_millis(n).max(Duration::from_secs(1)))
            };
        }
    }
    local
        .begin(user, ip, t)
        .map(|(a, delay)| (SharedAttempt::Local(a), delay))
}

pub(crate) async fn succeeded(redis: Option<&RedisStore>, local: &Limiter, attempt: SharedAttempt) {
    match attempt {
        SharedAttempt::Local(a) => local.succeeded(a),
        SharedAttempt::Shared {
            user_key, addr_key, ..
        } => {
            if let Some(r) = redis {
                let mut inv = SUCCEEDED.prepare_invoke();
                inv.key(&user_key).key(&addr_key);
                let _ = run::<i64>(r, inv).await;
            }
        }
    }
}

/// The failure count that decides the slow-down.
pub(crate) fn failed(local: &Limiter, attempt: SharedAttempt) -> u32 {
    match attempt {
        SharedAttempt::Local(a) => local.failed(a),
        SharedAttempt::Shared { failures, .. } => failures,
    }
}
