//! Fuzz target `bearer`: input format and invariants in `fuzz/src/targets/bearer.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| jwtgate_fuzz::targets::bearer::run(data));
