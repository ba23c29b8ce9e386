//! Prometheus metrics, exposed on the admin listener's `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub decision: &'static str,
    pub reason: &'static str,
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
    pub outcome: &'static str,
}

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
    pub reloads: Family<RequestLabels, Counter>,
    /// 1 when the last reload (signal or watch) was accepted, 0 when refused.
    pub last_reload_success: Gauge,
    pub last_reload_timestamp: Gauge<f64, AtomicU64>,
    /// 1 while the shared store answers (always 1 for the embedded store).
    pub store_up: Gauge,
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
            "Requests answered, by decision (allow/deny) and reason",
            requests.clone(),
        );
        // 1 µs .. ~16 ms: a verification is microseconds; a remote key fetch is not counted here.
        let verify_seconds = Histogram::new(exponential_buckets(1e-6, 2.0, 15));
        registry.register(
            "jwtgate_verify_duration_seconds",
            "Time to verify a token (cache lookups included)",
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
        let reloads = Family::<RequestLabels, Counter>::default();
        registry.register(
            "jwtgate_config_reloads",
            "Configuration reloads, by decision (ok/error) and reason (sighup/watch)",
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
        Metrics {
            store_up,
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

    pub fn count_request(&self, decision: &'static str, reason: &'static str) {
        self.requests
            .get_or_create(&RequestLabels { decision, reason })
            .inc();
    }
}
