//! Keys of the trusted asymmetric issuers (`[[auth.issuers]]`): OIDC
//! discovery, JWKS fetching and caching, refresh before expiry, a bounded
//! unknown-`kid` refetch, and stale keys kept through an IdP outage.
//!
//! Requests read the current key set lock-free (`ArcSwapOption`). Only a
//! request that needs a fetch (unknown `kid`, keys never loaded) waits, and
//! it waits on the one fetch in flight for its issuer (single-flight with a
//! `tokio::sync::Mutex` held only by fetchers, re-checked after it is taken),
//! so a routine refresh or a slow IdP never stalls requests whose keys are known.
//!
//! - `parse`: JWK, JWKS, PEM and discovery documents to keys (no I/O);
//! - `fetch`: the HTTP client and the capped GET, failing with [`FetchError`];
//! - `keyset`: a key set, and which of its keys may verify a token;
//! - `issuer`: one issuer's keys, their single-flight fetch and refresher;
//! - `registry`: [`Issuers`], every trusted issuer of a configuration.
//!
//! Nothing here depends on the verifier (`auth::verify`); the verifier
//! depends on this.

mod fetch;
mod issuer;
mod keyset;
mod parse;
mod registry;

pub use fetch::FetchError;
pub use issuer::{IssuerKeys, PinnedKeyError, Refresh, StaticKey};
pub(crate) use keyset::MAX_KEYS_WITHOUT_KID;
pub use parse::{
    KeyEntry, ProviderEndpoints, parse_discovery, parse_jwks, parse_pem, parse_provider_endpoints,
};
pub use registry::Issuers;

use crate::config::ConfigError;

/// A refused value of `[[auth.issuers]]` (`key` is its full name).
fn invalid(key: String, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(key, "configuration", message)
}
