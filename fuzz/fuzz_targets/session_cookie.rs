//! Fuzz target `session_cookie`: input format and invariants in `fuzz/src/targets/session_cookie.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| jwtgate_fuzz::targets::session_cookie::run(data));
