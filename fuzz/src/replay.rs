//! The corpus replay (CI): one test per target runs the target's `run`
//! once on every committed input of `fuzz/corpus/<target>/` and on the
//! regression inputs kept for it in `tests/fixtures/fuzz/<target>-*`, with
//! the same invariants as under libFuzzer but in an ordinary
//! `cargo test --no-default-features --lib` (a debug build: no libFuzzer,
//! no sanitizer, no release build of the dependencies). Every input runs,
//! also after a failure; the test then fails listing each input that
//! panicked (its path and the panic).
//!
//! A regression input is a raw input of its target, except for `config`:
//! `tests/fixtures/fuzz/config-*.toml` and `*.yaml` are configuration
//! files, replayed behind the mode byte of their format, plain and
//! stretched.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;

use crate::targets;

thread_local! {
    /// Set while this thread replays an input: its panics are recorded
    /// (in `LAST_PANIC`) instead of printed, one line per failing input.
    static REPLAYING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records the panics of a replaying
/// thread and leaves every other panic to the default hook.
fn record_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if REPLAYING.get() {
                LAST_PANIC.set(Some(info.to_string()));
            } else {
                default(info);
            }
        }));
    });
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ is in the repository")
}

/// The files of `dir` whose name starts with `prefix`, sorted.
fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    files.sort();
    files
}

/// The inputs of `target`: a name to report (the path from the repository
/// root) and the bytes given to `run`.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = repo_root();
    let name = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));

    let corpus = root.join("fuzz/corpus").join(target);
    let corpus_files = files(&corpus, "");
    assert!(
        !corpus_files.is_empty(),
        "{}: no corpus inputs to replay",
        corpus.display()
    );
    let mut inputs: Vec<(String, Vec<u8>)> =
        corpus_files.iter().map(|p| (name(p), read(p))).collect();

    let regressions = root.join("tests/fixtures/fuzz");
    for p in files(&regressions, &format!("{target}-")) {
        let data = read(&p);
        let format = match p.extension().and_then(|e| e.to_str()) {
            Some("toml") if target == "config" => Some(0u8),
            Some("yaml") if target == "config" => Some(1u8),
            _ => None,
        };
        match format {
            // Byte 0 bit 0: the format; bit 1: stretched.
            Some(format) => {
                for mode in [format, format | 2] {
                    let mut input = vec![mode];
                    input.extend_from_slice(&data);
                    inputs.push((format!("{} (mode byte {mode})", name(&p)), input));
                }
            }
            None => inputs.push((name(&p), data)),
        }
    }
    inputs
}

/// Runs `run` on every input of `target`; fails naming each input that
/// panicked.
fn replay(target: &str, run: fn(&[u8])) {
    record_panics();
    let inputs = inputs(target);
    let mut failed = Vec::new();
    for (name, data) in &inputs {
        REPLAYING.set(true);
        let result = panic::catch_unwind(AssertUnwindSafe(|| run(data)));
        REPLAYING.set(false);
        if result.is_err() {
            let why = LAST_PANIC
                .take()
                .unwrap_or_else(|| "panicked".into())
                .replace('\n', " ");
            failed.push(format!("  {name}: {why}"));
        }
    }
    assert!(
        failed.is_empty(),
        "fuzz target `{target}`: {} of {} inputs failed:\n{}",
        failed.len(),
        inputs.len(),
        failed.join("\n")
    );
}

#[test]
fn path() {
    replay("path", targets::path::run);
}

#[test]
fn bearer() {
    replay("bearer", targets::bearer::run);
}

#[test]
fn verify() {
    replay("verify", targets::verify::run);
}

#[test]
fn request() {
    replay("request", targets::request::run);
}

#[test]
fn jwks() {
    replay("jwks", targets::jwks::run);
}

#[test]
fn form() {
    replay("form", targets::form::run);
}

#[test]
fn config() {
    replay("config", targets::config::run);
}

#[test]
fn session_cookie() {
    replay("session_cookie", targets::session_cookie::run);
}

#[test]
fn return_path() {
    replay("return_path", targets::return_path::run);
}
