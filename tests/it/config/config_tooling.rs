//! Configuration tooling: the JSON Schema (checked by an independent
//! validator), every validation error at once, "did you mean", global flags
//! and the bad-configuration exit code.

use std::path::Path;
use std::process::Command;

use crate::support::*;

const SECRET: &str = "config-tooling-secret-0123456789abcdef";

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn committed_schema_is_the_one_the_binary_prints() {
    let out = run_jwtgate(&["config-schema"]).run();
    assert_eq!(out.code, Some(0), "{out:?}");
    let committed = std::fs::read_to_string(repo("config/jwtgate.schema.json")).unwrap();
    // The drain joins lines with \n and drops the last one's.
    assert_eq!(
        out.stdout.trim_end(),
        committed.trim_end(),
        "config/jwtgate.schema.json is stale: run `jwtgate config-schema > config/jwtgate.schema.json`"
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    // Durations and secrets are strings, as they are written.
    assert_eq!(v["properties"]["drain_timeout"]["type"], "string");
    assert_eq!(v["properties"]["drain_timeout"]["default"], "30s");
    assert_eq!(v["$defs"]["Secret"]["type"], "string");
    for (file, pointer) in [
        ("config/example.toml", "#:schema ./jwtgate.schema.json"),
        (
            "config/example.yaml",
            "# yaml-language-server: $schema=./jwtgate.schema.json",
        ),
    ] {
        let text = std::fs::read_to_string(repo(file)).unwrap();
        assert_eq!(text.lines().next(), Some(pointer), "{file}");
    }
}

/// Validates with Python's `jsonschema` (an implementation that shares
/// nothing with schemars): both examples must pass, broken files must not.
const VALIDATE: &str = r#"
import json, sys, tomllib, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
def load(path):
    if path.endswith(".toml"):
        return tomllib.load(open(path, "rb"))
    return yaml.safe_load(open(path))
result = {}
for path in sys.argv[2:]:
    result[path] = sorted(e.message for e in v.iter_errors(load(path)))
print(json.dumps(result))
"#;

fn python_has_jsonschema() -> bool {
    python3_has(
        "jsonschema, yaml, tomllib",
        "python3 with jsonschema and PyYAML (tests/backends/requirements.txt)",
    )
}

#[test]
fn examples_validate_against_the_schema_and_broken_files_do_not() {
    if !python_has_jsonschema() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    let out = run_jwtgate(&["config-schema"]).run();
    assert_eq!(out.code, Some(0), "{out:?}");
    std::fs::write(&schema, &out.stdout).unwrap();
    let broken = [
        (
            "unknown.toml",
            "[[auth.issuer]]\nissuer = \"https://idp\"\n",
            "Additional properties",
        ),
        (
            "type.toml",
            "drain_timeout = 30\n",
            "is not of type 'string'",
        ),
        (
            "enum.yaml",
            "routes:\n  - prefix: /x\n    auth: maybe\n",
            "'maybe' is not one of",
        ),
        (
            "duration.yaml",
            "upstream:\n  connect_timeout: soon\n",
            "does not match",
        ),
    ];
    let mut args = vec![
        "-c".to_string(),
        VALIDATE.to_string(),
        schema.display().to_string(),
    ];
    for f in ["config/example.toml", "config/example.yaml"] {
        args.push(repo(f).display().to_string());
    }
    for (name, text, _) in &broken {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        args.push(p.display().to_string());
    }
    let out = Command::new("python3").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for f in ["config/example.toml", "config/example.yaml"] {
        let errors = &result[repo(f).display().to_string()];
        assert_eq!(errors, &serde_json::json!([]), "{f}: {errors}");
    }
    for (name, _, expected) in &broken {
        let errors = result[dir.path().join(name).display().to_string()].to_string();
        assert!(errors.contains(expected), "{name}: {errors}");
    }
}

#[test]
fn every_validation_error_is_reported_at_once() {
    let out = run_jwtgate(&["check-config"])
        .toml(&format!(
            "listen = \"nowhere\"\n[upstream]\nurl = \"ftp://x\"\n[status]\npath = \"status\"\n\
             [auth.secret]\nvalue = \"{SECRET}\"\n"
        ))
        .run();
    // check-config's verdict on a configuration it rejects stays 1 (SPEC).
    assert_eq!(out.code, Some(1), "{out:?}");
    for key in ["`listen`", "`upstream.url`", "`status.path`"] {
        assert!(out.stderr.contains(key), "{key} not named:\n{}", out.stderr);
    }
    assert!(
        out.stderr.contains("3 configuration errors"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("config.toml"), "{}", out.stderr);
}

#[test]
fn unknown_keys_get_a_suggestion() {
    for (cfg, hint) in [
        (
            "[[auth.issuer]]\nissuer = \"https://idp\"\n",
            "did you mean `auth.issuers`?",
        ),
        (
            "[upstream]\nurll = \"http://x\"\n",
            "did you mean `upstream.url`?",
        ),
        (
            "upgrades = [\"websocket\"]\n",
            "did you mean `forward.upgrades`?",
        ),
    ] {
        let out = run_jwtgate(&["check-config"])
            .toml(&format!("{cfg}\n[auth.secret]\nvalue = \"{SECRET}\"\n"))
            .run();
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(out.stderr.contains(hint), "{hint} missing:\n{}", out.stderr);
    }
}

#[test]
fn config_flag_works_before_and_after_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gate.toml");
    std::fs::write(
        &file,
        format!("[auth.secret]\nvalue = \"{SECRET}\"\n[status]\ntoken = \"st-secret\"\n"),
    )
    .unwrap();
    let file = file.display().to_string();
    for args in [
        vec!["--config", &file, "check-config"],
        vec!["check-config", "--config", &file],
        vec!["-c", &file, "--log-format", "json", "check-config"],
        vec!["check-config", "--log-format", "json", "-c", &file],
    ] {
        let out = run_jwtgate(&args).run();
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
        assert!(out.stdout.contains("<redacted>"), "{args:?}: {out:?}");
    }
}

#[test]
fn bad_configuration_exits_78_where_a_rejection_exits_1() {
    // No key source: the configuration cannot be used.
    for args in [
        vec!["serve", "--listen", "127.0.0.1:0"],
        vec!["verify-token", "x.y.z"],
        vec!["create-token", "-u", "alice"],
    ] {
        let out = run_jwtgate(&args).run();
        assert_eq!(out.code, Some(78), "{args:?}: {out:?}");
        assert!(out.stderr.contains("no key source"), "{args:?}: {out:?}");
    }
    // A token the configuration rejects: 1.
    let out = run_jwtgate(&["verify-token", "x.y.z"])
        .env("TOKENS_SECRET", SECRET)
        .run();
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.starts_with("rejected: "), "{out:?}");
}
