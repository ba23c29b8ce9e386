//! Command-line definitions and the small commands around the proxy.

use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Map, Value};

use crate::auth::claims::now;
use crate::config::{Config, Overrides, Sources};
use crate::mint::keygen::{self, Kty};

/// `--version`: the crate version and the git revision it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("JWTGATE_GIT_REVISION"),
    ")"
);

/// Exit code for a configuration that cannot be loaded or used
/// (`EX_CONFIG` of sysexits.h), so that scripts and supervisors can tell it
/// from a rejected token (1) and from bad usage (2). `check-config` keeps
/// exiting 1 for a configuration it rejects: its verdict is its output.
pub const EXIT_CONFIG: u8 = 78;

const EXAMPLES: &str = "\
Examples:
  jwtgate --config gate.toml                   run the proxy (serve is the default)
  jwtgate check-config -c gate.toml            validate and print the effective configuration
  jwtgate verify-token -c gate.toml --path /admin --method DELETE < token.txt
  TOKENS_SECRET=s jwtgate create-token -u alice -d 5
  jwtgate hash-password >> users               prompts twice on a terminal; reads a pipe otherwise
  jwtgate completions bash > /etc/bash_completion.d/jwtgate

Exit codes: 0 success; 1 a runtime failure, a rejected token (verify-token) or a
rejected configuration (check-config); 2 bad usage; 78 a configuration that cannot
be loaded (every other command).";

#[derive(Parser, Debug)]
#[command(
    name = "jwtgate",
    version = VERSION,
    about = "A reverse proxy that lets a request through only with a valid JWT",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Configuration file (.toml, .yaml, .yml); without it, JWTGATE_CONFIG, else
    /// defaults and the environment. Accepted before or after the command.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format: plain text or JSON lines (one flat object per event).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "JWTGATE_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// Address of the proxy listener, HOST:PORT or unix:/path (overrides `listen`).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Upstream base URL, http(s)://... or unix:/path (overrides `upstream.url`).
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// Address of the admin listener, "" to turn it off (overrides `admin_listen`).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
}

