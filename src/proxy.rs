//! The road a proxied request travels: `gate` sequences the phases,
//! `policy` routes and authorises, `forward` makes the request the upstream
//! sees, `upstream` sends it, `grpc` recognises gRPC calls, `conn_state` is what
//! one client connection keeps across its requests; `state` is the
//! generation of configuration-built parts the road reads, and its swap.
//! Uses `mint`, `store`, `respond`, `auth`, `net`, `config`, `observe`.

pub mod conn_state;
pub(crate) mod forward;
pub mod gate;
pub(crate) mod grpc;
pub mod policy;
pub mod state;
pub(crate) mod upstream;
