//! One trusted issuer and its keys: where they come from, the lock-free
//! read of the current set, the single-flight fetch, the bounded
//! unknown-`kid` refetch, and the background refresher.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::{Algorithm, DecodingKey};
use tracing::{info, warn};

use super::fetch::{FetchError, get_capped, http_client};
use super::invalid;
use super::keyset::{KeySet, same_keys, select};
use super::parse::{
    KeyEntry, ProviderEndpoints, check_url, kind_for, parse_discovery, parse_jwks, parse_pem,
    parse_provider_endpoints,
};
use crate::auth::cache::TokenCache;
use crate::auth::error::VerifyError;
use crate::auth::signature::VerifyKey;
use crate::config::{ConfigError, IssuerTrustConfig, read_key_file};
use crate::observe::metrics::{FetchLabels, IssuerLabel, Metrics};

/// Backoff between failed fetches: doubles from the first to the last value.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Shortest key lifetime honoured from `Cache-Control: max-age`.
const MIN_KEY_TTL: Duration = Duration::from_secs(5);
/// Unknown kids remembered per issuer.
const UNKNOWN_KIDS_REMEMBERED: u64 = 10_000;
/// Longest time an unknown kid is remembered, whatever `refetch_interval` says.
const MAX_UNKNOWN_KID_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Where an issuer's keys come from.
#[derive(Clone, Debug)]
enum Source {
    Discovery,
    JwksUri(String),
    /// Loaded once per configuration generation (SIGHUP reloads them).
    Local,
}

/// A public key given as a file or by the gate's own issuer.
pub struct StaticKey {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// Why a pinned key (the gate's own signing key) cannot be trusted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PinnedKeyError {
    #[error("not an asymmetric key")]
    NotAsymmetric,
    #[error("unusable public key")]
    Unusable,
}

/// One trusted issuer and its keys.
pub struct IssuerKeys {
    name: String,
    config: IssuerTrustConfig,
    algorithms: Vec<Algorithm>,
    source: Source,
    keys: ArcSwapOption<KeySet>,
    /// The sign-in endpoints of the last discovery document (discovery only).
    endpoints: ArcSwapOption<ProviderEndpoints>,
    /// Held only by fetchers: the single flight per issuer.
    fetching: tokio::sync::Mutex<()>,
    /// Completed fetch attempts; a waiter compares it to skip a fetch that
    /// another request just made.
    fetch_count: AtomicU64,
    last_unknown_kid_fetch: Mutex<Option<Instant>>,
    /// When `POST /keys/refresh` last fetched (rate limit: one per
    /// `refetch_interval`).
    last_forced_fetch: Mutex<Option<Instant>>,
    unknown_kids: moka::sync::Cache<String, ()>,
    failures: AtomicU32,
    refresher_started: AtomicBool,
    last_error: Mutex<Option<FetchError>>,
    client: Option<reqwest::Client>,
    metrics: Arc<Metrics>,
    cache: Option<Arc<TokenCache>>,
}

impl IssuerKeys {
    pub(super) fn new(
        index: usize,
        cfg: &IssuerTrustConfig,
        metrics: Arc<Metrics>,
        cache: Option<Arc<TokenCache>>,
    ) -> Result<IssuerKeys, ConfigError> {
        let key = |k: &str| format!("auth.issuers[{index}].{k}");
        let algorithms = crate::config::types::algorithms(&cfg.algorithms);
        let mut keys = None;
        let source = if let Some(file) = &cfg.jwks_file {
            let bytes = read_key_file(&key("jwks_file"), file)?;
            let set = parse_jwks(&bytes).map_err(|m| invalid(key("jwks_file"), m))?;
            keys = Some(KeySet::local(set, false));
            Source::Local
        } else if let Some(file) = &cfg.public_key_file {
            let pem = read_key_file(&key("public_key_file"), file)?;
            let entry = parse_pem(&pem).map_err(|m| invalid(key("public_key_file"), m))?;
            keys = Some(KeySet::local(vec![entry], true));
            Source::Local
        } else if !cfg.jwks_uri.is_empty() {
            check_url(&cfg.jwks_uri).map_err(|m| invalid(key("jwks_uri"), m))?;
            Source::JwksUri(cfg.jwks_uri.clone())
        } else {
            check_url(&cfg.issuer).map_err(|m| {
                invalid(
                    key("issuer"),
                    format!("{m}; for discovery the issuer must be an http(s) URL, or set jwks_uri, jwks_file or public_key_file"),
                )
            })?;
            Source::Discovery
        };
        let client = match source {
            Source::Local => None,
            _ => Some(http_client(&key("ca_file"), cfg.ca_file.as_deref())?),
        };
        Ok(IssuerKeys::assemble(
            cfg.clone(),
            algorithms,
            source,
            keys,
            client,
            metrics,
            cache,
        ))
    }

