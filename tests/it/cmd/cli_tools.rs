//! The command-line tools: hash-password on a terminal, verify-token from
//! stdin and for a request, completions, --version and --help.

use std::process::Command;

use crate::support::*;

const SECRET: &str = "cli-tools-tests-secret-0123456789abcdef";

fn python3_available() -> bool {
    python3_has("pty", "python3 (for its pty module)")
}

/// Runs `jwtgate hash-password` on a pseudo-terminal, answering its two
/// prompts; prints JSON `{"output": everything the terminal showed, "status"}`.
const PTY_DRIVER: &str = r#"
import json, os, pty, sys, select, termios, time
binary, first, second = sys.argv[1], sys.argv[2], sys.argv[3]
pid, fd = pty.fork()
if pid == 0:
    os.execv(binary, [binary, "hash-password"])
out = b""
def read_until(needle, limit=15):
    global out
    end = time.time() + limit
    while needle not in out and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                return
            if not chunk:
                return
            out += chunk
def echo_off(limit=5):
    # The prompt is written before echo is turned off: wait for the
    # terminal itself to say echo is off before typing.
    end = time.time() + limit
    while termios.tcgetattr(fd)[3] & termios.ECHO and time.time() < end:
        time.sleep(0.01)
read_until(b"password: ")
echo_off()
os.write(fd, first.encode() + b"\n")
read_until(b"again: ")
echo_off()
os.write(fd, second.encode() + b"\n")
read_until(b"\x00never", limit=5)
_, status = os.waitpid(pid, 0)
print(json.dumps({"output": out.decode("utf-8", "replace"), "status": os.waitstatus_to_exitcode(status)}))
"#;

fn hash_on_a_terminal(first: &str, second: &str) -> (String, i64) {
    let out = Command::new("python3")
        .args(["-c", PTY_DRIVER, crate::support::gate::BIN, first, second])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["output"].as_str().unwrap().to_string(),
        v["status"].as_i64().unwrap(),
    )
}

#[test]
fn hash_password_on_a_terminal_asks_twice_without_echo() {
    if !python3_available() {
        return;
    }
    let password = "pty-Secret-horse-42";
    let (output, status) = hash_on_a_terminal(password, password);
    assert_eq!(status, 0, "{output}");
    assert!(output.contains("password: "), "{output}");
    assert!(output.contains("password again: "), "{output}");
    assert!(
        !output.contains(password),
        "the password was echoed:\n{output}"
    );
    let hash = output
        .lines()
        .find(|l| l.trim().starts_with("$argon2id$"))
        .unwrap_or_else(|| panic!("no hash in:\n{output}"))
        .trim()
        .to_string();
    // The hash is of that password: the users file accepts it.
    use argon2::PasswordVerifier;
    let parsed = argon2::PasswordHash::new(&hash).unwrap();
    assert!(
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    );

    let (output, status) = hash_on_a_terminal(password, "something-else");
    assert_eq!(status, 1, "{output}");
    assert!(output.contains("differ"), "{output}");
    assert!(!output.contains("$argon2id$"), "{output}");
}

#[test]
fn hash_password_still_reads_a_pipe() {
    let out = run_jwtgate(&["hash-password"]).stdin(b"piped-pass\n").run();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.trim().starts_with("$argon2id$"), "{out:?}");
    assert!(
        !out.stderr.contains("password"),
        "prompted on a pipe: {out:?}"
    );
}

const ROUTES: &str = r#"
[status]
token = "st-token"
[[routes]]
prefix = "/public/"
auth = "none"
[[routes]]
prefix = "/admin/"
allowed_users = ["root"]
[[routes]]
path = "/reports"
methods = ["POST"]
require_claims = { role = "auditor" }
"#;

