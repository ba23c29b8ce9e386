//! Configuration parsing (TOML and YAML) and building the state from it.
//!
//! Input: byte 0 even: TOML, odd: YAML; the rest is the file's text.
//!
//! Invariants: loading never panics; a configuration that loads builds its
//! state without panicking (when it names no file: files are not read
//! here, so that an input cannot make the fuzzer read /dev/zero); every
//! route path or prefix it accepts can be normalised, and a request for
//! that normal form selects a route (a route that can never match would
//! silently not apply its restrictions).
#![no_main]

use jwtgate::config::Config;
use jwtgate::metrics::Metrics;
use jwtgate::policy::Policy;
use jwtgate::uri::normalize_config_path;
use jwtgate::state::State;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fn names_a_file(c: &Config) -> bool {
    !c.tls.cert_file.is_empty()
        || !c.tls.key_file.is_empty()
        || !c.upstream.ca_file.is_empty()
        || !c.auth.secret.file.is_empty()
        || !c.issuer.users_file.is_empty()
        || !c.issuer.signing_key_file.is_empty()
        || c.auth.issuers.iter().any(|i| {
            !i.jwks_file.is_empty() || !i.public_key_file.is_empty() || !i.ca_file.is_empty()
        })
}

fuzz_target!(|data: &[u8]| {
    let Some((&fmt, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let format = if fmt & 1 == 0 { "toml" } else { "yaml" };
    let Ok(config) = Config::from_str_format(text, format) else {
        return;
    };
    let policy = Policy::from_config(&config);
    for r in &config.routes {
        let p = if r.path.is_empty() {
            &r.prefix
        } else {
            &r.path
        };
        let n = normalize_config_path(p);
        assert!(n.is_ok(), "route {p:?} accepted but cannot be normalised: {n:?}");
        if let Ok(n) = n
            && r.methods.is_empty()
        {
            assert!(
                policy.route(&http::Method::GET, &n).is_some(),
                "route {p:?} (normal form {n:?}) matches no request"
            );
        }
    }
    if names_a_file(&config) {
        return;
    }
    jwtgate::tls::install_crypto_provider();
    let _rt = jwtgate_fuzz::runtime().enter();
    let _ = State::build(config, Arc::new(Metrics::new()), Default::default(), None);
});
