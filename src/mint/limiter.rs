//! Failure counters for the login endpoints, per user name and per client
//! address.
//!
//! Written by hand (a mutex around a map) rather than with moka because one
//! attempt must check and reserve two counters atomically, and the window
//! comes from the configuration of the moment (it may change on reload while
//! the counters survive).
//!
//! Every attempt is counted as a failure *before* the password is checked
//! and forgiven when it succeeds: a burst of concurrent guesses therefore
//! cannot slip past the threshold while the hashes are being computed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counters kept at most; beyond that, expired and unlocked entries are
/// dropped first, and new names are refused until room is made (an attacker
/// spraying names must not grow memory without bound).
const MAX_ENTRIES: usize = 100_000;

/// The thresholds of the current configuration.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    pub max_user_failures: u32,
    pub max_address_failures: u32,
    pub window: Duration,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Key {
    User(String),
    Address(IpAddr),
}

struct Entry {
    failures: u32,
    last: Instant,
}

/// Process-wide failure counters (they survive configuration reloads).
#[derive(Default)]
pub struct Limiter {
    map: Mutex<HashMap<Key, Entry>>,
}

/// A reserved attempt: report its outcome with `succeeded` or `failed`.
#[derive(Debug)]
pub struct Attempt {
    user: Key,
    address: Key,
}

/// The address a client is counted under: IPv6 clients usually own a whole
/// /64, so they are counted per /64 rather than per address.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                for s in &mut seg[4..] {
                    *s = 0;
                }
                IpAddr::V6(seg.into())
            }
        },
        v4 => v4,
    }
}

impl Limiter {
    /// Reserves an attempt, or says how long the caller must wait (429).
    ///
    /// Only the per-user limit refuses. Past the per-address limit the
    /// attempt goes on, but only after the returned delay: behind an
    /// ingress many users may share one address, and a refusal there would
    /// lock all of them out at once.
    pub fn begin(
        &self,
        user: &str,
        ip: IpAddr,
        t: &Thresholds,
    ) -> Result<(Attempt, Duration), Duration> {
        let now = Instant::now();
        let user = Key::User(user.to_owned());
        let address = Key::Address(address_key(ip));
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = Duration::ZERO;
        let mut delay = Duration::ZERO;
        for (key, max) in [
            (&user, t.max_user_failures),
            (&address, t.max_address_failures),
        ] {
            if let Some(e) = map.get(key) {
                let quiet = now.saturating_duration_since(e.last);
                if quiet >= t.window {
                    map.remove(key);
                } else if e.failures >= max {
                    match key {
                        Key::User(_) => wait = wait.max(t.window - quiet),
                        Key::Address(_) => delay = address_delay(e.failures - max),
                    }
                }
            }
        }
        if !wait.is_zero() {
            // Retry-After is in whole seconds; never tell a client "0".
            return Err(wait.max(Duration::from_secs(1)));
        }
        if map.len() + 2 > MAX_ENTRIES {
            map.retain(|k, e| {
                let max = match k {
                    Key::User(_) => t.max_user_failures,
                    Key::Address(_) => t.max_address_failures,
                };
                now.saturating_duration_since(e.last) < t.window && e.failures >= max
            });
            if map.len() + 2 > MAX_ENTRIES {
                return Err(t.window.max(Duration::from_secs(1)));
            }
        }
        for key in [&user, &address] {
            let e = map.entry(key.clone()).or_insert(Entry {
                failures: 0,
                last: now,
            });
            e.failures = e.failures.saturating_add(1);
            e.last = now;
        }
        Ok((Attempt { user, address }, delay))
    }

    /// The credentials were right: the user's slate is wiped; the address
    /// only gets this attempt back (one good account must not reset the
    /// address's count of guesses at other accounts).
    pub fn succeeded(&self, attempt: Attempt) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&attempt.user);
        if let Some(e) = map.get_mut(&attempt.address) {
            e.failures = e.failures.saturating_sub(1);
            if e.failures == 0 {
                map.remove(&attempt.address);
            }
        }
    }

    /// The credentials were wrong (the attempt stays counted); returns the
    /// higher of the two failure counts, which decides the slow-down.
    pub fn failed(&self, attempt: Attempt) -> u32 {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        [&attempt.user, &attempt.address]
            .iter()
            .filter_map(|k| map.get(k).map(|e| e.failures))
            .max()
            .unwrap_or(1)
    }
}

/// The wait before an attempt from an address past its limit: 500 ms,
/// doubling with every further failure, at most 8 s.
pub fn address_delay(excess: u32) -> Duration {
    Duration::from_millis(500u64 << excess.min(4))
}

/// How long a failed attempt waits before it is answered: 100 ms after the
/// first failure, doubling with each further one, at most 2 s. This slows
/// a guesser down long before the lock-out while costing a person who
/// mistyped once almost nothing.
pub fn slowdown(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(5);
    Duration::from_millis(100u64 << exp).min(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(max: u32) -> Thresholds {
        Thresholds {
            max_user_failures: max,
            max_address_failures: max * 4,
            window: Duration::from_secs(60),
        }
    }

    #[test]
    fn locks_after_max_failures_and_success_forgives() {
        let l = Limiter::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            let (a, _) = l.begin("alice", ip, &t(3)).unwrap();
            l.failed(a);
        }
        let wait = l.begin("alice", ip, &t(3)).unwrap_err();
        assert!(wait > Duration::from_secs(50));
        // Another user from the same address is not locked yet.
        let (a, _) = l.begin("bob", ip, &t(3)).unwrap();
        l.succeeded(a);
        let (a, _) = l.begin("bob", ip, &t(3)).unwrap();
        l.succeeded(a);
    }

    #[test]
    fn concurrent_attempts_are_counted_before_they_finish() {
        let l = Limiter::default();
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        let _a = l.begin("carol", ip, &t(2)).unwrap();
        let _b = l.begin("carol", ip, &t(2)).unwrap();
        assert!(l.begin("carol", ip, &t(2)).is_err());
    }

    #[test]
    fn address_limit_across_users_and_ipv6_prefix() {
        let l = Limiter::default();
        let th = Thresholds {
            max_user_failures: 100,
            max_address_failures: 2,
            window: Duration::from_secs(60),
        };
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        let (x, d) = l.begin("u1", a, &th).unwrap();
        assert!(d.is_zero());
        l.failed(x);
        let (x, _) = l.begin("u2", b, &th).unwrap();
        l.failed(x);
        // Past the address limit (same /64): slowed down, never refused.
        let (x, d) = l.begin("u3", a, &th).unwrap();
        assert!(d >= Duration::from_millis(500), "{d:?}");
        l.failed(x);
        let (_, d2) = l.begin("u4", a, &th).unwrap();
        assert!(d2 > d, "{d2:?} after {d:?}");
    }

    #[test]
    fn slowdown_grows_and_is_capped() {
        assert_eq!(slowdown(1), Duration::from_millis(100));
        assert_eq!(slowdown(2), Duration::from_millis(200));
        assert_eq!(slowdown(30), Duration::from_secs(2));
    }
}
