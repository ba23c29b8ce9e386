//! `jwtgate healthcheck`: GET the admin listener's `/readyz` and exit 0 on
//! 200, 1 otherwise, for a Docker `HEALTHCHECK` in an image that has no curl
//! or shell. Prints one short line; never a response body (it could name
//! issuers) and never a secret.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::Uri;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use crate::config::{Config, ListenAddr};

/// Where the admin listener is when nothing says otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9901/readyz";

/// A probe target: TCP `http://HOST:PORT/path` or `unix:/socket` (+ path).
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Tcp { authority: String, path: String },
    Unix { socket: String, path: String },
}

/// The target for `--url`, else the configuration's `admin_listen`.
pub fn target(url: Option<&str>, config: Option<&Config>) -> Result<Target> {
    if let Some(u) = url {
        return parse_url(u);
    }
    let Some(cfg) = config else {
        return parse_url(DEFAULT_URL);
    };
    let sa = match &cfg.admin_listen {
        None => bail!("admin_listen is \"\": there is no admin listener to ask"),
        Some(ListenAddr::Unix(p)) => {
            return Ok(Target::Unix {
                socket: p.display().to_string(),
                path: "/readyz".into(),
            });
        }
        Some(ListenAddr::Tcp(sa)) => *sa,
    };
    // A wildcard bind is reached on loopback from inside the container.
    let ip = match sa.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(Target::Tcp {
        authority: SocketAddr::new(ip, sa.port()).to_string(),
        path: "/readyz".into(),
    })
}

fn parse_url(u: &str) -> Result<Target> {
    if let Some(rest) = u.strip_prefix(crate::config::types::UNIX_PREFIX) {
        // unix:/run/admin.sock or unix:/run/admin.sock:/readyz
        let (socket, path) = match rest.split_once(":/") {
            Some((s, p)) => (s.to_string(), format!("/{p}")),
            None => (rest.to_string(), "/readyz".to_string()),
        };
        return Ok(Target::Unix { socket, path });
    }
    let uri: Uri = u.parse().with_context(|| format!("--url {u:?}"))?;
    if uri.scheme_str() != Some("http") {
        bail!("--url {u:?}: the admin listener speaks plain http:// (or use unix:/path)");
    }
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow!("--url {u:?}: no host"))?
        .to_string();
    let path = match uri.path() {
        "" | "/" => "/readyz".to_string(),
        p => uri
            .path_and_query()
            .map_or(p.to_string(), |pq| pq.as_str().to_string()),
    };
    Ok(Target::Tcp { authority, path })
}

/// The status code of GET `target`, within `timeout` (connect included).
pub async fn probe(target: &Target, timeout: Duration) -> Result<u16> {
    tokio::time::timeout(timeout, probe_inner(target))
        .await
        .map_err(|_| anyhow!("no answer within {}", humantime::format_duration(timeout)))?
}

async fn probe_inner(target: &Target) -> Result<u16> {
    match target {
        Target::Tcp { authority, path } => {
            let stream = tokio::net::TcpStream::connect(authority.as_str())
                .await
                .with_context(|| format!("connect to {authority}"))?;
            get(stream, authority, path).await
        }
        Target::Unix { socket, path } => {
            let stream = tokio::net::UnixStream::connect(socket)
                .await
                .with_context(|| format!("connect to unix:{socket}"))?;
            get(stream, "localhost", path).await
        }
    }
}

async fn get<S>(stream: S, host: &str, path: &str) -> Result<u16>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "jwtgate-healthcheck")
        .body(Empty::<Bytes>::new())?;
    Ok(sender.send_request(req).await?.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            target(None, None).unwrap(),
            Target::Tcp {
                authority: "127.0.0.1:9901".into(),
                path: "/readyz".into()
            }
        );
        let mut c = Config {
            admin_listen: Some("0.0.0.0:9999".parse().unwrap()),
            ..Config::default()
        };
        assert_eq!(
            target(None, Some(&c)).unwrap(),
            Target::Tcp {
                authority: "127.0.0.1:9999".into(),
                path: "/readyz".into()
            }
        );
        c.admin_listen = Some("[::]:9999".parse().unwrap());
        assert!(
            matches!(target(None, Some(&c)).unwrap(), Target::Tcp { authority, .. } if authority == "[::1]:9999")
        );
        c.admin_listen = Some("unix:/run/a.sock".parse().unwrap());
        assert_eq!(
            target(None, Some(&c)).unwrap(),
            Target::Unix {
                socket: "/run/a.sock".into(),
                path: "/readyz".into()
            }
        );
        c.admin_listen = None;
        assert!(target(None, Some(&c)).is_err());
        assert_eq!(
            target(Some("http://10.0.0.1:1/healthz"), Some(&c)).unwrap(),
            Target::Tcp {
                authority: "10.0.0.1:1".into(),
                path: "/healthz".into()
            }
        );
        assert!(target(Some("https://x/readyz"), None).is_err());
    }
}
