//! The road a request travels (src/proxy/): bypass attempts, what the
//! upstream receives, the client address, rejections, the status exemption and
//! paths, gRPC, the upstream limit, connection-affine upstream connections,
//! real backends.

mod affinity;
mod bypass;
mod client_address;
mod forwarding;
mod grpc;
mod path_rules;
mod real_backends;
mod rejections;
mod status_and_paths;
mod upstream_limit;
