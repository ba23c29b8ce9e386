//! Loading: the layered sources (defaults < file < seed-compatible names <
//! `JWTGATE_*` < flags), extraction into typed values, and the repair loop
//! that reports every value that does not parse at once.

use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml, Yaml};

use super::env::{NON_CONFIG_ENV, env_source, seed_env, typed_env_value};
use super::{Config, ConfigError, suggest};

/// Command-line values that override every other source.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub upstream: Option<String>,
}

/// Where the configuration comes from: an optional file plus a snapshot of
/// environment variables (tests pass their own instead of the process's).
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub overrides: Overrides,
}

impl Sources {
    /// The process's real environment; the file from `--config` or `JWTGATE_CONFIG`.
    pub fn from_process(file: Option<PathBuf>, overrides: Overrides) -> Self {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let file = file.or_else(|| {
            env.iter()
                .find(|(k, v)| k == "JWTGATE_CONFIG" && !v.is_empty())
                .map(|(_, v)| PathBuf::from(v))
        });
        Sources {
            file,
            env,
            overrides,
        }
    }

    pub(super) fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Human label of the file for error messages.
    pub fn file_label(&self) -> String {
        match &self.file {
            Some(p) => p.display().to_string(),
            None => "defaults and environment".into(),
        }
    }
}

