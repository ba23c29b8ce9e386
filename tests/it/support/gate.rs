//! Two ways to run a gate: in-process on the library (the default), or the
//! real `jwtgate` binary (when the test needs the process).
//!
//! [`GateBuilder`] writes the config into a temporary directory. By default
//! [`GateBuilder::start`] loads it with `jwtgate::config::Config::load` (the
//! environment given with [`GateBuilder::env`] only, never the test
//! process's; `--listen 127.0.0.1:0 --admin-listen 127.0.0.1:0` as
//! overrides, as `serve` applies its flags) and runs `jwtgate::start` on a
//! runtime of its own, in a thread of its own, built as `serve` builds it
//! (`worker_threads`). The bound addresses come from the returned
//! `jwtgate::Running`. Dropping the [`Gate`] stops it: its runtime is shut
//! down, so nothing of it (listeners, key refreshers, store tasks) outlives
//! the gate. Process-wide state is left alone: no `std::env::set_var`, no
//! tracing subscriber (an in-process gate logs nothing: [`Gate::logs`] needs
//! the process), the crypto providers installed as the binary installs them.
//! What libraries read from the real environment by themselves (proxy
//! variables for the gate's HTTP clients, `SSL_CERT_FILE`) is the test
//! process's, where the binary's is cleared.
//!
//! [`GateBuilder::process`] instead spawns
//! `jwtgate serve --config FILE --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0`
//! with a clean environment, and waits (at most 20 s) for the
//! `... listening on ADDR` log lines. Standard error is drained by a thread
//! for the whole life of the process, so tests can look at the logs. The
//! child is killed when the [`Gate`] is dropped. What only the binary does
//! needs it: signals (SIGHUP reload, SIGTERM drain), exit codes, logs and
//! stdout, the config watch, the command line and the process environment
//! (`JWTGATE_CONFIG`), the process's own memory.
//!
//! [`run_jwtgate`] runs a short command (create-token, check-config, ...) to
//! its end, with the same clean environment, and kills it after 20 s.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use jwtgate::config::{Config, Overrides, Sources};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const BIN: &str = env!("CARGO_BIN_EXE_jwtgate");
const START_LIMIT: Duration = Duration::from_secs(20);
/// How long a stopping in-process gate's leftover blocking tasks may take.
const STOP_LIMIT: Duration = Duration::from_secs(5);

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

/// The environment every gate starts from: `PATH`, `RUST_LOG=info`,
/// `NO_COLOR=1`, nothing else of the test process's.
fn base_env() -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Ok(path) = std::env::var("PATH") {
        env.push(("PATH".to_string(), path));
    }
    env.push(("RUST_LOG".to_string(), "info".to_string()));
    env.push(("NO_COLOR".to_string(), "1".to_string()));
    env
}

