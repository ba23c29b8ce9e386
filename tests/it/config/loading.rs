//! Configuration loading: unknown keys, missing key source, check-config's
//! redaction and verify-token's verdicts.

use crate::support::*;
use serde_json::json;

const SECRET: &str = "config-tests-secret-0123456789abcdef";

fn assert_failed_naming(out: &RunOutput, needles: &[&str]) {
    assert!(!out.timed_out, "jwtgate kept running (served?): {out:?}");
    assert!(
        matches!(out.code, Some(c) if c != 0),
        "exit code {:?}: {out:?}",
        out.code
    );
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "stderr does not name {n:?}:\n{}",
            out.stderr
        );
    }
    assert!(
        !out.stderr.contains("proxy listening on"),
        "it served: {}",
        out.stderr
    );
}

#[test]
fn unknown_key_in_toml_is_refused_naming_key_and_file() {
    for cfg in [
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[auth]\nbogus_option = 1\n",
        "listne = \"127.0.0.1:0\"\n",
        "[upstream]\nurl = \"http://127.0.0.1:9\"\nbogus_option = \"x\"\n",
    ] {
        let out = run_jwtgate(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .toml(cfg)
        .env("TOKENS_SECRET", SECRET)
        .run();
        let key = if cfg.contains("listne") {
            "listne"
        } else {
            "bogus_option"
        };
        assert_failed_naming(&out, &[key, "config.toml"]);
    }
}

#[test]
fn unknown_key_in_yaml_is_refused_naming_key_and_file() {
    let cfg = "upstream:\n  url: \"http://127.0.0.1:9\"\nauth:\n  secret:\n    value: \"x\"\n    bogus_option: 1\n";
    let out = run_jwtgate(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ])
    .yaml(cfg)
    .run();
    assert_failed_naming(&out, &["bogus_option", "config.yaml"]);
}

#[test]
fn bad_values_are_refused_naming_the_key() {
    let cases = [
        ("drain_timeout = \"soon\"\n", "drain_timeout"),
        (
            "[upstream]\nresponse_timeout = \"ten\"\n",
            "response_timeout",
        ),
        ("[auth.secret]\nalgorithms = [\"HS999\"]\n", "algorithms"),
        ("[auth]\ntoken_from = [\"smoke-signal\"]\n", "token_from"),
    ];
    for (cfg, key) in cases {
        let out = run_jwtgate(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .toml(cfg)
        .env("TOKENS_SECRET", SECRET)
        .run();
        assert_failed_naming(&out, &[key]);
    }
}

#[test]
fn two_secret_sources_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("s");
    std::fs::write(&f, "file-secret").unwrap();
    let cfg = format!(
        "[auth.secret]\nvalue = \"{SECRET}\"\nfile = \"{}\"\n",
        f.display()
    );
    let out = run_jwtgate(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ])
    .toml(&cfg)
    .run();
    assert_failed_naming(&out, &[]);
    assert!(
        !out.stderr.contains(SECRET),
        "the secret is printed: {}",
        out.stderr
    );
}

#[test]
fn missing_config_file_is_an_error() {
    let out = run_jwtgate(&[
        "serve",
        "--config",
        "/nonexistent/jwtgate.toml",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ])
    .env("TOKENS_SECRET", SECRET)
    .run();
    assert_failed_naming(&out, &["/nonexistent/jwtgate.toml"]);
}

#[test]
fn no_key_source_refuses_to_start() {
    let out = run_jwtgate(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ])
    .toml("[upstream]\nurl = \"http://127.0.0.1:9\"\n")
    .run();
    assert_failed_naming(&out, &[]);
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("secret") || err.contains("issuer") || err.contains("key"),
        "the message does not say what is missing:\n{}",
        out.stderr
    );
    // Also without any config file at all.
    let out = run_jwtgate(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ])
    .run();
    assert_failed_naming(&out, &[]);
    // An empty secret is no key source either.
    let out = run_jwtgate(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ])
    .env("TOKENS_SECRET", "")
    .run();
    assert_failed_naming(&out, &[]);
}

