//! Fuzz target `request`: input format and invariants in `fuzz/src/targets/request.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| jwtgate_fuzz::targets::request::run(data));