fn base_command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear();
    cmd.envs(base_env());
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
    process: bool,
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
            process: false,
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

    /// A process started without `--config` (environment only): implies
    /// [`Self::process`].
    pub fn no_config() -> Self {
        Self::new(None).process()
    }

    /// Runs the real binary instead of the library in-process: for signals,
    /// exit codes, logs, the config watch and the command line.
    pub fn process(mut self) -> Self {
        self.process = true;
        self
    }

    /// An environment variable: the process's, or the `Sources.env` the
    /// in-process gate loads its configuration with.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// An extra argument after `serve ...`: implies [`Self::process`].
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self.process()
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

    /// Starts the gate and waits until its listeners are up (panics after 20 s,
    /// or when it fails first, with its error or the process's logs).
    pub fn start(self) -> Gate {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = self.config.as_ref().map(|(ext, text)| {
            let p = dir.path().join(format!("config.{ext}"));
            std::fs::write(&p, text).expect("write config");
            p
        });
        if self.process {
            self.spawn(dir, config_path)
        } else {
            self.run_in_process(dir, config_path)
        }
    }

    /// The library's `start`, on a runtime of its own in a thread of its own.
    fn run_in_process(self, dir: TempDir, config_path: Option<PathBuf>) -> Gate {
        jwtgate::net::tls::install_crypto_provider();
        let mut env = base_env();
        env.extend(self.env.iter().cloned());
        let sources = Sources {
            file: config_path.clone(),
            env,
            overrides: Overrides {
                listen: self.listen_flag.then(|| "127.0.0.1:0".to_string()),
                admin_listen: self.admin_flag.then(|| "127.0.0.1:0".to_string()),
                upstream: None,
            },
        };
        let config = Config::load(&sources)
            .unwrap_or_else(|e| panic!("in-process jwtgate: configuration refused: {e}"));
        let runtime = build_runtime(config.worker_threads);
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("jwtgate-in-process".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match jwtgate::start(config).await {
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                        }
                        Ok(running) => {
                            let addrs = (
                                running.proxy_addr,
                                running.admin_addr,
                                running.forward_auth_addr,
                            );
                            let _ = ready_tx.send(Ok(addrs));
                            // Until the Gate is dropped (or its sender is).
                            let _ = stop_rx.await;
                            drop(running);
                        }
                    }
                });
                // Ends every task the gate spawned, like a killed process.
                runtime.shutdown_timeout(STOP_LIMIT);
            })
            .expect("spawn the in-process gate's thread");
        let (proxy, admin, forward_auth) = match ready_rx.recv_timeout(START_LIMIT) {
            Ok(Ok(addrs)) => addrs,
            Ok(Err(e)) => panic!("in-process jwtgate did not start: {e}"),
            Err(e) => panic!("in-process jwtgate did not start within 20 s: {e}"),
        };
        assert!(
            !self.expect_admin || admin.is_some(),
            "in-process jwtgate has no admin listener"
        );
        assert!(
            !self.expect_forward_auth || forward_auth.is_some(),
            "in-process jwtgate has no forward-auth listener"
        );
        Gate {
            inner: Inner::InProcess(InProcess {
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            proxy,
            admin,
            forward_auth,
            config_path,
            _dir: dir,
        }
    }

    /// The real binary: `jwtgate serve --config FILE ...`.
    fn spawn(self, dir: TempDir, config_path: Option<PathBuf>) -> Gate {
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

        let mut process = Process {
            pid: child.id(),
            child,
            logs,
            stdout,
        };
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let (proxy, admin, fa) = {
                let lines = process.logs.lock().unwrap();
                let find = |what: &str| lines.iter().find_map(|l| parse_listen(l, what));
                (find("proxy"), find("admin"), find("forward-auth"))
            };
            if let Some(p) = proxy
                && (!self.expect_admin || admin.is_some())
                && (!self.expect_forward_auth || fa.is_some())
            {
                return Gate {
                    inner: Inner::Process(process),
                    proxy: p,
                    admin,
                    forward_auth: fa,
                    config_path,
                    _dir: dir,
                };
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                // Let the drain threads catch the last lines.
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "jwtgate exited with {status} before listening; logs:\n{}",
                    process.logs()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "jwtgate did not report its listeners within 20 s; logs:\n{}",
                    process.logs()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The runtime `serve` builds for `worker_threads` (0: one thread per CPU;
/// 1: the current-thread scheduler).
fn build_runtime(workers: usize) -> tokio::runtime::Runtime {
    let workers = match workers {
        0 => thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut builder = match workers {
        1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if workers > 1 {
        builder.worker_threads(workers);
    }
    builder
        .enable_all()
        .build()
        .expect("build the gate's runtime")
}

/// A running jwtgate process.
struct Process {
    child: Child,
    pid: u32,
    logs: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Process {
    fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

/// A gate running in this process: the thread that owns its runtime.
struct InProcess {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

enum Inner {
    Process(Process),
    InProcess(InProcess),
}

/// A running gate, in-process or a process (see [`GateBuilder::process`]).
pub struct Gate {
    inner: Inner,
    pub proxy: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub forward_auth: Option<SocketAddr>,
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

    /// Is this the real binary (started with [`GateBuilder::process`])?
    pub fn is_process(&self) -> bool {
        matches!(self.inner, Inner::Process(_))
    }

    fn process(&self, what: &str) -> &Process {
        match &self.inner {
            Inner::Process(p) => p,
            Inner::InProcess(_) => panic!(
                "{what} needs the jwtgate process: start this gate with GateBuilder::process()"
            ),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process("the pid").pid
    }

    /// Every stderr line so far, joined with newlines.
    pub fn logs(&self) -> String {
        self.process("logs()").logs()
    }

    /// For failure messages: the process's logs, or a note that an
    /// in-process gate has none.
    pub fn diagnostics(&self) -> String {
        match &self.inner {
            Inner::Process(p) => format!("logs:\n{}", p.logs()),
            Inner::InProcess(_) => "(in-process gate: no logs)".to_string(),
        }
    }

    /// Every stdout line so far.
    pub fn stdout(&self) -> String {
        self.process("stdout()").stdout.lock().unwrap().join("\n")
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
        let pid = self.pid();
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {pid} failed");
    }

    /// Polls until the process exits; `None` if it is still running after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let Inner::Process(p) = &mut self.inner else {
            panic!(
                "wait_exit needs the jwtgate process: start this gate with GateBuilder::process()"
            );
        };
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(s)) = p.child.try_wait() {
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
        let logs = &self.process("wait_log").logs;
        let deadline = Instant::now() + limit;
        loop {
            if logs
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
        match &mut self.inner {
            Inner::Process(p) => {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
            Inner::InProcess(g) => {
                drop(g.stop.take());
                if let Some(t) = g.thread.take() {
                    let _ = t.join();
                }
            }
        }
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
