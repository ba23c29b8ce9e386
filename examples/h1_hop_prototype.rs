//! A prototype, for measurement only: the plain HTTP/1.1 hop on `httparse`
//! instead of hyper, to size what an HTTP/1 engine of the gate's own would
//! gain (issue 20; BENCHMARKS.md, "Session of 2026-12-08"). It is not the
//! gate and never will be as it stands: Content-Length bodies only (no
//! chunked encoding, no upgrades, no `Expect`, no trailers), no limits, no
//! timeouts, and none of the request-smuggling defences that hyper gives
//! the gate. It does the gate's per-request header work for a public
//! route: hop-by-hop and override headers removed in one pass, the
//! identity header removed, `X-Forwarded-For` (formatted once per client
//! connection), `-Proto` and `-Host` set; and it keeps one upstream
//! connection per client connection, as the gate now does.
//!
//! usage: cargo run --release --example h1_hop_prototype -- LISTEN UPSTREAM
//! (e.g. 127.0.0.1:18800 127.0.0.1:8080), one thread.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Names removed from every request (sorted), as the gate's defaults do.
const STRIPPED: &[&str] = &[
    "connection",
    "forwarded",
    "front-end-https",
    "http2-settings",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-auth-user",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-method",
    "x-forwarded-path",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-forwarded-server",
    "x-forwarded-ssl",
    "x-forwarded-uri",
    "x-host",
    "x-http-host-override",
    "x-http-method",
    "x-http-method-override",
    "x-method-override",
    "x-original-uri",
    "x-original-url",
    "x-real-ip",
    "x-rewrite-url",
    "x-url-scheme",
];

/// Hop-by-hop names removed from responses.
const RESPONSE_STRIPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn stripped(list: &[&str], name: &str) -> bool {
    list.binary_search_by(|s| cmp_ignore_case(s, name)).is_ok()
}

fn cmp_ignore_case(a: &str, b: &str) -> std::cmp::Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

fn content_length(headers: &[httparse::Header<'_>]) -> usize {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Reads into `buf` until `parse` says a head is complete; returns its
/// length and what `parse` made of it, or `None` at the end of the stream.
async fn read_head<T>(
    io: &mut TcpStream,
    buf: &mut Vec<u8>,
    mut parse: impl FnMut(&[u8]) -> Option<(usize, T)>,
) -> Option<(usize, T)> {
    loop {
        if let Some(done) = parse(buf) {
            return Some(done);
        }
        let start = buf.len();
        buf.resize(start + 8192, 0);
        let n = io.read(&mut buf[start..]).await.ok()?;
        buf.truncate(start + n);
        if n == 0 {
            return None;
        }
    }
}

/// Reads until `buf` holds `want` bytes.
async fn fill(io: &mut TcpStream, buf: &mut Vec<u8>, want: usize) -> Option<()> {
    while buf.len() < want {
        let start = buf.len();
        buf.resize(want.max(start + 8192), 0);
        let n = io.read(&mut buf[start..]).await.ok()?;
        buf.truncate(start + n);
        if n == 0 {
            return None;
        }
    }
    Some(())
}

async fn serve(mut client: TcpStream, peer: SocketAddr, upstream: SocketAddr) -> Option<()> {
    client.set_nodelay(true).ok()?;
    let peer_text = peer.ip().to_string();
    let mut up: Option<TcpStream> = None;
    let mut cbuf = Vec::with_capacity(8192);
    let mut ubuf = Vec::with_capacity(8192);
    let mut out = Vec::with_capacity(1024);
    loop {
        // The request head, rewritten as it is parsed.
        out.clear();
        let (used, body) = read_head(&mut client, &mut cbuf, |b| {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            let httparse::Status::Complete(n) = req.parse(b).ok()? else {
                return None;
            };
            out.extend_from_slice(req.method?.as_bytes());
            out.push(b' ');
            out.extend_from_slice(req.path?.as_bytes());
            out.extend_from_slice(b" HTTP/1.1\r\n");
            let mut host: &[u8] = b"";
            for h in req.headers.iter() {
                if h.name.eq_ignore_ascii_case("host") {
                    host = h.value;
                }
                if !stripped(STRIPPED, h.name) {
                    out.extend_from_slice(h.name.as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(h.value);
                    out.extend_from_slice(b"\r\n");
                }
            }
            out.extend_from_slice(b"x-forwarded-for: ");
            out.extend_from_slice(peer_text.as_bytes());
            out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\nx-forwarded-host: ");
            out.extend_from_slice(host);
            out.extend_from_slice(b"\r\n\r\n");
            Some((n, content_length(req.headers)))
        })
        .await?;
        fill(&mut client, &mut cbuf, used + body).await?;
        out.extend_from_slice(&cbuf[used..used + body]);
        cbuf.drain(..used + body);
        if up.is_none() {
            let s = TcpStream::connect(upstream).await.ok()?;
            s.set_nodelay(true).ok()?;
            up = Some(s);
        }
        let u = up.as_mut()?;
        u.write_all(&out).await.ok()?;
        // The response head, hop-by-hop headers removed.
        out.clear();
        let (used, body) = read_head(u, &mut ubuf, |b| {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(n) = resp.parse(b).ok()? else {
                return None;
            };
            out.extend_from_slice(b"HTTP/1.1 ");
            out.extend_from_slice(resp.code?.to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
            out.extend_from_slice(b"\r\n");
            for h in resp.headers.iter() {
                if !stripped(RESPONSE_STRIPPED, h.name) {
                    out.extend_from_slice(h.name.as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(h.value);
                    out.extend_from_slice(b"\r\n");
                }
            }
            out.extend_from_slice(b"\r\n");
            Some((n, content_length(resp.headers)))
        })
        .await?;
        fill(u, &mut ubuf, used + body).await?;
        out.extend_from_slice(&ubuf[used..used + body]);
        ubuf.drain(..used + body);
        client.write_all(&out).await.ok()?;
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: h1_hop_prototype LISTEN UPSTREAM");
        return std::process::ExitCode::from(2);
    };
    let listen: SocketAddr = listen.parse().expect("LISTEN is host:port");
    let upstream: SocketAddr = upstream.parse().expect("UPSTREAM is host:port");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await.expect("bind");
        let stop = tokio::signal::ctrl_c();
        tokio::pin!(stop);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal");
        loop {
            tokio::select! {
                a = listener.accept() => {
                    if let Ok((s, peer)) = a {
                        tokio::spawn(serve(s, peer, upstream));
                    }
                }
                _ = &mut stop => break,
                _ = term.recv() => break,
            }
        }
    });
    std::process::ExitCode::SUCCESS
}
