//! Environment seeding: the seed-compatible names of the systems jwtgate
//! replaces (`TOKENS_SECRET`, `TOKENS_USERS`, `STATUS_TOKEN`,
//! `AMPHO_SECURITY_KEY`, ...) and the typing of `JWTGATE_*` values.

use figment::Figment;
use figment::providers::Serialized;

use super::{ConfigError, Sources};

/// `JWTGATE_*` names that are process settings, not configuration keys.
pub(super) const NON_CONFIG_ENV: &[&str] = &["JWTGATE_CONFIG", "JWTGATE_LOG_FORMAT"];

/// One environment variable as a figment source, so that errors about its
/// value name the variable rather than a line of this file.
pub(super) struct EnvVar {
    var: String,
    key: String,
    value: serde_json::Value,
}

impl figment::Provider for EnvVar {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(format!("environment variable {}", self.var))
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Serialized::default(&self.key, &self.value).data()
    }
}

pub(super) fn env_source(var: &str, key: &str, value: serde_json::Value) -> EnvVar {
    EnvVar {
        var: var.into(),
        key: key.into(),
        value,
    }
}

/// The seed-compatible names of Brevia and Ampho deployments.
pub(super) fn seed_env(sources: &Sources) -> Result<Figment, ConfigError> {
    const PLAIN: &[(&str, &str)] = &[
        ("TOKENS_SECRET", "auth.secret.value"),
        ("STATUS_TOKEN", "status.token"),
        ("AMPHO_SECURITY_KEY", "auth.secret.jwk"),
        ("AMPHO_SECURITY_REST_PREFIX", "issuer.rest_prefix"),
    ];
    let mut fig = Figment::new();
    for (var, key) in PLAIN {
        if let Some(v) = sources.env_var(var).filter(|v| !v.is_empty()) {
            fig = fig.merge(env_source(var, key, v.into()));
        }
    }
    if let Some(v) = sources.env_var("TOKENS_USERS").filter(|v| !v.is_empty()) {
        fig = fig.merge(env_source(
            "TOKENS_USERS",
            "auth.allowed_users",
            split_list(v),
        ));
    }
    if let Some(v) = sources
        .env_var("AMPHO_SECURITY_TOKEN_TTL")
        .filter(|v| !v.is_empty())
    {
        let secs: u64 = v.trim().parse().map_err(|_| ConfigError::Invalid {
            key: "issuer.token_ttl".into(),
            origin: "environment variable AMPHO_SECURITY_TOKEN_TTL".into(),
            message: format!("{v:?} is not a number of seconds"),
        })?;
        fig = fig.merge(env_source(
            "AMPHO_SECURITY_TOKEN_TTL",
            "issuer.token_ttl",
            format!("{secs}s").into(),
        ));
    }
    Ok(fig)
}

/// `a, b` or `[a, b]` (or a JSON array) as a list of strings.
fn split_list(v: &str) -> serde_json::Value {
    let t = v.trim();
    if let Ok(list @ serde_json::Value::Array(_)) = serde_json::from_str(t) {
        return list;
    }
    let inner = t
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(t);
    serde_json::Value::Array(
        inner
            .split(',')
            .map(|s| s.trim().trim_matches('"'))
            .filter(|s| !s.is_empty())
            .map(|s| serde_json::Value::String(s.into()))
            .collect(),
    )
}

/// An environment value typed after the default at the same key: lists
/// split on commas, numbers and booleans parsed, everything else (secrets,
/// durations, addresses) kept as the string it is. A value that does not
/// parse stays a string, so the error names the key.
pub(super) fn typed_env_value(
    defaults: &serde_json::Value,
    key: &str,
    v: &str,
) -> serde_json::Value {
    use serde_json::Value;
    let default = key.split('.').try_fold(defaults, |cur, part| cur.get(part));
    let t = v.trim();
    match default {
        Some(Value::Array(_)) => split_list(v),
        Some(Value::Number(_)) => t
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(v.into())),
        Some(Value::Bool(_)) => match t {
            "true" | "1" | "yes" | "on" => Value::Bool(true),
            "false" | "0" | "no" | "off" => Value::Bool(false),
            _ => Value::String(v.into()),
        },
        Some(Value::Object(_)) => {
            serde_json::from_str(t).unwrap_or_else(|_| Value::String(v.into()))
        }
        _ => Value::String(v.into()),
    }
}
