//! The Kubernetes manifests under deploy/kubernetes, asserted structurally
//! from their source files (no kubectl needed; CI also renders them with the
//! real kustomize and validates them, see deploy/check.sh): the app listens
//! on loopback only, the Service targets the gate, the NetworkPolicy admits
//! only the gate's ports, shutdown is ordered, and each jwtgate.toml loads.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use jwtgate::config::{Config, Sources};
use serde::Deserialize;
use serde_yaml::Value;

fn dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubernetes")
        .join(rel)
}

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// The kustomization's own document and every object of its `resources`
/// that are files (a minimal render: generators and patches are asserted
/// separately).
struct Kustomization {
    root: Value,
    objects: Vec<Value>,
}

fn kustomization(rel: &str) -> Kustomization {
    let d = dir(rel);
    let root = docs(&d.join("kustomization.yaml")).remove(0);
    let mut objects = Vec::new();
    for r in seq(&root["resources"]) {
        let p = d.join(r.as_str().unwrap());
        if p.is_file() {
            objects.extend(docs(&p));
        }
    }
    Kustomization { root, objects }
}

impl Kustomization {
    fn get(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }
    fn one(&self, kind: &str) -> &Value {
        let all = self.get(kind);
        assert_eq!(all.len(), 1, "exactly one {kind}");
        all[0]
    }
}

