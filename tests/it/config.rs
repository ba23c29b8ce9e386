//! Configuration (src/config/): loading, tooling, weak settings refused,
//! the example files.

mod config_tooling;
mod examples;
mod loading;
mod weak_config;
