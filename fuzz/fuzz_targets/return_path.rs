//! Fuzz target `return_path`: input format and invariants in `fuzz/src/targets/return_path.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| jwtgate_fuzz::targets::return_path::run(data));
