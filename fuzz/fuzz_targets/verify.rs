//! Fuzz target `verify`: input format and invariants in `fuzz/src/targets/verify.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| jwtgate_fuzz::targets::verify::run(data));
