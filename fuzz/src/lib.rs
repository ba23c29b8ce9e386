//! Fixtures shared by the fuzz targets: one fixed configuration (an HMAC
//! secret, one asymmetric issuer with a local JWKS, a few routes), the keys
//! that sign tokens for it, and a current-thread runtime built once.
//!
//! The keys under `fuzz/keys/` are test keys made for these fuzzers only.
//!
//! The targets' bodies are in [`targets`]; `cargo test --lib` replays the
//! committed corpora through them (`replay.rs`).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use jwtgate::config::{Config, IssuerTrustConfig, RouteAuth, RouteConfig, Secret};
use jwtgate::observe::metrics::Metrics;
use jwtgate::proxy::state::{Shared, State};

pub mod targets;

#[cfg(test)]
mod replay;

pub const SECRET: &str = "fuzz-secret-0123456789abcdef0123456789";
pub const ISS: &str = "https://idp.fuzz";
pub const AUDIENCE: &str = "api";
pub const STATUS_TOKEN: &str = "status-secret";
pub const LEEWAY: u64 = 60;
/// 2100-01-01: seeds signed with it stay valid.
pub const FAR_EXP: u64 = 4_102_444_800;

pub fn keys_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("keys")
}

fn read_key(name: &str) -> Vec<u8> {
    std::fs::read(keys_dir().join(name)).expect("fuzz/keys file")
}

/// The runtime every async call is driven on (built once).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn route(prefix: &str, path: &str, methods: &[&str], auth: RouteAuth) -> RouteConfig {
    RouteConfig {
        prefix: prefix.into(),
        path: path.into(),
        methods: parse_all(methods),
        auth,
        ..Default::default()
    }
}

/// Configuration values (methods, algorithms, token sources) parsed as the
/// configuration reader parses them.
fn parse_all<T: std::str::FromStr<Err = String>>(items: &[&str]) -> Vec<T> {
    items
        .iter()
        .map(|s| s.parse().unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// The routes of the fixed configuration (first match wins).
pub fn routes() -> Vec<RouteConfig> {
    let mut admin = route("", "/admin", &["GET", "POST"], RouteAuth::Token);
    admin.allowed_users = vec!["alice".into()];
    let mut api = route("/api", "", &["GET", "POST", "DELETE"], RouteAuth::Token);
    api.require_scopes = vec!["read".into()];
    let mut roles = route("/roles/", "", &[], RouteAuth::Token);
    roles
        .require_claims
        .insert("role".into(), serde_json::json!("admin"));
    let mut cors = route("/cors", "", &["GET"], RouteAuth::Token);
    cors.allow_cors_preflight = true;
    // Public routes never authorise, so a distinct `allowed_users` only
    // tells them apart in the fuzzers' checks.
    let public = |prefix: &str, path: &str, methods: &[&str], tag: &str| {
        let mut r = route(prefix, path, methods, RouteAuth::None);
        r.allowed_users = vec![tag.into()];
        r
    };
    vec![
        public("/public", "", &[], "public-1"),
        public("", "/health", &["GET", "HEAD"], "public-2"),
        admin,
        api,
        roles,
        cors,
        public("/static/", "", &["GET"], "public-3"),
        public("", "/caf%C3%A9", &[], "public-4"),
    ]
}

/// The fixed configuration: HS256/HS384 with `SECRET`, RS256/PS256/ES256
/// from `ISS` (keys in `keys/jwks.json`, audience `api`), tokens from the
/// header, `?access_token=` and the `jwt` cookie, a status token.
pub fn config(token_cache: u64) -> Config {
    jwtgate::net::tls::install_crypto_provider();
    let mut cfg = Config::default();
    cfg.auth.token_cache = token_cache;
    cfg.auth.secret.value = Secret::new(SECRET);
    cfg.auth.secret.algorithms = parse_all(&["HS256", "HS384"]);
    cfg.auth.token_from = parse_all(&["header", "query:access_token", "cookie:jwt"]);
    cfg.auth.issuers.push(IssuerTrustConfig {
        issuer: ISS.into(),
        jwks_file: Some(keys_dir().join("jwks.json")),
        algorithms: parse_all(&["RS256", "PS256", "ES256"]),
        audiences: vec![AUDIENCE.into()],
        ..Default::default()
    });
    cfg.status.token = Secret::new(STATUS_TOKEN);
    cfg.routes = routes();
    cfg
}

pub fn state(cfg: Config) -> State {
    let _rt = runtime().enter();
    State::build(cfg, Arc::new(Metrics::new()), Default::default(), None).expect("fixed config")
}

pub fn shared(cfg: Config) -> Arc<Shared> {
    let metrics = Arc::new(Metrics::new());
    let _rt = runtime().enter();
    let state = State::build(cfg, metrics.clone(), Default::default(), None).expect("fixed config");
    Arc::new(Shared::new(state, metrics, Default::default()))
}

/// Signing and verification keys of the fixture.
pub struct Keys {
    pub hmac_enc: EncodingKey,
    pub hmac_dec: DecodingKey,
    pub rsa_enc: EncodingKey,
    pub rsa_dec: DecodingKey,
    pub ec_enc: EncodingKey,
    pub ec_dec: DecodingKey,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        jwtgate::net::tls::install_crypto_provider();
        Keys {
            hmac_enc: EncodingKey::from_secret(SECRET.as_bytes()),
            hmac_dec: DecodingKey::from_secret(SECRET.as_bytes()),
            rsa_enc: EncodingKey::from_rsa_pem(&read_key("rsa.pem")).expect("rsa.pem"),
            rsa_dec: DecodingKey::from_rsa_pem(&read_key("rsa.pub.pem")).expect("rsa.pub.pem"),
            ec_enc: EncodingKey::from_ec_pem(&read_key("ec.pk8.pem")).expect("ec.pk8.pem"),
            ec_dec: DecodingKey::from_ec_pem(&read_key("ec.pub.pem")).expect("ec.pub.pem"),
        }
    })
}

