//! `upstream.max_connections` and `upstream.queue_timeout`: the places the
//! backend allows, and how long a request may wait for one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::respond::{GateError, UpstreamError};

/// The cap on connections to the upstream and how long a request may wait
/// for a place. A place is held by each connection-affine HTTP/1.1
/// connection (owned by a client connection or idle) and by each request
/// in flight through the shared pools (HTTP/2, upgrades), so the backend
/// never sees more connections than the cap. Shared across reloads that
/// keep the same cap, so a reload never doubles what the backend sees.
#[derive(Debug)]
pub(crate) struct Limit {
    permits: Arc<Semaphore>,
    pub(super) max: usize,
    pub(super) queue_timeout: Duration,
}

impl Limit {
    pub(super) fn new(max: usize, queue_timeout: Duration) -> Self {
        Limit {
            // The configuration bounds `max` far below MAX_PERMITS.
            permits: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            max,
            queue_timeout,
        }
    }

    /// A place now, if one is free.
    pub(super) fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Waits for a place (the semaphore is never closed).
    pub(super) async fn wait(&self) -> OwnedSemaphorePermit {
        loop {
            if let Ok(p) = self.permits.clone().acquire_owned().await {
                return p;
            }
        }
    }

    /// The answer when no place came within `queue_timeout`.
    pub(super) fn saturated(&self) -> GateError {
        GateError::Upstream(UpstreamError::Saturated {
            retry_after: self.queue_timeout.as_secs().max(1),
        })
    }

    /// Waits for a place, at most `queue_timeout`.
    pub(super) async fn acquire(&self) -> Result<OwnedSemaphorePermit, GateError> {
        tokio::time::timeout(self.queue_timeout, self.wait())
            .await
            .map_err(|_| self.saturated())
    }
}
