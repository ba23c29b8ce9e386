//! An issuer's current key set, and the choice of the keys that may
//! verify one token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;

use super::parse::KeyEntry;
use crate::auth::error::VerifyError;
use crate::auth::signature::VerifyKey;

/// Keys tried for a token without `kid`.
pub(crate) const MAX_KEYS_WITHOUT_KID: usize = 4;

/// A key set and when it was obtained.
pub(super) struct KeySet {
    pub(super) keys: Vec<KeyEntry>,
    pub(super) fetched: Instant,
    /// How long these keys are fresh (max-age clamped to `cache_ttl`).
    pub(super) ttl: Duration,
    /// Pinned keys (files, PEM): the `kid` is not required to match.
    pub(super) ignore_kid: bool,
}

impl KeySet {
    /// Keys from a file or the gate's own signer: never stale.
    pub(super) fn local(keys: Vec<KeyEntry>, ignore_kid: bool) -> KeySet {
        KeySet {
            keys,
            fetched: Instant::now(),
            ttl: Duration::MAX,
            ignore_kid,
        }
    }
}

/// Same keys: same `kid`s, types, algorithms and key material, in order.
/// The material is compared, not the `kid`: an IdP that rotates a key but
/// keeps its `kid` has changed its keys.
pub(super) fn same_keys(a: &[KeyEntry], b: &[KeyEntry]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.kid == y.kid && x.kind == y.kind && x.alg == y.alg && x.key.same_material(&y.key)
        })
}

/// The keys that may verify a token: by `kid` when it has one (and the set
/// is not pinned), else every key whose type fits, a bounded number.
pub(super) fn select(
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
            .take(MAX_KEYS_WITHOUT_KID)
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
