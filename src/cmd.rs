//! The command line and each subcommand but `serve` (which `main` runs on
//! `run::start`): `cli` (the parser and the short commands), `demo`,
//! `healthcheck`, `revoke`, `whoami`. The top of the crate: may use any folder.

pub mod cli;
pub mod demo;
pub mod healthcheck;
pub mod revoke;
pub mod whoami;
