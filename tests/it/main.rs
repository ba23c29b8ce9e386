//! jwtgate's integration tests: one test crate (`cargo test --test it`), one
//! module per area, so that the tests link once.
//!
//! `support` holds the harnesses: an in-process gate on the library's
//! `jwtgate::start` (the default), the real binary for what only the
//! process does (signals, exit codes, logs, the config watch, the command
//! line), and the mock upstream, OpenID provider and token helpers.

mod support;

mod abuse;
mod admin;
mod auth_secret;
mod bypass;
mod cli_tools;
mod client_address;
mod commands;
mod config;
mod config_tooling;
mod config_watch;
mod deploy_manifests;
mod examples;
mod forward_auth;
mod forwarding;
mod fuzz_regressions;
mod grpc;
mod hardening;
mod healthcheck;
mod issuer;
mod issuer_keys;
mod jwks;
mod key_changes;
mod lifecycle;
mod observability;
mod path_rules;
mod real_backends;
mod rejections;
mod status_and_paths;
mod store;
mod support_selftest;
mod tls;
mod unix_socket;
mod upstream_limit;
mod weak_config;
