//! jwtgate's integration tests: one test crate (`cargo test --test it`), one
//! module per area, grouped in folders like `src/` (`proxy/`, `net/`, `auth/`,
//! ...), so that the tests link once and a test is found beside its road.
//!
//! `support` holds the harnesses: an in-process gate on the library's
//! `jwtgate::start` (the default), the real binary for what only the
//! process does (signals, exit codes, logs, the config watch, the command
//! line), and the mock upstream, OpenID provider and token helpers.

mod support;

mod admin;
mod auth;
mod cmd;
mod config;
mod deploy_manifests;
mod fuzz_regressions;
mod layout;
mod login;
mod mint;
mod net;
mod observability;
mod proxy;
mod run;
mod store;
mod support_selftest;
