//! Connections: binding a listen address (TCP or a Unix socket), the accept
//! loop with its connection timers and graceful drain, TLS configs, and the
//! Unix-socket connector for the upstream. Uses only `config` and the leaves.

pub(crate) mod listener;
pub(crate) mod server;
pub mod tls;
pub(crate) mod unix;
