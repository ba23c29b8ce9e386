//! The fuzz targets' bodies, one module per target, each with
//! `pub fn run(data: &[u8])` and its input format and invariants at the
//! top. The libFuzzer binaries (`fuzz_targets/*.rs`) only call `run`; the
//! corpus replay (`replay.rs`, `cargo test --lib`) calls it too, without
//! libFuzzer.

pub mod bearer;
pub mod config;
pub mod form;
pub mod jwks;
pub mod path;
pub mod request;
pub mod return_path;
pub mod session_cookie;
pub mod verify;
