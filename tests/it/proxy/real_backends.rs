//! The gate in front of real backends it does not control: Hypercorn (h2c
//! and WebSocket capable), Tomcat 10 (strips `;` path parameters the Java
//! way) and gunicorn (maps `_` and `-` in header names to the same WSGI
//! variable). Each test first shows the attack works against the backend
//! directly, so that it could fail, then that it does not work through the
//! gate, and that legitimate traffic still does.
//!
//! The programs are installed by `.ci/run` (Hypercorn and gunicorn from
//! PyPI, Tomcat 10 from Debian). On a machine without them a test says so
//! and passes; under CI (`CI` set) a missing program fails the test.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "real-backends-secret-0123456789abcdef";

/// A backend process in its own process group; the whole group (Hypercorn's
/// and gunicorn's workers, Tomcat's JVM) is killed when dropped.
type Proc = ProcessGroup;

/// Spawns `cmd` as the leader of a new process group.
fn spawn_group(cmd: &mut Command) -> Proc {
    ProcessGroup::spawn(cmd.stdout(Stdio::null()).stderr(Stdio::null()), "backend")
}

/// Waits until `addr` answers `GET path` with any HTTP status.
async fn wait_http(addr: SocketAddr, path: &str, limit: Duration, proc_: &mut Proc) {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(mut s) = TcpStream::connect(addr).await {
            let req =
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            if s.write_all(req.as_bytes()).await.is_ok() {
                let mut buf = [0u8; 12];
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await
                    && n >= 12
                    && buf.starts_with(b"HTTP/1.1 200")
                {
                    return;
                }
            }
        }
        if let Ok(Some(status)) = proc_.0.try_wait() {
            panic!("backend exited with {status} before serving");
        }
        assert!(Instant::now() < deadline, "backend on {addr} did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn gate_for(port: u16, extra: &str) -> Gate {
    GateBuilder::toml(&format!(
        "[upstream]\nurl = \"http://127.0.0.1:{port}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n{extra}\n\
         [[routes]]\nprefix = \"/public/\"\nauth = \"none\"\n\
         [[routes]]\nprefix = \"/admin\"\nrequire_claims = {{ role = \"admin\" }}\n"
    ))
    .start()
}

fn token(user: &str, admin: bool) -> String {
    let mut claims = json!({"sub": user, "exp": now() + 600});
    if admin {
        claims["role"] = json!("admin");
    }
    hs256(SECRET, &claims)
}

// ---------------------------------------------------------------- Hypercorn

async fn start_hypercorn() -> Option<(Proc, SocketAddr)> {
    let mut cmd = require_python_module("hypercorn")?;
    let port = free_port();
    let mut p = spawn_group(cmd.current_dir(backends_dir()).args([
        "--bind",
        &format!("127.0.0.1:{port}"),
        "asgi_app:app",
    ]));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_http(addr, "/__seen", Duration::from_secs(30), &mut p).await;
    Some((p, addr))
}

async fn hypercorn_seen(addr: SocketAddr) -> Vec<Value> {
    let resp = raw_get(addr, "/__seen", &[]).await;
    serde_json::from_slice(&resp.body).expect("seen JSON")
}

/// An HTTP/1.1 request asking for h2c, then (whatever the answer) the
/// HTTP/2 preface, SETTINGS and a HEADERS frame for `/admin/secret` with a
/// forged `x-auth-user`. Returns what came back on the connection.
async fn h2c_smuggle(addr: SocketAddr, first_target: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {first_target} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Read the answer to the first request.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !got.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    // HTTP/2 client preface, an empty SETTINGS frame, and HEADERS on stream 3.
    let mut frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frames.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    let lit = |block: &mut Vec<u8>, index: u8, value: &str| {
        block.push(index); // literal without indexing, indexed name
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    };
    lit(&mut block, 0x04, "/admin/secret"); // :path
    lit(&mut block, 0x01, "localhost"); // :authority
    block.push(0x00); // literal without indexing, new name
    block.push(11);
    block.extend_from_slice(b"x-auth-user");
    block.push(4);
    block.extend_from_slice(b"root");
    let len = block.len() as u32;
    frames.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, 0x1, 0x5]);
    frames.extend_from_slice(&3u32.to_be_bytes());
    frames.extend_from_slice(&block);
    let _ = s.write_all(&frames).await;
    // Collect whatever comes back for a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypercorn_h2c_smuggling_is_closed_and_websocket_still_works() {
    let Some((_proc, addr)) = start_hypercorn().await else {
        return;
    };
    // Directly, Hypercorn switches to h2c and serves the smuggled stream:
    // the attack is real on this backend.
    let direct = h2c_smuggle(addr, "/public/x").await;
    assert!(
        direct.starts_with(b"HTTP/1.1 101"),
        "Hypercorn did not accept h2c directly: {:?}",
        String::from_utf8_lossy(&direct[..direct.len().min(200)])
    );
    let seen = hypercorn_seen(addr).await;
    assert!(
        seen.iter().any(|e| e["path"] == "/admin/secret"),
        "the smuggled stream did not reach Hypercorn directly: {seen:?}"
    );
    let before = seen.len();

    let gate = gate_for(addr.port(), "");
    for first in ["/public/x", "/status"] {
        let got = h2c_smuggle(gate.proxy, first).await;
        let text = String::from_utf8_lossy(&got);
        assert!(!text.starts_with("HTTP/1.1 101"), "{first}: {text}");
        let seen = hypercorn_seen(addr).await;
        let new: Vec<&Value> = seen[before..].iter().collect();
        assert!(
            new.iter().all(|e| e["path"] != "/admin/secret"),
            "{first}: a smuggled request reached the backend: {new:?}"
        );
        assert!(
            new.iter()
                .all(|e| e["x_auth_user"].as_array().is_none_or(|a| a.is_empty())),
            "{first}: a forged identity reached the backend: {new:?}"
        );
    }
    let seen = hypercorn_seen(addr).await;
    let new = &seen[before..];
    // The public request itself was served as plain HTTP/1.1, once.
    assert_eq!(
        new.iter().filter(|e| e["path"] == "/public/x").count(),
        1,
        "{new:?}"
    );
    assert!(new.iter().all(|e| e["http_version"] == "1.1"), "{new:?}");

    // WebSocket after authentication still works end to end.
    let mut request = format!("ws://{}/ws", gate.proxy)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        bearer(&token("alice", false)).parse().unwrap(),
    );
    let stream = TcpStream::connect(gate.proxy).await.unwrap();
    let (mut ws, resp) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(request, stream),
    )
    .await
    .expect("handshake timed out")
    .expect("websocket through the gate to Hypercorn");
    assert_eq!(resp.status(), 101);
    ws.send(Message::Text("hello hypercorn".into()))
        .await
        .unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo timed out")
        .expect("stream ended")
        .expect("ws error");
    assert_eq!(echo.into_text().unwrap().as_str(), "hello hypercorn");
    // Without a token there is no upgrade.
    let request = format!("ws://{}/ws", gate.proxy)
        .into_client_request()
        .unwrap();
    let stream = TcpStream::connect(gate.proxy).await.unwrap();
    assert!(
        tokio_tungstenite::client_async(request, stream)
            .await
            .is_err()
    );
}