#[test]
fn check_config_redacts_every_secret() {
    let status = "status-token-9876543210-zyx";
    let cfg = format!(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[auth.secret]\nvalue = \"{SECRET}\"\n[status]\ntoken = \"{status}\"\n"
    );
    let out = run_jwtgate(&["check-config"]).toml(&cfg).run();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        !out.stdout.trim().is_empty(),
        "check-config printed nothing"
    );
    assert!(
        out.stdout.contains("127.0.0.1:9"),
        "effective config not printed:\n{}",
        out.stdout
    );
    for s in [SECRET, status] {
        assert!(
            !out.all().contains(s),
            "secret {s:?} printed:\n{}",
            out.all()
        );
    }

    // Secrets from the seed environment names are redacted too.
    let k = b64url(b"0123456789abcdef0123456789abcdef");
    let out = run_jwtgate(&["check-config"])
        .toml("[upstream]\nurl = \"http://127.0.0.1:9\"\n")
        .env(
            "AMPHO_SECURITY_KEY",
            &json!({"kty": "oct", "k": k}).to_string(),
        )
        .env("STATUS_TOKEN", status)
        .run();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!out.all().contains(&k), "JWK k printed:\n{}", out.all());
    assert!(
        !out.all().contains(status),
        "status token printed:\n{}",
        out.all()
    );
}

#[test]
fn check_config_fails_with_exit_1_naming_the_key() {
    let out = run_jwtgate(&["check-config"])
        .toml("[auth]\nbogus_option = true\n")
        .env("TOKENS_SECRET", SECRET)
        .run();
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.all().contains("bogus_option"), "{}", out.all());
}

#[test]
fn check_config_reads_jwtgate_config_env() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("from-env.toml");
    std::fs::write(
        &p,
        format!(
            "[upstream]\nurl = \"http://10.9.8.7:8123\"\n[auth.secret]\nvalue = \"{SECRET}\"\n"
        ),
    )
    .unwrap();
    let out = run_jwtgate(&["check-config"])
        .env("JWTGATE_CONFIG", p.to_str().unwrap())
        .run();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("10.9.8.7:8123"), "{}", out.stdout);
}

#[test]
fn verify_token_accepts_a_good_token() {
    let token = brevia_token(SECRET, "alice", 600);
    let out = run_jwtgate(&["verify-token", &token])
        .env("TOKENS_SECRET", SECRET)
        .run();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.all().contains("alice"),
        "does not say who: {}",
        out.all()
    );
}

#[test]
fn verify_token_explains_rejections() {
    let expired = hs256(SECRET, &json!({"user": "alice", "exp": now() - 3600}));
    let out = run_jwtgate(&["verify-token", &expired])
        .env("TOKENS_SECRET", SECRET)
        .run();
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.all().to_lowercase().contains("expired"),
        "{}",
        out.all()
    );

    let forged = brevia_token("another-secret", "alice", 600);
    let out = run_jwtgate(&["verify-token", &forged])
        .env("TOKENS_SECRET", SECRET)
        .run();
    assert_eq!(out.code, Some(1), "{out:?}");

    let bob = brevia_token(SECRET, "bob", 600);
    let out = run_jwtgate(&["verify-token", &bob])
        .env("TOKENS_SECRET", SECRET)
        .env("TOKENS_USERS", "alice")
        .run();
    assert_eq!(out.code, Some(1), "{out:?}");
    let text = out.all().to_lowercase();
    assert!(
        text.contains("not allowed") || text.contains("bob"),
        "{}",
        out.all()
    );

    // With a config file too.
    let out = run_jwtgate(&["verify-token", &expired])
        .toml(&format!("[auth.secret]\nvalue = \"{SECRET}\"\n"))
        .run();
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.all().to_lowercase().contains("expired"),
        "{}",
        out.all()
    );
}
