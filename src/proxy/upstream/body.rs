//! The upstream's response body as the gate streams it on.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::OwnedSemaphorePermit;

use crate::proxy::conn_state::ConnState;

/// The upstream's response body. Through a shared pool it holds the
/// request's place under `upstream.max_connections` until it has been sent
/// on (or dropped); over a connection-affine upstream connection under a
/// cap, it hands the connection back to the idle list when it ends, so
/// that an idle client connection never keeps a place from a waiting one.
pub struct UpstreamBody {
    inner: Incoming,
    permit: Option<OwnedSemaphorePermit>,
    release: Option<Arc<ConnState>>,
    ended: bool,
}

impl UpstreamBody {
    pub(super) fn new(
        inner: Incoming,
        permit: Option<OwnedSemaphorePermit>,
        release: Option<Arc<ConnState>>,
    ) -> Self {
        UpstreamBody {
            inner,
            permit,
            release,
            ended: false,
        }
    }

    /// The place, for a tunnel that outlives the response (an upgrade).
    pub fn take_permit(&mut self) -> Option<OwnedSemaphorePermit> {
        self.permit.take()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            // The body is complete: the connection is free again.
            self.permit = None;
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(conn) = self.release.take() {
            // A body not read to its end leaves the connection unusable.
            conn.upstream
                .release(self.ended || self.inner.is_end_stream());
        }
    }
}
