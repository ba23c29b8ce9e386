//! The running gate (src/run/): signals, drain, reload, the config watch.

mod config_watch;
mod lifecycle;
