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
            // branch's ref file (or packed-refs) for a branch. A worktree's
            // `.git` is a file, so ask git where these live.
            for path in ["HEAD", "packed-refs"] {
                if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(p) = git(&["rev-parse", "--git-path", &branch])
            {
                println!("cargo:rerun-if-changed={p}");
            }
            git(&["rev-parse", "--short=12", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=JWTGATE_GIT_REVISION={revision}");
}
