//! Keys of the trusted asymmetric issuers (`[[auth.issuers]]`): OIDC
//! discovery, JWKS fetching and caching, refresh before expiry, a bounded
//! unknown-`kid` refetch, and stale keys kept through an IdP outage.
//!
//! Requests read the current key set lock-free (`ArcSwapOption`). Only a
//! request that needs a fetch (unknown `kid`, keys never loaded) waits, and
//! it waits on the one fetch in flight for its issuer (single-flight with a
//! `tokio::sync::Mutex` held only by fetchers, re-checked after it is taken),
//! so a routine refresh or a slow IdP never stalls requests whose keys are known.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tracing::{debug, info, warn};

use super::VerifyError;
use super::cache::TokenCache;
use super::signature::{ASYMMETRIC, VerifyKey, alg_name};
use crate::config::{ConfigError, IssuerTrustConfig, read_key_file};
use crate::metrics::{FetchLabels, IssuerLabel, Metrics};

/// Largest discovery document or JWKS accepted.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Keys kept from one JWKS; the rest are ignored.
const MAX_KEYS: usize = 64;
/// Redirects followed when fetching.
const MAX_REDIRECTS: usize = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Backoff between failed fetches: doubles from the first to the last value.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Shortest key lifetime honoured from `Cache-Control: max-age`.
const MIN_KEY_TTL: Duration = Duration::from_secs(5);
/// Unknown kids remembered per issuer.
const UNKNOWN_KIDS_REMEMBERED: u64 = 10_000;
/// Longest time an unknown kid is remembered, whatever `refetch_interval` says.
const MAX_UNKNOWN_KID_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The kind of key a verification needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

fn kind_for(alg: Algorithm) -> Option<KeyKind> {
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => Some(KeyKind::Rsa),
        Algorithm::ES256 => Some(KeyKind::P256),
        Algorithm::ES384 => Some(KeyKind::P384),
        Algorithm::EdDSA => Some(KeyKind::Ed25519),
        _ => None,
    }
}

/// One usable verification key.
pub struct KeyEntry {
    kid: Option<String>,
    kind: KeyKind,
    /// The key's own `alg`, when the JWKS names one: the token must use it.
    alg: Option<Algorithm>,
    key: Arc<VerifyKey>,
}

impl KeyEntry {
    fn fits(&self, alg: Algorithm) -> bool {
        kind_for(alg) == Some(self.kind) && self.alg.is_none_or(|a| a == alg)
    }
}

/// A key set and when it was obtained.
struct KeySet {
    keys: Vec<KeyEntry>,
    fetched: Instant,
    /// How long these keys are fresh (max-age clamped to `cache_ttl`).
    ttl: Duration,
    /// Pinned keys (files, PEM): the `kid` is not required to match.
    ignore_kid: bool,
}

impl KeySet {
    /// Keys from a file or the gate's own signer: never stale.
    fn local(keys: Vec<KeyEntry>, ignore_kid: bool) -> KeySet {
        KeySet {
            keys,
            fetched: Instant::now(),
            ttl: Duration::MAX,
            ignore_kid,
        }
    }
}

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

/// One trusted issuer and its keys.
pub struct IssuerKeys {
    name: String,
    config: IssuerTrustConfig,
    algorithms: Vec<Algorithm>,
    source: Source,
    keys: ArcSwapOption<KeySet>,
    /// Held only by fetchers: the single flight per issuer.
    fetching: tokio::sync::Mutex<()>,
    /// Completed fetch attempts; a waiter compares it to skip a fetch that
    /// another request just made.
    fetch_count: std::sync::atomic::AtomicU64,
    last_unknown_kid_fetch: Mutex<Option<Instant>>,
    /// When `POST /keys/refresh` last fetched (rate limit: one per
    /// `refetch_interval`).
    last_forced_fetch: Mutex<Option<Instant>>,
    unknown_kids: moka::sync::Cache<String, ()>,
    failures: std::sync::atomic::AtomicU32,
    refresher_started: std::sync::atomic::AtomicBool,
    last_error: Mutex<Option<String>>,
    client: Option<reqwest::Client>,
    metrics: Arc<Metrics>,
    cache: Option<Arc<TokenCache>>,
}