impl ServeArgs {
    pub fn sources(&self, config: Option<PathBuf>) -> Sources {
        Sources::from_process(
            config,
            Overrides {
                listen: self.listen.clone(),
                admin_listen: self.admin_listen.clone(),
                upstream: self.upstream.clone(),
            },
        )
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the proxy (the default).
    #[command(
        after_help = "Example:\n  jwtgate serve -c gate.toml --listen 0.0.0.0:8080 --upstream http://127.0.0.1:8000"
    )]
    Serve(ServeArgs),
    /// Start the proxy and an echo upstream on loopback, and print a token and curl lines.
    Demo,
    /// A tiny upstream answering every request with JSON of its method, path, query and headers.
    Whoami {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
        listen: SocketAddr,
    },
    /// Print a token signed with the configured local key.
    #[command(
        after_help = "Example:\n  TOKENS_SECRET=s jwtgate create-token -u alice -d 5 --claim role=admin --claim 'groups=[\"a\",\"b\"]'"
    )]
    CreateToken {
        /// The user: sets `sub`, `user` and `login`.
        #[arg(short = 'u', long = "user")]
        user: String,
        /// Lifetime in minutes.
        #[arg(
            short = 'd',
            long = "duration",
            default_value_t = 60,
            value_name = "MINUTES"
        )]
        minutes: u64,
        /// Extra claim KEY=VALUE (VALUE is JSON when it parses as JSON, else a string).
        #[arg(long = "claim", value_name = "KEY=VALUE", value_parser = parse_claim_arg)]
        claims: Vec<String>,
        /// Print a browser session cookie (`NAME=VALUE`) sealed with
        /// login.session_keys_file instead of a token, for tests and
        /// benchmarks: it holds for the duration or login.idle_timeout,
        /// whichever is shorter (a client that stores the re-sealed cookie
        /// keeps it going), cannot be refreshed, and has no tokens server
        /// side (so not with auth.forward_token).
        #[arg(long)]
        session: bool,
    },
    /// Print a new key as a JWK (oct by default; asymmetric kinds print the private JWK).
    #[command(
        after_help = "Examples:\n  jwtgate gen-key                   # for AMPHO_SECURITY_KEY or auth.secret.jwk\n  jwtgate gen-key --kty EC --pem    # for issuer.signing_key_file\n  jwtgate gen-key --session > session.keys                              # for login.session_keys_file\n  { jwtgate gen-key --session; cat session.keys; } > new && mv new session.keys   # rotate: the new key seals, the old still opens"
    )]
    GenKey {
        /// Key type: oct (HMAC), RSA (2048), EC (P-256) or OKP (Ed25519).
        #[arg(long, value_enum, default_value = "oct")]
        kty: Kty,
        /// Print an asymmetric private key as PKCS#8 PEM instead (for issuer.signing_key_file).
        #[arg(long)]
        pem: bool,
        /// Print one session key line instead (base64 of 32 random bytes, for
        /// login.session_keys_file).
        #[arg(long, conflicts_with_all = ["kty", "pem"])]
        session: bool,
    },
    /// Print an argon2id hash of a password for the users file: asked twice,
    /// without echo, on a terminal; read from stdin otherwise.
    #[command(
        after_help = "Examples:\n  echo \"alice:$(jwtgate hash-password)\" >> users\n  printf '%s' \"$PASSWORD\" | jwtgate hash-password"
    )]
    HashPassword,
    /// Validate the configuration and print it with every secret redacted
    /// (exit 1 when it is rejected, with every error).
    #[command(after_help = "Example:\n  jwtgate check-config -c gate.toml")]
    CheckConfig,
    /// Print the JSON Schema of the configuration file (for editors and CI).
    #[command(after_help = "Example:\n  jwtgate config-schema > jwtgate.schema.json")]
    ConfigSchema,
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  jwtgate completions bash > /etc/bash_completion.d/jwtgate\n  jwtgate completions zsh > \"${fpath[1]}/_jwtgate\""
    )]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Ask the admin listener's /readyz: exit 0 when it answers 200, 1 otherwise
    /// (a Docker HEALTHCHECK for an image without curl).
    #[command(after_help = "Example:\n  HEALTHCHECK CMD [\"jwtgate\", \"healthcheck\"]")]
    Healthcheck {
        /// What to ask; default: `admin_listen` of --config, else http://127.0.0.1:9901/readyz.
        /// `unix:/path/admin.sock` asks a Unix socket.
        #[arg(long)]
        url: Option<String>,
        /// Give up after this long (connect included).
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Revoke one token (--jti), one browser session (--session) or a
    /// user's tokens and sessions issued before a time, through a running
    /// gate's admin listener.
    #[command(group(clap::ArgGroup::new("what").required(true).multiple(false)))]
    Revoke {
        /// The `jti` of the one token to revoke.
        #[arg(long, group = "what")]
        jti: Option<String>,
        /// The id of the one browser session to revoke (as `verify-token
        /// --session` prints it).
        #[arg(long, group = "what")]
        session: Option<String>,
        /// The user name or `sub` whose tokens and sessions are revoked.
        #[arg(long, group = "what")]
        user: Option<String>,
        /// Only tokens whose `iss` equals this.
        #[arg(long, requires = "user")]
        issuer: Option<String>,
        /// Tokens issued before this: now (default), Unix seconds or RFC 3339.
        #[arg(long, requires = "user")]
        before: Option<String>,
        /// Keep the revocation until then (default: before + store.max_token_lifetime;
        /// a session's: now + login.max_lifetime).
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        admin: crate::cmd::revoke::AdminArgs,
    },
    /// List or remove revocations through a running gate's admin listener.
    Revocations {
        #[command(subcommand)]
        command: RevocationsCommand,
    },
    /// Say whether the configuration accepts a token and, if not, why; with
    /// --path, whether a request with it would pass, and which route decided.
    #[command(
        after_help = "Examples:\n  jwtgate verify-token -c gate.toml < token.txt\n  pbpaste | jwtgate verify-token -c gate.toml --path /admin/users --method DELETE\n\nExit codes: 0 accepted, 1 rejected, 78 the configuration cannot be loaded."
    )]
    VerifyToken {
        /// The token (a `Bearer ` prefix is ignored); `-` or nothing reads it from
        /// stdin, which keeps it out of `ps` and the shell history.
        #[arg(value_name = "TOKEN")]
        token: Option<String>,
        /// Evaluate a request for this path (a query is allowed): routes, the status
        /// exemption and authorisation, as the proxy would.
        #[arg(long, value_name = "PATH")]
        path: Option<String>,
        /// The method of that request.
        #[arg(long, default_value = "GET", value_name = "METHOD", requires = "path")]
        method: String,
        /// TOKEN is the value of a browser session cookie ([login]): say whether
        /// it opens with the session keys, whose it is and when it ends.
        #[arg(long, conflicts_with = "path")]
        session: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum RevocationsCommand {
    /// Print the revocations in force.
    List {
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: crate::cmd::revoke::AdminArgs,
    },
    /// Remove one revocation by its id.
    Remove {
        id: String,
        #[command(flatten)]
        admin: crate::cmd::revoke::AdminArgs,
    },
}

/// A malformed `--claim` is bad usage (exit 2), caught while parsing.
fn parse_claim_arg(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((k, _)) if !k.is_empty() => Ok(s.to_string()),
        _ => Err("expected KEY=VALUE".into()),
    }
}

