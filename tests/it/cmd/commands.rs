//! The small commands: create-token, gen-key, hash-password, usage errors.

use crate::support::*;
use serde_json::Value;

const SECRET: &str = "commands-tests-secret-0123456789abcdef";

fn create_token(args: &[&str]) -> (Value, Value) {
    let mut all = vec!["create-token"];
    all.extend_from_slice(args);
    let out = run_jwtgate(&all).env("TOKENS_SECRET", SECRET).run();
    assert_eq!(out.code, Some(0), "{out:?}");
    let token = out.stdout.trim();
    assert_eq!(
        token.lines().count(),
        1,
        "stdout is not just the token: {token:?}"
    );
    verify_hmac(token, SECRET.as_bytes())
}

#[test]
fn create_token_signs_user_claims_and_duration() {
    let (header, p) = create_token(&["-u", "alice", "-d", "5"]);
    assert_eq!(header["alg"], "HS256");
    for c in ["sub", "user", "login"] {
        assert_eq!(p[c], "alice", "claim {c} in {p}");
    }
    let (iat, exp) = (p["iat"].as_i64().unwrap(), p["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 300);
    assert!(p["nbf"].is_i64(), "nbf missing: {p}");
    assert!((iat - now()).abs() < 30, "iat {iat} is not now");
}

#[test]
fn create_token_defaults_to_60_minutes() {
    let (_, p) = create_token(&["-u", "bob"]);
    assert_eq!(
        p["exp"].as_i64().unwrap() - p["iat"].as_i64().unwrap(),
        3600
    );
}

#[test]
fn create_token_adds_claims() {
    let (_, p) = create_token(&[
        "-u",
        "carol",
        "--claim",
        "role=admin",
        "--claim",
        "team=ops",
    ]);
    assert_eq!(p["role"], "admin");
    assert_eq!(p["team"], "ops");
    assert_eq!(p["sub"], "carol");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_token_output_passes_the_gate() {
    let up = Upstream::start().await;
    let cfg = format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n",
        up.url()
    );
    let cfg2 = cfg.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_jwtgate(&["create-token", "-u", "dave"])
            .toml(&cfg2)
            .run()
    })
    .await
    .unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    let token = out.stdout.trim().to_string();
    let gate = GateBuilder::toml(&cfg).start();
    let resp = client()
        .get(gate.url("/"))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().header("x-auth-user").as_deref(), Some("dave"));
}

#[test]
fn create_token_without_key_source_fails() {
    let out = run_jwtgate(&["create-token", "-u", "alice"]).run();
    // 78: a configuration that cannot be used (issue 12), no longer 1.
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(
        out.stdout.trim().is_empty(),
        "printed a token: {}",
        out.stdout
    );
}

fn gen_key(args: &[&str]) -> Value {
    let mut all = vec!["gen-key"];
    all.extend_from_slice(args);
    let out = run_jwtgate(&all).run();
    assert_eq!(out.code, Some(0), "{out:?}");
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout))
}

#[test]
fn gen_key_default_is_a_256_bit_oct_jwk() {
    let a = gen_key(&[]);
    assert_eq!(a["kty"], "oct");
    let k = a["k"].as_str().expect("k");
    assert!(
        !k.contains('=') && !k.contains('+') && !k.contains('/'),
        "k is not base64url: {k}"
    );
    assert_eq!(b64url_decode(k).len(), 32);
    let b = gen_key(&["--kty", "oct"]);
    assert_ne!(a["k"], b["k"], "two keys are equal");
}

#[test]
fn gen_key_output_is_usable_as_ampho_security_key() {
    let jwk = gen_key(&[]);
    let out = run_jwtgate(&["create-token", "-u", "erin"])
        .env("AMPHO_SECURITY_KEY", &jwk.to_string())
        .run();
    assert_eq!(out.code, Some(0), "{out:?}");
    let key = b64url_decode(jwk["k"].as_str().unwrap());
    let (_, p) = verify_hmac(out.stdout.trim(), &key);
    assert_eq!(p["sub"], "erin");
}

#[test]
fn gen_key_asymmetric_kinds_print_private_jwks() {
    let rsa = gen_key(&["--kty", "RSA"]);
    assert_eq!(rsa["kty"], "RSA");
    for f in ["n", "e", "d", "p", "q"] {
        assert!(rsa[f].is_string(), "RSA field {f} missing: {rsa}");
    }
    assert!(
        b64url_decode(rsa["n"].as_str().unwrap()).len() >= 256,
        "RSA key under 2048 bits"
    );

    let ec = gen_key(&["--kty", "EC"]);
    assert_eq!(ec["kty"], "EC");
    for f in ["crv", "x", "y", "d"] {
        assert!(ec[f].is_string(), "EC field {f} missing: {ec}");
    }

    let okp = gen_key(&["--kty", "OKP"]);
    assert_eq!(okp["kty"], "OKP");
    assert_eq!(okp["crv"], "Ed25519");
    for f in ["x", "d"] {
        assert!(okp[f].is_string(), "OKP field {f} missing: {okp}");
    }
    for k in [&rsa, &ec, &okp] {
        let kid = k["kid"].as_str().unwrap_or_default();
        assert!(!kid.is_empty(), "no kid: {k}");
    }
}