fn invalid(key: String, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        origin: "configuration".into(),
        message: message.into(),
    }
}

fn parse_algorithm(name: &str) -> Option<Algorithm> {
    name.parse().ok()
}

impl IssuerKeys {
    fn new(
        index: usize,
        cfg: &IssuerTrustConfig,
        metrics: Arc<Metrics>,
        cache: Option<Arc<TokenCache>>,
    ) -> Result<IssuerKeys, ConfigError> {
        let key = |k: &str| format!("auth.issuers[{index}].{k}");
        let algorithms = cfg
            .algorithms
            .iter()
            .map(|a| {
                parse_algorithm(a)
                    .ok_or_else(|| invalid(key("algorithms"), format!("{a:?} is unknown")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut keys = None;
        let source = if !cfg.jwks_file.is_empty() {
            let bytes = read_key_file(&key("jwks_file"), &cfg.jwks_file)?;
            let set = parse_jwks(&bytes).map_err(|m| invalid(key("jwks_file"), m))?;
            keys = Some(KeySet::local(set, false));
            Source::Local
        } else if !cfg.public_key_file.is_empty() {
            let pem = read_key_file(&key("public_key_file"), &cfg.public_key_file)?;
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
            _ => Some(http_client(&key("ca_file"), &cfg.ca_file)?),
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

    /// The gate's own issuer, trusted with one fixed key.
    fn pinned(
        name: String,
        key: StaticKey,
        metrics: Arc<Metrics>,
    ) -> Result<IssuerKeys, ConfigError> {
        let kind = kind_for(key.algorithm)
            .ok_or_else(|| invalid("issuer.signing_key_file".into(), "not an asymmetric key"))?;
        let verify = VerifyKey::public(&key.key, &[key.algorithm])
            .ok_or_else(|| invalid("issuer.signing_key_file".into(), "unusable public key"))?;
        let entry = KeyEntry {
            kid: key.kid,
            kind,
            alg: Some(key.algorithm),
            key: Arc::new(verify),
        };
        let config = IssuerTrustConfig {
            issuer: name,
            algorithms: vec![alg_name(key.algorithm).into()],
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

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    pub fn audiences(&self) -> &[String] {
        &self.config.audiences
    }

    /// `require_typ`, when set.
    pub fn required_typ(&self) -> Option<&str> {
        Some(self.config.require_typ.as_str()).filter(|t| !t.is_empty())
    }

    fn is_remote(&self) -> bool {
        !matches!(self.source, Source::Local)
    }

    /// Keys younger than `max_stale` (local keys never go stale).
    fn usable(&self) -> Option<Arc<KeySet>> {
        let set = self.keys.load_full()?;
        if self.is_remote() && set.fetched.elapsed() > self.config.max_stale {
            return None;
        }
        Some(set)
    }

    pub fn ready(&self) -> bool {
        self.usable().is_some()
    }

    fn unavailable(&self) -> VerifyError {
        let n = self.failures.load(std::sync::atomic::Ordering::Relaxed);
        VerifyError::KeysUnavailable {
            retry_after: backoff(n).as_secs().clamp(1, 60),
        }
    }

    /// The candidate keys for a token with this `alg` and `kid`, fetching
    /// (within the limits) when the kid is unknown or no keys are loaded yet.
    pub async fn keys_for(
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
                let seen = self.fetch_count.load(std::sync::atomic::Ordering::Acquire);
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
        let seen = self.fetch_count.load(std::sync::atomic::Ordering::Acquire);
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

    /// Fetches unless another fetch completed since `seen` (then its
    /// result is used): concurrent callers share one fetch.
    async fn forced_refresh(&self) -> Refresh {
        let seen = self.fetch_count.load(std::sync::atomic::Ordering::Acquire);
        {
            let Ok(mut last) = self.last_forced_fetch.lock() else {
                return Refresh::Done(Err("internal error".into()));
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

    async fn fetch_single_flight(&self, seen: u64) -> Result<usize, String> {
        let _guard = self.fetching.lock().await;
        if self.fetch_count.load(std::sync::atomic::Ordering::Acquire) != seen {
            return match self.keys.load().as_ref() {
                Some(s) => Ok(s.keys.len()),
                None => Err(self.last_error()),
            };
        }
        let result = self.fetch_now().await;
        self.fetch_count
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        result
    }

    fn last_error(&self) -> String {
        self.last_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_else(|| "keys not loaded".into())
    }

    /// One fetch (discovery if configured, then the JWKS); on success the
    /// new set replaces the old one, on failure the old one stays.
    async fn fetch_now(&self) -> Result<usize, String> {
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
                self.failures.store(0, std::sync::atomic::Ordering::Relaxed);
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
                self.failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                warn!(issuer = %self.name, "key fetch failed: {e}");
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(e.clone());
                }
                Err(e)
            }
        }
    }

    async fn fetch_keys(&self) -> Result<(Vec<KeyEntry>, Option<Duration>), String> {
        let client = self.client.as_ref().ok_or("no remote key source")?;
        let jwks_uri = match &self.source {
            Source::JwksUri(u) => u.clone(),
            Source::Discovery => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.name.trim_end_matches('/')
                );
                let (body, _) = get_capped(client, &url).await?;
                parse_discovery(&body, &self.name)?
            }
            Source::Local => return Err("no remote key source".into()),
        };
        let (body, max_age) = get_capped(client, &jwks_uri).await?;
        let keys = parse_jwks(&body)?;
        Ok((keys, max_age))
    }

    /// Background refresh: before the keys expire, and with backoff while
    /// the IdP fails. Ends when the issuer is dropped (reload).
    async fn refresh_loop(weak: Weak<IssuerKeys>) {
        loop {
            let wait = {
                let Some(this) = weak.upgrade() else { return };
                let failures = this.failures.load(std::sync::atomic::Ordering::Relaxed);
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
            let seen = this.fetch_count.load(std::sync::atomic::Ordering::Acquire);
            let _ = this.fetch_single_flight(seen).await;
            this.update_age_metric();
        }
    }

    fn update_age_metric(&self) {
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

/// Same keys: same `kid`s, types, algorithms and key material, in order.
/// The material is compared, not the `kid`: an IdP that rotates a key but
/// keeps its `kid` has changed its keys.
fn same_keys(a: &[KeyEntry], b: &[KeyEntry]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.kid == y.kid && x.kind == y.kind && x.alg == y.alg && x.key.same_material(&y.key)
        })
}

/// The keys that may verify a token: by `kid` when it has one (and the set
/// is not pinned), else every key whose type fits, a bounded number.
fn select(
    set: &KeySet,
    alg: Algorithm,
    kid: Option<&str>,
) -> Result<Option<Vec<Arc<VerifyKey>>>, VerifyError> {
    let fitting = set.keys.iter().filter(|k| k.fits(alg));
    let found: Vec<Arc<VerifyKey>> = match kid {
        Some(kid) if !set.ignore_kid => fitting
            .filter(|k| k.kid.as_deref() == Some(kid))
            .map(|k| k.key.clone())
            .collect(),
        _ => fitting
            .take(super::verify::MAX_KEYS_WITHOUT_KID)
            .map(|k| k.key.clone())
            .collect(),
    };
    if !found.is_empty() {
        return Ok(Some(found));
    }
    if kid.is_none() || set.ignore_kid {
        return Err(VerifyError::NoSuitableKey);
    }
    Ok(None)
}

fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("https") | Some("http") if uri.host().is_some() => Ok(()),
        _ => Err(format!("{url:?} is not an http(s) URL")),
    }
}

fn http_client(ca_key: &str, ca_file: &str) -> Result<reqwest::Client, ConfigError> {
    let tls = crate::tls::client_config(ca_key, ca_file)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .user_agent(concat!("jwtgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| invalid(ca_key.into(), format!("cannot build the HTTP client: {e}")))
}

/// GETs `url`, refusing non-200 answers and bodies over the cap; returns
/// the body and the `Cache-Control: max-age`.
async fn get_capped(
    client: &reqwest::Client,
    url: &str,
) -> Result<(Vec<u8>, Option<Duration>), String> {
    let mut resp = client
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!("GET {url}: status {}", resp.status()));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(format!(
            "GET {url}: response larger than {MAX_RESPONSE_BYTES} bytes"
        ));
    }
    let max_age = resp
        .headers()
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|d| {
            d.trim()
                .strip_prefix("max-age=")
                .and_then(|s| s.trim().parse::<u64>().ok())
        })
        .map(Duration::from_secs);
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(format!(
                "GET {url}: response larger than {MAX_RESPONSE_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, max_age))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// Reads the `jwks_uri` of the OIDC discovery document of `issuer`.
#[doc(hidden)]
pub fn parse_discovery(body: &[u8], issuer: &str) -> Result<String, String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|_| "discovery document is not JSON".to_string())?;
    // OIDC Discovery §4.3: the document's issuer must be exactly ours.
    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err("discovery document names another issuer".into());
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or("discovery document has no jwks_uri")?;
    check_url(uri)?;
    Ok(uri.to_string())
}

/// Parses a JWKS, key by key: a key of an unknown type, an encryption key,
/// a symmetric key or a broken key is skipped, not fatal for the set.
pub fn parse_jwks(bytes: &[u8]) -> Result<Vec<KeyEntry>, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|_| "JWKS is not JSON".to_string())?;
    let items = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("JWKS has no keys array")?;
    let mut keys = Vec::new();
    for item in items.iter().take(MAX_KEYS) {
        match parse_jwk(item) {
            Ok(k) => keys.push(k),
            Err(why) => debug!("JWKS key skipped: {why}"),
        }
    }
    if keys.is_empty() {
        return Err("JWKS has no usable signature key".into());
    }
    Ok(keys)
}

fn parse_jwk(item: &Value) -> Result<KeyEntry, String> {
    let jwk: Jwk =
        serde_json::from_value(item.clone()).map_err(|e| format!("unparsable key: {e}"))?;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Err("not a signature key (use)".into());
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops
            .iter()
            .any(|o| matches!(o, jsonwebtoken::jwk::KeyOperations::Verify))
    {
        return Err("not a verification key (key_ops)".into());
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            _ => return Err("unsupported curve".into()),
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            _ => return Err("unsupported curve".into()),
        },
        // A symmetric key from a remote set is never trusted.
        _ => return Err("not an asymmetric key".into()),
    };
    let alg = match &jwk.common.key_algorithm {
        None => None,
        Some(ka) => {
            let a = key_algorithm(*ka).ok_or("alg is not a signature algorithm")?;
            if kind_for(a) != Some(kind) {
                return Err("alg does not fit the key type".into());
            }
            Some(a)
        }
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
    let key = VerifyKey::public(&key, ASYMMETRIC).ok_or("unusable key")?;
    Ok(KeyEntry {
        kid: jwk.common.key_id.clone(),
        kind,
        alg,
        key: Arc::new(key),
    })
}

fn key_algorithm(ka: KeyAlgorithm) -> Option<Algorithm> {
    Some(match ka {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// One PEM public key (RSA, EC P-256/P-384 or Ed25519).
#[doc(hidden)]
pub fn parse_pem(pem: &[u8]) -> Result<KeyEntry, String> {
    let entry = |kind, key: DecodingKey| -> Result<KeyEntry, String> {
        let key = VerifyKey::public(&key, ASYMMETRIC).ok_or("unusable public key")?;
        Ok(KeyEntry {
            kid: None,
            kind,
            alg: None,
            key: Arc::new(key),
        })
    };
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return entry(KeyKind::Rsa, key);
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return entry(KeyKind::Ed25519, key);
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        // The curve follows from the encoded point's length.
        let kind = match key.try_get_as_bytes().map(<[u8]>::len) {
            Ok(65) => KeyKind::P256,
            Ok(97) => KeyKind::P384,
            _ => return Err("unsupported EC curve".into()),
        };
        return entry(kind, key);
    }
    Err("not a PEM public key (RSA, EC P-256/P-384 or Ed25519)".into())
}

/// All trusted issuers, by exact `iss`.
#[derive(Default)]
pub struct Issuers {
    map: HashMap<String, Arc<IssuerKeys>>,
}

impl Issuers {
    /// Builds the issuers of `configs`. An issuer whose configuration is
    /// unchanged since `previous` keeps its keys and its refresh task.
    pub fn from_config(
        configs: &[IssuerTrustConfig],
        metrics: Arc<Metrics>,
        cache: Option<Arc<TokenCache>>,
        previous: Option<&Issuers>,
    ) -> Result<Issuers, ConfigError> {
        let mut map = HashMap::new();
        for (i, cfg) in configs.iter().enumerate() {
            let reuse = previous.and_then(|p| p.map.get(&cfg.issuer)).filter(|old| {
                old.is_remote() && old.config == *cfg && same_cache(&old.cache, &cache)
            });
            let keys = match reuse {
                Some(old) => old.clone(),
                None => Arc::new(IssuerKeys::new(i, cfg, metrics.clone(), cache.clone())?),
            };
            map.insert(cfg.issuer.clone(), keys);
        }
        Ok(Issuers { map })
    }

    /// Trusts the gate's own signing key for tokens whose `iss` is `issuer`.
    pub fn add_pinned(
        &mut self,
        issuer: String,
        key: StaticKey,
        metrics: Arc<Metrics>,
    ) -> Result<(), ConfigError> {
        if self.map.contains_key(&issuer) {
            return Ok(());
        }
        let keys = IssuerKeys::pinned(issuer.clone(), key, metrics)?;
        self.map.insert(issuer, Arc::new(keys));
        Ok(())
    }

    pub fn get(&self, iss: &str) -> Option<&Arc<IssuerKeys>> {
        self.map.get(iss)
    }

    /// Starts the background refresh of every remote issuer that has none yet.
    pub fn spawn_refreshers(&self) {
        for keys in self.map.values() {
            if keys.is_remote()
                && !keys
                    .refresher_started
                    .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                tokio::spawn(IssuerKeys::refresh_loop(Arc::downgrade(keys)));
            }
        }
    }

    /// Each issuer and whether it has usable keys.
    pub fn readiness(&self) -> Vec<(String, bool)> {
        let mut v: Vec<_> = self
            .map
            .values()
            .map(|k| (k.name.clone(), k.ready()))
            .collect();
        v.sort();
        v
    }

    /// Refetches every remote issuer's keys now; the number of keys or the error.
    /// `POST /keys/refresh`: refetches every remote issuer's keys now, at
    /// most once per issuer per `refetch_interval` (a loop on the endpoint
    /// must not turn the gate into a flood against the IdP); concurrent
    /// calls share one fetch.
    pub async fn refresh_all(&self) -> Vec<(String, Refresh)> {
        let mut out = Vec::new();
        for keys in self.map.values() {
            let r = if keys.is_remote() {
                keys.forced_refresh().await
            } else {
                Refresh::Done(Ok(keys.keys.load().as_ref().map_or(0, |s| s.keys.len())))
            };
            keys.update_age_metric();
            out.push((keys.name.clone(), r));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn update_age_metrics(&self) {
        for k in self.map.values() {
            k.update_age_metric();
        }
    }
}

/// One issuer's outcome of `POST /keys/refresh`.
#[derive(Debug)]
pub enum Refresh {
    /// Fetched (or, for a file or pinned key, nothing to fetch): the number
    /// of keys, or why the fetch failed.
    Done(Result<usize, String>),
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
    fn jwks_keys_are_parsed_one_by_one() {
        let jwks = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"},
            {"kty": "RSA", "use": "enc", "kid": "enc", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "kid": "ec", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "XYZ", "kid": "weird"},
            {"kty": "EC", "crv": "P-256", "kid": "bad", "x": "AAAA", "y": "AAAA"}
        ]});
        let keys = parse_jwks(jwks.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid.clone().unwrap()).collect();
        assert!(kids.contains(&"ec".to_string()), "{kids:?}");
        assert!(!kids.contains(&"sym".to_string()));
        assert!(!kids.contains(&"enc".to_string()));
        assert!(!kids.contains(&"weird".to_string()));
        assert!(parse_jwks(br#"{"keys": []}"#).is_err());
        assert!(parse_jwks(b"garbage").is_err());
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), BACKOFF_MIN);
        assert_eq!(backoff(2), BACKOFF_MIN * 2);
        assert_eq!(backoff(30), BACKOFF_MAX);
    }
}
