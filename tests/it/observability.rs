//! What operators see: request metrics with their labels, request ids
//! (accepted, generated, forwarded, echoed), and the access log.

use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};

const SECRET: &str = "observability-tests-secret-0123456789ab";

fn config(up: &Upstream, extra: &str) -> String {
    format!(
        "{extra}\n[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET}\"\n",
        up.url()
    )
}

async fn metrics(gate: &Gate) -> String {
    client()
        .get(gate.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn token(user: &str) -> String {
    hs256(SECRET, &claims(user))
}

/// The value of the one sample `name{labels}` (labels exactly as encoded).
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_metrics_carry_listener_decision_and_status_class() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(
        &up,
        "forward_auth_listen = \"127.0.0.1:0\"\n[[routes]]\nprefix = \"/public/\"\nauth = \"none\"\n",
    ))
    .expect_forward_auth()
    .start();
    let c = client();
    let t = token("alice");
    for _ in 0..2 {
        let r = c
            .get(gate.url("/a"))
            .header("authorization", bearer(&t))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(c.get(gate.url("/a")).send().await.unwrap().status(), 401);
    assert_eq!(
        c.get(gate.url("/public/x")).send().await.unwrap().status(),
        200
    );
    let fa = gate.forward_auth.expect("forward-auth address");
    let r = c
        .get(format!("http://{fa}/"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let m = metrics(&gate).await;
    let req = |labels: &[&str]| metric_sum_with(&m, "jwtgate_requests_total", labels);
    assert_eq!(
        req(&[
            r#"listener="proxy""#,
            r#"decision="allow""#,
            r#"reason="token""#,
            r#"status_class="2xx""#
        ]),
        2.0,
        "{m}"
    );
    assert_eq!(
        req(&[
            r#"listener="proxy""#,
            r#"decision="deny""#,
            r#"reason="no_token""#,
            r#"status_class="4xx""#
        ]),
        1.0,
        "{m}"
    );
    assert_eq!(
        req(&[
            r#"listener="forward-auth""#,
            r#"decision="deny""#,
            r#"status_class="4xx""#
        ]),
        1.0,
        "{m}"
    );
    // Histograms: one observation per request, by listener and decision.
    let count = |labels: &str| {
        sample(
            &m,
            &format!("jwtgate_request_duration_seconds_count{{{labels}}}"),
        )
    };
    assert_eq!(
        count(r#"listener="proxy",decision="allow""#),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        count(r#"listener="proxy",decision="deny""#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        count(r#"listener="forward-auth",decision="deny""#),
        Some(1.0),
        "{m}"
    );
    assert!(
        m.contains(r#"jwtgate_request_duration_seconds_bucket{le="0.0005",listener="proxy",decision="allow"}"#)
            || m.contains(r#"jwtgate_request_duration_seconds_bucket{listener="proxy",decision="allow",le="0.0005"}"#),
        "{m}"
    );
    // Three requests reached the upstream.
    assert_eq!(
        sample(&m, "jwtgate_upstream_duration_seconds_count"),
        Some(3.0),
        "{m}"
    );
    // The same token twice: one signature check, one cache hit.
    assert_eq!(
        sample(&m, "jwtgate_verify_duration_seconds_count"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_sum(&m, "jwtgate_token_cache_hits_total"),
        Some(1.0),
        "{m}"
    );
    // Nothing in flight once the answers are read.
    assert_eq!(
        sample(&m, r#"jwtgate_requests_in_flight{listener="proxy"}"#),
        Some(0.0),
        "{m}"
    );
    // This scrape's own connection to the admin listener is open.
    assert!(
        sample(&m, r#"jwtgate_connections_open{listener="admin"}"#).unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
    ] {
        assert!(
            metric_sum(&m, name).is_some_and(|v| v > 0.0),
            "{name} missing or zero:\n{m}"
        );
    }
    let build = m
        .lines()
        .find(|l| l.starts_with("jwtgate_build_info{"))
        .unwrap_or_else(|| panic!("no build_info:\n{m}"));
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && build.contains("revision=\"")
            && build.ends_with(" 1"),
        "{build}"
    );
    assert_eq!(
        sample(&m, "jwtgate_config_last_reload_success"),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_and_open_connections_while_a_request_waits() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    let url = gate.url("/slow?ms=1500");
    let t = token("alice");
    let slow = tokio::spawn(async move {
        client()
            .get(url)
            .header("authorization", bearer(&t))
            .send()
            .await
            .unwrap()
            .status()
    });
    eventually(Duration::from_secs(5), "one request in flight", || async {
        let m = metrics(&gate).await;
        let busy = sample(&m, r#"jwtgate_requests_in_flight{listener="proxy"}"#) == Some(1.0)
            && sample(&m, r#"jwtgate_connections_open{listener="proxy"}"#) == Some(1.0);
        busy.then_some(())
    })
    .await;
    assert_eq!(slow.await.unwrap(), 200);
    let m = metrics(&gate).await;
    assert_eq!(
        sample(&m, r#"jwtgate_requests_in_flight{listener="proxy"}"#),
        Some(0.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_forwarded_echoed_and_generated() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(&up, "")).start();
    let c = client();
    let t = token("alice");

    // A sane incoming id: forwarded unchanged and echoed.
    let r = c
        .get(gate.url("/a"))
        .header("authorization", bearer(&t))
        .header("x-request-id", "req-abc.123_XYZ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-request-id"), "req-abc.123_XYZ");
    assert_eq!(
        up.last().header_all("x-request-id"),
        vec!["req-abc.123_XYZ".to_string()]
    );

    // Echoed on a rejection too.
    let r = c
        .get(gate.url("/a"))
        .header("x-request-id", "denied-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "x-request-id"), "denied-1");

    // Absent: generated, forwarded, echoed; two requests, two ids.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = c
            .get(gate.url("/a"))
            .header("authorization", bearer(&t))
            .send()
            .await
            .unwrap();
        let id = header(&r, "x-request-id");
        assert_eq!(id.len(), 32, "{id:?}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id:?}");
        assert_eq!(up.last().header_all("x-request-id"), vec![id.clone()]);
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);

    // Insane: too long, or with a space: replaced.
    let long = "x".repeat(129);
    for bad in [long.as_str(), "two words"] {
        let r = c
            .get(gate.url("/a"))
            .header("authorization", bearer(&t))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let id = header(&r, "x-request-id");
        assert_ne!(id, bad);
        assert_eq!(id.len(), 32, "{id:?}");
        assert_eq!(up.last().header_all("x-request-id"), vec![id]);
    }
    // A 128-byte id is still accepted.
    let max = "y".repeat(128);
    let r = c
        .get(gate.url("/a"))
        .header("x-request-id", &max)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-request-id"), max);

    // The admin listener answers with one too.
    let r = c.get(gate.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(header(&r, "x-request-id").len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_log_is_flat_with_correlation_and_without_secrets() {
    let up = Upstream::start().await;
    let gate = GateBuilder::toml(&config(
        &up,
        "[[routes]]\nprefix = \"/big\"\nauth = \"token\"\n",
    ))
    .env("JWTGATE_LOG_FORMAT", "json")
    .process()
    .start();
    let t = token("alice");
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    let r = client()
        .post(gate.url("/big?bytes=5000&secretq=1"))
        .header("authorization", bearer(&t))
        .header("x-request-id", "log-me-1")
        .header("traceparent", &traceparent)
        .header("user-agent", "obs-test/1.0")
        .body("0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 5000);
    // traceparent passes through unchanged.
    assert_eq!(
        up.last().header_all("traceparent"),
        vec![traceparent.clone()]
    );

    let line = eventually(Duration::from_secs(5), "the access-log line", || async {
        gate.logs()
            .lines()
            .find(|l| l.contains("log-me-1"))
            .map(str::to_owned)
    })
    .await;
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(v.get("fields").is_none(), "fields are nested: {line}");
    let want = json!({
        "target": "jwtgate::access",
        "jwtgate.listener": "proxy",
        "http.request.method": "POST",
        "url.path": "/big",
        "client.address": "127.0.0.1",
        "user_agent.original": "obs-test/1.0",
        "http.request.header.x-request-id": "log-me-1",
        "trace_id": trace,
        "http.route": "/big",
        "user.id": "alice",
        "jwtgate.decision": "allow",
        "jwtgate.reason": "token",
        "http.response.status_code": 200,
        "http.request.body.size": 10,
        "http.response.body.size": 5000,
        "jwtgate.upstream.status_code": 200,
    });
    for (k, expected) in want.as_object().unwrap() {
        assert_eq!(&v[k], expected, "{k} in {line}");
    }
    assert!(
        v["server.address"]
            .as_str()
            .is_some_and(|h| h.starts_with("127.0.0.1:")),
        "{line}"
    );
    assert!(v["jwtgate.duration_us"].is_u64(), "{line}");
    assert!(v["jwtgate.upstream.duration_us"].is_u64(), "{line}");
    let logs = gate.logs();
    assert!(!logs.contains(&t), "token in the logs");
    assert!(!logs.contains("secretq"), "query in the logs");
}

/// Every metric the example dashboard and alerts in deploy/monitoring query
/// exists, under that name, in what a gate exposes after some traffic (a
/// remote issuer, a reload, a denial, an upstream error included): renaming
/// a metric cannot silently blank a panel or an alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_examples_query_only_metrics_that_exist() {
    let up = Upstream::start().await;
    let idp = Idp::start().await;
    idp.add_rsa("k1");
    let gate = GateBuilder::toml(&config(
        &up,
        &format!("[[auth.issuers]]\nissuer = \"{}\"\n", idp.issuer),
    ))
    .process()
    .start();
    let c = client();
    let t = token("alice");
    c.get(gate.url("/a"))
        .header("authorization", bearer(&t))
        .send()
        .await
        .unwrap();
    c.get(gate.url("/a")).send().await.unwrap();
    gate.signal("HUP");
    let m = eventually(Duration::from_secs(5), "the reload", || async {
        let m = metrics(&gate).await;
        metric_sum(&m, "jwtgate_config_reloads_total")
            .is_some()
            .then_some(m)
    })
    .await;
    assert!(
        metric_sum(&m, "jwtgate_key_age_seconds").is_some(),
        "{m}\n{}",
        gate.logs()
    );
    let exposed = metrics(&gate).await;
    let names: std::collections::BTreeSet<&str> = exposed
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("prometheusrule.yaml")).unwrap())
            .unwrap();
    assert_eq!(rules["kind"].as_str(), Some("PrometheusRule"));
    let alerts: Vec<&serde_yaml::Value> = rules["spec"]["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .collect();
    for a in &alerts {
        exprs.push(a["expr"].as_str().unwrap().to_string());
    }
    let alert_names: Vec<&str> = alerts.iter().filter_map(|a| a["alert"].as_str()).collect();
    for want in [
        "JwtgateKeysStale",
        "JwtgateDenySpike",
        "JwtgateUpstreamErrors",
    ] {
        assert!(
            alert_names.contains(&want),
            "{want} missing: {alert_names:?}"
        );
    }
    let mut used = std::collections::BTreeSet::new();
    for e in &exprs {
        for (i, _) in e.match_indices(['j', 'p']) {
            let rest = &e[i..];
            if (rest.starts_with("jwtgate_") || rest.starts_with("process_"))
                && !e[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                used.insert(name);
            }
        }
    }
    assert!(used.len() >= 15, "{used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !names.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "not exposed: {missing:?}\n{exposed}");
}
