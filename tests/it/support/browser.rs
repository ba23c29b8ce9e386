//! Headless Chromium for the browser sign-in tests: runs
//! `node tests/browser/browser.mjs tests/browser/scenarios/NAME.mjs` with
//! the variables a scenario reads (gate URL, issuer, user, password...),
//! and fails the test with the scenario's report (its error and the page
//! URL at failure, then its stderr) unless it exits 0.
//! tests/browser/README.md describes the runner and the scenarios.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::oidc::{browser_dir, on_path, skip_unless};

/// The Chromium binary browser.mjs launches (`CHROMIUM` or /usr/bin/chromium).
pub fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Can browser.mjs run here (`node`, tests/browser/node_modules with
/// oidc-provider and puppeteer-core, Chromium)? Prints why not (and fails
/// under CI).
pub fn chromium_available() -> bool {
    let node = on_path("node").is_some();
    let modules = ["oidc-provider", "puppeteer-core"].iter().all(|m| {
        browser_dir()
            .join("node_modules")
            .join(m)
            .join("package.json")
            .is_file()
    });
    let chromium = chromium_path().is_file();
    let missing: Vec<&str> = [
        (node, "node"),
        (modules, "tests/browser/node_modules"),
        (chromium, "chromium"),
    ]
    .iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, what)| *what)
    .collect();
    skip_unless(missing.is_empty(), &missing.join(" and "))
}

/// The outcome of one scenario run.
#[derive(Debug)]
pub struct ScenarioRun {
    pub code: Option<i32>,
    /// The JSON line browser.mjs printed (`{"ok":..., "result"|"error", "url", "ms"}`).
    pub report: Value,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `tests/browser/scenarios/{name}.mjs` with these variables (plus
/// `BROWSER_TIMEOUT_MS=60000` and loopback kept off any proxy), kills it
/// after 90 s, and asserts it passed. Blocking: use [`run_scenario`] from
/// async tests.
pub fn run_scenario_blocking(name: &str, env: &[(String, String)]) -> ScenarioRun {
    let dir = browser_dir();
    let scenario = dir.join("scenarios").join(format!("{name}.mjs"));
    assert!(scenario.is_file(), "no scenario {}", scenario.display());
    let out_dir = tempfile::tempdir().expect("tempdir");
    let (out_path, err_path) = (out_dir.path().join("out"), out_dir.path().join("err"));
    let mut child = Command::new("node")
        .arg(dir.join("browser.mjs"))
        .arg(&scenario)
        .current_dir(&dir)
        .env("BROWSER_TIMEOUT_MS", "60000")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn node tests/browser/browser.mjs");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let report = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or(Value::Null);
    let run = ScenarioRun {
        code: status.and_then(|s| s.code()),
        report,
        stdout,
        stderr,
    };
    assert!(
        run.code == Some(0) && run.report["ok"] == true,
        "scenario {name} failed (exit {:?}{}):\nerror: {}\npage URL at failure: {}\n\
         stdout:\n{}\nstderr:\n{}",
        run.code,
        if status.is_none() {
            ", killed after 90 s"
        } else {
            ""
        },
        run.report["error"].as_str().unwrap_or("(no report)"),
        run.report["url"].as_str().unwrap_or("?"),
        run.stdout,
        run.stderr,
    );
    run
}

/// [`run_scenario_blocking`] on a blocking thread, so that the test's
/// runtime (the upstream, the scripted provider) keeps serving meanwhile.
pub async fn run_scenario(name: &str, env: &[(&str, &str)]) -> ScenarioRun {
    let name = name.to_string();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || run_scenario_blocking(&name, &env))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}
