//! Spawning the real `jwtgate` binary.
//!
//! [`GateBuilder`] writes the config into a temporary directory, starts
//! `jwtgate serve --config FILE --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0`
//! with a clean environment, and waits (at most 20 s) for the
//! `... listening on ADDR` log lines. Standard error is drained by a thread
//! for the whole life of the process, so tests can look at the logs. The
//! child is killed when the [`Gate`] is dropped.
//!
//! [`run_jwtgate`] runs a short command (create-token, check-config, ...) to
//! its end, with the same clean environment, and kills it after 20 s.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_jwtgate");
const START_LIMIT: Duration = Duration::from_secs(20);

/// Removes ANSI colour sequences from a log line.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn base_command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd.env("RUST_LOG", "info").env("NO_COLOR", "1");
    cmd
}

/// Starts a thread that appends every line of `r` to `sink`.
fn drain<R: Read + Send + 'static>(r: R, sink: Arc<Mutex<Vec<String>>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = strip_ansi(text.trim_end_matches(['\n', '\r']));
                    sink.lock().unwrap().push(text);
                }
            }
        }
    })
}

fn parse_listen(line: &str, what: &str) -> Option<SocketAddr> {
    let needle = format!("{what} listening on ");
    let i = line.find(&needle)?;
    let rest = &line[i + needle.len()..];
    // A listener on a Unix socket has no TCP address: 0.0.0.0:0 stands for it
    // (the test knows the path it configured).
    if rest.starts_with("unix:") {
        return Some(SocketAddr::from(([0, 0, 0, 0], 0)));
    }
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.parse().ok()
}

/// How to start a gate.
pub struct GateBuilder {
    config: Option<(String, String)>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    listen_flag: bool,
    admin_flag: bool,
    expect_admin: bool,
    expect_forward_auth: bool,
}

impl GateBuilder {
    fn new(config: Option<(String, String)>) -> Self {
        GateBuilder {
            config,
            env: Vec::new(),
            args: Vec::new(),
            listen_flag: true,
            admin_flag: true,
            expect_admin: true,
            expect_forward_auth: false,
        }
    }

    /// A gate whose config file is `config.toml` with this text.
    pub fn toml(text: &str) -> Self {
        Self::new(Some(("toml".into(), text.into())))
    }

    /// A gate whose config file is `config.yaml` with this text.
    pub fn yaml(text: &str) -> Self {
        Self::new(Some(("yaml".into(), text.into())))
    }

    /// A gate started without `--config` (environment only).
    pub fn no_config() -> Self {
        Self::new(None)
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// An extra argument after `serve ...`.
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }

    /// Do not pass `--listen 127.0.0.1:0` (the test sets the address itself).
    pub fn no_listen_flag(mut self) -> Self {
        self.listen_flag = false;
        self
    }

    /// Do not pass `--admin-listen`, and do not wait for the admin listener.
    pub fn no_admin(mut self) -> Self {
        self.admin_flag = false;
        self.expect_admin = false;
        self
    }

    /// Also wait for `forward-auth listening on ADDR`.
    pub fn expect_forward_auth(mut self) -> Self {
        self.expect_forward_auth = true;
        self
    }

