//! What a request leaves behind once its response has ended: the
//! `jwtgate_request_duration_seconds` observation, the in-flight gauge
//! going down, and the access-log event, all read once from one record.
//!
//! They wait for the end of the response body (not its head), so that the
//! duration covers a streamed download and the log can say how many bytes
//! were sent. "End" is the body's last frame, or the body being dropped
//! (the client went away, a HEAD response, an upgrade): whichever comes
//! first.
//!
//! Access-log field names follow the OpenTelemetry semantic conventions
//! (`http.request.method`, `url.path`, `client.address`, ...); what they do
//! not name is under `jwtgate.`. The log never holds a query, a token, a
//! cookie or any header but the bounded `Host`, `User-Agent` and the ids.
//!
//! Folder `observe/`: the observation (here), `metrics`, `request_id`,
//! `process_metrics`; uses only the leaves, and every folder may use it.

pub mod metrics;
pub(crate) mod process_metrics;
pub(crate) mod request_id;

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Buf;
use http::HeaderValue;
use hyper::body::{Body, Frame, SizeHint};
use tracing::{Level, event};

use crate::observe::metrics::{Decision, ListenerMetrics};

/// Longest path, host and user agent written to the access log.
const MAX_LOGGED: usize = 256;

/// `s` cut to at most [`MAX_LOGGED`] characters.
pub(crate) fn bounded(s: &str) -> String {
    match s.char_indices().nth(MAX_LOGGED) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// A header value as text for the log, bounded; `None` when absent or not
/// visible ASCII.
pub(crate) fn header_text(v: Option<&HeaderValue>) -> Option<String> {
    v.and_then(|v| v.to_str().ok()).map(bounded)
}

/// The access-log fields known before the response. Built only when the
/// access log is on (it is off in benchmarks and for some operators).
#[derive(Default)]
pub(crate) struct AccessRecord {
    pub method: http::Method,
    pub path: String,
    pub host: Option<String>,
    pub user_agent: Option<String>,
    pub client: Option<IpAddr>,
    pub request_id: String,
    pub trace_id: Option<String>,
    /// Declared by `Content-Length` (a chunked body has none).
    pub request_bytes: Option<u64>,
    pub route: Option<String>,
    pub user: Option<String>,
    pub reason: &'static str,
    pub status: u16,
    pub upstream_status: Option<u16>,
    pub upstream_us: Option<u64>,
}

/// Held from a request's arrival until its response ends. Dropped without
/// a response (the client went away mid-decision), it only lowers the
/// in-flight gauge.
pub(crate) struct Observation {
    metrics: Arc<ListenerMetrics>,
    started: Instant,
    /// Set when the response head is known.
    decision: Option<Decision>,
    pub access: Option<Box<AccessRecord>>,
}

impl Observation {
    pub(crate) fn start(metrics: &Arc<ListenerMetrics>, access: Option<Box<AccessRecord>>) -> Self {
        metrics.in_flight.inc();
        Observation {
            metrics: metrics.clone(),
            started: Instant::now(),
            decision: None,
            access,
        }
    }

    /// The response head is ready: what remains is to stream `body`.
    pub(crate) fn respond<B>(mut self, decision: Decision, body: B) -> Observed<B> {
        self.decision = Some(decision);
        Observed {
            inner: body,
            sent: 0,
            observation: Some(self),
        }
    }

    fn finish(mut self, sent: u64) {
        let Some(decision) = self.decision.take() else {
            return;
        };
        let elapsed = self.started.elapsed();
        self.metrics
            .duration(decision)
            .observe(elapsed.as_secs_f64());
        if let Some(a) = self.access.take() {
            // `event!` rather than `info!`: only it parses dotted and
            // quoted field names after a target.
            event!(
                target: "jwtgate::access",
                Level::INFO,
                jwtgate.listener = self.metrics.name,
                http.request.method = %a.method,
                url.path = %a.path,
                server.address = a.host.as_deref(),
                client.address = a.client.map(tracing::field::display),
                user_agent.original = a.user_agent.as_deref(),
                "http.request.header.x-request-id" = %a.request_id,
                trace_id = a.trace_id.as_deref(),
                http.route = a.route.as_deref(),
                user.id = a.user.as_deref(),
                jwtgate.decision = decision.as_str(),
                jwtgate.reason = a.reason,
                http.response.status_code = a.status,
                http.request.body.size = a.request_bytes,
                http.response.body.size = sent,
                jwtgate.upstream.status_code = a.upstream_status,
                jwtgate.upstream.duration_us = a.upstream_us,
                jwtgate.duration_us = elapsed.as_micros() as u64,
            );
        }
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

/// A response body that records its request's [`Observation`] when it ends.
pub struct Observed<B> {
    inner: B,
    sent: u64,
    observation: Option<Observation>,
}

impl<B> Observed<B> {
    fn end(&mut self) {
        if let Some(o) = self.observation.take() {
            o.finish(self.sent);
        }
    }
}

impl<B> Drop for Observed<B> {
    fn drop(&mut self) {
        self.end();
    }
}

impl<B> Body for Observed<B>
where
    B: Body + Unpin,
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.remaining() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.end(),
            Poll::Pending => {}
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
