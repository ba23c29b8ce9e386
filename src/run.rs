//! The running gate: `start` builds the state from a `Config`, binds the
//! listeners and spawns them (`Running` is the handle tests and `main`
//! hold); `reload` swaps in a new configuration, `file_watch` notices when
//! one changed. The top of the crate below `cmd`: it may use every folder.

pub mod file_watch;
pub mod reload;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::admin::{self, forward_auth};
use crate::config::{self, Config, ConfigError};
use crate::net::server::{self, ServeOptions};
use crate::net::{listener, tls};
use crate::observe::metrics::{self, Metrics};
use crate::observe::request_id;
use crate::proxy::gate;
use crate::proxy::state::{Shared, State};
use crate::{mint, store};

/// Why the process could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bind(#[from] listener::BindError),
}

/// A running gate: its bound addresses and the handle to stop it.
pub struct Running {
    /// The proxy's TCP address (0.0.0.0:0 when `listen` is a `unix:` socket).
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
        let new_tls = match (&self.tls, config.tls.files()) {
            (Some(_), Some((cert, key))) => Some(tls::server_config(cert, key)?),
            (None, None) => None,
            _ => {
                warn!("reload: turning TLS on or off needs a restart; keeping the current mode");
                None
            }
        };
        // One comparison of the start-only settings, not a hand-kept list.
        if previous.config.start_settings() != config.start_settings() {
            warn!(
                "reload: listener addresses, [limits], [tls] on or off, worker_threads, \
                 drain_timeout and [store] apply at start only; restart to change them"
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
    let tls = match config.tls.files() {
        None => None,
        Some((cert, key)) => Some(Arc::new(arc_swap::ArcSwap::new(tls::server_config(
            cert, key,
        )?))),
    };
    let proxy_listener = listener::bind("listen", &config.listen).await?;
    let admin_listener = bind_optional("admin_listen", config.admin_listen.as_ref()).await?;
    let forward_auth_listener =
        bind_optional("forward_auth_listen", config.forward_auth_listen.as_ref()).await?;
    // On a Unix socket there is no TCP address: 0.0.0.0:0 stands for it.
    let proxy_addr = proxy_listener
        .tcp_addr()
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    let proxy_desc = proxy_listener.describe();
    let issuer_runtime = Arc::new(mint::Runtime::default());
    // The store is process-wide: it outlives reloads, like the counters.
    let store = store::Store::start(&config.store, &metrics)?;
    issuer_runtime.set_store(store);
    let state = State::build(config, metrics.clone(), issuer_runtime.clone(), None)?;
    state.verifier.issuers().spawn_refreshers();
    let shared = Arc::new(Shared::new(state, metrics.clone(), issuer_runtime));
    let (tx, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let options = |name, tls| ServeOptions {
        name,
        tls,
        limits: limits.clone(),
        drain_timeout: drain,
        connections_open: metrics.connections(name),
    };

    let scheme = if tls.is_some() { "https" } else { "http" };
    info!("proxy listening on {proxy_desc} ({scheme})");
    let s = shared.clone();
    tasks.push(tokio::spawn(server::serve_with(
        proxy_listener,
        options(metrics::PROXY, tls.clone()),
        move |conn, state: &Arc<gate::ConnState>, req| {
            gate::handle(s.clone(), conn, Some(state.clone()), req)
        },
        rx.clone(),
    )));
    let forward_auth_addr = forward_auth_listener.map(|l| {
        let s = shared.clone();
        spawn_listener(
            &mut tasks,
            l,
            options(metrics::FORWARD_AUTH, None),
            rx.clone(),
            move |conn, req| forward_auth::handle(s.clone(), conn, req),
        )
    });
    let admin_addr = admin_listener.map(|l| {
        let s = shared.clone();
        spawn_listener(
            &mut tasks,
            l,
            options(metrics::ADMIN, None),
            rx.clone(),
            move |conn, mut req: http::Request<hyper::body::Incoming>| {
                // Every response carries an id, the admin listener's too.
                let id = request_id::ensure(req.headers_mut());
                let answer = admin::handle(s.clone(), conn, req);
                async move {
                    let mut resp = answer.await?;
                    resp.headers_mut().insert(request_id::X_REQUEST_ID, id);
                    Ok(resp)
                }
            },
        )
    });
    Ok(Running {
        proxy_addr,
        admin_addr: admin_addr.flatten(),
        forward_auth_addr: forward_auth_addr.flatten(),
        shared,
        tls,
        shutdown: tx,
        tasks,
    })
}

/// Binds `addr` for the config `key`, unless it is "" (that listener is off).
async fn bind_optional(
    key: &str,
    addr: Option<&config::ListenAddr>,
) -> Result<Option<listener::Listener>, StartError> {
    match addr {
        None => Ok(None),
        Some(a) => Ok(Some(listener::bind(key, a).await?)),
    }
}

/// Serves one of the plain-HTTP side listeners in a task; logs and returns
/// its address.
fn spawn_listener<H, F, B>(
    tasks: &mut Vec<JoinHandle<()>>,
    listener: listener::Listener,
    opts: ServeOptions,
    shutdown: watch::Receiver<bool>,
    handler: H,
) -> Option<SocketAddr>
where
    H: Fn(server::ConnInfo, http::Request<hyper::body::Incoming>) -> F
        + Clone
        + Send
        + Sync
        + 'static,
    F: std::future::Future<Output = Result<http::Response<B>, std::convert::Infallible>>
        + Send
        + 'static,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let addr = listener.tcp_addr();
    info!("{} listening on {}", opts.name, listener.describe());
    tasks.push(tokio::spawn(server::serve(
        listener, opts, handler, shutdown,
    )));
    addr
}