// ---------------------------------------------------------------- Tomcat

const TOMCAT_HOME: &str = "/usr/share/tomcat10";
const SECRET_TEXT: &str = "TOP-SECRET-ADMIN-PAGE";

async fn start_tomcat(dir: &Path) -> Option<(Proc, SocketAddr)> {
    require_program(&format!("{TOMCAT_HOME}/bin/catalina.sh"))?;
    require_program("java")?;
    let port = free_port();
    for d in [
        "conf",
        "logs",
        "temp",
        "work",
        "webapps/ROOT/admin",
        "webapps/ROOT/public",
    ] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(
        dir.join("conf/server.xml"),
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="{port}" address="127.0.0.1" protocol="HTTP/1.1" connectionTimeout="20000"/>
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false"/>
    </Engine>
  </Service>
</Server>
"#
        ),
    )
    .unwrap();
    // The default servlet's mappings and the MIME types.
    for f in ["web.xml", "catalina.properties"] {
        let from = [
            format!("/etc/tomcat10/{f}"),
            format!("{TOMCAT_HOME}/etc/{f}"),
        ]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or_else(|| panic!("tomcat10 {f} not found"));
        std::fs::copy(from, dir.join("conf").join(f)).unwrap();
    }
    std::fs::write(dir.join("webapps/ROOT/admin/secret.txt"), SECRET_TEXT).unwrap();
    std::fs::write(dir.join("webapps/ROOT/public/hello.txt"), "hello").unwrap();
    let mut p = spawn_group(
        Command::new(format!("{TOMCAT_HOME}/bin/catalina.sh"))
            .arg("run")
            .env("CATALINA_HOME", TOMCAT_HOME)
            .env("CATALINA_BASE", dir)
            .env("CATALINA_TMPDIR", dir.join("temp")),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_http(addr, "/public/hello.txt", Duration::from_secs(90), &mut p).await;
    Some((p, addr))
}

