//! The token service (src/mint/): the token endpoints and the issuer's own
//! keys.

mod issuer;
mod issuer_keys;
