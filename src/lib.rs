//! jwtgate: a reverse proxy that lets a request through only with a valid
//! JWT bearer token. `start` builds the state from a `Config`, binds the
//! listeners and returns their addresses (tests use it directly).
//!
//! The folders, top to bottom (README, "Layout"): `cmd` → `run` → `admin`
//! → `proxy` → `login` → `mint` → `store` → `respond` → `auth` → `net`
//! → `config`, with `observe` and the leaves (`uri`, `encoding`, `random`)
//! usable from anywhere. A folder uses only folders below it.

// Everything the crate does not need to show is pub(crate), so that the
// compiler finds dead code (the integration tests, a crate of their own,
// are exempt: see Cargo.toml's [lints] for the rest).
#![warn(unreachable_pub)]
pub(crate) mod admin;
pub mod auth;
pub mod cmd;
pub mod config;
pub(crate) mod encoding;
pub mod login;
pub mod mint;
pub mod net;
pub mod observe;
pub mod proxy;
pub(crate) mod random;
pub mod respond;
pub mod run;
pub mod store;
pub mod uri;

pub use run::{Running, StartError, start};