const PARAM_ATTACKS: &[&str] = &[
    "/public/..;/admin/secret.txt",
    "/public/..;x=1/admin/secret.txt",
    "/public/%2e%2e;/admin/secret.txt",
    "/public/.;/../admin/secret.txt",
    "/admin;x=1/secret.txt",
    "/admin/secret.txt;jsessionid=1",
    "/public/..%3B/admin/secret.txt",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tomcat_path_parameters_never_reach_a_refused_resource() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_proc, addr)) = start_tomcat(dir.path()).await else {
        return;
    };
    // Directly, Tomcat resolves the parameter tricks to the admin page.
    let direct = raw_get(addr, "/public/..;/admin/secret.txt", &[]).await;
    assert_eq!(direct.status, 200, "{}", direct.text());
    assert!(direct.text().contains(SECRET_TEXT));

    let low = format!("Authorization: Bearer {}", token("alice", false));
    let admin = format!("Authorization: Bearer {}", token("root", true));
    for allow in [false, true] {
        let gate = gate_for(
            addr.port(),
            &format!("[paths]\nallow_path_parameters = {allow}\n"),
        );
        for target in PARAM_ATTACKS {
            for headers in [vec![], vec![low.clone()]] {
                let resp = raw_get(gate.proxy, target, &headers).await;
                assert!(
                    !resp.text().contains(SECRET_TEXT),
                    "allow_path_parameters={allow}: {target} (token: {}) reached the admin page",
                    !headers.is_empty()
                );
                assert!(
                    matches!(resp.status, 400 | 401 | 403),
                    "allow_path_parameters={allow}: {target}: {}",
                    resp.status
                );
            }
        }
        // The public page and, with the right claim, the admin page work.
        let resp = raw_get(gate.proxy, "/public/hello.txt", &[]).await;
        assert_eq!(resp.status, 200);
        let resp = raw_get(
            gate.proxy,
            "/admin/secret.txt",
            std::slice::from_ref(&admin),
        )
        .await;
        assert_eq!(resp.status, 200);
        assert!(resp.text().contains(SECRET_TEXT));
        if allow {
            // Parameters are removed, and Tomcat serves what the gate decided.
            let resp = raw_get(
                gate.proxy,
                "/public/..;/admin/secret.txt",
                std::slice::from_ref(&admin),
            )
            .await;
            assert_eq!(resp.status, 200);
            assert!(resp.text().contains(SECRET_TEXT));
            let resp = raw_get(gate.proxy, "/public/hello.txt;jsessionid=1", &[]).await;
            assert_eq!(resp.status, 200, "{}", resp.text());
        }
    }
}

