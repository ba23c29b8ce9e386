//! Criterion benchmarks of the verify path: HS256, RS256 and ES256 full
//! verifications (cache off), a verified-token cache hit, and a whole
//! decision through the gate's policy (verify + authorize); and the browser
//! session's cookie: opening a sealed session value, and reading it out of
//! a Cookie header first.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use jwtgate::config::{Config, IssuerTrustConfig, Secret};
use jwtgate::observe::metrics::Metrics;
use jwtgate::proxy::state::State;
use serde_json::json;

const ISS: &str = "https://idp.bench";

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> serde_json::Value {
    let t = now();
    json!({"iss": ISS, "sub": "bench-user", "aud": "api", "iat": t, "nbf": t, "exp": t + 3600,
           "scope": "read write", "email": "bench@example.com"})
}

fn sign(alg: &str, kid: &str, signer: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let header = b64(json!({"alg": alg, "typ": "JWT", "kid": kid})
        .to_string()
        .as_bytes());
    let payload = b64(claims().to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let sig = signer(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

struct Fixture {
    state: State,
    decoding: std::collections::HashMap<&'static str, jsonwebtoken::DecodingKey>,
    hs256: String,
    rs256: String,
    es256: String,
    _dir: tempfile::TempDir,
}

fn fixture(cache: u64) -> Fixture {
    jwtgate::net::tls::install_crypto_provider();
    let rng = SystemRandom::new();
    let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let ec = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = ec.public_key().as_ref().to_vec();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig",
         "n": b64(rsa.public_key().modulus().big_endian_without_leading_zero()),
         "e": b64(rsa.public_key().exponent().big_endian_without_leading_zero())},
        {"kty": "EC", "kid": "e1", "alg": "ES256", "use": "sig", "crv": "P-256",
         "x": b64(&point[1..33]), "y": b64(&point[33..])},
    ]});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks.to_string()).unwrap();

    let secret = "bench-secret-0123456789abcdef0123456789";
    let mut cfg = Config::default();
    cfg.auth.token_cache = cache;
    cfg.auth.secret.value = Secret::new(secret);
    cfg.auth.issuers.push(IssuerTrustConfig {
        issuer: ISS.into(),
        jwks_file: Some(path.clone()),
        algorithms: vec!["RS256".parse().unwrap(), "ES256".parse().unwrap()],
        audiences: vec!["api".into()],
        ..Default::default()
    });
    let state = State::build(cfg, Arc::new(Metrics::new()), Default::default(), None).unwrap();

    let hs_claims = json!({"sub": "bench-user", "exp": now() + 3600, "iat": now()});
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &hs_claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let rs256 = sign("RS256", "r1", |m| {
        let mut sig = vec![0; rsa.public_modulus_len()];
        rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, m, &mut sig)
            .unwrap();
        sig
    });
    let es256 = sign("ES256", "e1", |m| {
        ec.sign(&rng, m).unwrap().as_ref().to_vec()
    });
    let mut decoding = std::collections::HashMap::new();
    decoding.insert(
        "RS256",
        jsonwebtoken::DecodingKey::from_rsa_raw_components(
            rsa.public_key().modulus().big_endian_without_leading_zero(),
            rsa.public_key()
                .exponent()
                .big_endian_without_leading_zero(),
        ),
    );
    decoding.insert(
        "ES256",
        jsonwebtoken::DecodingKey::from_ec_components(&b64(&point[1..33]), &b64(&point[33..]))
            .unwrap(),
    );
    Fixture {
        state,
        decoding,
        hs256,
        rs256,
        es256,
        _dir: dir,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let f = fixture(0);
    let mut g = c.benchmark_group("verify_uncached");
    for (name, token) in [
        ("HS256", &f.hs256),
        ("RS256", &f.rs256),
        ("ES256", &f.es256),
    ] {
        assert!(
            rt.block_on(f.state.verifier.verify(token)).is_ok(),
            "{name} must verify"
        );
        g.bench_function(name, |b| {
            b.iter(|| rt.block_on(f.state.verifier.verify(token)).unwrap())
        });
    }
    g.finish();

    let cached = fixture(10_000);
    let mut g = c.benchmark_group("verify_cached");
    for (name, token) in [("HS256", &cached.hs256), ("RS256", &cached.rs256)] {
        rt.block_on(cached.state.verifier.verify(token)).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| rt.block_on(cached.state.verifier.verify(token)).unwrap())
        });
    }
    g.finish();

    // Revocation on (issue 14): the same verifier with a store holding
    // 10,000 entries (jti and user rules, none matching the token) against
    // the one above without, same run. Memory: resident size before and
    // after filling the set.
    let rss = || {
        std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |pages| pages * 4096)
    };
    let mut revoked = fixture(10_000);
    let mut uncached_revoked = fixture(0);
    let before = rss();
    let store = rt.block_on(async {
        let store =
            jwtgate::store::Store::start(&Default::default(), &Arc::new(Metrics::new())).unwrap();
        for i in 0..10_000u32 {
            let rule = if i % 2 == 0 {
                jwtgate::store::revocation::Rule::Token {
                    jti: format!("revoked-jti-{i:05}-{}", "x".repeat(11)),
                }
            } else {
                jwtgate::store::revocation::Rule::User {
                    user: format!("revoked-user-{i:05}"),
                    issuer: Some(ISS.into()),
                    before: now(),
                }
            };
            let (_, r) = store.revoke(rule, None).await;
            r.unwrap();
        }
        store
    });
    eprintln!(
        "revocations: 10,000 entries, resident size grew by {} KiB",
        rss().saturating_sub(before) / 1024
    );
    revoked.state.verifier.set_revocations(store.clone());
    uncached_revoked.state.verifier.set_revocations(store);
    let mut g = c.benchmark_group("revocation");
    rt.block_on(cached.state.verifier.verify(&cached.rs256))
        .unwrap();
    rt.block_on(revoked.state.verifier.verify(&revoked.rs256))
        .unwrap();
    g.bench_function("RS256_cached/off", |b| {
        b.iter(|| {
            rt.block_on(cached.state.verifier.verify(&cached.rs256))
                .unwrap()
        })
    });
    g.bench_function("RS256_cached/on_10k", |b| {
        b.iter(|| {
            rt.block_on(revoked.state.verifier.verify(&revoked.rs256))
                .unwrap()
        })
    });
    g.bench_function("RS256_uncached/off", |b| {
        b.iter(|| rt.block_on(f.state.verifier.verify(&f.rs256)).unwrap())
    });
    g.bench_function("RS256_uncached/on_10k", |b| {
        b.iter(|| {
            rt.block_on(
                uncached_revoked
                    .state
                    .verifier
                    .verify(&uncached_revoked.rs256),
            )
            .unwrap()
        })
    });
    g.finish();

    // The signature check alone, key prepared once (jwtgate's VerifyKey)
    // against jsonwebtoken's per-call key construction, same keys, same run.
    let mut g = c.benchmark_group("signature_only");
    for (name, token, alg) in [
        ("RS256", &f.rs256, jsonwebtoken::Algorithm::RS256),
        ("ES256", &f.es256, jsonwebtoken::Algorithm::ES256),
    ] {
        let (message, sig_b64) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig_b64).unwrap();
        let decoding = &f.decoding[name];
        let prepared = jwtgate::auth::signature::VerifyKey::public(decoding, &[alg]).unwrap();
        assert!(prepared.verify(alg, message.as_bytes(), &sig));
        assert!(jsonwebtoken::crypto::verify(sig_b64, message.as_bytes(), decoding, alg).unwrap());
        g.bench_function(format!("{name}/prepared_key"), |b| {
            b.iter(|| {
                let sig = URL_SAFE_NO_PAD.decode(sig_b64).unwrap();
                prepared.verify(alg, message.as_bytes(), &sig)
            })
        });
        g.bench_function(format!("{name}/jsonwebtoken_per_call"), |b| {
            b.iter(|| {
                jsonwebtoken::crypto::verify(sig_b64, message.as_bytes(), decoding, alg).unwrap()
            })
        });
    }
    g.finish();

    c.bench_function("decide/RS256_verify_and_authorize", |b| {
        b.iter(|| {
            let id = rt.block_on(f.state.verifier.verify(&f.rs256)).unwrap();
            f.state.policy.authorize(&id, None).unwrap();
        })
    });
}

