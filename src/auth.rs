//! Everything about tokens: where they are read from, which key verifies
//! them, and the cache of tokens already verified.
//!
//! Dependencies run one way: `error`, `identity` and `signature` are
//! leaves; `claims` uses `error`; `cache` uses `claims` and `identity`;
//! `keys` uses `signature`; `jwks` uses `error`, `signature` and `cache`;
//! `verify` uses all of these. `bearer` stands apart. Nothing here
//! depends on the store: it plugs in through `verify::Revocations`.
//!
//! Folder `auth/`: uses only `net` (TLS for key fetches), `config`,
//! `observe` and the leaves.

pub mod bearer;
pub mod cache;
pub mod claims;
mod error;
mod identity;
pub mod jwks;
pub mod keys;
pub mod signature;
pub(crate) mod verify;

pub use error::VerifyError;
pub use identity::Identity;
pub use verify::{Revocations, Verifier};
