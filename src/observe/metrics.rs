//! Prometheus metrics, exposed on the admin listener's `/metrics`.
//!
//! Every label value is a `&'static str` from a closed set (listener names,
//! decisions, reasons, status classes), so series stay bounded and a lookup
//! allocates nothing. The per-request histograms and gauges are resolved
//! once, at start, into [`ListenerMetrics`]: a request only clones an `Arc`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// The listeners, as the `listener` label (and the access log) names them.
pub const PROXY: &str = "proxy";
pub const FORWARD_AUTH: &str = "forward-auth";
pub const ADMIN: &str = "admin";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub listener: &'static str,
    pub decision: &'static str,
    pub reason: &'static str,
    /// `1xx` .. `5xx`.
    pub status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub listener: &'static str,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// What asked for it: `sighup` or `watch`.
    pub trigger: &'static str,
    /// `ok` or `error`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    pub revision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    pub issuer: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerLabel {
    pub issuer: String,
}

/// The outcome of a browser sign-in or session refresh.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
    pub outcome: &'static str,
}

/// How a request ended, as the `decision` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// Allowed, but the upstream failed (502/504).
    Error,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Error => "error",
        }
    }
}

/// The `status_class` label of a status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// One listener's per-request metrics, resolved from their families once.
pub struct ListenerMetrics {
    pub name: &'static str,
    pub in_flight: Gauge,
    /// By decision: allow, deny, error.
    durations: [Histogram; 3],
}

impl ListenerMetrics {
    pub fn duration(&self, d: Decision) -> &Histogram {
        &self.durations[d as usize]
    }
}

