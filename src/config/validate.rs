//! Validation: the rules across keys and every bounded size and duration,
//! checked after loading; each error names its key and its source, and all
//! of them are reported at once.

use std::ops::RangeInclusive;
use std::time::Duration;

use figment::Figment;

use super::types::{self, UpstreamUrl};
use super::{Config, ConfigError, Sources, UpstreamProtocol, store};

const MIB: u64 = 1024 * 1024;

impl Config {
    /// Checks what types alone cannot; each error names the key and its source.
    /// Every size and count with its accepted range: beyond them a value is
    /// a mistake (and some would overflow: hyper takes header sizes as u32,
    /// tokio's semaphore panics above `MAX_PERMITS`).
    fn bounded_sizes(&self) -> Vec<(String, u64, RangeInclusive<u64>)> {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        vec![
            ("worker_threads".into(), n(self.worker_threads), 0..=1024),
            (
                "limits.max_header_bytes".into(),
                n(self.limits.max_header_bytes),
                8192..=16 * MIB,
            ),
            (
                "limits.max_connections".into(),
                n(self.limits.max_connections),
                1..=1_000_000,
            ),
            (
                "upstream.max_connections".into(),
                n(self.upstream.max_connections),
                0..=1_000_000,
            ),
            (
                "auth.token_cache".into(),
                self.auth.token_cache,
                0..=100_000_000,
            ),
            (
                "issuer.max_body_bytes".into(),
                n(self.issuer.max_body_bytes),
                256..=MIB,
            ),
            (
                "issuer.max_failures".into(),
                u64::from(self.issuer.max_failures),
                1..=1_000_000,
            ),
            (
                "issuer.max_failures_per_address".into(),
                u64::from(self.issuer.max_failures_per_address),
                1..=1_000_000,
            ),
        ]
    }

    /// Every duration with its accepted range. A time out of zero would
    /// refuse everything; years where seconds are meant are typos, and some
    /// would overflow timers (moka panics above 1000 years).
    fn bounded_durations(&self) -> Vec<(String, Duration, RangeInclusive<Duration>)> {
        const MS: Duration = Duration::from_millis(1);
        const HOUR: Duration = Duration::from_secs(3600);
        const DAY: Duration = Duration::from_secs(24 * 3600);
        // humantime reads "1y" as 365.25 days: "1y" must be within "up to 1 year".
        const YEAR: Duration = Duration::from_secs(31_557_600);
        let mut v = vec![
            (
                "drain_timeout".to_owned(),
                self.drain_timeout,
                Duration::ZERO..=DAY,
            ),
            (
                "limits.header_read_timeout".into(),
                self.limits.header_read_timeout,
                MS..=HOUR,
            ),
            (
                "limits.idle_timeout".into(),
                self.limits.idle_timeout,
                MS..=DAY,
            ),
            (
                "upstream.connect_timeout".into(),
                self.upstream.connect_timeout,
                MS..=HOUR,
            ),
            (
                "upstream.response_timeout".into(),
                self.upstream.response_timeout,
                MS..=DAY,
            ),
            (
                "upstream.queue_timeout".into(),
                self.upstream.queue_timeout,
                Duration::ZERO..=HOUR,
            ),
            ("auth.leeway".into(), self.auth.leeway, Duration::ZERO..=DAY),
            (
                "issuer.token_ttl".into(),
                self.issuer.token_ttl,
                Duration::from_secs(1)..=YEAR,
            ),
            (
                "issuer.max_session".into(),
                self.issuer.max_session,
                Duration::from_secs(1)..=10 * YEAR,
            ),
            (
                "issuer.failure_window".into(),
                self.issuer.failure_window,
                Duration::from_secs(1)..=YEAR,
            ),
        ];
        for (i, iss) in self.auth.issuers.iter().enumerate() {
            let key = |k: &str| format!("auth.issuers[{i}].{k}");
            v.push((key("cache_ttl"), iss.cache_ttl, Duration::ZERO..=YEAR));
            v.push((
                key("refetch_interval"),
                iss.refetch_interval,
                Duration::ZERO..=YEAR,
            ));
            v.push((key("max_stale"), iss.max_stale, Duration::ZERO..=10 * YEAR));
        }
        v
    }

