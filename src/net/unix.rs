//! Unix domain sockets: `unix:/path` as `upstream.url` (the client side) and
//! as a listen address (the server side), for backends that should not
//! listen on TCP at all and for legacy systems reached through a local socket.
//!
//! A socket is guarded by file permissions, not by the network: nothing in
//! the pod or on the host can reach the backend around the gate unless it can
//! open the file.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};

/// Connects the upstream client to one socket, whatever the request's URI
/// says (the URI still carries the `Host` the upstream sees).
#[derive(Clone, Debug)]
pub(crate) struct UnixConnector {
    path: Arc<PathBuf>,
    connect_timeout: Duration,
}

impl UnixConnector {
    pub(crate) fn new(path: &Path, connect_timeout: Duration) -> Self {
        UnixConnector {
            path: Arc::new(path.to_path_buf()),
            connect_timeout,
        }
    }
}

impl tower_service::Service<Uri> for UnixConnector {
    type Response = TokioIo<UnixStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = self.path.clone();
        let limit = self.connect_timeout;
        Box::pin(async move {
            // A TimedOut error is what forward::send maps to 504, as for TCP.
            match tokio::time::timeout(limit, UnixStream::connect(&*path)).await {
                Ok(r) => r.map(TokioIo::new),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "unix socket connect timed out",
                )),
            }
        })
    }
}

/// Binds a listening socket at `path`. A stale socket left by a previous run
/// is removed first; any other kind of file there is an error, never deleted.
pub(crate) fn bind(path: &Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // Connecting tells a live socket from a stale one: never steal
            // the socket of a gate that is still running.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process is listening on this socket",
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ));
        }
        Err(_) => {}
    }
    UnixListener::bind(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bind_replaces_a_stale_socket_but_not_a_live_one_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let live = bind(&sock).unwrap();
        assert_eq!(bind(&sock).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        drop(live); // the file stays behind, as after a crash
        assert!(sock.exists());
        bind(&sock).expect("a stale socket is replaced");
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        assert!(bind(&file).is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    }
}