/// Loads and validates the configuration for a command.
pub fn load_config(config: Option<PathBuf>) -> Result<Config> {
    let sources = Sources::from_process(config, Overrides::default());
    Ok(Config::load(&sources)?)
}

/// Signs a token as `create-token` does, with the issuer's signer (the
/// issuer's signing key when `[issuer]` is enabled with one, else the local
/// secret), so that the gate accepts it exactly like the tokens it issues.
pub fn create_token(
    config: &Config,
    user: &str,
    minutes: u64,
    extra: &[String],
    session: bool,
) -> Result<String> {
    let mut claims = Map::new();
    for c in extra {
        let Some((k, v)) = c.split_once('=') else {
            bail!("--claim {c:?}: expected KEY=VALUE");
        };
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.into()));
        claims.insert(k.into(), value);
    }
    let lifetime = Duration::from_secs(minutes.saturating_mul(60));
    if session {
        let metrics = std::sync::Arc::new(crate::observe::metrics::Metrics::new());
        let login =
            crate::login::Login::from_config(config, None, metrics, None)?.ok_or_else(|| {
                crate::config::ConfigError::invalid(
                    "login",
                    "configuration",
                    "create-token --session needs a [login] table",
                )
            })?;
        return login
            .mint_cookie(user, claims, lifetime)
            .map_err(anyhow::Error::msg);
    }
    Ok(crate::mint::create_token(config, user, lifetime, &claims)?)
}

pub fn gen_key(kty: Kty, pem: bool, session: bool) -> Result<String> {
    if session {
        return crate::login::seal::KeyRing::generate_line().map_err(anyhow::Error::msg);
    }
    if pem {
        return keygen::generate_pem(kty).map_err(anyhow::Error::msg);
    }
    let jwk = keygen::generate(kty).map_err(anyhow::Error::msg)?;
    Ok(serde_json::to_string(&jwk)?)
}

/// The password for `hash-password`: on a terminal, asked twice without
/// echo (rpassword talks to the terminal itself); otherwise all of stdin,
/// without its trailing line break, so `printf ... |` and `< file` work.
fn read_password() -> Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ")?;
        let again = rpassword::prompt_password("password again: ")?;
        if first != again {
            bail!("the two passwords differ");
        }
        return Ok(first);
    }
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    Ok(input.trim_end_matches(['\n', '\r']).to_string())
}

pub fn hash_password() -> Result<String> {
    use argon2::PasswordHasher;
    let password = read_password()?;
    if password.is_empty() {
        bail!("empty password");
    }
    let mut salt_bytes = [0u8; 16];
    {
        use aws_lc_rs::rand::SecureRandom;
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut salt_bytes)
            .map_err(|_| anyhow::anyhow!("no randomness"))?;
    }
    let salt = argon2::password_hash::SaltString::encode_b64(&salt_bytes)
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    Ok(hash.to_string())
}

pub fn check_config(config: Option<PathBuf>) -> Result<String> {
    let cfg = load_config(config)?;
    // Building the state also parses key files and the upstream URL.
    let metrics = std::sync::Arc::new(crate::observe::metrics::Metrics::new());
    crate::proxy::state::State::build(cfg.clone(), metrics, Default::default(), None)?;
    if let Some((cert, key)) = cfg.tls.files() {
        crate::net::tls::server_config(cert, key)?;
    }
    Ok(toml::to_string_pretty(&cfg)?)
}

/// The token argument of `verify-token`: itself, or stdin for `-` or none.
pub fn token_arg(token: Option<String>) -> Result<String> {
    match token.as_deref() {
        Some(t) if t != "-" => Ok(t.to_string()),
        _ => {
            if std::io::stdin().is_terminal() {
                eprintln!("reading the token from stdin (end with Ctrl-D)");
            }
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input)?;
            Ok(input.trim().to_string())
        }
    }
}

/// A request `verify-token --path P --method M` asks about.
pub struct Probe<'a> {
    pub path: &'a str,
    pub method: &'a str,
}

