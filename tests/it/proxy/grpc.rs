//! gRPC through the gate with real gRPC programs: a grpcio server
//! (tests/backends/grpc_server.py, raw-bytes methods of `test.Echo` and the
//! standard health service) and a grpcio client
//! (tests/backends/grpc_client.py, one scenario per run, JSON out).
//!
//! grpcio and grpcio-health-checking are installed by `.ci/run`. Without
//! them a test says SKIPPED and passes; under CI (`CI` set) it fails.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};

const SECRET: &str = "grpc-tests-secret-0123456789abcdef0123";

/// Are the Python gRPC modules there? Under CI they must be.
fn have_grpc() -> bool {
    python3_has(
        "grpc, grpc_health.v1.health",
        "python3 grpcio / grpcio-health-checking",
    )
}

/// The gRPC server, in its own process group (killed with it when dropped).
struct Server {
    _group: ProcessGroup,
    addr: SocketAddr,
}

/// Starts grpc_server.py (with `--tls CERT KEY` when given) and waits for
/// its "ready" line.
fn start_server(tls: Option<(&str, &str)>) -> Server {
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.current_dir(backends_dir())
        .arg("grpc_server.py")
        .arg(port.to_string());
    if let Some((cert, key)) = tls {
        cmd.args(["--tls", cert, key]);
    }
    let mut group = ProcessGroup::spawn(
        cmd.stdout(Stdio::piped()).stderr(Stdio::null()),
        "grpc_server.py",
    );
    let mut line = String::new();
    BufReader::new(group.0.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read server output");
    assert_eq!(line.trim(), "ready", "grpc_server.py did not start");
    Server {
        _group: group,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
    }
}

/// Runs grpc_client.py once; its JSON result.
fn client(target: SocketAddr, scenario: &str, args: &[&str]) -> Value {
    let out = Command::new("python3")
        .current_dir(backends_dir())
        .arg("grpc_client.py")
        .arg(target.to_string())
        .arg(scenario)
        .args(args)
        .output()
        .expect("run grpc_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "grpc_client.py {scenario}: no JSON; stdout {stdout}; stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn token(user: &str, role: Option<&str>) -> String {
    let mut claims = json!({"sub": user, "exp": now() + 600});
    if let Some(r) = role {
        claims["role"] = json!(r);
    }
    hs256(SECRET, &claims)
}

/// A gate in front of `upstream` (a URL) with the gRPC routes of the README:
/// the health service public, one method guarded by a claim.
fn gate(upstream: &str, extra_upstream: &str) -> Gate {
    GateBuilder::toml(&format!(
        "[upstream]\nurl = \"{upstream}\"\n{extra_upstream}\n\
         [auth.secret]\nvalue = \"{SECRET}\"\n\
         [forward]\nclaims_headers = {{ role = \"x-auth-role\" }}\n\
         [[routes]]\nprefix = \"/grpc.health.v1.Health/\"\nauth = \"none\"\n\
         [[routes]]\npath = \"/test.Echo/Admin\"\nrequire_claims = {{ role = \"admin\" }}\n"
    ))
    .start()
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("?")
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_calls_through_the_gate_over_h2c() {
    if !have_grpc() {
        return;
    }
    let server = start_server(None);
    // Direct first: the scenarios work without the gate.
    assert_eq!(code(&client(server.addr, "unary", &[])), "OK");

    for protocol in ["protocol = \"h2c\"", ""] {
        // "" is the default, auto: HTTP/1.1 for HTTP, HTTP/2 for gRPC.
        let g = gate(&format!("http://{}", server.addr), protocol);
        let tok = token("alice", None);
        let t = ["--token", tok.as_str()];

        let r = client(g.proxy, "unary", &t);
        assert_eq!(code(&r), "OK", "{protocol}: {r}");
        assert_eq!(r["result"], "hello");
        // Initial metadata and trailers from the server arrive unchanged.
        assert_eq!(r["initial"]["x-initial"], json!(["i1"]), "{r}");
        assert_eq!(r["trailing"]["x-trailer"], json!(["t1"]), "{r}");

        let r = client(g.proxy, "server_stream", &t);
        assert_eq!(code(&r), "OK", "{r}");
        assert_eq!(
            r["result"],
            json!(["msg-0", "msg-1", "msg-2", "msg-3", "msg-4"])
        );

        // Ping-pong: stalls (and times out) if either direction is buffered.
        let r = client(g.proxy, "bidi", &["--token", &tok, "--timeout", "10"]);
        assert_eq!(code(&r), "OK", "{r}");
        assert_eq!(
            r["result"],
            json!(["echo:m0", "echo:m1", "echo:m2", "echo:m3", "echo:m4"])
        );

        let r = client(g.proxy, "client_stream", &t);
        assert_eq!(code(&r), "OK", "{r}");
        assert_eq!(r["result"]["intact"], true, "{r}");
        assert_eq!(r["result"]["bytes"], 10 * 1024 * 1024);

        // A 10 MB message each way, byte for byte.
        let r = client(g.proxy, "big", &t);
        assert_eq!(code(&r), "OK", "{r}");
        assert_eq!(r["result"]["intact"], true, "{r}");
        assert_eq!(r["result"]["bytes"], 10 * 1024 * 1024);
        assert_eq!(r["trailing"]["x-sha256"][0], r["result"]["sha256_sent"]);

        // The server's own status, message and trailers (binary included).
        let r = client(g.proxy, "fail", &t);
        assert_eq!(code(&r), "NOT_FOUND", "{r}");
        assert_eq!(r["details"], "no such thing: caf\u{e9} 100%");
        assert_eq!(r["trailing"]["x-trailer"], json!(["from-server"]), "{r}");
        assert_eq!(r["trailing"]["x-bin-bin"], json!(["0001ff"]), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_arrives_as_metadata_and_forged_copies_are_stripped() {
    if !have_grpc() {
        return;
    }
    let server = start_server(None);
    // Direct, the forged header reaches the server: the check below can fail.
    let direct = client(server.addr, "whoami", &["--meta", "x-auth-user=mallory"]);
    assert_eq!(direct["result"]["x-auth-user"], json!(["mallory"]));

    let g = gate(&format!("http://{}", server.addr), "");
    let tok = token("alice", Some("ops"));
    let r = client(
        g.proxy,
        "whoami",
        &[
            "--token",
            &tok,
            "--meta",
            "x-auth-user=mallory",
            "--meta",
            "x-auth-role=admin",
        ],
    );
    assert_eq!(code(&r), "OK", "{r}");
    let seen = &r["result"];
    assert_eq!(seen["x-auth-user"], json!(["alice"]), "{seen}");
    assert_eq!(seen["x-auth-role"], json!(["ops"]), "{seen}");
    // The token is not forwarded (auth.forward_token is off).
    assert!(seen.get("authorization").is_none(), "{seen}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rejections_reach_a_real_client_as_grpc_status_codes() {
    if !have_grpc() {
        return;
    }
    let server = start_server(None);
    let g = gate(
        &format!("http://{}", server.addr),
        "response_timeout = \"1s\"",
    );
    let user = token("alice", None);
    let admin = token("root", Some("admin"));

    // 401: no token, a bad token.
    let r = client(g.proxy, "unary", &[]);
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    assert_eq!(r["details"], "a bearer token is required");
    // Trailers-only: the client reads the gate's headers as trailers.
    assert_eq!(
        r["trailing"]["www-authenticate"],
        json!(["Bearer realm=\"jwtgate\""]),
        "{r}"
    );
    assert_eq!(
        r["trailing"]["x-jwtgate-error"],
        json!(["unauthorized"]),
        "{r}"
    );
    let r = client(g.proxy, "unary", &["--token", "not.a.token"]);
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");

    // 403: a route on one method, by its gRPC path.
    let r = client(
        g.proxy,
        "call",
        &["--token", &user, "--method", "/test.Echo/Admin"],
    );
    assert_eq!(code(&r), "PERMISSION_DENIED", "{r}");
    assert!(
        r["trailing"]["www-authenticate"][0]
            .as_str()
            .is_some_and(|w| w.contains("insufficient_scope")),
        "{r}"
    );
    // ... which other methods of the service are not guarded by.
    let r = client(
        g.proxy,
        "call",
        &["--token", &admin, "--method", "/test.Echo/Admin"],
    );
    assert_eq!(code(&r), "OK", "{r}");
    assert_eq!(code(&client(g.proxy, "unary", &["--token", &user])), "OK");

    // 400: a path the gate refuses to forward.
    let r = client(
        g.proxy,
        "call",
        &["--token", &user, "--method", "/test.Echo/Unary;x=1"],
    );
    assert_eq!(code(&r), "INVALID_ARGUMENT", "{r}");

    // 504 without a deadline: UNAVAILABLE, with the gate's description.
    let r = client(g.proxy, "sleep", &["--token", &user]);
    assert_eq!(code(&r), "UNAVAILABLE", "{r}");
    assert_eq!(r["details"], "upstream did not answer in time");

    // The public health route needs no token.
    let r = client(g.proxy, "health", &[]);
    assert_eq!(code(&r), "OK", "{r}");
    assert_eq!(r["result"], "SERVING");

    // Metrics count the same decisions and reasons as for HTTP.
    let metrics = client_http()
        .get(g.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (labels, at_least) in [
        (&["decision=\"deny\"", "reason=\"no_token\""][..], 1.0),
        (&["decision=\"deny\"", "reason=\"missing_claim\""][..], 1.0),
        (
            &["decision=\"error\"", "reason=\"upstream_timeout\""][..],
            1.0,
        ),
        (&["decision=\"allow\"", "reason=\"public_route\""][..], 1.0),
    ] {
        let n = metric_sum_with(&metrics, "jwtgate_requests_total", labels);
        assert!(n >= at_least, "{labels:?}: {n}\n{metrics}");
    }

    // 502: nothing listens upstream.
    let dead = gate(&format!("http://127.0.0.1:{}", free_port()), "");
    let r = client(dead.proxy, "unary", &["--token", &user]);
    assert_eq!(code(&r), "UNAVAILABLE", "{r}");
    assert_eq!(r["details"], "upstream refused the connection");

    // An HTTP/1-only upstream: a clear refusal instead of a garbled call.
    let h1 = gate(&format!("http://{}", server.addr), "protocol = \"http1\"");
    let r = client(h1.proxy, "unary", &["--token", &user]);
    assert_eq!(code(&r), "UNAVAILABLE", "{r}");
    assert!(
        r["details"]
            .as_str()
            .is_some_and(|d| d.contains("gRPC needs HTTP/2") && d.contains("\"http1\"")),
        "{r}"
    );
}

fn client_http() -> reqwest::Client {
    crate::support::client()
}

/// The gate's own deadline: a grpc-timeout shorter than
/// `upstream.response_timeout` ends the wait with DEADLINE_EXCEEDED. A raw
/// HTTP/2 request is used so that no client-side deadline races the gate's.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_timeout_is_deadline_exceeded() {
    if !have_grpc() {
        return;
    }
    let server = start_server(None);
    let g = gate(&format!("http://{}", server.addr), "");
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap();
    // A gRPC message: flag 0, length 1, "3" (sleep 3 s).
    let frame = vec![0u8, 0, 0, 0, 1, b'3'];
    let started = std::time::Instant::now();
    let resp = h2
        .post(g.url("/test.Echo/Sleep"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "500m")
        .header("authorization", bearer(&token("alice", None)))
        .body(frame.clone())
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "grpc-status"), "4");
    assert_eq!(header(&resp, "x-jwtgate-error"), "gateway_timeout");
    assert_eq!(
        header(&resp, "grpc-message"),
        "upstream did not answer in time"
    );

    // A refusal's message is percent-encoded as gRPC requires.
    let resp = h2
        .post(g.url("/test.Echo/Unary"))
        .header("content-type", "application/grpc")
        .header("authorization", "Bearer x")
        .body(frame)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "grpc-status"), "16");
    let msg = header(&resp, "grpc-message");
    assert!(!msg.is_empty() && msg.is_ascii(), "{msg}");
    assert_eq!(header(&resp, "content-type"), "application/grpc");
}

/// HTTP/2 over TLS to the upstream, chosen by ALPN: forced (`h2`) and
/// negotiated (`auto`).
#[tokio::test(flavor = "multi_thread")]
async fn h2_upstream_over_tls_with_alpn() {
    if !have_grpc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = tls_cert(dir.path(), "one");
    let server = start_server(Some((&cert, &key)));
    // Direct over TLS, trusting the same certificate.
    assert_eq!(code(&client(server.addr, "unary", &["--tls", &cert])), "OK");
    for protocol in ["h2", "auto"] {
        let g = gate(
            &format!("https://{}", server.addr),
            &format!("protocol = \"{protocol}\"\nca_file = \"{cert}\""),
        );
        let tok = token("alice", None);
        let r = client(g.proxy, "unary", &["--token", &tok]);
        assert_eq!(code(&r), "OK", "{protocol}: {r}\n{}", g.diagnostics());
        assert_eq!(r["trailing"]["x-trailer"], json!(["t1"]));
        let r = client(g.proxy, "bidi", &["--token", &tok, "--timeout", "10"]);
        assert_eq!(code(&r), "OK", "{protocol}: {r}");
        let r = client(g.proxy, "whoami", &["--token", &tok]);
        assert_eq!(r["result"]["x-auth-user"], json!(["alice"]), "{r}");
    }
}