// ---------------------------------------------------------------- gunicorn

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gunicorn_never_sees_an_underscore_alias_of_the_identity() {
    let Some(mut cmd) = require_python_module("gunicorn") else {
        return;
    };
    let port = free_port();
    // `header_map = dangerous` is how WSGI servers other than a recent
    // gunicorn (and gunicorn before 22) map headers: `X_Auth_User` and
    // `X-Auth-User` both become HTTP_X_AUTH_USER.
    let mut p = spawn_group(cmd.current_dir(backends_dir()).args([
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--workers",
        "1",
        "--header-map",
        "dangerous",
        "wsgi_app:app",
    ]));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_http(addr, "/", Duration::from_secs(30), &mut p).await;

    // Directly, the alias is the identity variable.
    let direct = raw_get(addr, "/", &["X_Auth_User: root".to_string()]).await;
    assert_eq!(
        direct.json()["HTTP_X_AUTH_USER"],
        "root",
        "{}",
        direct.text()
    );

    let gate = gate_for(
        port,
        "[forward]\nclaims_headers = { email = \"X-Auth-Email\" }\n",
    );
    let alice = format!(
        "Authorization: Bearer {}",
        hs256(
            SECRET,
            &json!({"sub": "alice", "email": "a@example.com", "exp": now() + 600})
        )
    );
    for spoof in [
        "X_Auth_User: root",
        "x_auth_user: root",
        "X-Auth_User: root",
        "X_AUTH_EMAIL: root@evil",
    ] {
        let resp = raw_get(gate.proxy, "/app", &[spoof.to_string(), alice.clone()]).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        let env = resp.json();
        assert_eq!(env["HTTP_X_AUTH_USER"], "alice", "{spoof}: {env}");
        assert_eq!(env["HTTP_X_AUTH_EMAIL"], "a@example.com", "{spoof}: {env}");
        // On a public route there is no identity at all.
        let resp = raw_get(gate.proxy, "/public/x", &[spoof.to_string()]).await;
        let env = resp.json();
        assert!(env.get("HTTP_X_AUTH_USER").is_none(), "{spoof}: {env}");
        assert!(env.get("HTTP_X_AUTH_EMAIL").is_none(), "{spoof}: {env}");
    }
    // Method and path overrides do not reach the application either.
    let resp = raw_get(
        gate.proxy,
        "/public/x",
        &[
            "X-HTTP-Method-Override: DELETE".to_string(),
            "X_Original_URL: /admin".to_string(),
        ],
    )
    .await;
    let env = resp.json();
    assert!(env.get("HTTP_X_HTTP_METHOD_OVERRIDE").is_none(), "{env}");
    assert!(env.get("HTTP_X_ORIGINAL_URL").is_none(), "{env}");
}

// ------------------------------------------------------------ nginx (h2c)

/// nginx from Debian on a cleartext HTTP/2 (prior knowledge) listener; it
/// answers every request with the host it read, `X-Forwarded-Host` and the
/// identity header.
async fn start_nginx_h2c(dir: &Path) -> Option<(Proc, SocketAddr)> {
    let nginx = require_program("nginx")?;
    let port = free_port();
    let d = dir.display();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port} http2;
    location / {{
      default_type text/plain;
      return 200 "host=$host xfh=$http_x_forwarded_host user=$http_x_auth_user\n";
    }}
  }}
}}
"#
        ),
    )
    .unwrap();
    let mut p = spawn_group(
        Command::new(nginx)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("startup.log"))
            .arg("-c")
            .arg(&conf),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).await.is_err() {
        if let Ok(Some(status)) = p.0.try_wait() {
            panic!(
                "nginx exited with {status}: {}",
                std::fs::read_to_string(dir.join("startup.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "nginx on {addr} did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some((p, addr))
}

/// One HTTP/2 prior-knowledge GET of `http://{addr}/h2` (so `:authority`
/// is `addr`), with `host` as a `Host` header when given.
async fn h2_get(addr: SocketAddr, host: Option<&str>) -> (u16, String) {
    use http_body_util::BodyExt;
    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::get(format!("http://{addr}/h2"));
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let resp = send
        .send_request(
            req.body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn an_h2c_nginx_upstream_gets_one_authority_and_the_client_host_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_nginx, addr)) = start_nginx_h2c(dir.path()).await else {
        return;
    };
    // Directly: a Host beside a different :authority is refused (RFC 9113
    // §8.3.1), which is what the gate sent before; without it, served.
    assert_eq!(h2_get(addr, Some("gate.test")).await.0, 400);
    let (status, body) = h2_get(addr, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("host=127.0.0.1 "), "{body}");

    let gate = GateBuilder::toml(&format!(
        "[upstream]\nurl = \"http://{addr}\"\nprotocol = \"h2c\"\n\
         [auth.secret]\nvalue = \"{SECRET}\"\n"
    ))
    .start();
    let bearer = format!("Authorization: Bearer {}", token("alice", false));
    let resp = raw_get(gate.proxy, "/h2", std::slice::from_ref(&bearer)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.text().trim(),
        format!("host=127.0.0.1 xfh=gate.test user=alice"),
        "the upstream reads the gate's :authority, the client's host in X-Forwarded-Host"
    );
    // A forged identity is still replaced over HTTP/2.
    let forged = raw_get(gate.proxy, "/h2", &[bearer, "X-Auth-User: root".into()]).await;
    assert!(forged.text().contains("user=alice"), "{}", forged.text());
    assert_eq!(raw_get(gate.proxy, "/h2", &[]).await.status, 401);
}
