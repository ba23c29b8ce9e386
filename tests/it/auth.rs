//! Tokens and keys (src/auth/): the shared secret, remote keys, the
//! verified-token cache across key changes.

mod auth_secret;
mod jwks;
mod key_changes;
