//! jwtgate: a reverse proxy that lets a request through only with a valid
//! JWT bearer token. `start` builds the state from a `Config`, binds the
//! listeners and returns their addresses (tests use it directly).

#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod demo;
pub mod forward;
pub mod forward_auth;
pub mod gate;
pub mod issuer;
pub mod keygen;
pub mod metrics;
pub mod policy;
pub mod respond;
pub mod server;
pub mod state;
pub mod tls;
pub mod whoami;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::server::ServeOptions;
use crate::state::{Shared, State};

/// Why the process could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on `{key}` = {addr}: {message}")]
    Bind {
        key: String,
        addr: String,
        message: String,
    },
}

/// A running gate: its bound addresses and the handle to stop it.
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub forward_auth_addr: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    tls: Option<Arc<arc_swap::ArcSwap<rustls::ServerConfig>>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Replaces the configuration; on error the old one keeps serving.
    /// Listener addresses are fixed at start and not changed by a reload.
    pub fn reload(&self, config: Config) -> Result<(), StartError> {
        let previous = self.shared.current();
        // Read the new certificate first: a bad one refuses the whole reload.
        let new_tls = match (&self.tls, config.tls.cert_file.is_empty()) {
            (Some(_), false) => Some(tls::server_config(
                &config.tls.cert_file,
                &config.tls.key_file,
            )?),
            (None, true) => None,
            _ => {
                warn!("SIGHUP: turning TLS on or off needs a restart; keeping the current mode");
                None
            }
        };
        let old = &previous.config;
        if old.listen != config.listen
            || old.admin_listen != config.admin_listen
            || old.forward_auth_listen != config.forward_auth_listen
            || old.drain_timeout != config.drain_timeout
            || old.limits.header_read_timeout != config.limits.header_read_timeout
            || old.limits.max_header_bytes != config.limits.max_header_bytes
            || old.limits.max_connections != config.limits.max_connections
        {
            warn!(
                "SIGHUP: listener addresses, [limits] and drain_timeout apply at start only; \
                 restart to change them"
            );
        }
        let state = State::build(
            config,
            self.shared.metrics.clone(),
            self.shared.issuer_runtime.clone(),
            Some(&previous),
        )?;
        state.verifier.issuers().spawn_refreshers();
        self.shared.replace(state);
        if let (Some(current), Some(new)) = (&self.tls, new_tls) {
            current.store(new);
        }
        Ok(())
    }

    /// Stops accepting, drains in-flight requests (bounded by
    /// `drain_timeout`), and returns when every listener has stopped.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Builds the state and starts the listeners.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::new());
    let limits = config.limits.clone();
    let drain = config.drain_timeout;
    let tls = if config.tls.cert_file.is_empty() {
        None
    } else {
        Some(Arc::new(arc_swap::ArcSwap::new(tls::server_config(
            &config.tls.cert_file,
            &config.tls.key_file,
        )?)))
    };
    let proxy_listener = server::bind("listen", &config.listen).await?;
    let admin_listener = if config.admin_listen.is_empty() {
        None
    } else {
        Some(server::bind("admin_listen", &config.admin_listen).await?)
    };
    let forward_auth_listener = if config.forward_auth_listen.is_empty() {
        None
    } else {
        Some(server::bind("forward_auth_listen", &config.forward_auth_listen).await?)
    };
    let issuer_runtime = Arc::new(issuer::Runtime::default());
    let state = State::build(config, metrics.clone(), issuer_runtime.clone(), None)?;
    state.verifier.issuers().spawn_refreshers();
    let shared = Arc::new(Shared::new(state, metrics, issuer_runtime));
    let (tx, rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let proxy_addr = proxy_listener.local_addr().map_err(|e| StartError::Bind {
        key: "listen".into(),
        addr: "?".into(),
        message: e.to_string(),
    })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!("proxy listening on {proxy_addr} ({scheme})");
    let s = shared.clone();
    let handler = move |conn, req| gate::handle(s.clone(), conn, req);
    tasks.push(tokio::spawn(server::serve(
        proxy_listener,
        ServeOptions {
            name: "proxy",
            tls: tls.clone(),
            limits: limits.clone(),
            drain_timeout: drain,
        },
        handler,
        rx.clone(),
    )));

    let mut forward_auth_addr = None;
    if let Some(l) = forward_auth_listener {
        forward_auth_addr = l.local_addr().ok();
        if let Some(a) = forward_auth_addr {
            info!("forward-auth listening on {a}");
        }
        let s = shared.clone();
        let handler = move |_conn, req| forward_auth::handle(s.clone(), req);
        tasks.push(tokio::spawn(server::serve(
            l,
            ServeOptions {
                name: "forward-auth",
                tls: None,
                limits: limits.clone(),
                drain_timeout: drain,
            },
            handler,
            rx.clone(),
        )));
    }

    let mut admin_addr = None;
    if let Some(l) = admin_listener {
        let addr = l.local_addr().ok();
        if let Some(a) = addr {
            info!("admin listening on {a}");
        }
        admin_addr = addr;
        let s = shared.clone();
        let handler = move |_conn, req| admin::handle(s.clone(), req);
        tasks.push(tokio::spawn(server::serve(
            l,
            ServeOptions {
                name: "admin",
                tls: None,
                limits,
                drain_timeout: drain,
            },
            handler,
            rx,
        )));
    }
    Ok(Running {
        proxy_addr,
        admin_addr,
        forward_auth_addr,
        shared,
        tls,
        shutdown: tx,
        tasks,
    })
}