    /// Spawns the gate and waits until its listeners are up (panics after 20 s
    /// or when the process exits first, printing its logs).
    pub fn start(self) -> Gate {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = self.config.as_ref().map(|(ext, text)| {
            let p = dir.path().join(format!("config.{ext}"));
            std::fs::write(&p, text).expect("write config");
            p
        });
        let mut cmd = base_command();
        cmd.arg("serve");
        if let Some(p) = &config_path {
            cmd.arg("--config").arg(p);
        }
        if self.listen_flag {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if self.admin_flag {
            cmd.args(["--admin-listen", "127.0.0.1:0"]);
        }
        cmd.args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn jwtgate");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        drain(child.stderr.take().unwrap(), logs.clone());
        drain(child.stdout.take().unwrap(), stdout.clone());

        let mut gate = Gate {
            pid: child.id(),
            child,
            proxy: "0.0.0.0:0".parse().unwrap(),
            admin: None,
            forward_auth: None,
            logs,
            stdout,
            config_path,
            _dir: dir,
        };
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let (proxy, admin, fa) = {
                let lines = gate.logs.lock().unwrap();
                let find = |what: &str| lines.iter().find_map(|l| parse_listen(l, what));
                (find("proxy"), find("admin"), find("forward-auth"))
            };
            if let Some(p) = proxy
                && (!self.expect_admin || admin.is_some())
                && (!self.expect_forward_auth || fa.is_some())
            {
                gate.proxy = p;
                gate.admin = admin;
                gate.forward_auth = fa;
                return gate;
            }
            if let Ok(Some(status)) = gate.child.try_wait() {
                // Let the drain threads catch the last lines.
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "jwtgate exited with {status} before listening; logs:\n{}",
                    gate.logs()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "jwtgate did not report its listeners within 20 s; logs:\n{}",
                    gate.logs()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A running jwtgate process.
pub struct Gate {
    child: Child,
    pub pid: u32,
    pub proxy: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub forward_auth: Option<SocketAddr>,
    logs: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
    config_path: Option<PathBuf>,
    _dir: TempDir,
}

impl Gate {
    /// `http://PROXY` + path (path should start with '/').
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy, path)
    }

    /// `http://ADMIN` + path.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin.expect("no admin listener"), path)
    }

    /// Every stderr line so far, joined with newlines.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Every stdout line so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// Path of the config file the gate was started with.
    pub fn config_path(&self) -> &Path {
        self.config_path
            .as_deref()
            .expect("gate started without a config file")
    }

    /// Replaces the config file's contents (e.g. before a SIGHUP).
    pub fn rewrite_config(&self, text: &str) {
        // Write then rename, so a reload never reads a half-written file.
        let p = self.config_path();
        let tmp = p.with_extension("new");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, p).expect("rename config");
    }

    /// Sends a signal (`TERM`, `INT`, `HUP`, ...) with the `kill` command.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid);
    }

    /// Polls until the process exits; `None` if it is still running after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the logs until a line contains every needle; false after `limit`.
    pub async fn wait_log(&self, needles: &[&str], limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self
                .logs
                .lock()
                .unwrap()
                .iter()
                .any(|l| needles.iter().all(|n| l.contains(n)))
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The outcome of a short command.
#[derive(Debug)]
pub struct RunOutput {
    /// Exit code; `None` when killed by a signal or after the 20 s limit.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl RunOutput {
    /// stdout and stderr together.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Builder for a short jwtgate command.
pub struct JwtgateCmd {
    args: Vec<String>,
    env: Vec<(String, String)>,
    config: Option<(String, String)>,
    stdin: Option<Vec<u8>>,
}

/// `jwtgate ARGS...`: see [`JwtgateCmd`].
pub fn run_jwtgate(args: &[&str]) -> JwtgateCmd {
    JwtgateCmd {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        config: None,
        stdin: None,
    }
}

impl JwtgateCmd {
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Writes `config.toml` and passes `--config FILE` right after the subcommand.
    pub fn toml(mut self, text: &str) -> Self {
        self.config = Some(("toml".into(), text.into()));
        self
    }

    /// Writes `config.yaml` and passes `--config FILE` right after the subcommand.
    pub fn yaml(mut self, text: &str) -> Self {
        self.config = Some(("yaml".into(), text.into()));
        self
    }

    pub fn stdin(mut self, data: &[u8]) -> Self {
        self.stdin = Some(data.to_vec());
        self
    }

    /// Runs to completion (killed after 20 s). Blocking: call it from a plain
    /// `#[test]` or inside `spawn_blocking`.
    pub fn run(self) -> RunOutput {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args = self.args.clone();
        if let Some((ext, text)) = &self.config {
            let p = dir.path().join(format!("config.{ext}"));
            std::fs::write(&p, text).expect("write config");
            let at = usize::from(!args.is_empty());
            args.insert(at, p.to_string_lossy().into_owned());
            args.insert(at, "--config".into());
        }
        let mut cmd = base_command();
        cmd.args(&args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn jwtgate");
        if let Some(data) = self.stdin {
            let mut w = child.stdin.take().unwrap();
            thread::spawn(move || {
                let _ = w.write_all(&data);
            });
        }
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let t1 = drain(child.stdout.take().unwrap(), out.clone());
        let t2 = drain(child.stderr.take().unwrap(), err.clone());
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut timed_out = false;
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break Some(s);
            }
            if Instant::now() > deadline {
                timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(10));
        };
        let _ = t1.join();
        let _ = t2.join();
        let stdout = out.lock().unwrap().join("\n");
        let stderr = err.lock().unwrap().join("\n");
        RunOutput {
            code: status.and_then(|s| s.code()),
            stdout,
            stderr,
            timed_out,
        }
    }
}
