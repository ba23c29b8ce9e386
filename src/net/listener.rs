//! A bound listener, TCP (`HOST:PORT`) or Unix socket (`unix:/path`), and
//! its accepted connections, so that the accept loop serves both alike.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::config::ListenAddr;

/// The peer address given to connections on a Unix socket: the peer is on
/// this host, so it is treated like a loopback client (X-Forwarded-For,
/// per-address limits, loopback-only admin actions). File permissions on the
/// socket decide who that can be.
pub(crate) const UNIX_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Self {
        Listener::Tcp(l)
    }
}

impl Listener {
    /// Accepts one connection with its peer address.
    pub(crate) async fn accept(&self) -> io::Result<(Conn, SocketAddr)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Conn::Tcp(s), peer))
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                Ok((Conn::Unix(s), UNIX_PEER))
            }
        }
    }

    /// The bound TCP address; `None` on a Unix socket.
    pub(crate) fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// For logs: `127.0.0.1:8080` or `unix:/run/jwtgate.sock`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|e| format!("?({e})"), |a| a.to_string()),
            Listener::Unix(_, p) => format!("{}{}", crate::config::types::UNIX_PREFIX, p.display()),
        }
    }
}

/// An accepted connection.
pub(crate) enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

// Plain delegation: both streams are Unpin, so no unsafe pinning is needed.
impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Tcp(s) => s.is_write_vectored(),
            Conn::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A listener that could not be bound, with the config key that named it.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on `{key}` = {addr}: {message}")]
pub struct BindError {
    pub key: String,
    pub addr: String,
    pub message: String,
}

/// Binds `addr` (`HOST:PORT` or `unix:/path`), naming the config key on failure.
pub(crate) async fn bind(key: &str, addr: &ListenAddr) -> Result<Listener, BindError> {
    let fail = |e: io::Error| BindError {
        key: key.into(),
        addr: addr.to_string(),
        message: e.to_string(),
    };
    match addr {
        ListenAddr::Unix(path) => crate::net::unix::bind(path)
            .map(|l| Listener::Unix(l, path.clone()))
            .map_err(fail),
        ListenAddr::Tcp(sa) => TcpListener::bind(sa).await.map(Listener::Tcp).map_err(fail),
    }
}
