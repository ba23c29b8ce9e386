//! Fuzz target `config`: input format and invariants in `fuzz/src/targets/config.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| jwtgate_fuzz::targets::config::run(data));
