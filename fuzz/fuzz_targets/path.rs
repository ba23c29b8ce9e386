//! Fuzz target `path`: input format and invariants in `fuzz/src/targets/path.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| jwtgate_fuzz::targets::path::run(data));
