//! One configuration reload, whatever asked for it (SIGHUP or the file
//! watch): read every source again and swap the new state in, or refuse a
//! bad configuration and keep serving the old one. Both triggers call
//! `reload`, so they cannot drift apart.

use tracing::{error, info};

use super::{Running, StartError};
use crate::config::{Config, Sources};
use crate::observe::metrics::ReloadLabels;

/// What asked for the reload; the `trigger` label of `jwtgate_config_reloads`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    Watch,
}

impl Trigger {
    pub fn label(self) -> &'static str {
        match self {
            Trigger::Signal => "sighup",
            Trigger::Watch => "watch",
        }
    }

    fn log_prefix(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::Watch => "config watch",
        }
    }
}

/// Reloads from `sources`; logs and counts the outcome. True when the new
/// configuration is serving.
pub fn reload(running: &Running, sources: &Sources, trigger: Trigger) -> bool {
    let result = Config::load(sources)
        .map_err(StartError::from)
        .and_then(|c| running.reload(c));
    let prefix = trigger.log_prefix();
    let outcome = match &result {
        Ok(()) => {
            info!(
                trigger = trigger.label(),
                "{prefix}: configuration reloaded"
            );
            "ok"
        }
        Err(e) => {
            error!(
                trigger = trigger.label(),
                "{prefix}: new configuration refused, the old one keeps serving: {e}"
            );
            "error"
        }
    };
    let m = &running.shared.metrics;
    m.reloads
        .get_or_create(&ReloadLabels {
            trigger: trigger.label(),
            outcome,
        })
        .inc();
    m.last_reload_success.set(i64::from(result.is_ok()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    m.last_reload_timestamp.set(now);
    result.is_ok()
}
