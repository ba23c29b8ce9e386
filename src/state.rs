//! The state one configuration generation builds, and the atomic swap that
//! replaces it on reload while requests in flight keep the one they started with.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::bearer::TokenSource;
use crate::auth::cache::TokenCache;
use crate::auth::jwks::Issuers;
use crate::auth::keys::HmacKey;
use crate::auth::Verifier;
use crate::config::{Config, ConfigError};
use crate::forward::{IdentityHeaders, Upstream};
use crate::metrics::Metrics;
use crate::policy::Policy;

/// Everything a request needs, built from one configuration.
pub struct State {
    pub config: Arc<Config>,
    pub policy: Policy,
    pub verifier: Verifier,
    pub upstream: Upstream,
    pub identity_headers: IdentityHeaders,
    pub token_sources: Vec<TokenSource>,
}

impl State {
    pub fn build(config: Config, metrics: Arc<Metrics>) -> Result<State, ConfigError> {
        let hmac = HmacKey::from_config(&config.auth.secret)?;
        let cache = (config.auth.token_cache > 0).then(|| Arc::new(TokenCache::new(config.auth.token_cache)));
        let issuers = Issuers::default();
        let verifier = Verifier::new(
            hmac,
            issuers,
            config.auth.leeway.as_secs(),
            config.auth.username_claims.clone(),
            cache,
            metrics,
        );
        let token_sources = config
            .auth
            .token_from
            .iter()
            .filter_map(|s| TokenSource::parse(s))
            .collect();
        Ok(State {
            policy: Policy::from_config(&config),
            verifier,
            upstream: Upstream::new(&config.upstream)?,
            identity_headers: IdentityHeaders::from_config(&config.forward)?,
            token_sources,
            config: Arc::new(config),
        })
    }
}

/// State shared by every listener and task of the process.
pub struct Shared {
    state: ArcSwap<State>,
    pub metrics: Arc<Metrics>,
}

impl Shared {
    pub fn new(state: State, metrics: Arc<Metrics>) -> Self {
        Shared {
            state: ArcSwap::from_pointee(state),
            metrics,
        }
    }

    pub fn current(&self) -> Arc<State> {
        self.state.load_full()
    }

    pub fn replace(&self, state: State) {
        self.state.store(Arc::new(state));
    }
}