fn seq(v: &Value) -> Vec<Value> {
    v.as_sequence().cloned().unwrap_or_default()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn port_names(c: &Value) -> Vec<(String, i64)> {
    seq(&c["ports"])
        .iter()
        .map(|p| {
            (
                s(&p["name"]).to_string(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn pre_stop_sleep(c: &Value) -> i64 {
    c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_i64()
        .unwrap_or_else(|| panic!("{} has no preStop sleep", s(&c["name"])))
}

fn load_config(path: &Path) -> Config {
    Config::load(&Sources {
        file: Some(path.to_path_buf()),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn has_resources(c: &Value) {
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(
                !c["resources"][k][r].is_null(),
                "{} lacks resources.{k}.{r}",
                s(&c["name"])
            );
        }
    }
}

/// The NetworkPolicy admits exactly `open` from anywhere and `admin` only
/// from a named namespace; returns nothing else.
fn assert_policy(policy: &Value, pod_labels: &Value, open: &str, admin: &str) {
    for (k, v) in policy["spec"]["podSelector"]["matchLabels"]
        .as_mapping()
        .unwrap()
    {
        assert_eq!(&pod_labels[k], v, "the NetworkPolicy selects the pods");
    }
    assert_eq!(
        seq(&policy["spec"]["policyTypes"]),
        vec![Value::from("Ingress")]
    );
    let rules = seq(&policy["spec"]["ingress"]);
    assert_eq!(rules.len(), 2, "one rule per port: {rules:?}");
    let ports = |r: &Value| -> Vec<String> {
        seq(&r["ports"])
            .iter()
            .map(|p| s(&p["port"]).to_string())
            .collect()
    };
    let open_rule = rules
        .iter()
        .find(|r| ports(r) == [open])
        .expect("gate port rule");
    assert!(
        open_rule["from"].is_null(),
        "the gate's port is open to callers"
    );
    let admin_rule = rules
        .iter()
        .find(|r| ports(r) == [admin])
        .expect("admin rule");
    let from = seq(&admin_rule["from"]);
    assert_eq!(from.len(), 1);
    assert!(
        !from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"].is_null(),
        "the admin port is limited to a named namespace"
    );
}

#[test]
fn the_example_makes_the_gate_the_only_way_in() {
    let k = kustomization("");
    assert_eq!(s(&k.root["namespace"]), "jwtgate-example");
    assert_eq!(
        s(&k.one("Namespace")["metadata"]["name"]),
        "jwtgate-example"
    );
    let deployment = k.one("Deployment");
    let pod = &deployment["spec"]["template"];
    let labels = &pod["metadata"]["labels"];

    // The app listens on loopback only and publishes no port.
    let app = container(deployment, "app");
    let args: Vec<String> = seq(&app["args"]).iter().map(|a| s(a).to_string()).collect();
    let at = args.iter().position(|a| a == "--listen").expect("--listen");
    let listen: SocketAddr = args[at + 1].parse().unwrap();
    assert!(listen.ip().is_loopback(), "app listens on {listen}");
    assert!(app["ports"].is_null(), "the app declares no ports");
    assert!(app["livenessProbe"]["exec"].is_mapping());
    assert!(app["readinessProbe"]["exec"].is_mapping());

    // The gate: a plain container (not an initContainers sidecar).
    assert!(pod["spec"]["initContainers"].is_null());
    let gate = container(deployment, "jwtgate");
    assert_eq!(
        port_names(gate),
        vec![("http".to_string(), 8080), ("admin".to_string(), 9901)]
    );
    has_resources(app);
    has_resources(gate);

    // The Service selects these pods and targets the gate's port.
    let svc = k.one("Service");
    for (key, v) in svc["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&labels[key], v);
    }
    let ports = seq(&svc["spec"]["ports"]);
    assert_eq!(ports.len(), 1, "only the gate's port is in the Service");
    assert_eq!(s(&ports[0]["targetPort"]), "http");

    assert_policy(k.one("NetworkPolicy"), labels, "http", "admin");
    let pdb = k.one("PodDisruptionBudget");
    for (key, v) in pdb["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(&labels[key], v);
    }

    // The configuration the ConfigMap carries, against the manifest.
    let gens = seq(&k.root["configMapGenerator"]);
    assert_eq!(s(&seq(&gens[0]["files"])[0]), "jwtgate.toml");
    assert!(
        !k.root["secretGenerator"].is_null(),
        "the Secret is generated too"
    );
    let cfg = load_config(&dir("jwtgate.toml"));
    assert_eq!(cfg.upstream.url.to_string(), format!("http://{listen}/"));
    assert_eq!(cfg.worker_threads, 1);
    assert_eq!(
        s(&gate["resources"]["requests"]["cpu"]),
        "1",
        "one CPU for one worker thread"
    );
    assert!(cfg.reload.watch);
    assert_eq!(cfg.listen.to_string().rsplit(':').next(), Some("8080"));
    assert_eq!(
        cfg.admin_listen
            .as_ref()
            .expect("admin_listen")
            .to_string()
            .rsplit(':')
            .next(),
        Some("9901")
    );
    // The secret file sits in the mounted Secret.
    let mount = seq(&gate["volumeMounts"])
        .into_iter()
        .find(|m| m["name"] == "secret")
        .expect("secret mount");
    let secret_file = cfg.auth.secret.file.as_ref().expect("auth.secret.file");
    assert!(secret_file.starts_with(s(&mount["mountPath"])));
    assert!(
        seq(&gate["volumeMounts"])
            .iter()
            .all(|m| m["subPath"].is_null()),
        "no subPath: updates must reach the files"
    );

    // Shutdown order: the app outlives the gate's preStop + drain, and the
    // grace period covers the app's.
    let drain = cfg.drain_timeout.as_secs() as i64;
    assert!(pre_stop_sleep(app) >= pre_stop_sleep(gate) + drain);
    assert!(
        pod["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap()
            > pre_stop_sleep(app)
    );
}

#[test]
fn the_sidecar_component_adds_the_gate_and_closes_every_other_port() {
    let d = dir("components/jwtgate-sidecar");
    let root = docs(&d.join("kustomization.yaml")).remove(0);
    assert_eq!(s(&root["kind"]), "Component");
    let patch = docs(&d.join("sidecar.yaml")).remove(0);
    let pod = &patch["spec"]["template"];
    let gate = container(&patch, "jwtgate");
    let names = port_names(gate);
    assert_eq!(
        names,
        vec![
            ("jwtgate-http".to_string(), 8080),
            ("jwtgate-admin".to_string(), 9901)
        ]
    );
    has_resources(gate);
    let policy = docs(&d.join("networkpolicy.yaml")).remove(0);
    assert_policy(
        &policy,
        &pod["metadata"]["labels"],
        "jwtgate-http",
        "jwtgate-admin",
    );
    // The Service patch points the Service at the gate's port.
    let svc_patch = seq(&root["patches"])
        .into_iter()
        .find(|p| p["target"]["kind"] == "Service")
        .expect("Service patch");
    assert!(s(&svc_patch["patch"]).contains("value: jwtgate-http"));
    let cfg = load_config(&d.join("jwtgate.toml"));
    assert_eq!(cfg.listen.to_string().rsplit(':').next(), Some("8080"));

    // The example overlay uses it on an app bound to loopback.
    let k = kustomization("overlays/existing-app");
    assert!(seq(&k.root["components"]).contains(&Value::from("../../components/jwtgate-sidecar")));
    let app = k.one("Deployment");
    assert_eq!(s(&app["metadata"]["labels"]["jwtgate-sidecar"]), "enabled");
    let args: Vec<Value> = seq(&container(app, "shop")["args"]);
    assert!(args.contains(&Value::from("127.0.0.1:8000")));
}

#[test]
fn the_legacy_overlay_puts_the_gate_in_front_and_closes_the_old_service() {
    let k = kustomization("overlays/legacy");
    let deployment = k.one("Deployment");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let gate = container(deployment, "jwtgate");
    has_resources(gate);
    let svc = k.one("Service");
    assert_eq!(s(&seq(&svc["spec"]["ports"])[0]["targetPort"]), "http");
    let policies = k.get("NetworkPolicy");
    let own = policies
        .iter()
        .find(|p| p["metadata"]["namespace"] == "jwtgate-legacy")
        .unwrap();
    assert_policy(own, labels, "http", "admin");
    // The legacy system's namespace admits only the gate's pods.
    let guard = policies
        .iter()
        .find(|p| p["metadata"]["namespace"] == "legacy")
        .expect("a policy in the legacy namespace");
    let from = seq(&seq(&guard["spec"]["ingress"])[0]["from"]);
    assert_eq!(from.len(), 1);
    assert_eq!(from[0]["podSelector"]["matchLabels"]["app"], labels["app"]);
    assert_eq!(
        s(&from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]),
        "jwtgate-legacy"
    );
    let cfg = load_config(&dir("overlays/legacy/jwtgate.toml"));
    assert!(
        cfg.upstream.url.to_string().contains(".svc.cluster.local"),
        "{}",
        cfg.upstream.url
    );
    assert_eq!(cfg.worker_threads, 1);
}
