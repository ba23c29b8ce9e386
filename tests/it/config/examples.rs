//! The example configurations in `config/` stay loadable: `check-config`
//! accepts each of them (exit 0) with a clean environment, so no `JWTGATE_*`
//! or seed variable of the machine running the tests can help or hurt.

use std::path::Path;
use std::process::Command;

fn check_config(relative: &str) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    assert!(file.is_file(), "{} is missing", file.display());
    let run = |allow_weak: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jwtgate"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        if allow_weak {
            cmd.env("JWTGATE_AUTH__SECRET__ALLOW_WEAK", "true");
        }
        cmd.arg("check-config")
            .arg("--config")
            .arg(&file)
            .output()
            .expect("run jwtgate check-config")
    };
    // As committed, the examples carry a published placeholder secret,
    // which is refused (issue 8) with an error that names the key and does
    // not repeat the value.
    let refused = run(false);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "placeholder accepted: {err}"
    );
    assert!(
        err.contains("auth.secret") && err.contains("placeholder"),
        "{err}"
    );
    assert!(!err.contains("change-me"), "{err}");
    // Everything else in them is valid: with the placeholder explicitly
    // allowed, they load.
    let out = run(true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "check-config --config {relative} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // The effective configuration is printed with the secret redacted.
    assert!(stdout.contains("<redacted>"), "{stdout}");
    assert!(!stdout.contains("change-me"), "{stdout}");
}

#[test]
fn example_toml_is_valid() {
    check_config("config/example.toml");
}

#[test]
fn example_yaml_is_valid() {
    check_config("config/example.yaml");
}
