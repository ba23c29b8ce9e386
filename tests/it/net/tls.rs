//! Serving HTTPS on `listen` with `[tls]`, and reloading the certificate on SIGHUP.

use std::time::Duration;

use crate::support::*;
use serde_json::json;

const SECRET: &str = "tls-test-secret-0123456789abcdef";

fn tls_client(cert_pem: &str) -> reqwest::Client {
    install_crypto_provider();
    let cert = reqwest::Certificate::from_pem(&std::fs::read(cert_pem).unwrap()).unwrap();
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([cert])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn config(up: &Upstream, cert: &str, key: &str) -> String {
    format!(
        "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n[tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n",
        up.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_and_reloads_the_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (cert1, key1) = tls_cert(dir.path(), "one");
    let (cert2, key2) = tls_cert(dir.path(), "two");
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, &cert1, &key1))
        .process()
        .start();
    let url = format!("https://127.0.0.1:{}/x", gate.proxy.port());
    let token = hs256(SECRET, &json!({"sub": "alice", "exp": now() + 600}));

    let r = tls_client(&cert1)
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        up.last().header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    let r = tls_client(&cert1).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Plain HTTP on the TLS port gets nothing useful.
    assert!(
        client()
            .get(format!("http://127.0.0.1:{}/x", gate.proxy.port()))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
    );
    // A client that trusts only the second certificate fails until the reload.
    assert!(tls_client(&cert2).get(&url).send().await.is_err());

    gate.rewrite_config(&config(&up, &cert2, &key2));
    gate.signal("HUP");
    eventually(
        Duration::from_secs(10),
        "the new certificate served",
        || async {
            tls_client(&cert2)
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        },
    )
    .await;

    // A broken certificate is refused and the current one keeps serving.
    std::fs::write(&cert1, "not a certificate").unwrap();
    gate.rewrite_config(&config(&up, &cert1, &key1));
    gate.signal("HUP");
    assert!(
        gate.wait_log(&["new configuration refused"], Duration::from_secs(10))
            .await,
        "{}",
        gate.logs()
    );
    let r = tls_client(&cert2)
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn check_config_reads_the_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "garbage").unwrap();
    let cfg = format!(
        "[auth.secret]\nvalue = \"tls-check-config-secret-0123456789abcdef\"\n[tls]\ncert_file = \"{0}\"\nkey_file = \"{0}\"\n",
        bad.display()
    );
    let out = run_jwtgate(&["check-config"]).toml(&cfg).run();
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.all().contains("tls.cert_file"), "{}", out.all());
}
