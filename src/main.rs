//! Thin entry point: parse the command line, set up logging and crypto, run.
//! Exit codes: 0 success, 1 a runtime or verification failure, 2 bad usage.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

// The proxy allocates small, short-lived buffers per request; mimalloc
// handles that pattern with less contention and fragmentation than glibc's
// malloc (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use jwtgate::cmd::cli::{self, Cli, Command, LogFormat, ServeArgs};
use jwtgate::run::reload::Trigger;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{debug, info, warn};

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Flattened: an event's fields are top-level keys, as log pipelines
        // (Loki, Elasticsearch, Cloud Logging) index them.
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    jwtgate::net::tls::install_crypto_provider();
    let command = cli.command.unwrap_or(Command::Serve(ServeArgs::default()));
    // check-config's verdict on a bad configuration is exit 1 (SPEC); for
    // every other command a configuration that cannot be used is 78.
    let config_code = match command {
        Command::CheckConfig => 1,
        _ => cli::EXIT_CONFIG,
    };
    let result = match command {
        Command::Serve(args) => serve_main(args, cli.config),
        other => build_runtime(0).and_then(|rt| rt.block_on(run(other, cli.config))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("jwtgate: {e:#}");
            ExitCode::from(if is_config_error(&e) { config_code } else { 1 })
        }
    }
}

/// Did the command fail on its configuration (as opposed to at run time)?
fn is_config_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<jwtgate::config::ConfigError>()
            || matches!(
                c.downcast_ref::<jwtgate::StartError>(),
                Some(jwtgate::StartError::Config(_))
            )
    })
}

/// `serve` reads its configuration before the runtime exists, because
/// `worker_threads` decides which runtime to build.
fn serve_main(args: ServeArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let sources = args.sources(config);
    let (config, seen) = load_to_serve(&sources)?;
    build_runtime(config.worker_threads)?.block_on(serve(sources, config, seen))
}

fn build_runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    // 0 means one thread per CPU the process may use (cgroup quotas count);
    // with a single CPU, the single-threaded runtime is the cheaper one.
    let workers = match workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut builder = match workers {
        // One thread: the current-thread scheduler, with no cross-thread
        // wake-ups or work stealing (a sidecar given one CPU).
        1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if workers > 1 {
        builder.worker_threads(workers);
    }
    builder
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))
}