impl Keys {
    /// The key that legitimately verifies `alg` in the fixture, if any.
    pub fn decoding_for(&self, alg: Algorithm) -> Option<&DecodingKey> {
        match alg {
            Algorithm::HS256 | Algorithm::HS384 => Some(&self.hmac_dec),
            Algorithm::RS256 | Algorithm::PS256 => Some(&self.rsa_dec),
            Algorithm::ES256 => Some(&self.ec_dec),
            _ => None,
        }
    }

    /// One of the fixture's signing keys and the algorithm it signs with.
    pub fn signer(&self, selector: u8) -> (&EncodingKey, Algorithm) {
        match selector % 5 {
            0 => (&self.hmac_enc, Algorithm::HS256),
            1 => (&self.hmac_enc, Algorithm::HS384),
            2 => (&self.rsa_enc, Algorithm::RS256),
            3 => (&self.rsa_enc, Algorithm::PS256),
            _ => (&self.ec_enc, Algorithm::ES256),
        }
    }
}

pub fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// `b64(header).b64(payload).signature`, signed with `key`/`alg` whatever
/// the header claims.
pub fn sign_raw(header: &[u8], payload: &[u8], key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{}.{}", b64(header), b64(payload));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("sign");
    format!("{message}.{sig}")
}

/// A well-formed token of the fixture, signed with the key for `alg`.
pub fn token(alg: Algorithm, claims: &serde_json::Value) -> String {
    let k = keys();
    let (key, kid) = match alg {
        Algorithm::HS256 | Algorithm::HS384 => (&k.hmac_enc, None),
        Algorithm::RS256 | Algorithm::PS256 => (&k.rsa_enc, Some("r1")),
        _ => (&k.ec_enc, Some("e1")),
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("encode")
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    jwtgate::auth::claims::now()
}