/// The verdict of `verify-token`: Ok(description) or Err(reason).
pub async fn verify_token(
    config: Option<PathBuf>,
    token: &str,
    probe: Option<Probe<'_>>,
    session: bool,
) -> Result<std::result::Result<String, String>> {
    let cfg = load_config(config)?;
    let metrics = std::sync::Arc::new(crate::observe::metrics::Metrics::new());
    let state = crate::proxy::state::State::build(cfg, metrics, Default::default(), None)?;
    if session {
        let Some(login) = &state.login else {
            return Err(crate::config::ConfigError::invalid(
                "login",
                "configuration",
                "verify-token --session needs a [login] table",
            )
            .into());
        };
        return Ok(login.inspect_cookie(token.trim()));
    }
    // Fetch remote keys now, so that the verdict can say why.
    for (issuer, outcome) in state.verifier.issuers().refresh_all().await {
        if let crate::auth::jwks::Refresh::Done(Err(e)) = outcome {
            eprintln!("warning: keys of {issuer} could not be fetched: {e}");
        }
    }
    let token = token.trim();
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(token);
    if let Some(probe) = probe {
        return Ok(verify_request(&state, token, probe).await);
    }
    if token.is_empty() {
        bail!("no token given (as an argument or on stdin)");
    }
    match state.verifier.verify(token).await {
        Err(e) => Ok(Err(e.to_string())),
        Ok(id) => match state.policy.authorize(&id, None) {
            Err(d) => Ok(Err(format!("token is valid, but {d} (auth.allowed_users)"))),
            Ok(()) => Ok(Ok(describe_identity(&id))),
        },
    }
}

fn describe_identity(id: &crate::auth::Identity) -> String {
    let left = id.exp.saturating_sub(now());
    let by = id.issuer.as_deref().unwrap_or("the local secret");
    format!(
        "valid: user {:?}, verified with {by}, expires in {}",
        id.user,
        humantime::format_duration(Duration::from_secs(left))
    )
}

/// The proxy's decision on `probe.method probe.path` carrying `token` (in
/// the first place `auth.token_from` reads), through the same phases a
/// request takes: path normalisation, route, status exemption, public
/// route, verification, authorisation. Says which route decided.
async fn verify_request(
    state: &crate::proxy::state::State,
    token: &str,
    probe: Probe<'_>,
) -> std::result::Result<String, String> {
    use crate::auth::bearer::TokenSource;
    let method = http::Method::from_bytes(probe.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("--method {:?} is not a method", probe.method))?;
    let uri: http::Uri = probe
        .path
        .parse()
        .map_err(|_| format!("--path {:?} is not a request target", probe.path))?;
    if !uri.path().starts_with('/') || uri.authority().is_some() {
        return Err(format!("--path {:?} must start with /", probe.path));
    }
    let path = crate::uri::normalize_path_with(uri.path(), state.path_rules)
        .map_err(|e| format!("400 invalid_request (bad_path): {e}"))?;
    if let Some(issuer) = &state.issuer
        && issuer.handles(&path)
    {
        return Ok(format!(
            "{path} is a token endpoint of [issuer]: answered by the gate, never forwarded"
        ));
    }
    let route = state.policy.route(&method, &path);
    let decided_by = match route {
        Some(r) => {
            let kind = match state.config.routes.get(r.index()) {
                Some(c) if c.path.is_empty() => "prefix",
                _ => "path",
            };
            format!("routes[{}] ({kind} {:?})", r.index(), r.pattern())
        }
        None => "no route (the default: a valid token is needed)".to_string(),
    };
    let mut headers = http::HeaderMap::new();
    let mut query = uri.query().map(str::to_owned);
    if !token.is_empty() {
        let put = |headers: &mut http::HeaderMap, name, value: String| {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        };
        match state.config.auth.token_from.first() {
            Some(TokenSource::Query(name)) => {
                let pair = format!("{name}={token}");
                query = Some(match query {
                    Some(q) if !q.is_empty() => format!("{q}&{pair}"),
                    _ => pair,
                });
            }
            Some(TokenSource::Cookie(name)) => put(
                &mut headers,
                http::header::COOKIE,
                format!("{name}={token}"),
            ),
            _ => put(
                &mut headers,
                http::header::AUTHORIZATION,
                format!("Bearer {token}"),
            ),
        }
    }
    let request = format!("{method} {path}");
    match crate::proxy::gate::decide(state, &method, &headers, &path, query.as_deref(), route).await
    {
        Ok(d) => {
            let who = d
                .identity
                .as_deref()
                .map(|id| format!("; {}", describe_identity(id)))
                .unwrap_or_default();
            Ok(format!(
                "allowed ({}): {request}, decided by {decided_by}{who}",
                d.allow.reason()
            ))
        }
        Err(d) => Err(format!(
            "{} {} ({}): {}; {request}, decided by {decided_by}",
            d.error.status().as_u16(),
            d.error.code(),
            d.error.reason(),
            d.error.description()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_argument_has_help_and_the_definition_is_consistent() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        let mut check = |path: &str, c: &clap::Command| {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if a.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
        };
        check("jwtgate", &cmd);
        for sub in cmd.get_subcommands() {
            assert!(sub.get_about().is_some(), "{} has no about", sub.get_name());
            check(sub.get_name(), sub);
        }
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }
}
