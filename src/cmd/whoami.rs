//! `jwtgate whoami`: a tiny upstream that answers every request with JSON
//! of its method, path, query and headers (for demos and tests).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::json;

use crate::respond::json_response;

/// Echoes the request as JSON; the body is read (and counted), not echoed.
pub async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body_len = 0usize;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => body_len += f.data_ref().map_or(0, |d| d.len()),
            Err(_) => break,
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query().unwrap_or(""),
            "headers": headers,
            "body_len": body_len,
        }),
    ))
}

/// Serves `whoami` on `addr` until the process ends; returns the bound address.
pub async fn spawn(addr: SocketAddr) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        // Keep the sender alive for as long as the server runs.
        let _tx = _tx;
        crate::net::server::serve(
            listener.into(),
            crate::net::server::ServeOptions {
                name: "whoami",
                tls: None,
                limits: crate::config::LimitsConfig::default(),
                drain_timeout: std::time::Duration::from_secs(1),
                // Not the gate's: counted nowhere.
                connections_open: Default::default(),
            },
            |_conn, req| handle(req),
            rx,
        )
        .await
    });
    Ok((bound, task))
}