async fn run(command: Command, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    match command {
        // `serve` chooses its runtime from the configuration (`worker_threads`),
        // so `main` runs it through `serve_main`, before any runtime exists.
        Command::Serve(_) => anyhow::bail!("serve is run by main, outside this runtime"),
        Command::Demo => jwtgate::cmd::demo::run().await.map(|_| ExitCode::SUCCESS),
        Command::Whoami { listen } => {
            let (addr, task) = jwtgate::cmd::whoami::spawn(listen).await?;
            info!("whoami listening on {addr}");
            tokio::select! {
                _ = task => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::CreateToken {
            user,
            minutes,
            claims,
            session,
        } => {
            let cfg = cli::load_config(config)?;
            println!(
                "{}",
                cli::create_token(&cfg, &user, minutes, &claims, session)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::GenKey { kty, pem, session } => {
            println!("{}", cli::gen_key(kty, pem, session)?.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Command::HashPassword => {
            println!("{}", cli::hash_password()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig => {
            print!("{}", cli::check_config(config)?);
            eprintln!("configuration is valid");
            Ok(ExitCode::SUCCESS)
        }
        Command::ConfigSchema => {
            print!("{}", jwtgate::config::schema::json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "jwtgate",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Healthcheck { url, timeout } => {
            // Only an explicit --config is read: the probe must not fail on
            // an environment it does not need.
            let cfg = config.map(|c| cli::load_config(Some(c))).transpose()?;
            let target = jwtgate::cmd::healthcheck::target(url.as_deref(), cfg.as_ref())?;
            match jwtgate::cmd::healthcheck::probe(&target, timeout).await {
                Ok(200) => {
                    println!("ready");
                    Ok(ExitCode::SUCCESS)
                }
                Ok(code) => {
                    println!("not ready: HTTP {code}");
                    Ok(ExitCode::from(1))
                }
                Err(e) => {
                    println!("not ready: {e:#}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Revoke {
            jti,
            session,
            user,
            issuer,
            before,
            expires,
            mut admin,
        } => {
            admin.config = config.clone();
            let req = jwtgate::cmd::revoke::RevokeRequest {
                jti,
                session,
                user,
                issuer,
                before,
                expires,
            };
            print!("{}", jwtgate::cmd::revoke::revoke(&admin, req).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Revocations { command } => {
            let out = match command {
                cli::RevocationsCommand::List { json, mut admin } => {
                    admin.config = config.clone();
                    jwtgate::cmd::revoke::list(&admin, json).await?
                }
                cli::RevocationsCommand::Remove { id, mut admin } => {
                    admin.config = config.clone();
                    jwtgate::cmd::revoke::remove(&admin, &id).await?
                }
            };
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Command::VerifyToken {
            token,
            path,
            method,
            session,
        } => {
            let token = cli::token_arg(token)?;
            // Nothing to verify and no request to evaluate: bad usage.
            if token.is_empty() && path.is_none() {
                eprintln!("jwtgate: no token: give TOKEN, `-`, or the token on stdin");
                return Ok(ExitCode::from(2));
            }
            let probe = path.as_deref().map(|path| cli::Probe {
                path,
                method: &method,
            });
            report_verdict(cli::verify_token(config, &token, probe, session).await?)
        }
    }
}

fn report_verdict(verdict: Result<String, String>) -> anyhow::Result<ExitCode> {
    match verdict {
        Ok(msg) => {
            println!("{msg}");
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            println!("rejected: {reason}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Loads the configuration to serve, with the digest the config file had
/// just before it was read: the watch compares against that, so an edit made
/// while the gate was starting (before the watch existed) is not lost.
fn load_to_serve(
    sources: &jwtgate::config::Sources,
) -> anyhow::Result<(jwtgate::config::Config, jwtgate::run::file_watch::Seen)> {
    let seen = jwtgate::run::file_watch::Seen::before_load(sources.file.as_deref());
    let config = jwtgate::config::Config::load(sources)?;
    Ok((config, seen))
}

async fn serve(
    sources: jwtgate::config::Sources,
    config: jwtgate::config::Config,
    seen: jwtgate::run::file_watch::Seen,
) -> anyhow::Result<ExitCode> {
    // The watch starts before the gate reads the files the configuration
    // names, so a change made while it starts is seen.
    let mut watch = jwtgate::run::file_watch::FileWatch::new();
    watch.start(
        jwtgate::run::file_watch::watched_files(&config, sources.file.as_deref()),
        seen,
    );
    let running = jwtgate::start(config).await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    if running.shared.current().config.reload.watch {
        info!(
            "config watch: on; a change to the config file or a file it names reloads as SIGHUP does"
        );
    } else {
        info!("config watch: off (reload.watch = false); reload with SIGHUP");
    }
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: draining"); break }
            _ = int.recv() => { info!("SIGINT: draining"); break }
            _ = hup.recv() => {
                reload(&running, &sources, Trigger::Signal, &mut watch);
            }
            changed = watch.changed() => {
                let names: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
                info!(files = ?names, "config watch: change detected, reloading");
                reload(&running, &sources, Trigger::Watch, &mut watch);
            }
        }
    }
    running.shutdown().await;
    warn!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP and the file watch reload through the same function; afterwards
/// the watch follows the files the configuration now in force names.
fn reload(
    running: &jwtgate::Running,
    sources: &jwtgate::config::Sources,
    trigger: Trigger,
    watch: &mut jwtgate::run::file_watch::FileWatch,
) {
    jwtgate::run::reload::reload(running, sources, trigger);
    follow(watch, running, sources);
}

fn follow(
    watch: &mut jwtgate::run::file_watch::FileWatch,
    running: &jwtgate::Running,
    sources: &jwtgate::config::Sources,
) {
    let state = running.shared.current();
    watch.follow(jwtgate::run::file_watch::watched_files(
        &state.config,
        sources.file.as_deref(),
    ));
    let files: Vec<String> = watch.files().map(|p| p.display().to_string()).collect();
    debug!(?files, "config watch: following");
}
