//! Regressions found by the fuzzers of `fuzz/`: each test reads the
//! (minimised) input from `tests/fixtures/fuzz/` and checks the fixed
//! behaviour.

use std::path::PathBuf;
use std::sync::Arc;

use jwtgate::config::Config;
use jwtgate::observe::metrics::Metrics;
use jwtgate::proxy::state::State;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn config(name: &str) -> Result<Config, jwtgate::config::ConfigError> {
    let text = String::from_utf8(fixture(name)).expect("UTF-8 fixture");
    let format = name.rsplit('.').next().unwrap();
    Config::from_str_format(&text, format)
}

fn build(config: Config) -> Result<State, jwtgate::config::ConfigError> {
    jwtgate::net::tls::install_crypto_provider();
    State::build(config, Arc::new(Metrics::new()), Default::default(), None)
}

/// moka panics ("time_to_live is longer than 1000 years") when the
/// unknown-kid cache gets `refetch_interval` as its TTL: a configuration
/// with `refetch_interval = "1001y"` loaded, then crashed at start. Now the
/// value is refused by name, and a state built around validation (as a
/// library user could) still does not panic.
#[test]
fn huge_refetch_interval_is_refused_and_does_not_panic_at_start() {
    let err = config("config-refetch-interval-1001y.toml")
        .expect_err("out of range")
        .to_string();
    assert!(
        err.contains("auth.issuers[0].refetch_interval") && err.contains("out of range"),
        "{err}"
    );
    let mut cfg = Config::default();
    cfg.auth.issuers.push(jwtgate::config::IssuerTrustConfig {
        issuer: "https://idp.example.com".into(),
        refetch_interval: std::time::Duration::from_secs(1001 * 366 * 24 * 3600),
        ..Default::default()
    });
    assert!(build(cfg).is_ok());
}

/// The secret of the fuzz fixture (`fuzz/src/lib.rs`), HS256 and HS384.
const FUZZ_SECRET: &str = "fuzz-secret-0123456789abcdef0123456789";

fn hmac_state() -> State {
    let mut cfg = Config::default();
    cfg.auth.token_cache = 0;
    cfg.auth.secret.value = jwtgate::config::Secret::new(FUZZ_SECRET);
    cfg.auth.secret.algorithms = vec!["HS256".parse().unwrap(), "HS384".parse().unwrap()];
    build(cfg).expect("state")
}

/// A `verify` fuzz input in signing mode: byte 0 odd, then
/// `header JSON \0 payload JSON`, signed by the fuzzer with HS384 for
/// byte 0 = 3 (`Keys::signer(1)`).
fn signed_token(input: &[u8]) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    assert_eq!(input[0], 3, "fixture signed with HS384");
    let rest = &input[1..];
    let nul = rest.iter().position(|&b| b == 0).expect("header\\0payload");
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&rest[..nul]),
        URL_SAFE_NO_PAD.encode(&rest[nul + 1..])
    );
    jwtgate::net::tls::install_crypto_provider();
    let key = jsonwebtoken::EncodingKey::from_secret(FUZZ_SECRET.as_bytes());
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS384)
        .expect("sign");
    format!("{message}.{sig}")
}

fn verify(state: &State, token: &str) -> Result<String, jwtgate::auth::VerifyError> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(state.verifier.verify(token))
        .map(|id| id.user.clone())
}

/// A correctly signed token whose JOSE header holds invalid UTF-8 in a field
/// jwtgate skips (`{"alg": "HS384", "4p": "\xf7"}`) was accepted: serde_json
/// does not validate skipped strings. The header is not JSON (RFC 7515 §5.2).
#[test]
fn header_with_invalid_utf8_is_refused() {
    let input = fixture("verify-header-invalid-utf8");
    let state = hmac_state();
    let err = verify(&state, &signed_token(&input)).expect_err("must be refused");
    assert!(
        matches!(err, jwtgate::auth::VerifyError::Malformed(_)),
        "{err:?}"
    );
    // The same token with the byte made valid passes: only the UTF-8 differs.
    let fixed: Vec<u8> = input
        .iter()
        .map(|&b| if b == 0xf7 { b'x' } else { b })
        .collect();
    assert_eq!(verify(&state, &signed_token(&fixed)).unwrap(), "b");
}

/// A route spelt otherwise than its normal form (`/admin/../admin`, `//`,
/// a lower-case escape) was accepted but never matched, since requests are
/// routed on their normalised path: its `allowed_users` silently did not
/// apply. Found by the config target's invariant.
#[test]
fn route_not_in_normal_form_is_normalised_and_guards_its_path() {
    // Found by the config fuzzer's invariant: a route spelt otherwise than
    // requests are matched would never match. Main normalises routes when
    // they are loaded (issue 7), so the route guards what it names.
    let cfg = config("config-route-not-normal.toml").expect("loads");
    let policy = jwtgate::proxy::policy::Policy::from_config(&cfg);
    let route = policy
        .route(&http::Method::GET, "/admin")
        .expect("the route matches /admin");
    assert_eq!(route.allowed_users, vec!["root".to_string()]);
    for (route, ok) in [
        ("path = \"/admin\"", true),
        ("prefix = \"/static/\"", true),
        ("path = \"/caf%C3%A9\"", true),
        ("path = \"/caf%c3%a9\"", true),
        ("prefix = \"/a//b\"", true),
        ("prefix = \"/a/./b\"", true),
        ("path = \"/st%61tus\"", true),
        ("path = \"/a%2Fb\"", false),
        ("path = \"/a;b\"", false),
    ] {
        let text = format!("[auth.secret]\nvalue = \"s\"\n[[routes]]\n{route}\n");
        assert_eq!(
            Config::from_str_format(&text, "toml").is_ok(),
            ok,
            "{route}"
        );
    }
}