    /// The fields every issuer starts with.
    fn assemble(
        config: IssuerTrustConfig,
        algorithms: Vec<Algorithm>,
        source: Source,
        keys: Option<KeySet>,
        client: Option<reqwest::Client>,
        metrics: Arc<Metrics>,
        cache: Option<Arc<TokenCache>>,
    ) -> IssuerKeys {
        IssuerKeys {
            name: config.issuer.clone(),
            algorithms,
            source,
            keys: ArcSwapOption::new(keys.map(Arc::new)),
            endpoints: ArcSwapOption::empty(),
            fetching: tokio::sync::Mutex::new(()),
            fetch_count: Default::default(),
            last_unknown_kid_fetch: Mutex::new(None),
            last_forced_fetch: Mutex::new(None),
            unknown_kids: moka::sync::Cache::builder()
                .max_capacity(UNKNOWN_KIDS_REMEMBERED)
                // moka panics on a time to live over 1000 years.
                .time_to_live(
                    config
                        .refetch_interval
                        .clamp(Duration::from_secs(1), MAX_UNKNOWN_KID_TTL),
                )
                .build(),
            failures: Default::default(),
            refresher_started: Default::default(),
            last_error: Mutex::new(None),
            client,
            metrics,
            cache,
            config,
        }
    }

