//! Configuration parsing (TOML and YAML) and building the state from it.
//!
//! Input: byte 0 bit 0 clear: TOML, set: YAML; byte 0 bit 1 set: the state
//! is built with every bounded duration and size at the top of its accepted
//! range ("stretched"); the rest is the file's text.
//!
//! Every duration and size is bounded at load (out of range is a
//! configuration error naming the key), because absurd values panicked at
//! start (moka's "time_to_live is longer than 1000 years"). So the fuzzer
//! can no longer reach a panic with `refetch_interval = "1001y"`; what it
//! checks instead is both halves of that contract: a loaded configuration
//! holds only values in range, and the largest values in range build.
//!
//! Invariants: loading never panics; a configuration that loads has every
//! bounded value within its documented range and builds its state without
//! panicking, also stretched (when it names no file: files are not read
//! here, so that an input cannot make the fuzzer read /dev/zero); every
//! route path or prefix it accepts can be normalised, and a request for
//! that normal form selects a route (a route that can never match would
//! silently not apply its restrictions).

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use jwtgate::config::Config;
use jwtgate::observe::metrics::Metrics;
use jwtgate::proxy::policy::Policy;
use jwtgate::proxy::state::State;
use jwtgate::uri::normalize_config_path;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
// As jwtgate's bounds (`Config::bounded_durations`): humantime reads "1y" as
// 365.25 days, and "1y" is within "up to 1 year".
const YEAR: Duration = Duration::from_secs(31_557_600);
const MIB: usize = 1024 * 1024;

fn names_a_file(c: &Config) -> bool {
    c.tls.cert_file.is_some()
        || c.tls.key_file.is_some()
        || c.upstream.ca_file.is_some()
        || c.auth.secret.file.is_some()
        || c.issuer.users_file.is_some()
        || c.issuer.signing_key_file.is_some()
        || c.auth
            .issuers
            .iter()
            .any(|i| i.jwks_file.is_some() || i.public_key_file.is_some() || i.ca_file.is_some())
}

/// The bounded durations (README, `Config::validate`): name, value, range.
fn durations(c: &Config) -> Vec<(String, Duration, RangeInclusive<Duration>)> {
    let mut v = vec![
        (
            "drain_timeout".into(),
            c.drain_timeout,
            Duration::ZERO..=DAY,
        ),
        (
            "limits.header_read_timeout".into(),
            c.limits.header_read_timeout,
            MS..=HOUR,
        ),
        (
            "limits.idle_timeout".into(),
            c.limits.idle_timeout,
            MS..=DAY,
        ),
        (
            "upstream.connect_timeout".into(),
            c.upstream.connect_timeout,
            MS..=HOUR,
        ),
        (
            "upstream.response_timeout".into(),
            c.upstream.response_timeout,
            MS..=DAY,
        ),
        ("auth.leeway".into(), c.auth.leeway, Duration::ZERO..=DAY),
        ("issuer.token_ttl".into(), c.issuer.token_ttl, SEC..=YEAR),
        (
            "issuer.max_session".into(),
            c.issuer.max_session,
            SEC..=10 * YEAR,
        ),
        (
            "issuer.failure_window".into(),
            c.issuer.failure_window,
            SEC..=YEAR,
        ),
    ];
    for (i, iss) in c.auth.issuers.iter().enumerate() {
        v.push((
            format!("auth.issuers[{i}].cache_ttl"),
            iss.cache_ttl,
            Duration::ZERO..=YEAR,
        ));
        v.push((
            format!("auth.issuers[{i}].refetch_interval"),
            iss.refetch_interval,
            Duration::ZERO..=YEAR,
        ));
        v.push((
            format!("auth.issuers[{i}].max_stale"),
            iss.max_stale,
            Duration::ZERO..=10 * YEAR,
        ));
    }
    v
}

/// The bounded sizes and counts: name, value, range.
fn sizes(c: &Config) -> Vec<(&'static str, u64, RangeInclusive<u64>)> {
    let n = |v: usize| v as u64;
    vec![
        ("worker_threads", n(c.worker_threads), 0..=1024),
        (
            "limits.max_header_bytes",
            n(c.limits.max_header_bytes),
            8192..=16 * MIB as u64,
        ),
        (
            "limits.max_connections",
            n(c.limits.max_connections),
            1..=1_000_000,
        ),
        ("auth.token_cache", c.auth.token_cache, 0..=100_000_000),
        (
            "issuer.max_body_bytes",
            n(c.issuer.max_body_bytes),
            256..=MIB as u64,
        ),
        (
            "issuer.max_failures",
            u64::from(c.issuer.max_failures),
            1..=1_000_000,
        ),
        (
            "issuer.max_failures_per_address",
            u64::from(c.issuer.max_failures_per_address),
            1..=1_000_000,
        ),
    ]
}

/// Every bounded value at the top of its accepted range.
fn stretch(c: &mut Config) {
    c.drain_timeout = DAY;
    c.limits.header_read_timeout = HOUR;
    c.limits.idle_timeout = DAY;
    c.upstream.connect_timeout = HOUR;
    c.upstream.response_timeout = DAY;
    c.auth.leeway = DAY;
    c.issuer.token_ttl = YEAR;
    c.issuer.max_session = 10 * YEAR;
    c.issuer.failure_window = YEAR;
    for iss in &mut c.auth.issuers {
        iss.cache_ttl = YEAR;
        iss.refetch_interval = YEAR;
        iss.max_stale = 10 * YEAR;
    }
    c.worker_threads = 1024;
    c.limits.max_header_bytes = 16 * MIB;
    c.limits.max_connections = 1_000_000;
    c.auth.token_cache = 100_000_000;
    c.issuer.max_body_bytes = MIB;
    c.issuer.max_failures = 1_000_000;
    c.issuer.max_failures_per_address = 1_000_000;
    // Still in range: what validation would accept.
    for (k, v, r) in durations(c) {
        assert!(r.contains(&v), "stretch put {k} out of range");
    }
    for (k, v, r) in sizes(c) {
        assert!(r.contains(&v), "stretch put {k} out of range");
    }
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let format = if mode & 1 == 0 { "toml" } else { "yaml" };
    let Ok(mut config) = Config::from_str_format(text, format) else {
        return;
    };
    // Out of range is refused at load, never carried to the timers.
    for (k, v, r) in durations(&config) {
        assert!(r.contains(&v), "{k} = {v:?} accepted, out of {r:?}");
    }
    for (k, v, r) in sizes(&config) {
        assert!(r.contains(&v), "{k} = {v} accepted, out of {r:?}");
    }
    let policy = Policy::from_config(&config);
    for r in &config.routes {
        let p = if r.path.is_empty() {
            &r.prefix
        } else {
            &r.path
        };
        let n = normalize_config_path(p);
        assert!(
            n.is_ok(),
            "route {p:?} accepted but cannot be normalised: {n:?}"
        );
        if let Ok(n) = n
            && r.methods.is_empty()
        {
            assert!(
                policy.route(&http::Method::GET, &n).is_some(),
                "route {p:?} (normal form {n:?}) matches no request"
            );
        }
    }
    if names_a_file(&config) {
        return;
    }
    if mode & 2 != 0 {
        stretch(&mut config);
    }
    jwtgate::net::tls::install_crypto_provider();
    let _rt = crate::runtime().enter();
    let _ = State::build(config, Arc::new(Metrics::new()), Default::default(), None);
}
