//! `jwtgate revoke` and `jwtgate revocations list|remove`: clients of a
//! running gate's admin endpoints (`/revocations`).
//!
//! They go through a gate rather than to the store directly, so that they
//! work the same with the embedded store (whose file only its gate may
//! write) and with Redis (where any gate shares the change with all).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cmd::healthcheck::Target;
use crate::config::{Config, Overrides, Sources};

/// Where the admin listener is, and how to be let in.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AdminArgs {
    /// Admin base URL, e.g. http://10.0.0.5:9901; default: `admin_listen`
    /// of --config, else http://127.0.0.1:9901.
    #[arg(long)]
    pub url: Option<String>,
    /// The global `--config` (set by `main`, not a flag of its own).
    #[arg(skip)]
    pub config: Option<PathBuf>,
    /// `admin.token`, needed from a non-loopback peer; default: the
    /// configuration's (also `JWTGATE_ADMIN__TOKEN`).
    #[arg(long, env = "JWTGATE_ADMIN__TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// What `revoke` asks for.
#[derive(Debug, Default)]
pub struct RevokeRequest {
    pub jti: Option<String>,
    pub session: Option<String>,
    pub user: Option<String>,
    pub issuer: Option<String>,
    pub before: Option<String>,
    pub expires: Option<String>,
}

struct Admin {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

fn admin(args: &AdminArgs) -> Result<Admin> {
    let cfg = args
        .config
        .clone()
        .map(|c| {
            let sources = Sources::from_process(Some(c), Overrides::default());
            Config::load(&sources)
        })
        .transpose()?;
    let base = match &args.url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => match crate::cmd::healthcheck::target(None, cfg.as_ref())? {
            Target::Tcp { authority, .. } => format!("http://{authority}"),
            Target::Unix { .. } => {
                bail!(
                    "admin_listen is a Unix socket: pass --url http://HOST:PORT of a TCP admin listener"
                )
            }
        },
    };
    let token = args
        .admin_token
        .clone()
        .filter(|t| !t.is_empty())
        .or_else(|| {
            cfg.as_ref()
                .map(|c| c.admin.token.expose().to_owned())
                .filter(|t| !t.is_empty())
        });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    Ok(Admin {
        base,
        token,
        client,
    })
}

impl Admin {
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(u16, Value)> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the admin listener at {}", self.base))?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status >= 400 {
            let why = body
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("");
            bail!("the gate answered HTTP {status}: {why}");
        }
        Ok((status, body))
    }
}

/// Revokes; returns the text to print.
pub async fn revoke(args: &AdminArgs, r: RevokeRequest) -> Result<String> {
    let admin = admin(args)?;
    let mut body = serde_json::Map::new();
    for (k, v) in [
        ("jti", r.jti),
        ("session", r.session),
        ("user", r.user),
        ("issuer", r.issuer),
        ("before", r.before.map(|b| time_arg(&b)).transpose()?),
        ("expires", r.expires.map(|b| time_arg(&b)).transpose()?),
    ] {
        if let Some(v) = v {
            body.insert(k.into(), Value::String(v));
        }
    }
    let (status, answer) = admin
        .send(
            admin
                .client
                .post(format!("{}/revocations", admin.base))
                .json(&body),
        )
        .await?;
    let id = answer
        .pointer("/revocation/id")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let mut out = format!("revoked: {id}\n");
    if status == 202 {
        out.push_str(&format!(
            "warning: {}\n",
            answer.get("warning").and_then(Value::as_str).unwrap_or("")
        ));
    }
    Ok(out)
}

/// `now`, Unix seconds or an RFC 3339 time, as the API takes it.
fn time_arg(s: &str) -> Result<String> {
    if s == "now" {
        return Ok(crate::auth::claims::now().to_string());
    }
    crate::admin::revocations::parse_time(&Value::String(s.into()))
        .map(|t| t.to_string())
        .with_context(|| format!("{s:?}: expected now, Unix seconds or an RFC 3339 time"))
}

/// The revocations in force, as a table (or the raw JSON).
pub async fn list(args: &AdminArgs, raw: bool) -> Result<String> {
    let admin = admin(args)?;
    let (_, body) = admin
        .send(admin.client.get(format!("{}/revocations", admin.base)))
        .await?;
    if raw {
        return Ok(format!("{}\n", serde_json::to_string_pretty(&body)?));
    }
    let empty = Vec::new();
    let list = body
        .get("revocations")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let mut out = format!(
        "{:<32}  {:<7}  {:<40}  {:<20}  {}\n",
        "ID", "KIND", "WHAT", "BEFORE", "EXPIRES"
    );
    let time = |v: Option<&Value>| {
        v.and_then(Value::as_u64)
            .map(|t| {
                humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(t))
                    .to_string()
            })
            .unwrap_or_else(|| "-".into())
    };
    for r in list {
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
        let what = match s("kind") {
            "token" => format!("jti={}", s("jti")),
            "session" => format!("session={}", s("session")),
            _ if r.get("issuer").is_some() => format!("user={} iss={}", s("user"), s("issuer")),
            _ => format!("user={}", s("user")),
        };
        out.push_str(&format!(
            "{:<32}  {:<7}  {:<40}  {:<20}  {}\n",
            s("id"),
            s("kind"),
            what,
            time(r.get("before")),
            time(r.get("expires"))
        ));
    }
    let store = body.get("store").cloned().unwrap_or(json!({}));
    out.push_str(&format!(
        "{} revocations; store: {} {}\n",
        list.len(),
        store.get("kind").and_then(Value::as_str).unwrap_or("?"),
        if store.get("up").and_then(Value::as_bool) == Some(true) {
            "up"
        } else {
            "DOWN"
        }
    ));
    Ok(out)
}

pub async fn remove(args: &AdminArgs, id: &str) -> Result<String> {
    let admin = admin(args)?;
    admin
        .send(
            admin
                .client
                .delete(format!("{}/revocations/{id}", admin.base)),
        )
        .await?;
    Ok(format!("removed: {id}\n"))
}