/// The browser session cookie: a sealed value of ~600 bytes of JSON claims
/// under a 2-key ring (sealed with the first key, as after a rotation the
/// most recent sessions are), opened alone and read out of a Cookie header
/// with a few other cookies first.
fn session(c: &mut Criterion) {
    use jwtgate::login::{jar, seal::KeyRing};
    const NAME: &str = "__Host-jwtgate";
    let ring = KeyRing::parse(&format!(
        "{}\n{}",
        KeyRing::generate_line().unwrap(),
        KeyRing::generate_line().unwrap()
    ))
    .unwrap();
    let t = now();
    let claims = json!({
        "iss": ISS, "sub": "5b0e3c1e-8f4d-4a52-9d0c-3f1a2b7c9e10", "aud": "jwtgate",
        "preferred_username": "alice", "email": "alice@example.com", "email_verified": true,
        "name": "Alice Example", "groups": ["editors", "staff", "cms-admins"],
        "sid": "f3a9c2e4b1d0478a9e6b5c4d3e2f1a0b", "iat": t, "auth_time": t,
        "exp": t + 43_200, "idle_exp": t + 1_800, "refresh_at": t + 300,
        "amr": ["pwd", "otp"], "acr": "urn:example:loa:2",
        "scope": "openid profile email offline_access",
        "locale": "en-GB", "zoneinfo": "Europe/London",
        "picture": "https://idp.bench/avatars/5b0e3c1e-8f4d-4a52-9d0c-3f1a2b7c9e10.png",
        "tenant": "example-publishing-north", "roles": ["author", "reviewer"],
    })
    .to_string();
    assert!((550..700).contains(&claims.len()), "{}", claims.len());
    let sealed = ring.seal(NAME.as_bytes(), claims.as_bytes()).unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::COOKIE,
        format!(
            "_ga=GA1.1.123456789.1700000000; theme=dark; lang=en-GB; \
             {NAME}={sealed}; csrftoken=Zx9bq1TqK2m4YhRwV8s3; _gid=GA1.1.987654321.1700000000"
        )
        .parse()
        .unwrap(),
    );
    assert_eq!(
        ring.open(NAME.as_bytes(), &sealed).unwrap(),
        claims.as_bytes()
    );
    assert_eq!(jar::read(&headers, NAME).as_deref(), Some(&sealed[..]));
    c.bench_function("session_open", |b| {
        b.iter(|| ring.open(NAME.as_bytes(), &sealed).unwrap())
    });
    c.bench_function("session_read_and_open", |b| {
        b.iter(|| {
            let value = jar::read(&headers, NAME).unwrap();
            ring.open(NAME.as_bytes(), &value).unwrap()
        })
    });
}

criterion_group!(benches, bench, session);
criterion_main!(benches);