#[test]
fn hash_password_prints_argon2id() {
    let out = run_jwtgate(&["hash-password"])
        .stdin(b"hunter2-correct-horse\n")
        .run();
    assert_eq!(out.code, Some(0), "{out:?}");
    let hash = out.stdout.trim();
    assert!(hash.starts_with("$argon2id$"), "{hash:?}");
    assert!(
        !out.all().contains("hunter2-correct-horse"),
        "password echoed"
    );
    // Salted: the same password hashes differently.
    let again = run_jwtgate(&["hash-password"])
        .stdin(b"hunter2-correct-horse\n")
        .run();
    assert_ne!(again.stdout.trim(), hash);
}

#[test]
fn usage_errors_exit_2() {
    let mut failures = Vec::new();
    for args in [
        vec!["no-such-command"],
        vec!["create-token"],
        vec!["create-token", "-u", "alice", "-d", "soon"],
        vec!["create-token", "-u", "alice", "--claim", "no-equals-sign"],
        vec!["serve", "--no-such-flag"],
        vec!["gen-key", "--kty", "DSA"],
        vec!["verify-token"],
    ] {
        let out = run_jwtgate(&args).env("TOKENS_SECRET", SECRET).run();
        if out.code != Some(2) || out.stderr.trim().is_empty() {
            failures.push(format!("jwtgate {args:?}: {out:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "not a usage error (exit 2 with a message):\n{}",
        failures.join("\n")
    );
}

/// `gen-key --session`: one key line, as `login.session_keys_file` takes it.
fn session_key_line() -> String {
    let out = run_jwtgate(&["gen-key", "--session"]).run();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "not one line: {:?}",
        out.stdout
    );
    out.stdout.trim().to_string()
}

#[test]
fn gen_key_session_prints_a_base64url_32_byte_key() {
    let a = session_key_line();
    assert!(
        a.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        "not base64url without padding: {a:?}"
    );
    assert_eq!(b64url_decode(&a).len(), 32, "{a:?}");
    assert_ne!(session_key_line(), a, "two keys are equal");
    for args in [
        ["gen-key", "--session", "--pem"],
        ["gen-key", "--session", "--kty=EC"],
    ] {
        let out = run_jwtgate(&args).run();
        assert_eq!(out.code, Some(2), "jwtgate {args:?}: {out:?}");
        assert!(out.stdout.trim().is_empty(), "printed a key: {out:?}");
        assert!(!out.stderr.trim().is_empty(), "no message: {out:?}");
    }
}

/// A config with `[login]` whose session keys file holds `keys` (nothing
/// is fetched from the issuer: port 9 is closed).
fn login_config(dir: &std::path::Path, name: &str, keys: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, keys).unwrap();
    format!(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n\
         [[auth.issuers]]\nissuer = \"http://127.0.0.1:9/realms/test\"\n\
         [login]\nprovider = \"oidc\"\nissuer = \"http://127.0.0.1:9/realms/test\"\n\
         client_id = \"gate\"\nclient_secret = \"gate-secret\"\n\
         external_url = \"http://127.0.0.1:8080\"\nsession_keys_file = \"{}\"\n",
        file.display()
    )
}

/// `jwtgate verify-token --session VALUE` with this config.
fn verify_session(config: &str, value: &str) -> RunOutput {
    run_jwtgate(&["verify-token", "--session", value])
        .toml(config)
        .run()
}

#[test]
fn create_token_session_makes_a_cookie_that_verify_token_opens() {
    let dir = tempfile::tempdir().unwrap();
    let key = format!("{}\n", session_key_line());
    let config = login_config(dir.path(), "session.keys", &key);

    let out = run_jwtgate(&["create-token", "--session", "-u", "alice"])
        .toml(&config)
        .run();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1, "{:?}", out.stdout);
    let line = out.stdout.trim();
    let value = line
        .strip_prefix("__Host-jwtgate=")
        .unwrap_or_else(|| panic!("not __Host-jwtgate=VALUE: {line:?}"));
    assert!(
        !value.is_empty() && !value.contains([';', ' ', '=']),
        "{value:?}"
    );

    let out = verify_session(&config, value);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.starts_with("valid session: user \"alice\""),
        "{out:?}"
    );

    // One character changed (in the middle: the ciphertext).
    let mut tampered: Vec<u8> = value.bytes().collect();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let out = verify_session(&config, &tampered);
    assert_eq!(out.code, Some(1), "a tampered value: {out:?}");
    assert!(out.stdout.starts_with("rejected:"), "{out:?}");
    assert!(!out.stdout.contains("valid session"), "{out:?}");

    // A gate whose key file holds another key.
    let other = login_config(
        dir.path(),
        "other.keys",
        &format!("{}\n", session_key_line()),
    );
    let out = verify_session(&other, value);
    assert_eq!(out.code, Some(1), "another key: {out:?}");
    assert!(out.stdout.starts_with("rejected:"), "{out:?}");
    // With the old key below the new one (a rotation), it opens again.
    let rotated = login_config(
        dir.path(),
        "rotated.keys",
        &format!("{}\n{key}", session_key_line()),
    );
    let out = verify_session(&rotated, value);
    assert_eq!(out.code, Some(0), "the old key second in the file: {out:?}");
}

#[test]
fn create_token_session_without_login_names_login() {
    let out = run_jwtgate(&["create-token", "--session", "-u", "alice"])
        .toml(&format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[auth.secret]\nvalue = \"{SECRET}\"\n"
        ))
        .run();
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.trim().is_empty(), "printed something: {out:?}");
    assert!(out.stderr.contains("[login]"), "{out:?}");
}
