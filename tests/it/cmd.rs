//! The commands (src/cmd/): the small tools, healthcheck.

mod cli_tools;
mod commands;
mod healthcheck;
