//! Records the git revision the binary is built from, for `--version` and
//! `jwtgate_build_info`. A build outside a git checkout (a source tarball, a
//! container build without `.git`) may pass it as `JWTGATE_GIT_REVISION`;
//! otherwise it is "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=JWTGATE_GIT_REVISION");
    let revision = std::env::var("JWTGATE_GIT_REVISION")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            // Rebuild when HEAD moves: HEAD itself for a detached head, the
            // branch's ref (a loose file, or a line of packed-refs) for a
            // branch. A worktree's `.git` is a file, so ask git where these
            // live. Only paths that exist are named: Cargo reruns a build
            // script on every build when a `rerun-if-changed` path is missing
            // (a fresh clone has no packed-refs, a packed branch no loose
            // file). The folder of the branch's loose ref is named instead of
            // the file, so that the file appearing (the first commit after a
            // pack) is seen too.
            let mut watch = Vec::new();
            for path in ["HEAD", "packed-refs"] {
                watch.extend(git(&["rev-parse", "--git-path", path]));
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(p) = git(&["rev-parse", "--git-path", &branch])
            {
                watch.extend(
                    std::path::Path::new(&p)
                        .parent()
                        .map(|d| d.to_string_lossy().into_owned()),
                );
            }
            for p in watch {
                if std::path::Path::new(&p).exists() {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=JWTGATE_GIT_REVISION={revision}");
}
