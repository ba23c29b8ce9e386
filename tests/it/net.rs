//! Connections (src/net/): abuse at the connection level, listener
//! hardening, TLS, Unix sockets.

mod abuse;
mod hardening;
mod tls;
mod unix_socket;