    /// An issuer trusted with one fixed key (the gate's own).
    pub(super) fn pinned(
        name: String,
        key: StaticKey,
        metrics: Arc<Metrics>,
    ) -> Result<IssuerKeys, PinnedKeyError> {
        let kind = kind_for(key.algorithm).ok_or(PinnedKeyError::NotAsymmetric)?;
        let verify =
            VerifyKey::public(&key.key, &[key.algorithm]).ok_or(PinnedKeyError::Unusable)?;
        let entry = KeyEntry {
            kid: key.kid,
            kind,
            alg: Some(key.algorithm),
            key: Arc::new(verify),
        };
        let config = IssuerTrustConfig {
            issuer: name,
            algorithms: vec![crate::config::Algorithm(key.algorithm)],
            ..Default::default()
        };
        Ok(IssuerKeys::assemble(
            config,
            vec![key.algorithm],
            Source::Local,
            Some(KeySet::local(vec![entry], false)),
            None,
            metrics,
            None,
        ))
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    pub(crate) fn audiences(&self) -> &[String] {
        &self.config.audiences
    }

    /// `require_typ`, when set.
    pub(crate) fn required_typ(&self) -> Option<&str> {
        Some(self.config.require_typ.as_str()).filter(|t| !t.is_empty())
    }

    pub(super) fn is_remote(&self) -> bool {
        !matches!(self.source, Source::Local)
    }

    /// May this issuer, built for `cache`, serve the configuration `cfg`
    /// (keeping its keys and its refresh task)?
    pub(super) fn reusable_for(
        &self,
        cfg: &IssuerTrustConfig,
        cache: &Option<Arc<TokenCache>>,
    ) -> bool {
        self.is_remote() && self.config == *cfg && same_cache(&self.cache, cache)
    }

    /// Keys younger than `max_stale` (local keys never go stale).
    fn usable(&self) -> Option<Arc<KeySet>> {
        let set = self.keys.load_full()?;
        if self.is_remote() && set.fetched.elapsed() > self.config.max_stale {
            return None;
        }
        Some(set)
    }

    /// The sign-in endpoints from the discovery document, fetching it
    /// (single flight, within the refetch limit) when none is loaded yet.
    pub(crate) async fn endpoints(&self) -> Result<Arc<ProviderEndpoints>, VerifyError> {
        if let Some(e) = self.endpoints.load_full() {
            return Ok(e);
        }
        if matches!(self.source, Source::Discovery) && self.may_refetch_now() {
            let seen = self.fetch_count.load(Ordering::Acquire);
            let _ = self.fetch_single_flight(seen).await;
        }
        self.endpoints.load_full().ok_or_else(|| self.unavailable())
    }

    pub(crate) fn ready(&self) -> bool {
        self.usable().is_some()
    }

    fn unavailable(&self) -> VerifyError {
        let n = self.failures.load(Ordering::Relaxed);
        VerifyError::KeysUnavailable {
            retry_after: backoff(n).as_secs().clamp(1, 60),
        }
    }

    /// The candidate keys for a token with this `alg` and `kid`, fetching
    /// (within the limits) when the kid is unknown or no keys are loaded yet.
    pub(crate) async fn keys_for(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Vec<Arc<VerifyKey>>, VerifyError> {
        let set = match self.usable() {
            Some(set) => set,
            None => {
                // Never loaded, or stale past max_stale: one limited attempt,
                // then 503 (the background task keeps trying with backoff).
                if !self.may_refetch_now() {
                    return Err(self.unavailable());
                }
                let seen = self.fetch_count.load(Ordering::Acquire);
                let _ = self.fetch_single_flight(seen).await;
                self.usable().ok_or_else(|| self.unavailable())?
            }
        };
        if let Some(found) = select(&set, alg, kid)? {
            return Ok(found);
        }
        let Some(kid) = kid else {
            return Err(VerifyError::NoSuitableKey);
        };
        // An unknown kid: maybe the IdP rotated. At most one refetch per
        // issuer per refetch_interval; kids still unknown after it are
        // remembered so a flood of random kids costs nothing more.
        if !self.is_remote() || self.unknown_kids.contains_key(kid) {
            return Err(VerifyError::UnknownKid);
        }
        let seen = self.fetch_count.load(Ordering::Acquire);
        let label = IssuerLabel {
            issuer: self.name.clone(),
        };
        if !self.may_refetch_now() {
            self.metrics
                .unknown_kid_suppressed
                .get_or_create(&label)
                .inc();
            // Not remembered: once the interval has passed, the next request
            // with this kid may trigger the refetch that finds it.
            return Err(VerifyError::UnknownKid);
        }
        self.metrics
            .unknown_kid_refetches
            .get_or_create(&label)
            .inc();
        let _ = self.fetch_single_flight(seen).await;
        let set = self.usable().ok_or_else(|| self.unavailable())?;
        match select(&set, alg, Some(kid))? {
            Some(found) => Ok(found),
            None => {
                self.unknown_kids.insert(kid.to_string(), ());
                Err(VerifyError::UnknownKid)
            }
        }
    }

    /// Takes the per-issuer refetch slot if `refetch_interval` has passed.
    fn may_refetch_now(&self) -> bool {
        if !self.is_remote() {
            return false;
        }
        let Ok(mut last) = self.last_unknown_kid_fetch.lock() else {
            return false;
        };
        let now = Instant::now();
        match *last {
            Some(t) if now.duration_since(t) < self.config.refetch_interval => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    /// `POST /keys/refresh` for this issuer: a rate-limited fetch if its
    /// keys are remote, else the number of keys it has.
    pub(super) async fn refresh_now(&self) -> Refresh {
        if self.is_remote() {
            self.forced_refresh().await
        } else {
            Refresh::Done(Ok(self.keys.load().as_ref().map_or(0, |s| s.keys.len())))
        }
    }

    /// Fetches unless another fetch completed since `seen` (then its
    /// result is used): concurrent callers share one fetch.
    async fn forced_refresh(&self) -> Refresh {
        let seen = self.fetch_count.load(Ordering::Acquire);
        {
            let Ok(mut last) = self.last_forced_fetch.lock() else {
                return Refresh::Done(Err(FetchError::Internal));
            };
            let now = Instant::now();
            if let Some(at) = *last {
                let since = now.duration_since(at);
                if since < self.config.refetch_interval {
                    return Refresh::RateLimited {
                        retry_after: (self.config.refetch_interval - since).as_secs().max(1),
                    };
                }
            }
            *last = Some(now);
        }
        Refresh::Done(self.fetch_single_flight(seen).await)
    }

    async fn fetch_single_flight(&self, seen: u64) -> Result<usize, FetchError> {
        let _guard = self.fetching.lock().await;
        if self.fetch_count.load(Ordering::Acquire) != seen {
            return match self.keys.load().as_ref() {
                Some(s) => Ok(s.keys.len()),
                None => Err(self.last_error()),
            };
        }
        let result = self.fetch_now().await;
        self.fetch_count.fetch_add(1, Ordering::Release);
        result
    }

    fn last_error(&self) -> FetchError {
        self.last_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or(FetchError::NotLoaded)
    }

    /// One fetch (discovery if configured, then the JWKS); on success the
    /// new set replaces the old one, on failure the old one stays.
    async fn fetch_now(&self) -> Result<usize, FetchError> {
        let outcome = self.fetch_keys().await;
        let label = |outcome| FetchLabels {
            issuer: self.name.clone(),
            outcome,
        };
        match outcome {
            Ok((keys, max_age)) => {
                self.metrics.key_fetches.get_or_create(&label("ok")).inc();
                let n = keys.len();
                // An IdP answering max-age=0 (or 1) must not make us poll it
                // every second.
                let ttl = max_age
                    .unwrap_or(self.config.cache_ttl)
                    .min(self.config.cache_ttl)
                    .max(MIN_KEY_TTL.min(self.config.cache_ttl));
                let changed = self
                    .keys
                    .load()
                    .as_ref()
                    .is_none_or(|old| !same_keys(&old.keys, &keys));
                self.keys.store(Some(Arc::new(KeySet {
                    keys,
                    fetched: Instant::now(),
                    ttl,
                    ignore_kid: false,
                })));
                self.failures.store(0, Ordering::Relaxed);
                if changed {
                    info!(issuer = %self.name, keys = n, "issuer keys loaded");
                    // Tokens verified with keys that are gone must be verified again.
                    self.unknown_kids.invalidate_all();
                    if let Some(c) = &self.cache {
                        c.advance();
                    }
                }
                Ok(n)
            }
            Err(e) => {
                self.metrics
                    .key_fetches
                    .get_or_create(&label("error"))
                    .inc();
                self.failures.fetch_add(1, Ordering::Relaxed);
                warn!(issuer = %self.name, "key fetch failed: {e}");
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(e.clone());
                }
                Err(e)
            }
        }
    }

    async fn fetch_keys(&self) -> Result<(Vec<KeyEntry>, Option<Duration>), FetchError> {
        let client = self.client.as_ref().ok_or(FetchError::NoRemoteSource)?;
        let jwks_uri = match &self.source {
            Source::JwksUri(u) => u.clone(),
            Source::Discovery => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.name.trim_end_matches('/')
                );
                let (body, _) = get_capped(client, &url).await?;
                let jwks_uri = parse_discovery(&body, &self.name).map_err(FetchError::Discovery)?;
                let endpoints = parse_provider_endpoints(&body).map_err(FetchError::Discovery)?;
                self.endpoints.store(endpoints.map(Arc::new));
                jwks_uri
            }
            Source::Local => return Err(FetchError::NoRemoteSource),
        };
        let (body, max_age) = get_capped(client, &jwks_uri).await?;
        let keys = parse_jwks(&body).map_err(FetchError::Jwks)?;
        Ok((keys, max_age))
    }

    /// Starts the background refresh if the keys are remote and it has not
    /// been started yet.
    pub(super) fn spawn_refresher(self: &Arc<Self>) {
        if self.is_remote() && !self.refresher_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(IssuerKeys::refresh_loop(Arc::downgrade(self)));
        }
    }

