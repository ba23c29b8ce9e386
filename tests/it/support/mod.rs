//! Shared helpers for jwtgate's black-box integration tests.
//!
//! A test runs a gate ([`GateBuilder`]: in-process on the library by
//! default, the real binary with `.process()`) with a config file written
//! into a temporary directory, next to a real upstream (and, for the issuer
//! tests, a real mock OpenID provider), all on `127.0.0.1:0`; short commands
//! run the binary ([`run_jwtgate`]); [`procs`] starts the real programs some
//! tests put behind the gate.
//!
//! Each test module uses a different subset of these helpers, so unused
//! items are expected.
#![allow(dead_code, unused_imports)]

pub mod browser;
pub mod fixtures;
pub mod gate;
pub mod idp;
pub mod oidc;
pub mod procs;
pub mod raw;
pub mod tokens;
pub mod upstream;

use std::future::Future;
use std::time::{Duration, Instant};

pub use fixtures::{fixture, fixture_path, htpasswd_bcrypt, openssl_key, tls_cert};
pub use gate::{Gate, GateBuilder, JwtgateCmd, RunOutput, run_jwtgate};
pub use idp::{Idp, IdpMode, StandaloneKey};
pub use procs::{
    ProcessGroup, backends_dir, free_port, python3_has, require_program, require_python_module,
};
pub use raw::{RawResponse, raw_get, raw_request};
pub use tokens::*;
pub use upstream::{Seen, Upstream};

/// A reqwest client that ignores proxy variables and never follows redirects.
pub fn client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build reqwest client")
}

/// Installs aws-lc-rs as the process-wide rustls (and jsonwebtoken) provider
/// (idempotent), as the binary does: building a TLS-capable client never
/// panics on an ambiguous provider, and in-process gates need it.
pub fn install_crypto_provider() {
    jwtgate::net::tls::install_crypto_provider();
}

/// Polls `check` until it returns `Some`, failing the test after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Value of the `x-jwtgate-error` marker header, if any.
pub fn gate_error(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("x-jwtgate-error")
        .map(|v| v.to_str().unwrap_or_default().to_string())
}

/// Value of a header as a string ("" when absent).
pub fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// Asserts that a response is a jwtgate rejection with the given status and
/// code, checking the marker header and the JSON body; returns the body.
pub async fn assert_rejection(
    resp: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    let got_status = resp.status().as_u16();
    let marker = gate_error(&resp);
    let ctype = header(&resp, "content-type");
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(got_status, status, "status (body: {text})");
    assert_eq!(
        marker.as_deref(),
        Some(code),
        "x-jwtgate-error (body: {text})"
    );
    assert!(
        ctype.starts_with("application/json"),
        "content-type {ctype:?} is not application/json"
    );
    let body: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("body {text:?} is not JSON: {e}"));
    assert_eq!(body["error"], code, "JSON error field in {body}");
    assert!(
        body["error_description"].is_string(),
        "error_description missing in {body}"
    );
    body
}

/// Sums every sample of a Prometheus metric family (any labels).
/// Returns `None` when no sample of that name exists.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        // The value is the field after the labels (an optional timestamp may follow).
        let after_labels = match rest.find('}') {
            Some(i) => &rest[i + 1..],
            None => rest,
        };
        let v = after_labels
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = v {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Sum of the samples of `name` whose label set contains every `label` given
/// (each as `key="value"`).
pub fn metric_sum_with(text: &str, name: &str, labels: &[&str]) -> f64 {
    let mut total = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !rest.starts_with('{') {
            continue;
        }
        let Some(end) = rest.find('}') else { continue };
        let set = &rest[..end];
        if labels.iter().all(|l| set.contains(l))
            && let Some(v) = rest[end + 1..]
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        {
            total += v;
        }
    }
    total
}
