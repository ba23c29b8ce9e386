//! `reload.watch`: a change to the config file, or to a file it names,
//! reloads the gate as SIGHUP does, including Kubernetes' atomic swap of a
//! mounted ConfigMap/Secret volume; a bad change is refused and the old
//! configuration keeps serving; `reload.watch = false` turns it off.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::support::*;
use serde_json::json;

const SECRET_A: &str = "watch-tests-secret-A-0123456789abcdef";
const SECRET_B: &str = "watch-tests-secret-B-0123456789abcdef";
const LIMIT: Duration = Duration::from_secs(15);

/// A volume directory updated exactly as the kubelet's AtomicWriter does it:
/// the payload goes into a fresh `..<timestamp>` directory, a `..data_tmp`
/// symlink to it is renamed over `..data` (the one atomic step), each file
/// is a symlink `NAME -> ..data/NAME` created once, and the old timestamped
/// directory is removed afterwards. The files a config names are never
/// written in place.
struct KubeletVolume {
    dir: PathBuf,
    generation: AtomicU32,
}

impl KubeletVolume {
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        KubeletVolume {
            dir: dir.to_path_buf(),
            generation: AtomicU32::new(0),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, files: &[(&str, &str)]) {
        let g = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let ts = format!("..2026_12_01_15_00_{g:02}.{:09}", g * 1000);
        let new_dir = self.dir.join(&ts);
        std::fs::create_dir(&new_dir).unwrap();
        for (name, text) in files {
            std::fs::write(new_dir.join(name), text).unwrap();
        }
        let old = std::fs::read_link(self.dir.join("..data")).ok();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&ts, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        for (name, _) in files {
            let link = self.dir.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
            }
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }
}

fn token(secret: &str) -> String {
    hs256(secret, &json!({"sub": "alice", "exp": now() + 600}))
}

async fn status_with(gate: &Gate, secret: &str) -> u16 {
    client()
        .get(gate.url("/x"))
        .bearer_auth(token(secret))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
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

async fn until_accepted(gate: &Gate, secret: &str, what: &str) {
    eventually(LIMIT, what, || async {
        (status_with(gate, secret).await == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_symlink_swap_of_a_named_file_or_the_config_reloads_and_a_bad_one_is_refused() {
    let up = Upstream::start().await;
    let root = tempfile::tempdir().unwrap();
    let vol = KubeletVolume::new(&root.path().join("config-volume"));
    let config = |extra: &str| {
        format!(
            "[upstream]\nurl = \"{}\"\n[auth.secret]\nfile = \"{}\"\n{extra}",
            up.url(),
            vol.path("secret").display()
        )
    };
    vol.write(&[("jwtgate.toml", &config("")), ("secret", SECRET_A)]);
    let config_path = vol.path("jwtgate.toml");
    let gate = GateBuilder::no_config()
        .arg("--config")
        .arg(config_path.to_str().unwrap())
        .process()
        .start();
    assert!(
        gate.wait_log(&["config watch: on"], LIMIT).await,
        "{}",
        gate.logs()
    );
    assert_eq!(status_with(&gate, SECRET_A).await, 200, "{}", gate.logs());
    assert_eq!(status_with(&gate, SECRET_B).await, 401);

    // 1. Only the Secret changes (the config file's bytes stay the same).
    vol.write(&[("jwtgate.toml", &config("")), ("secret", SECRET_B)]);
    until_accepted(&gate, SECRET_B, "the new secret after the ..data swap").await;
    assert_eq!(status_with(&gate, SECRET_A).await, 401);
    assert!(
        gate.wait_log(&["config watch: configuration reloaded"], LIMIT)
            .await,
        "{}",
        gate.logs()
    );
    let m = metrics(&gate).await;
    assert_eq!(
        metric_sum_with(
            &m,
            "jwtgate_config_reloads_total",
            &["trigger=\"watch\"", "outcome=\"ok\""]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric_sum(&m, "jwtgate_config_last_reload_success"),
        Some(1.0)
    );

    // 2. A bad configuration is refused; the old one keeps serving.
    vol.write(&[
        ("jwtgate.toml", &config("[auth]\nbogus_key = 1\n")),
        ("secret", SECRET_B),
    ]);
    assert!(
        gate.wait_log(
            &["config watch: new configuration refused", "auth.bogus_key"],
            LIMIT
        )
        .await,
        "{}",
        gate.logs()
    );
    assert_eq!(status_with(&gate, SECRET_B).await, 200);
    let m = metrics(&gate).await;
    assert_eq!(
        metric_sum_with(
            &m,
            "jwtgate_config_reloads_total",
            &["trigger=\"watch\"", "outcome=\"error\""]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric_sum(&m, "jwtgate_config_last_reload_success"),
        Some(0.0)
    );

    // 3. Fixed, and the config file itself changed: a plain string secret now.
    vol.write(&[
        (
            "jwtgate.toml",
            &format!(
                "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{SECRET_A}\"\n",
                up.url()
            ),
        ),
        ("secret", SECRET_B),
    ]);
    until_accepted(&gate, SECRET_A, "the fixed configuration").await;
    assert_eq!(status_with(&gate, SECRET_B).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_config_file_reloads_unless_reload_watch_is_false() {
    let up = Upstream::start().await;
    let config = |secret: &str, watch: bool| {
        format!(
            "[upstream]\nurl = \"{}\"\n[auth.secret]\nvalue = \"{secret}\"\n[reload]\nwatch = {watch}\n",
            up.url()
        )
    };

    // On (the default, said explicitly here): an in-place rewrite reloads.
    let gate = GateBuilder::toml(&config(SECRET_A, true)).process().start();
    gate.rewrite_config(&config(SECRET_B, true));
    until_accepted(&gate, SECRET_B, "the rewritten config").await;
    drop(gate);

    // Off: the change waits for SIGHUP.
    let gate = GateBuilder::toml(&config(SECRET_A, false))
        .process()
        .start();
    assert!(
        gate.wait_log(&["config watch: off"], LIMIT).await,
        "{}",
        gate.logs()
    );
    gate.rewrite_config(&config(SECRET_B, false));
    // Proving an absence needs a bounded wait: several debounce periods.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(status_with(&gate, SECRET_A).await, 200, "{}", gate.logs());
    assert_eq!(status_with(&gate, SECRET_B).await, 401);
    gate.signal("HUP");
    until_accepted(&gate, SECRET_B, "the config after SIGHUP").await;
    let m = metrics(&gate).await;
    assert_eq!(
        metric_sum_with(&m, "jwtgate_config_reloads_total", &["trigger=\"watch\""]),
        0.0,
        "{m}"
    );
    assert_eq!(
        metric_sum_with(
            &m,
            "jwtgate_config_reloads_total",
            &["trigger=\"sighup\"", "outcome=\"ok\""]
        ),
        1.0,
        "{m}"
    );
}