fn verify(args: &[&str], stdin: &str) -> RunOutput {
    let mut all = vec!["verify-token"];
    all.extend_from_slice(args);
    run_jwtgate(&all)
        .toml(&format!("[auth.secret]\nvalue = \"{SECRET}\"\n{ROUTES}"))
        .stdin(stdin.as_bytes())
        .run()
}

#[test]
fn verify_token_reads_stdin_and_evaluates_a_request() {
    let alice = hs256(SECRET, &claims("alice"));
    let piped = format!("{alice}\n");

    // No argument and `-`: the token comes from stdin.
    for args in [vec![], vec!["-"]] {
        let out = verify(&args, &piped);
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
        assert!(out.stdout.contains("valid: user \"alice\""), "{out:?}");
    }

    // The admin route decides: alice is not allowed there.
    let out = verify(&["--path", "/admin/users", "--method", "DELETE"], &piped);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.starts_with("rejected: 403"), "{out:?}");
    assert!(out.stdout.contains("user_not_allowed"), "{out:?}");
    assert!(
        out.stdout.contains("routes[1] (prefix \"/admin/\")"),
        "{out:?}"
    );
    assert!(out.stdout.contains("DELETE /admin/users"), "{out:?}");

    // Elsewhere no route matches and the token suffices.
    let out = verify(&["-", "--path", "/api/x?page=2"], &piped);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("allowed (token)"), "{out:?}");
    assert!(out.stdout.contains("no route"), "{out:?}");

    // The path is normalised as a request's would be.
    let out = verify(&["--path", "/public/../admin/x"], &piped);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.contains("routes[1]"), "{out:?}");

    // A method-limited route with a claim requirement.
    let out = verify(&["--path", "/reports", "--method", "post"], &piped);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.contains("missing_claim"), "{out:?}");
    assert!(
        out.stdout.contains("routes[2] (path \"/reports\")"),
        "{out:?}"
    );
    let auditor = hs256(
        SECRET,
        &serde_json::json!({"sub": "carol", "role": "auditor", "exp": now() + 600}),
    );
    let out = verify(&["--path", "/reports", "--method", "POST"], &auditor);
    assert_eq!(out.code, Some(0), "{out:?}");

    // Exemptions need no token at all.
    let out = verify(&["--path", "/public/index.html"], "");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("allowed (public_route)"), "{out:?}");
    assert!(out.stdout.contains("routes[0]"), "{out:?}");
    let out = verify(&["--path", "/status?token=st-token"], "");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("allowed (status_token)"), "{out:?}");
    let out = verify(&["--path", "/status?token=wrong"], "");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.contains("401"), "{out:?}");
    assert!(
        !out.stdout.contains("wrong"),
        "the query is echoed: {out:?}"
    );
}

#[test]
fn completions_version_and_help() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run_jwtgate(&["completions", shell]).run();
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(out.stdout.contains("verify-token"), "{shell}: {out:?}");
        assert!(out.stdout.contains("config-schema"), "{shell}: {out:?}");
    }
    let out = run_jwtgate(&["completions", "tcsh"]).run();
    assert_eq!(out.code, Some(2), "{out:?}");

    let out = run_jwtgate(&["--version"]).run();
    assert_eq!(out.code, Some(0), "{out:?}");
    let v = out.stdout.trim();
    assert!(
        v.starts_with(&format!("jwtgate {} (", env!("CARGO_PKG_VERSION"))) && v.ends_with(')'),
        "{v}"
    );
    let rev = &v[v.find('(').unwrap() + 1..v.len() - 1];
    assert!(!rev.is_empty(), "{v}");

    let out = run_jwtgate(&["--help"]).run();
    assert!(out.stdout.contains("Examples:"), "{out:?}");
    assert!(
        out.stdout.contains("78"),
        "exit codes not in --help: {out:?}"
    );
    let out = run_jwtgate(&["verify-token", "--help"]).run();
    assert!(out.stdout.contains("--path"), "{out:?}");
    assert!(out.stdout.contains("Examples:"), "{out:?}");
}
