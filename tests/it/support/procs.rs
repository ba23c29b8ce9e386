//! The real programs some tests run next to the gate (the Python servers in
//! tests/backends/, Tomcat, redis-server): finding them (a missing one is a
//! skip, except under CI, where `.ci/run` installs them and a missing one is
//! a failure), free ports for them, and a process group that is killed
//! whole when dropped.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A port that was free a moment ago on 127.0.0.1 (for programs that cannot
/// listen on port 0 and say which port they got).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// tests/backends/: the Python backends and their requirements.
pub fn backends_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/backends")
}

/// Fails the test under CI (`CI` set) where `.ci/run` installs what is
/// missing; otherwise says SKIPPED. Returns `present`.
fn skip_unless(present: bool, what: &str) -> bool {
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} is required under CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED: {what} is not installed (bash .ci/run installs it)");
    }
    present
}

/// A program on PATH (or at an absolute path), or `None` when it is missing
/// outside CI. Under CI a missing program is a failure.
pub fn require_program(program: &str) -> Option<PathBuf> {
    let found = if Path::new(program).is_absolute() {
        Path::new(program).is_file().then(|| PathBuf::from(program))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })
    };
    skip_unless(found.is_some(), program);
    found
}

/// Does `python3 -c "import MODULES"` succeed? `false` outside CI when it
/// does not; under CI a missing module is a failure. `what` names them in
/// the messages.
pub fn python3_has(modules: &str, what: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    skip_unless(ok, what)
}

/// A Python module runnable as `python3 -m NAME` (so that the interpreter
/// `.ci/run` installed it for is the one used), or `None` when it is missing
/// outside CI. Under CI a missing module is a failure.
pub fn require_python_module(module: &str) -> Option<Command> {
    if !python3_has(module, &format!("python3 module {module}")) {
        return None;
    }
    let mut cmd = Command::new("python3");
    cmd.args(["-m", module]);
    Some(cmd)
}

/// A child process leading a process group of its own; the whole group (a
/// server's workers, Tomcat's JVM) is killed when this is dropped.
pub struct ProcessGroup(pub Child);

impl ProcessGroup {
    /// Spawns `cmd` (with the stdio it was given; stdin closed unless set)
    /// as the leader of a new process group.
    pub fn spawn(cmd: &mut Command, what: &str) -> ProcessGroup {
        let child = cmd
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        ProcessGroup(child)
    }

    /// Kills the group now (as dropping does).
    pub fn kill(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}