    pub(super) fn validate(&self, fig: &Figment, sources: &Sources) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| {
            let origin = fig
                .find_metadata(key)
                .map(|m| match &m.source {
                    Some(src) => src.to_string(),
                    None => m.name.to_string(),
                })
                .unwrap_or_else(|| sources.file_label());
            ConfigError::Invalid {
                key: key.to_string(),
                origin,
                message,
            }
        };
        // Every error at once: an operator fixing a file should not have to
        // run the check again for each mistake.
        let mut errors = Vec::new();
        if let Err((k, m)) = store::validate(&self.store) {
            errors.push(invalid(k, m));
        }
        for (k, m) in super::login::validate(self) {
            errors.push(invalid(&k, m));
        }
        // A protocol the URL cannot carry is a mistake in the file, not
        // something to discover on the first request.
        let unix = matches!(self.upstream.url, UpstreamUrl::Unix(_));
        match (self.upstream.protocol, self.upstream.url.scheme()) {
            (UpstreamProtocol::H2, _) if unix => errors.push(invalid(
                "upstream.protocol",
                "\"h2\" is HTTP/2 over TLS, which a unix: upstream does not speak; use \"h2c\""
                    .into(),
            )),
            (UpstreamProtocol::H2, Some("http")) => errors.push(invalid(
                "upstream.protocol",
                "\"h2\" needs an https:// upstream.url; cleartext HTTP/2 is \"h2c\"".into(),
            )),
            (UpstreamProtocol::H2c, Some("https")) => errors.push(invalid(
                "upstream.protocol",
                "\"h2c\" is cleartext HTTP/2 and needs an http:// upstream.url; over TLS use \"h2\""
                    .into(),
            )),
            _ => {}
        }
        if self.tls.cert_file.is_none() != self.tls.key_file.is_none() {
            errors.push(invalid(
                "tls.cert_file",
                "tls.cert_file and tls.key_file must be set together".into(),
            ));
        }
        for (key, value, range) in self.bounded_sizes() {
            if !range.contains(&value) {
                errors.push(invalid(
                    &key,
                    format!(
                        "{value} is out of range: must be from {} to {}",
                        range.start(),
                        range.end()
                    ),
                ));
            }
        }
        for (key, value, range) in self.bounded_durations() {
            if !range.contains(&value) {
                errors.push(invalid(
                    &key,
                    format!(
                        "{} is out of range: must be from {} to {}",
                        humantime::format_duration(value),
                        humantime::format_duration(*range.start()),
                        humantime::format_duration(*range.end())
                    ),
                ));
            }
        }
        let s = &self.auth.secret;
        let set = [!s.value.is_empty(), s.file.is_some(), !s.jwk.is_empty()]
            .iter()
            .filter(|b| **b)
            .count();
        if set > 1 {
            errors.push(invalid(
                "auth.secret",
                "set exactly one of value, file and jwk".into(),
            ));
        }
        for (i, alg) in s.algorithms.iter().enumerate() {
            if !alg.is_hmac() {
                errors.push(invalid(
                    &format!("auth.secret.algorithms[{i}]"),
                    format!("\"{alg}\" is not one of HS256, HS384, HS512"),
                ));
            }
        }
        if s.algorithms.is_empty() {
            errors.push(invalid(
                "auth.secret.algorithms",
                "must not be empty".into(),
            ));
        }
        if self.auth.username_claims.is_empty() {
            errors.push(invalid("auth.username_claims", "must not be empty".into()));
        }
        if self.auth.token_from.is_empty() {
            errors.push(invalid("auth.token_from", "must not be empty".into()));
        }
        for (i, iss) in self.auth.issuers.iter().enumerate() {
            let key = |k: &str| format!("auth.issuers[{i}].{k}");
            if iss.issuer.is_empty() {
                errors.push(invalid(&key("issuer"), "must be set".into()));
            }
            let sources_set = [
                iss.jwks_file.is_some(),
                iss.public_key_file.is_some(),
                !iss.jwks_uri.is_empty(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if sources_set > 1 {
                errors.push(invalid(
                    &key("jwks_uri"),
                    "set at most one of jwks_uri, jwks_file and public_key_file".into(),
                ));
            }
            if iss.algorithms.is_empty() {
                errors.push(invalid(&key("algorithms"), "must not be empty".into()));
            }
            for alg in &iss.algorithms {
                if !alg.is_supported_asymmetric() {
                    errors.push(invalid(
                        &key("algorithms"),
                        format!("\"{alg}\" is not an asymmetric algorithm jwtgate supports"),
                    ));
                }
            }
            // Keys fetched over plain http can be swapped in transit: only
            // loopback (a local sidecar IdP, tests) or an explicit opt-in.
            if !iss.allow_insecure_http && iss.jwks_file.is_none() && iss.public_key_file.is_none()
            {
                let (which, url) = if iss.jwks_uri.is_empty() {
                    ("issuer", iss.issuer.as_str())
                } else {
                    ("jwks_uri", iss.jwks_uri.as_str())
                };
                if insecure_remote_http(url) {
                    errors.push(invalid(
                        &key(which),
                        format!(
                            "{url:?} is plain http on a host that is not loopback: keys fetched \
                             from it could be replaced in transit; use https, or set \
                             auth.issuers[{i}].allow_insecure_http = true"
                        ),
                    ));
                }
            }
            if self.auth.issuers[..i]
                .iter()
                .any(|other| other.issuer == iss.issuer)
            {
                errors.push(invalid(&key("issuer"), "listed twice".into()));
            }
            if !s.issuer.is_empty() && s.issuer == iss.issuer {
                errors.push(invalid(
                    &key("issuer"),
                    "equals auth.secret.issuer: an issuer is either HMAC or asymmetric".into(),
                ));
            }
        }
        if !self.status.path.starts_with('/') {
            errors.push(invalid("status.path", "must start with /".into()));
        } else if let Err(e) = crate::uri::normalize_config_path(&self.status.path) {
            errors.push(invalid(
                "status.path",
                format!("{e}: no request could ever match it"),
            ));
        }
        for (i, r) in self.routes.iter().enumerate() {
            let key = |k: &str| format!("routes[{i}].{k}");
            if r.prefix.is_empty() == r.path.is_empty() {
                errors.push(invalid(
                    &key("prefix"),
                    "set exactly one of prefix and path".into(),
                ));
                continue;
            }
            let p = if r.prefix.is_empty() {
                &r.path
            } else {
                &r.prefix
            };
            let which = if r.prefix.is_empty() {
                "path"
            } else {
                "prefix"
            };
            if !p.starts_with('/') {
                errors.push(invalid(&key(which), "must start with /".into()));
            } else if let Err(e) = crate::uri::normalize_config_path(p) {
                // Routes are compared in normalised form; one that cannot be
                // normalised (a `;`, an encoded `/`) could never match a
                // request and would silently not guard what it names.
                errors.push(invalid(
                    &key(which),
                    format!("{p:?}: {e}; write the path as requests reach the gate"),
                ));
            }
        }
        let identity = self.forward.identity_headers();
        for (i, h) in self.forward.pass_headers.iter().enumerate() {
            let canon = types::canonical_header(h.as_str());
            if identity
                .iter()
                .any(|id| types::canonical_header(id.as_str()) == canon)
            {
                errors.push(invalid(
                    &format!("forward.pass_headers[{i}]"),
                    format!(
                        "{:?} is an identity header: a client can never supply it",
                        h.as_str()
                    ),
                ));
            }
        }
        for (i, u) in self.forward.upgrades.iter().enumerate() {
            let key = format!("forward.upgrades[{i}]");
            if u.is_empty()
                || !u
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b))
            {
                errors.push(invalid(
                    &key,
                    format!("{u:?} is not an upgrade protocol token"),
                ));
            }
            // An h2c upgrade hands the rest of the connection to HTTP/2
            // streams the gate never sees: a bypass, never a setting.
            if u.eq_ignore_ascii_case("h2c") || u.to_ascii_lowercase().starts_with("h2c/") {
                errors.push(invalid(
                    &key,
                    "h2c cannot be tunnelled: streams after the upgrade would bypass the gate"
                        .into(),
                ));
            }
        }
        if self.issuer.enabled {
            if self.issuer.users_file.is_none() {
                errors.push(invalid(
                    "issuer.users_file",
                    "must be set when issuer.enabled".into(),
                ));
            }
            if !self.issuer.token_path.starts_with('/') {
                errors.push(invalid("issuer.token_path", "must start with /".into()));
            }
            if !self.issuer.rest_prefix.starts_with('/') {
                errors.push(invalid("issuer.rest_prefix", "must start with /".into()));
            }
            if self.issuer.signing_key_file.is_none() && !s.is_configured() {
                errors.push(invalid(
                    "issuer.signing_key_file",
                    "the issuer needs a signing key: set issuer.signing_key_file or auth.secret"
                        .into(),
                ));
            }
        }
        let issuer_signs = self.issuer.enabled && self.issuer.signing_key_file.is_some();
        // The built-in sign-in page is a credential of its own: sessions.
        let builtin_login = self
            .login
            .as_ref()
            .is_some_and(|l| l.provider == super::login::LoginProvider::Builtin);
        if !s.is_configured() && self.auth.issuers.is_empty() && !issuer_signs && !builtin_login {
            errors.push(ConfigError::Invalid {
                key: "auth".into(),
                origin: sources.file_label(),
                message: "no key source is configured: set auth.secret (or TOKENS_SECRET / \
                          AMPHO_SECURITY_KEY) or at least one [[auth.issuers]]; jwtgate never \
                          runs open"
                    .into(),
            });
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(ConfigError::Many(errors)),
        }
    }
}

/// An `http://` URL whose host is not loopback (`localhost`, 127/8, ::1).
fn insecure_remote_http(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    if uri.scheme_str() != Some("http") {
        return false;
    }
    !loopback_host(uri.host().unwrap_or(""))
}

/// `localhost`, 127/8 or ::1 (brackets allowed around an IPv6 address).
pub(super) fn loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