impl Config {
    /// Builds the layered figment from all sources.
    pub fn figment(sources: &Sources) -> Result<Figment, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &sources.file {
            // figment silently ignores a missing file: check it ourselves.
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path.clone()));
            }
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            fig = match ext.to_ascii_lowercase().as_str() {
                "toml" => fig.merge(Toml::file_exact(path)),
                "yaml" | "yml" => fig.merge(Yaml::file_exact(path)),
                _ => return Err(ConfigError::UnknownFormat(path.clone())),
            };
        }
        fig = fig.merge(seed_env(sources)?);
        // Rebuild the JWTGATE_ variables from the snapshot, so tests need not
        // touch the process environment.
        let vars: Vec<(String, String)> = sources
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("JWTGATE_") && !NON_CONFIG_ENV.contains(&k.as_str()))
            .cloned()
            .collect();
        let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
        for (k, v) in vars {
            let key = k["JWTGATE_".len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            let value = typed_env_value(&defaults, &key, &v);
            fig = fig.merge(env_source(&k, &key, value));
        }
        let o = &sources.overrides;
        if let Some(v) = &o.listen {
            fig = fig.merge(Serialized::default("listen", v));
        }
        if let Some(v) = &o.admin_listen {
            fig = fig.merge(Serialized::default("admin_listen", v));
        }
        if let Some(v) = &o.upstream {
            fig = fig.merge(Serialized::default("upstream.url", v));
        }
        Ok(fig)
    }

    /// Loads and validates the configuration.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let fig = Self::figment(sources)?;
        Self::extract_validated(fig, sources)
    }

    /// Loads and validates a configuration given as text in `format`
    /// (`toml`, `yaml` or `yml`) over the defaults, without the environment.
    #[doc(hidden)]
    pub fn from_str_format(text: &str, format: &str) -> Result<Config, ConfigError> {
        let fig = Figment::from(Serialized::defaults(Config::default()));
        let fig = match format {
            "toml" => fig.merge(Toml::string(text)),
            "yaml" | "yml" => fig.merge(Yaml::string(text)),
            _ => return Err(ConfigError::UnknownFormat(PathBuf::from(format))),
        };
        Self::extract_validated(fig, &Sources::default())
    }

    fn extract_validated(fig: Figment, sources: &Sources) -> Result<Config, ConfigError> {
        // Fast path: a configuration that reads is only validated.
        let first = match fig.extract::<Config>() {
            Ok(c) => {
                c.validate(&fig, sources)?;
                return Ok(c);
            }
            Err(e) => e,
        };
        // serde stops at the first value that does not parse. To report
        // every error at once, the merged values are taken as a tree; each
        // bad value is replaced by its default (or its nearest enclosing
        // default), each unknown key removed, and the reading repeated. The
        // rules across keys are then checked on what could be read, and all
        // the errors come back together, each naming the source of the key
        // in the original layers.
        let describe = |err: &figment::Error| {
            // A list entry has no metadata of its own: its list's counts.
            let origin = (1..=err.path.len()).rev().find_map(|n| {
                fig.find_metadata(&err.path[..n].join("."))
                    .map(|m| match &m.source {
                        Some(src) => src.to_string(),
                        None => m.name.to_string(),
                    })
            });
            ConfigError::Parse(describe_figment_error(err, origin, sources))
        };
        let Ok(mut tree) = fig.extract::<serde_json::Value>() else {
            return Err(ConfigError::Parse(
                first
                    .into_iter()
                    .map(|e| describe(&e).to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        };
        let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
        let mut errors: Vec<ConfigError> = Vec::new();
        let mut next = Some(first);
        let mut config = None;
        for _ in 0..MAX_REPORTED_ERRORS {
            let Some(e) = next.take() else { break };
            let mut progressed = false;
            for err in e {
                errors.push(describe(&err));
                progressed |= match &err.kind {
                    figment::error::Kind::UnknownField(field, _) => {
                        let mut path = err.path.clone();
                        if path.last() != Some(field) {
                            path.push(field.clone());
                        }
                        remove_at(&mut tree, &path)
                    }
                    _ => patch_with_default(&mut tree, &defaults, &err.path),
                };
            }
            if !progressed {
                break;
            }
            match Figment::from(Serialized::defaults(&tree)).extract::<Config>() {
                Ok(c) => config = Some(c),
                Err(e) => next = Some(e),
            }
        }
        if let Some(c) = &config
            && let Err(e) = c.validate(&fig, sources)
        {
            match e {
                ConfigError::Many(list) => errors.extend(list),
                e => errors.push(e),
            }
        }
        match errors.len() {
            1 => Err(errors.remove(0)),
            _ => Err(ConfigError::Many(errors)),
        }
    }
}

/// Type errors reported from one configuration before giving up.
const MAX_REPORTED_ERRORS: usize = 32;

/// Replaces the value at `path` in `tree` by the built-in default there,
/// or the nearest enclosing key's default (a bad entry of a list replaces
/// the whole list). False when there is nothing to replace.
fn patch_with_default(
    tree: &mut serde_json::Value,
    defaults: &serde_json::Value,
    path: &[String],
) -> bool {
    use serde_json::Value;
    for n in (1..=path.len()).rev() {
        let p = &path[..n];
        let default = p.iter().try_fold(defaults, |cur, part| match cur {
            Value::Object(m) => m.get(part),
            _ => None,
        });
        if let Some(d) = default
            && let Some(slot) = slot_at(tree, p)
        {
            *slot = d.clone();
            return true;
        }
    }
    false
}

/// The value at `path` (object keys and list indices) in `tree`.
fn slot_at<'a>(
    tree: &'a mut serde_json::Value,
    path: &[String],
) -> Option<&'a mut serde_json::Value> {
    path.iter().try_fold(tree, |cur, part| match cur {
        serde_json::Value::Object(m) => m.get_mut(part),
        serde_json::Value::Array(a) => a.get_mut(part.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Removes the key at `path` from `tree`; false when it is not there.
fn remove_at(tree: &mut serde_json::Value, path: &[String]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    match slot_at(tree, parent) {
        Some(serde_json::Value::Object(m)) => m.remove(last).is_some(),
        _ => false,
    }
}

/// Keys whose values are secrets: never shown in an error.
const SECRET_KEYS: &[&str] = &[
    "auth.secret.value",
    "auth.secret.jwk",
    "status.token",
    "admin.token",
];

/// `origin`: where the key's value came from, when the error itself does
/// not know (it was found in a re-read of the merged values).
fn describe_figment_error(
    err: &figment::Error,
    origin: Option<String>,
    sources: &Sources,
) -> String {
    let key = if err.path.is_empty() {
        String::new()
    } else {
        err.path.join(".")
    };
    let source = origin
        .or_else(|| {
            err.metadata.as_ref().map(|m| match &m.source {
                Some(src) => src.to_string(),
                None => m.name.to_string(),
            })
        })
        .unwrap_or_else(|| sources.file_label());
    let mut msg = err.kind.to_string();
    // A secret of the wrong type (`value = 12345`) must not be echoed by
    // serde's "found ..." message.
    if SECRET_KEYS.contains(&key.as_str()) {
        msg = "expected a string (the value is not shown: it is a secret)".into();
    }
    // Name the offending key itself for unknown fields.
    if let figment::error::Kind::UnknownField(field, expected) = &err.kind {
        // figment's path may or may not end with the unknown field already.
        let full = if key.is_empty() {
            field.clone()
        } else if err.path.last() == Some(field) {
            key.clone()
        } else {
            format!("{key}.{field}")
        };
        msg = format!("unknown key `{full}`");
        let parent = match err.path.last() {
            Some(last) if last == field => &err.path[..err.path.len() - 1],
            _ => &err.path[..],
        };
        if let Some(hint) = suggest::suggest(parent, field, expected) {
            msg.push_str(&format!(" (did you mean `{hint}`?)"));
        }
        return format!("{msg} in {source}");
    }
    if !key.is_empty() {
        msg = format!("invalid `{key}`: {msg}");
    }
    format!("{msg} (from {source})")
}
