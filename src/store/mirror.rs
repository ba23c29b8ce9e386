//! The in-memory copy of the revocation set that requests are checked
//! against, and what the gate knows about how fresh it is.
//!
//! Requests only ever read it (one atomic load; nothing when it is empty):
//! the store's round trips happen in the background task that keeps it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use super::revocation::{Change, RevocationSet};
use crate::auth::claims::now;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub struct Mirror {
    set: ArcSwap<RevocationSet>,
    /// Serialises writers (readers never wait): each change copies the set.
    write: Mutex<()>,
    /// The store answers (Redis reachable, or the embedded store).
    up: AtomicBool,
    /// Known to be in sync right now: a live subscription on a healthy
    /// connection (always true for the embedded store).
    live: AtomicBool,
    /// The last moment (Unix ms) the gate knew the mirror was in sync.
    synced_at_ms: AtomicU64,
}

impl Default for Mirror {
    fn default() -> Self {
        Mirror {
            set: ArcSwap::from_pointee(RevocationSet::default()),
            write: Mutex::new(()),
            up: AtomicBool::new(false),
            live: AtomicBool::new(false),
            synced_at_ms: AtomicU64::new(now_ms()),
        }
    }
}

impl Mirror {
    pub fn load(&self) -> arc_swap::Guard<std::sync::Arc<RevocationSet>> {
        self.set.load()
    }

    pub fn replace(&self, set: RevocationSet) {
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        self.set.store(std::sync::Arc::new(set));
    }

    pub fn apply(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let next = self.set.load().with_changes(changes, now());
        self.set.store(std::sync::Arc::new(next));
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Returns the previous value, so that callers log only transitions.
    pub fn set_up(&self, up: bool) -> bool {
        self.up.swap(up, Ordering::Relaxed)
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// In sync now: the age restarts from this moment.
    pub fn mark_synced(&self, live: bool) {
        self.synced_at_ms.store(now_ms(), Ordering::Relaxed);
        self.live.store(live, Ordering::Relaxed);
    }

    /// No longer known to be in sync: the age runs from now on.
    pub fn mark_unsynced(&self) {
        if self.live.swap(false, Ordering::Relaxed) {
            self.synced_at_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// How long (ms) since the gate last knew it was in sync; 0 while live.
    pub fn stale_ms(&self) -> u64 {
        if self.is_live() {
            0
        } else {
            now_ms().saturating_sub(self.synced_at_ms.load(Ordering::Relaxed))
        }
    }
}
