//! `jwtgate demo`: the proxy, an echo upstream and a fresh secret on
//! loopback, with a valid token and curl lines to paste.

use std::net::SocketAddr;

use anyhow::Result;

use crate::config::{Config, ListenAddr, Secret};

/// Builds the demo configuration for an upstream at `upstream` and binds
/// preferred ports when free, ephemeral ones otherwise.
pub async fn run() -> Result<()> {
    let (upstream, _whoami) =
        crate::cmd::whoami::spawn("127.0.0.1:0".parse::<SocketAddr>()?).await?;
    let mut config = Config {
        listen: free_or_ephemeral(8080).await,
        admin_listen: Some(free_or_ephemeral(9901).await),
        ..Config::default()
    };
    config.upstream.url = format!("http://{upstream}")
        .parse()
        .map_err(anyhow::Error::msg)?;
    config.auth.secret.value = Secret::new(crate::random::token(32)?);
    let status_token = crate::random::token(16)?;
    config.status.token = Secret::new(status_token.clone());
    config.drain_timeout = std::time::Duration::from_secs(2);
    let token = crate::cmd::cli::create_token(&config, "demo", 60, &[], false)?;
    let running = crate::run::start(config).await?;
    let p = running.proxy_addr;
    let admin = running
        .admin_addr
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!(
        "\njwtgate demo: the proxy on http://{p} guards an echo upstream on http://{upstream}.\n\
         A fresh random HS256 secret was made for this run; the token below is valid for 60 minutes.\n\n\
         TOKEN={token}\n\n\
         # allowed (200): the upstream echoes the request, with X-Auth-User: demo\n\
         curl -s -H \"Authorization: Bearer $TOKEN\" http://{p}/hello\n\n\
         # rejected (401): no token\n\
         curl -si http://{p}/hello\n\n\
         # rejected (401): a tampered token\n\
         curl -si -H \"Authorization: Bearer ${{TOKEN}}x\" http://{p}/hello\n\n\
         # status endpoint with its static token (200, no JWT needed)\n\
         curl -s 'http://{p}/status?token={status_token}'\n\n\
         # admin: health and metrics\n\
         curl -s http://{admin}/healthz; curl -s http://{admin}/metrics | head\n\n\
         Press Ctrl-C to stop.\n"
    );
    tokio::signal::ctrl_c().await?;
    running.shutdown().await;
    Ok(())
}

async fn free_or_ephemeral(port: u16) -> ListenAddr {
    let preferred = SocketAddr::from(([127, 0, 0, 1], port));
    match tokio::net::TcpListener::bind(preferred).await {
        Ok(l) => {
            drop(l);
            ListenAddr::Tcp(preferred)
        }
        Err(_) => ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
    }
}
