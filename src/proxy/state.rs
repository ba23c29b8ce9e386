//! The state one configuration generation builds, and the atomic swap that
//! replaces it on reload while requests in flight keep the one they started with.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::Verifier;
use crate::auth::cache::TokenCache;
use crate::auth::jwks::{Issuers, StaticKey};
use crate::auth::keys::HmacKey;
use crate::config::{Config, ConfigError};
use crate::observe::metrics::Metrics;
use crate::proxy::forward::HeaderRules;
use crate::proxy::policy::Policy;
use crate::proxy::upstream::Upstream;

/// Everything a request needs, built from one configuration.
pub struct State {
    pub config: Arc<Config>,
    pub policy: Policy,
    pub verifier: Verifier,
    pub upstream: Upstream,
    /// What a forwarded request may carry (`[forward]`, `auth.token_from`).
    pub headers: HeaderRules,
    pub path_rules: crate::uri::PathRules,
    pub issuer: Option<crate::mint::Endpoints>,
    /// The process-wide store (revocations, shared login counters), when
    /// the runtime has one; the verifier checks its revocations.
    pub store: Option<Arc<crate::store::Store>>,
    /// `[login]`: browser sign-in, when configured.
    pub login: Option<Arc<crate::login::Login>>,
}

impl State {
    pub fn build(
        config: Config,
        metrics: Arc<Metrics>,
        issuer_runtime: Arc<crate::mint::Runtime>,
        previous: Option<&State>,
    ) -> Result<State, ConfigError> {
        let hmac = HmacKey::from_config(&config.auth.secret)?;
        // The token cache outlives a reload of the same size; the new
        // verifier advances its generation, so nothing verified under the
        // previous configuration is served (see `auth::cache`).
        let cache = match previous.and_then(|p| p.verifier.cache()) {
            Some(c) if config.auth.token_cache > 0 && c.capacity() == config.auth.token_cache => {
                Some(c.clone())
            }
            _ => (config.auth.token_cache > 0)
                .then(|| Arc::new(TokenCache::new(config.auth.token_cache))),
        };
        let mut issuers = Issuers::from_config(
            &config.auth.issuers,
            metrics.clone(),
            cache.clone(),
            previous.map(|p| p.verifier.issuers()),
        )?;
        // The gate always accepts the tokens it issued itself.
        if let Some(t) = crate::mint::self_trust(&config)? {
            issuers
                .add_pinned(
                    t.issuer,
                    StaticKey {
                        kid: Some(t.kid),
                        algorithm: t.algorithm,
                        key: t.key,
                    },
                    metrics.clone(),
                )
                .map_err(|e| ConfigError::Invalid {
                    key: "issuer.signing_key_file".into(),
                    origin: "configuration".into(),
                    message: e.to_string(),
                })?;
        }
        let mut verifier = Verifier::new(
            hmac,
            issuers,
            config.auth.leeway.as_secs(),
            config.auth.username_claims.clone(),
            cache,
            metrics.clone(),
        );
        let store = issuer_runtime.store().cloned();
        if let Some(s) = &store {
            verifier.set_revocations(s.clone());
        }
        let login = crate::login::Login::from_config(
            &config,
            store.clone(),
            metrics,
            Some(issuer_runtime.clone()),
        )?
        .map(|l| l.keeping(previous.and_then(|p| p.login.as_deref())))
        .map(Arc::new);
        let issuer = crate::mint::Endpoints::from_config(&config, issuer_runtime)?;
        let gate_cookies = login
            .as_ref()
            .map(|l| l.cookie_patterns().to_vec())
            .unwrap_or_default();
        Ok(State {
            issuer,
            policy: Policy::from_config(&config),
            verifier,
            upstream: Upstream::new(&config.upstream, previous.map(|p| &p.upstream))?,
            headers: HeaderRules::from_config(
                &config.forward,
                &config.auth.token_from,
                gate_cookies,
            ),
            path_rules: crate::uri::PathRules {
                allow_path_parameters: config.paths.allow_path_parameters,
            },
            store,
            login,
            config: Arc::new(config),
        })
    }
}

/// State shared by every listener and task of the process.
pub struct Shared {
    state: ArcSwap<State>,
    pub metrics: Arc<Metrics>,
    pub issuer_runtime: Arc<crate::mint::Runtime>,
}

impl Shared {
    pub fn new(
        state: State,
        metrics: Arc<Metrics>,
        issuer_runtime: Arc<crate::mint::Runtime>,
    ) -> Self {
        Shared {
            state: ArcSwap::from_pointee(state),
            metrics,
            issuer_runtime,
        }
    }

    pub fn current(&self) -> Arc<State> {
        self.state.load_full()
    }

    pub fn replace(&self, state: State) {
        self.state.store(Arc::new(state));
    }
}
