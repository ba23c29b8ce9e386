//! The sessions this gate has seen alive lately, for
//! `jwtgate_sessions_active`: known without asking the store (a Redis
//! scan would cost every gate a pass over every session).
//!
//! What it counts: distinct sessions that made a request through this gate
//! within the last `idle_timeout` (to the minute) and were valid then. A
//! session signed out or revoked leaves the count at once on the gate that
//! refuses it (its sign-out, or its next refused request), elsewhere after
//! `idle_timeout` at the latest. Each replica counts its own sessions: a
//! session that uses several replicas counts on each.

use std::time::Duration;

/// At most this many sessions are remembered (about 100 bytes each); past
/// it the least recently seen are forgotten and the count stops growing.
const MAX_TRACKED: u64 = 100_000;
/// A session is counted again (its idle clock moved on) at most this often.
pub const RECOUNT_EVERY: u64 = 60;

pub struct ActiveSessions {
    idle: Duration,
    seen: moka::sync::Cache<String, ()>,
}

impl ActiveSessions {
    pub fn new(idle: Duration) -> ActiveSessions {
        ActiveSessions {
            idle,
            seen: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_idle(idle.max(Duration::from_secs(1)))
                .build(),
        }
    }

    /// The idle window it was built for (a reload with another
    /// `idle_timeout` starts a new count).
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// A valid session made a request now.
    pub fn seen(&self, sid: &str) {
        self.seen.insert(sid.to_owned(), ());
    }

    /// The session ended or was refused.
    pub fn gone(&self, sid: &str) {
        self.seen.invalidate(sid);
    }

    /// How many sessions were seen alive within the idle window.
    pub fn count(&self) -> u64 {
        self.seen.run_pending_tasks();
        self.seen.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_sessions_and_forgets_ended_ones() {
        let a = ActiveSessions::new(Duration::from_secs(60));
        a.seen("s1");
        a.seen("s1");
        a.seen("s2");
        assert_eq!(a.count(), 2);
        a.gone("s1");
        a.gone("unknown");
        assert_eq!(a.count(), 1);
    }
}