    /// Background refresh: before the keys expire, and with backoff while
    /// the IdP fails. Ends when the issuer is dropped (reload).
    async fn refresh_loop(weak: Weak<IssuerKeys>) {
        loop {
            let wait = {
                let Some(this) = weak.upgrade() else { return };
                let failures = this.failures.load(Ordering::Relaxed);
                match this.keys.load().as_ref() {
                    _ if failures > 0 => backoff(failures),
                    None => Duration::ZERO,
                    Some(set) => {
                        // Refresh at 80% of the lifetime (`fetched + ttl`
                        // would overflow for a huge `cache_ttl`).
                        set.ttl.mul_f64(0.8).saturating_sub(set.fetched.elapsed())
                    }
                }
            };
            tokio::time::sleep(wait).await;
            let Some(this) = weak.upgrade() else { return };
            let seen = this.fetch_count.load(Ordering::Acquire);
            let _ = this.fetch_single_flight(seen).await;
            this.update_age_metric();
        }
    }

    pub(super) fn update_age_metric(&self) {
        if let Some(set) = self.keys.load().as_ref() {
            self.metrics
                .key_age_seconds
                .get_or_create(&IssuerLabel {
                    issuer: self.name.clone(),
                })
                .set(set.fetched.elapsed().as_secs_f64());
        }
    }
}

fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    BACKOFF_MIN
        .saturating_mul(1u32 << (failures - 1).min(10))
        .min(BACKOFF_MAX)
}

/// One issuer's outcome of `POST /keys/refresh`.
#[derive(Debug)]
pub enum Refresh {
    /// Fetched (or, for a file or pinned key, nothing to fetch): the number
    /// of keys, or why the fetch failed.
    Done(Result<usize, FetchError>),
    /// Refused: the last forced refresh was less than `refetch_interval` ago.
    RateLimited { retry_after: u64 },
}

fn same_cache(a: &Option<Arc<TokenCache>>, b: &Option<Arc<TokenCache>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), BACKOFF_MIN);
        assert_eq!(backoff(2), BACKOFF_MIN * 2);
        assert_eq!(backoff(30), BACKOFF_MAX);
    }
}
