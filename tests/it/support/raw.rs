//! Raw HTTP/1.1 over TCP: sends exactly the bytes given (no client normalises
//! the path) and parses status, headers and body of the response.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    pub fn gate_error(&self) -> Option<String> {
        self.header("x-jwtgate-error")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.text()))
    }
}

/// Sends `bytes` as they are and reads one response. The request should say
/// `Connection: close`; the body is delimited by Content-Length, chunked
/// encoding, or the end of the stream. If the server resets the connection
/// after answering, whatever was received is still parsed.
pub async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    tokio::time::timeout(Duration::from_secs(20), async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        // A server may answer (e.g. 431) and close before reading everything.
        let _ = s.write_all(bytes).await;
        let _ = s.flush().await;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let head_request = bytes.starts_with(b"HEAD ");
        loop {
            if let Some(resp) = try_parse(&buf, false, head_request) {
                return resp;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        try_parse(&buf, true, head_request).unwrap_or_else(|| {
            panic!(
                "no complete HTTP response; received {:?}",
                String::from_utf8_lossy(&buf)
            )
        })
    })
    .await
    .expect("raw request timed out")
}

/// `GET target HTTP/1.1` with Host, Connection: close and the extra header
/// lines given (each `Name: value`).
pub async fn raw_get(addr: SocketAddr, target: &str, headers: &[String]) -> RawResponse {
    raw_request(addr, build("GET", target, headers, b"").as_slice()).await
}

/// Builds a request; adds `Content-Length` when a body is given.
pub fn build(method: &str, target: &str, headers: &[String], body: &[u8]) -> Vec<u8> {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: gate.test\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    out.extend_from_slice(body);
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a response from `buf`; `None` while incomplete (unless `eof`).
fn try_parse(buf: &[u8], eof: bool, head_request: bool) -> Option<RawResponse> {
    let head_end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    // 1xx other than 101 are interim: skip them.
    if (100..200).contains(&status) && status != 101 {
        return try_parse(&buf[head_end + 4..], eof, head_request);
    }
    let rest = &buf[head_end + 4..];
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if head_request || status == 101 || status == 204 || status == 304 {
        Vec::new()
    } else if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        match dechunk(rest) {
            Some(b) => b,
            None if eof => rest.to_vec(),
            None => return None,
        }
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if rest.len() < len {
            if eof {
                rest.to_vec()
            } else {
                return None;
            }
        } else {
            rest[..len].to_vec()
        }
    } else if eof {
        rest.to_vec()
    } else {
        return None;
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
