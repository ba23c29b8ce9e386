//! The road a proxied request travels: `gate` sequences the phases,
//! `policy` routes and authorises, `forward` makes the request the upstream
//! sees, `upstream` sends it, `grpc` recognises gRPC calls; `state` is the
//! generation of configuration-built parts the road reads, and its swap.
//! Uses `mint`, `store`, `respond`, `auth`, `net`, `config`, `observe`.

pub(crate) mod forward;
pub mod gate;
pub(crate) mod grpc;
pub mod policy;
pub mod state;
pub(crate) mod upstream;