/// HTTP request latencies: 0.5 ms to a minute (`upstream.response_timeout`
/// defaults to 60 s); the gate's own answers fall in the first buckets.
const HTTP_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// All metrics of one process; shared across configuration reloads so that
/// counters keep counting.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub verify_seconds: Histogram,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub key_fetches: Family<FetchLabels, Counter>,
    pub key_age_seconds: Family<IssuerLabel, Gauge<f64, AtomicU64>>,
    pub unknown_kid_refetches: Family<IssuerLabel, Counter>,
    pub unknown_kid_suppressed: Family<IssuerLabel, Counter>,
    pub issued: Family<EndpointLabels, Counter>,
    pub reloads: Family<ReloadLabels, Counter>,
    /// 1 when the last reload (signal or watch) was accepted, 0 when refused.
    pub last_reload_success: Gauge,
    pub last_reload_timestamp: Gauge<f64, AtomicU64>,
    /// Time to the upstream's response head (or its failure).
    pub upstream_seconds: Histogram,
    pub connections_open: Family<ListenerLabel, Gauge>,
    pub proxy: Arc<ListenerMetrics>,
    pub forward_auth: Arc<ListenerMetrics>,
    /// 1 while the shared store answers (always 1 for the embedded store).
    pub store_up: Gauge,
    /// Browser sign-ins by result (`ok`, or why the callback was refused).
    pub login: Family<ResultLabel, Counter>,
    /// Back-channel logout requests by result (`ok`, or why refused).
    pub backchannel_logout: Family<ResultLabel, Counter>,
    /// Session refreshes at the provider by result.
    pub sessions_refreshed: Family<ResultLabel, Counter>,
    /// Sign-outs that ended a session.
    pub logout: Counter,
    /// Browser sessions this gate saw alive within `login.idle_timeout`
    /// (set when scraped; see `login::active`).
    pub sessions_active: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "jwtgate_requests",
            "Requests answered, by listener, decision (allow/deny/error), reason and status class",
            requests.clone(),
        );
        // 1 µs .. ~16 ms: a verification is microseconds; a remote key fetch is not counted here.
        let verify_seconds = Histogram::new(exponential_buckets(1e-6, 2.0, 15));
        registry.register(
            "jwtgate_verify_duration_seconds",
            "Time of a full token verification (signature and claims); cache hits are not observed here",
            verify_seconds.clone(),
        );
        let cache_hits = Counter::default();
        registry.register(
            "jwtgate_token_cache_hits",
            "Tokens found in the verified-token cache",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "jwtgate_token_cache_misses",
            "Tokens not found in the verified-token cache",
            cache_misses.clone(),
        );
        let key_fetches = Family::<FetchLabels, Counter>::default();
        registry.register(
            "jwtgate_key_fetches",
            "Remote key (discovery + JWKS) fetches, by issuer and outcome",
            key_fetches.clone(),
        );
        let key_age_seconds = Family::<IssuerLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "jwtgate_key_age_seconds",
            "Age of each issuer's keys in use",
            key_age_seconds.clone(),
        );
        let unknown_kid_refetches = Family::<IssuerLabel, Counter>::default();
        registry.register(
            "jwtgate_unknown_kid_refetches",
            "Key refetches triggered by an unknown kid",
            unknown_kid_refetches.clone(),
        );
        let unknown_kid_suppressed = Family::<IssuerLabel, Counter>::default();
        registry.register(
            "jwtgate_unknown_kid_suppressed",
            "Unknown-kid refetches refused by the per-issuer interval",
            unknown_kid_suppressed.clone(),
        );
        let issued = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "jwtgate_issuer_requests",
            "Token endpoint requests, by endpoint and outcome",
            issued.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "jwtgate_config_reloads",
            "Configuration reloads, by trigger (sighup/watch) and outcome (ok/error)",
            reloads.clone(),
        );
        // 1 until a reload is refused: the configuration loaded at start counts.
        let last_reload_success = Gauge::default();
        last_reload_success.set(1);
        registry.register(
            "jwtgate_config_last_reload_success",
            "1 when the last configuration reload was accepted, 0 when it was refused",
            last_reload_success.clone(),
        );
        let last_reload_timestamp = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "jwtgate_config_last_reload_timestamp_seconds",
            "Unix time of the last configuration reload attempt",
            last_reload_timestamp.clone(),
        );
        let store_up = Gauge::default();
        registry.register(
            "jwtgate_store_up",
            "1 while the revocation store (Redis, or the embedded store) answers, 0 while it does not",
            store_up.clone(),
        );
        let durations: HistogramFamily<DurationLabels> =
            Family::new_with_constructor(http_histogram);
        registry.register(
            "jwtgate_request_duration_seconds",
            "Time from a request's arrival to the end of its response body, by listener and decision",
            durations.clone(),
        );
        let upstream_seconds = http_histogram();
        registry.register(
            "jwtgate_upstream_duration_seconds",
            "Time from sending a request upstream to the upstream's response head (or its failure)",
            upstream_seconds.clone(),
        );
        let in_flight = Family::<ListenerLabel, Gauge>::default();
        registry.register(
            "jwtgate_requests_in_flight",
            "Requests whose response has not ended, by listener",
            in_flight.clone(),
        );
        let connections_open = Family::<ListenerLabel, Gauge>::default();
        registry.register(
            "jwtgate_connections_open",
            "Client connections open, by listener",
            connections_open.clone(),
        );
        let login = Family::<ResultLabel, Counter>::default();
        registry.register(
            "jwtgate_login",
            "Browser sign-ins (callbacks), by result: ok, or the reason the callback was refused",
            login.clone(),
        );
        let backchannel_logout = Family::<ResultLabel, Counter>::default();
        registry.register(
            "jwtgate_backchannel_logout",
            "Back-channel logout requests from the OpenID provider, by result: ok, or why refused",
            backchannel_logout.clone(),
        );
        let sessions_refreshed = Family::<ResultLabel, Counter>::default();
        registry.register(
            "jwtgate_sessions_refreshed",
            "Browser sessions refreshed at the OpenID provider, by result",
            sessions_refreshed.clone(),
        );
        let logout = Counter::default();
        registry.register(
            "jwtgate_logout",
            "Browser sign-outs that ended a session",
            logout.clone(),
        );
        let sessions_active = Gauge::default();
        registry.register(
            "jwtgate_sessions_active",
            "Browser sessions that made a request through this gate within login.idle_timeout and were valid then (0 without [login])",
            sessions_active.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                revision: env!("JWTGATE_GIT_REVISION"),
            })
            .set(1);
        registry.register(
            "jwtgate_build_info",
            "Always 1; the labels say which build is running",
            build_info,
        );
        registry.register_collector(Box::new(
            crate::observe::process_metrics::ProcessCollector::new(),
        ));
        let listener = |name: &'static str| {
            let d = |decision: Decision| {
                durations
                    .get_or_create(&DurationLabels {
                        listener: name,
                        decision: decision.as_str(),
                    })
                    .clone()
            };
            Arc::new(ListenerMetrics {
                name,
                in_flight: in_flight
                    .get_or_create(&ListenerLabel { listener: name })
                    .clone(),
                durations: [d(Decision::Allow), d(Decision::Deny), d(Decision::Error)],
            })
        };
        let proxy = listener(PROXY);
        let forward_auth = listener(FORWARD_AUTH);
        Metrics {
            login,
            backchannel_logout,
            sessions_refreshed,
            logout,
            sessions_active,
            store_up,
            upstream_seconds,
            connections_open,
            proxy,
            forward_auth,
            registry,
            requests,
            verify_seconds,
            cache_hits,
            cache_misses,
            key_fetches,
            key_age_seconds,
            unknown_kid_refetches,
            unknown_kid_suppressed,
            issued,
            reloads,
            last_reload_success,
            last_reload_timestamp,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn count_request(
        &self,
        listener: &'static str,
        decision: Decision,
        reason: &'static str,
        status: u16,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                listener,
                decision: decision.as_str(),
                reason,
                status_class: status_class(status),
            })
            .inc();
    }

    /// The open-connections gauge of one listener.
    pub fn connections(&self, listener: &'static str) -> Gauge {
        self.connections_open
            .get_or_create(&ListenerLabel { listener })
            .clone()
    }
}
