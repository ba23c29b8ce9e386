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
    /// Session id → who it is and when it was last counted.
    seen: moka::sync::Cache<String, Seen>,
}

/// One session as the listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub user: String,
    pub signed_in: u64,
    /// Unix seconds of the request that last counted it (counted at most
    /// once a minute, `RECOUNT_EVERY`).
    pub last_seen: u64,
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
    pub fn seen(&self, sid: &str, seen: Seen) {
        self.seen.insert(sid.to_owned(), seen);
    }

    /// The sessions seen alive within the idle window, `user`'s only when
    /// given, most recently seen first, at most `max`; and whether there
    /// were more.
    pub fn list(&self, user: Option<&str>, max: usize) -> (Vec<(String, Seen)>, bool) {
        self.seen.run_pending_tasks();
        let mut all: Vec<(String, Seen)> = self
            .seen
            .iter()
            .filter(|(_, s)| user.is_none_or(|u| s.user == u))
            .map(|(sid, s)| ((*sid).clone(), s))
            .collect();
        all.sort_by(|a, b| {
            b.1.last_seen
                .cmp(&a.1.last_seen)
                .then_with(|| a.0.cmp(&b.0))
        });
        let more = all.len() > max;
        all.truncate(max);
        (all, more)
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

    fn seen(user: &str, at: u64) -> Seen {
        Seen {
            user: user.into(),
            signed_in: 1,
            last_seen: at,
        }
    }

    #[test]
    fn counts_distinct_sessions_and_forgets_ended_ones() {
        let a = ActiveSessions::new(Duration::from_secs(60));
        a.seen("s1", seen("alice", 10));
        a.seen("s1", seen("alice", 20));
        a.seen("s2", seen("bob", 15));
        assert_eq!(a.count(), 2);
        a.gone("s1");
        a.gone("unknown");
        assert_eq!(a.count(), 1);
    }

    #[test]
    fn lists_by_user_most_recent_first_and_bounded() {
        let a = ActiveSessions::new(Duration::from_secs(60));
        a.seen("s1", seen("alice", 10));
        a.seen("s2", seen("bob", 30));
        a.seen("s3", seen("alice", 20));
        let (all, more) = a.list(None, 10);
        let ids: Vec<&str> = all.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(ids, ["s2", "s3", "s1"]);
        assert!(!more);
        let (alice, _) = a.list(Some("alice"), 10);
        assert_eq!(alice.len(), 2);
        assert!(alice.iter().all(|(_, s)| s.user == "alice"));
        let (two, more) = a.list(None, 2);
        assert_eq!(two.len(), 2);
        assert!(more);
    }
}
