//! The map of `src/` holds (README, "Layout"): a folder uses only the
//! folders below it in one order, so there is no cycle between folders, and
//! no source file grows past 600 lines. Read from the source text, the way
//! a reviewer would: every `crate::NAME` path names the folder it reaches.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The folders, top to bottom; each may use those after it. `observe` and
/// the leaves sit below all of them (every folder may record a metric or
/// draw a random value), and use only leaves themselves.
const ORDER: &[&str] = &[
    "cmd", "run", "admin", "proxy", "login", "mint", "store", "respond", "auth", "net", "config",
];
const OBSERVE: &str = "observe";
/// Single files that import nothing of the crate but each other.
const LEAVES: &[&str] = &["uri", "encoding", "random"];
/// The crate root re-exports `run::start`; `main.rs` is the binary.
const ROOT: &[&str] = &["lib", "main"];
const MAX_LINES: usize = 600;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The folder a file belongs to: the first component under `src/`, without
/// `.rs` (`src/proxy.rs` and `src/proxy/gate.rs` are both `proxy`).
fn folder_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The source without `//` comments (doc comments name paths freely).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string (a URL) keeps the line: cutting it
            // would only hide paths, never invent one.
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segment of every `crate::` path in `code`, the items of
/// `use crate::{a, b::c}` included.
fn crate_targets(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start && depth == 0 => {
                        item_start = false;
                        out.insert(ident(&group[j..]).to_string());
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest).to_string());
        }
    }
    out
}

/// May `from` use `to`?
fn allowed(from: &str, to: &str) -> bool {
    if from == to || ROOT.contains(&from) {
        return true;
    }
    let leaf = |f: &str| LEAVES.contains(&f);
    if leaf(from) {
        return leaf(to);
    }
    if from == OBSERVE {
        return leaf(to);
    }
    if to == OBSERVE || leaf(to) {
        return true;
    }
    match (
        ORDER.iter().position(|f| *f == from),
        ORDER.iter().position(|f| *f == to),
    ) {
        (Some(a), Some(b)) => a < b,
        _ => false,
    }
}

#[test]
fn folders_use_only_the_folders_below_them() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let mut known: BTreeSet<&str> = ORDER.iter().copied().collect();
    known.extend(LEAVES);
    known.extend(ROOT);
    known.insert(OBSERVE);
    let mut wrong = Vec::new();
    for file in &files {
        let from = folder_of(file);
        assert!(
            known.contains(from.as_str()),
            "{}: a folder the map does not name ({from}); add it to the map in README and here",
            file.display()
        );
        let text = std::fs::read_to_string(file).unwrap();
        for to in crate_targets(&code(&text)) {
            // `crate::start` and friends: the root's re-exports of `run`.
            let to = if ["start", "Running", "StartError"].contains(&to.as_str()) {
                "run".to_string()
            } else {
                to
            };
            if !allowed(&from, &to) {
                wrong.push(format!("{} ({from}) uses {to}", file.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "uses against the map:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_map_check_sees_grouped_imports_and_refuses_upward_uses() {
    let found = crate_targets(
        "use crate::{auth::{self, Identity}, config};\nlet x = crate::proxy::gate::handle;",
    );
    assert_eq!(
        found,
        ["auth", "config", "proxy"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    assert!(allowed("proxy", "auth"));
    assert!(!allowed("auth", "proxy"));
    assert!(!allowed("config", "net"));
    assert!(!allowed("observe", "config"));
    assert!(allowed("config", "uri"));
    assert!(!allowed("uri", "config"));
}

#[test]
fn no_source_file_is_longer_than_600_lines() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these by what they do:\n{}",
        long.join("\n")
    );
}
