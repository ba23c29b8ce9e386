//! Everything about tokens: where they are read from, which key verifies
//! them, and the cache of tokens already verified.

pub mod bearer;
pub mod cache;
pub mod claims;
pub mod jwks;
pub mod keys;
pub mod signature;
pub mod verify;

pub use verify::{Identity, Verifier, VerifyError};
