//! The set of trusted issuers of one configuration generation.

use std::collections::HashMap;
use std::sync::Arc;

use super::issuer::{IssuerKeys, PinnedKeyError, Refresh, StaticKey};
use crate::auth::cache::TokenCache;
use crate::config::{ConfigError, IssuerTrustConfig};
use crate::observe::metrics::Metrics;

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
            let reuse = previous
                .and_then(|p| p.map.get(&cfg.issuer))
                .filter(|old| old.reusable_for(cfg, &cache));
            let keys = match reuse {
                Some(old) => old.clone(),
                None => Arc::new(IssuerKeys::new(i, cfg, metrics.clone(), cache.clone())?),
            };
            map.insert(cfg.issuer.clone(), keys);
        }
        Ok(Issuers { map })
    }

    /// Trusts `key` for tokens whose `iss` is `issuer` (the gate's own
    /// signing key), unless that issuer is configured already. The caller
    /// knows where the key came from, and names it in the error.
    pub fn add_pinned(
        &mut self,
        issuer: String,
        key: StaticKey,
        metrics: Arc<Metrics>,
    ) -> Result<(), PinnedKeyError> {
        if self.map.contains_key(&issuer) {
            return Ok(());
        }
        let keys = IssuerKeys::pinned(issuer.clone(), key, metrics)?;
        self.map.insert(issuer, Arc::new(keys));
        Ok(())
    }

    pub(crate) fn get(&self, iss: &str) -> Option<&Arc<IssuerKeys>> {
        self.map.get(iss)
    }

    /// Starts the background refresh of every remote issuer that has none yet.
    pub fn spawn_refreshers(&self) {
        for keys in self.map.values() {
            keys.spawn_refresher();
        }
    }

    /// Each issuer and whether it has usable keys.
    pub fn readiness(&self) -> Vec<(String, bool)> {
        let mut v: Vec<_> = self
            .map
            .values()
            .map(|k| (k.name().to_string(), k.ready()))
            .collect();
        v.sort();
        v
    }

    /// `POST /keys/refresh`: refetches every remote issuer's keys now, at
    /// most once per issuer per `refetch_interval` (a loop on the endpoint
    /// must not turn the gate into a flood against the IdP); concurrent
    /// calls share one fetch. The number of keys or the error, by issuer.
    pub async fn refresh_all(&self) -> Vec<(String, Refresh)> {
        let mut out = Vec::new();
        for keys in self.map.values() {
            let r = keys.refresh_now().await;
            keys.update_age_metric();
            out.push((keys.name().to_string(), r));
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
