//! Fuzz target `jwks`: input format and invariants in `fuzz/src/targets/jwks.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| jwtgate_fuzz::targets::jwks::run(data));
