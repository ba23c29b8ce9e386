//! Fuzz target `form`: input format and invariants in `fuzz/src/targets/form.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| jwtgate_fuzz::targets::form::run(data));
