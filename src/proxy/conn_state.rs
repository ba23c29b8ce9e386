//! What the gate keeps for one client connection, for all of its requests:
//! its own upstream connection (`upstream::Affinity`), and the text of the
//! client's address for `X-Forwarded-For`, formatted once.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::task::Context;

use http::HeaderValue;

use crate::net::server::Companion;
use crate::proxy::upstream::Affinity;

/// One client connection's state, made by the server for each accepted
/// connection and driven by its task.
#[derive(Default)]
pub struct ConnState {
    pub(crate) upstream: Affinity,
    peer_text: OnceLock<Option<HeaderValue>>,
}

impl ConnState {
    /// The peer's address as header text (`ip` is always the same peer).
    pub(crate) fn peer_text(&self, ip: IpAddr) -> Option<&HeaderValue> {
        self.peer_text
            .get_or_init(|| HeaderValue::from_str(&ip.to_string()).ok())
            .as_ref()
    }
}

impl Companion for ConnState {
    fn poll_drive(&self, cx: &mut Context<'_>) {
        self.upstream.poll_drive(cx);
    }

    /// An idle keep-alive client does not keep an upstream connection (and
    /// its buffers) for itself: after a quiet tick it goes to the idle
    /// list, where any client connection may take it.
    fn idle(&self) {
        self.upstream.release(true);
    }
}
