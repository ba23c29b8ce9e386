//! Command-line definitions and the small commands around the proxy.

use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use base64::Engine;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Map, Value};

use crate::auth::claims::now;
use crate::config::{Config, Overrides, Sources};
use crate::keygen::{self, Kty};

#[derive(Parser, Debug)]
#[command(
    name = "jwtgate",
    version,
    about = "A reverse proxy that lets a request through only with a valid JWT"
)]
pub struct Cli {
    /// Log format: plain text or JSON lines.
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
    /// Configuration file (.toml, .yaml, .yml); also JWTGATE_CONFIG.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Address of the proxy listener (overrides `listen`).
    #[arg(long)]
    pub listen: Option<String>,
    /// Upstream base URL (overrides `upstream.url`).
    #[arg(long)]
    pub upstream: Option<String>,
    /// Address of the admin listener, "" to turn it off (overrides `admin_listen`).
    #[arg(long)]
    pub admin_listen: Option<String>,
}

impl ServeArgs {
    pub fn sources(&self) -> Sources {
        Sources::from_process(
            self.config.clone(),
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
    Serve(ServeArgs),
    /// Start the proxy and an echo upstream on loopback, and print a token and curl lines.
    Demo,
    /// A tiny upstream answering every request with JSON of its method, path, query and headers.
    Whoami {
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: SocketAddr,
    },
    /// Print a token signed with the configured local key.
    CreateToken {
        /// The user: sets `sub`, `user` and `login`.
        #[arg(short = 'u', long = "user")]
        user: String,
        /// Lifetime in minutes.
        #[arg(short = 'd', long = "duration", default_value_t = 60)]
        minutes: u64,
        /// Extra claim KEY=VALUE (VALUE is JSON when it parses as JSON, else a string).
        #[arg(long = "claim", value_name = "KEY=VALUE", value_parser = parse_claim_arg)]
        claims: Vec<String>,
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Print a new key as a JWK (oct by default; asymmetric kinds print the private JWK).
    GenKey {
        #[arg(long, value_enum, default_value = "oct")]
        kty: Kty,
        /// Print an asymmetric private key as PKCS#8 PEM instead (for issuer.signing_key_file).
        #[arg(long)]
        pem: bool,
    },
    /// Read a password from stdin and print an argon2id hash for the users file.
    HashPassword,
    /// Validate the configuration and print it with every secret redacted.
    CheckConfig {
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Ask the admin listener's /readyz: exit 0 when it answers 200, 1 otherwise
    /// (a Docker HEALTHCHECK for an image without curl).
    Healthcheck {
        /// What to ask; default: `admin_listen` of --config, else http://127.0.0.1:9901/readyz.
        /// `unix:/path/admin.sock` asks a Unix socket.
        #[arg(long)]
        url: Option<String>,
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// Give up after this long (connect included).
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Revoke one token (--jti) or a user's tokens issued before a time,
    /// through a running gate's admin listener.
    Revoke {
        #[arg(long, required_unless_present = "user", conflicts_with = "user")]
        jti: Option<String>,
        /// The user name or `sub` whose tokens are revoked.
        #[arg(long)]
        user: Option<String>,
        /// Only tokens whose `iss` equals this.
        #[arg(long, requires = "user")]
        issuer: Option<String>,
        /// Tokens issued before this: now (default), Unix seconds or RFC 3339.
        #[arg(long, requires = "user")]
        before: Option<String>,
        /// Keep the revocation until then (default: before + store.max_token_lifetime).
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        admin: crate::revoke_cli::AdminArgs,
    },
    /// List or remove revocations through a running gate's admin listener.
    Revocations {
        #[command(subcommand)]
        command: RevocationsCommand,
    },
    /// Say whether the configuration accepts TOKEN and, if not, why.
    VerifyToken {
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        token: String,
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
        admin: crate::revoke_cli::AdminArgs,
    },
    /// Remove one revocation by its id.
    Remove {
        id: String,
        #[command(flatten)]
        admin: crate::revoke_cli::AdminArgs,
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
pub fn create_token(config: &Config, user: &str, minutes: u64, extra: &[String]) -> Result<String> {
    let mut claims = Map::new();
    for c in extra {
        let Some((k, v)) = c.split_once('=') else {
            bail!("--claim {c:?}: expected KEY=VALUE");
        };
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.into()));
        claims.insert(k.into(), value);
    }
    let lifetime = Duration::from_secs(minutes.saturating_mul(60));
    Ok(crate::issuer::create_token(
        config, user, lifetime, &claims,
    )?)
}

pub fn gen_key(kty: Kty, pem: bool) -> Result<String> {
    if pem {
        return keygen::generate_pem(kty).map_err(anyhow::Error::msg);
    }
    let jwk = keygen::generate(kty).map_err(anyhow::Error::msg)?;
    Ok(serde_json::to_string(&jwk)?)
}

pub fn hash_password() -> Result<String> {
    use argon2::PasswordHasher;
    let mut input = String::new();
    if std::io::stdin().is_terminal() {
        eprint!("password: ");
    }
    std::io::stdin().read_to_string(&mut input)?;
    let password = input.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        bail!("empty password on stdin");
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
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    crate::state::State::build(cfg.clone(), metrics, Default::default(), None)?;
    if !cfg.tls.cert_file.is_empty() {
        crate::tls::server_config(&cfg.tls.cert_file, &cfg.tls.key_file)?;
    }
    Ok(toml::to_string_pretty(&cfg)?)
}

/// The verdict of `verify-token`: Ok(description) or Err(reason).
pub async fn verify_token(
    config: Option<PathBuf>,
    token: &str,
) -> Result<std::result::Result<String, String>> {
    let cfg = load_config(config)?;
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    let state = crate::state::State::build(cfg, metrics, Default::default(), None)?;
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
    match state.verifier.verify(token).await {
        Err(e) => Ok(Err(e.to_string())),
        Ok(id) => match state.policy.authorize(&id, None) {
            Err(d) => Ok(Err(format!("token is valid, but {d} (auth.allowed_users)"))),
            Ok(()) => {
                let left = id.exp.saturating_sub(now());
                let by = id.issuer.as_deref().unwrap_or("the local secret");
                Ok(Ok(format!(
                    "valid: user {:?}, verified with {by}, expires in {}",
                    id.user,
                    humantime::format_duration(Duration::from_secs(left))
                )))
            }
        },
    }
}

/// A random URL-safe string of `n` bytes of entropy.
pub fn random_token(n: usize) -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut buf = vec![0u8; n];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}
