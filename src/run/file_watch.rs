//! `reload.watch`: notice when the config file, or any file it names
//! (secret, keys, users, TLS, CAs), changes, so that a configuration reaches
//! a running gate without a signal (Kubernetes cannot send SIGHUP).
//!
//! The *directories* holding those files are watched, not the files:
//! Kubernetes updates a mounted ConfigMap or Secret by writing a new
//! `..<timestamp>` directory and renaming a `..data` symlink onto it, so the
//! file a config names (`config.toml -> ..data/config.toml`) is never written
//! itself. Any event in a watched directory, once the burst has settled
//! (debounced), makes the watcher read the files again through their paths
//! and compare digests of their contents; only a real change is reported.
//! Editors that save by rename, `kubectl cp` and plain writes are all seen
//! the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::config::Config;

/// Quiet time after the last event before the files are compared: the
/// kubelet's swap and an editor's save are several events in a few ms.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// The files a configuration depends on: the config file itself and every
/// file one of its keys names. Empty when `reload.watch` is off.
pub fn watched_files(config: &Config, config_file: Option<&Path>) -> Vec<PathBuf> {
    if !config.reload.watch {
        return Vec::new();
    }
    let mut named: Vec<&Option<PathBuf>> = vec![
        &config.auth.secret.file,
        &config.tls.cert_file,
        &config.tls.key_file,
        &config.upstream.ca_file,
        &config.issuer.users_file,
        &config.issuer.signing_key_file,
    ];
    for iss in &config.auth.issuers {
        named.extend([&iss.jwks_file, &iss.public_key_file, &iss.ca_file]);
    }
    let named = named.into_iter().flatten();
    let mut files: Vec<PathBuf> = config_file.map(Path::to_path_buf).into_iter().collect();
    files.extend(named.cloned());
    files.sort();
    files.dedup();
    files
}

/// What a file held when the configuration was read from it, taken before
/// the read; the watch's baseline for that file at start.
#[derive(Debug, Default)]
pub struct Seen(BTreeMap<PathBuf, Option<Vec<u8>>>);

impl Seen {
    /// The config file's digest, taken just before it is loaded.
    pub fn before_load(config_file: Option<&Path>) -> Self {
        Seen(
            config_file
                .map(|f| (f.to_path_buf(), digest(f)))
                .into_iter()
                .collect(),
        )
    }
}

/// Watches a set of files (through their directories) and says when their
/// contents change.
pub struct FileWatch {
    watcher: Option<RecommendedWatcher>,
    events: mpsc::UnboundedReceiver<()>,
    sender: mpsc::UnboundedSender<()>,
    dirs: BTreeSet<PathBuf>,
    /// Each file's content digest at the last look (None: unreadable).
    seen: BTreeMap<PathBuf, Option<Vec<u8>>>,
}

impl Default for FileWatch {
    fn default() -> Self {
        Self::new()
    }
}

impl FileWatch {
    /// A watch on nothing yet; `follow` gives it its files.
    pub fn new() -> Self {
        let (sender, events) = mpsc::unbounded_channel();
        FileWatch {
            watcher: None,
            events,
            sender,
            dirs: BTreeSet::new(),
            seen: BTreeMap::new(),
        }
    }

    /// The files being watched.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.seen.keys().map(PathBuf::as_path)
    }

    /// Starts watching `files`, taking `seen` as what was read from those it
    /// names (the rest are read now, before the gate reads them). One
    /// comparison pass is queued, so a change made between that read and
    /// this call, which no event will report, is still found.
    pub fn start(&mut self, files: Vec<PathBuf>, seen: Seen) {
        self.seen = seen
            .0
            .into_iter()
            .filter(|(f, _)| files.contains(f))
            .collect();
        self.follow(files);
        if !self.seen.is_empty() {
            let _ = self.sender.send(());
        }
    }

    /// Watches exactly `files` from now on (after start and after every
    /// reload, since a new configuration may name other files); the contents
    /// of a newly named file become its baseline.
    pub fn follow(&mut self, files: Vec<PathBuf>) {
        let mut dirs = BTreeSet::new();
        for f in &files {
            let abs = absolute(f);
            if let Some(d) = abs.parent() {
                dirs.insert(d.to_path_buf());
            }
            // A plain symlink to a file elsewhere: watch where it points too
            // (inside a Kubernetes volume that is the ..<timestamp> directory,
            // which disappears at the next swap; the volume directory above
            // is watched anyway).
            if let Ok(real) = std::fs::canonicalize(&abs)
                && let Some(d) = real.parent()
            {
                dirs.insert(d.to_path_buf());
            }
        }
        if files.is_empty() {
            self.watcher = None;
            self.dirs.clear();
        } else {
            self.ensure_watcher();
            if let Some(w) = &mut self.watcher {
                for gone in self.dirs.difference(&dirs) {
                    let _ = w.unwatch(gone);
                }
                for new in dirs.difference(&self.dirs) {
                    if let Err(e) = w.watch(new, RecursiveMode::NonRecursive) {
                        warn!("config watch: cannot watch {}: {e}", new.display());
                    }
                }
            }
            self.dirs = dirs;
        }
        // Files already followed keep the digest of their last look, so that
        // a change made while a reload was running is still seen (the event
        // stays queued); only newly named files are read now.
        let mut seen = std::mem::take(&mut self.seen);
        self.seen = files
            .into_iter()
            .map(|f| {
                let d = seen.remove(&f).unwrap_or_else(|| digest(&f));
                (f, d)
            })
            .collect();
    }

    fn ensure_watcher(&mut self) {
        if self.watcher.is_some() {
            return;
        }
        let tx = self.sender.clone();
        let handler = move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if ev.kind.is_access() => {}
            Ok(_) => {
                let _ = tx.send(());
            }
            Err(e) => debug!("config watch: {e}"),
        };
        match notify::recommended_watcher(handler) {
            Ok(w) => self.watcher = Some(w),
            Err(e) => warn!("config watch: cannot start the file watcher, reload with SIGHUP: {e}"),
        }
    }

    /// Waits until a watched file's contents differ from the last look, and
    /// returns the files that changed. Pending forever while nothing is
    /// watched. Cancel-safe: nothing is lost but the debounce in progress.
    pub async fn changed(&mut self) -> Vec<PathBuf> {
        loop {
            if self.events.recv().await.is_none() {
                // Cannot happen (we hold a sender), but never spin.
                std::future::pending::<()>().await;
            }
            // Let the burst settle.
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, self.events.recv()).await {}
            let mut changed = Vec::new();
            for (file, old) in self.seen.iter_mut() {
                let now = digest(file);
                if now != *old {
                    *old = now;
                    changed.push(file.clone());
                }
            }
            if !changed.is_empty() {
                return changed;
            }
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// SHA-256 of the file as read through its path (symlinks followed).
fn digest(path: &Path) -> Option<Vec<u8>> {
    let data = std::fs::read(path).ok()?;
    Some(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data)
            .as_ref()
            .to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_named_by_the_config_are_watched_unless_off() {
        let mut c = Config::default();
        c.auth.secret.file = Some("/s/secret".into());
        c.tls.cert_file = Some("/t/c.pem".into());
        c.tls.key_file = Some("/t/k.pem".into());
        c.auth.issuers.push(crate::config::IssuerTrustConfig {
            jwks_file: Some("/j/jwks.json".into()),
            ..Default::default()
        });
        let files = watched_files(&c, Some(Path::new("/etc/jwtgate/config.toml")));
        assert_eq!(
            files,
            [
                "/etc/jwtgate/config.toml",
                "/j/jwks.json",
                "/s/secret",
                "/t/c.pem",
                "/t/k.pem"
            ]
            .map(PathBuf::from)
        );
        c.reload.watch = false;
        assert!(watched_files(&c, Some(Path::new("/x.toml"))).is_empty());
    }

    #[tokio::test]
    async fn reports_the_file_whose_contents_changed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.toml");
        std::fs::write(&f, "one").unwrap();
        let mut w = FileWatch::new();
        w.follow(vec![f.clone()]);
        std::fs::write(&f, "one").unwrap();
        std::fs::write(dir.path().join("unrelated"), "x").unwrap();
        std::fs::write(&f, "two").unwrap();
        let changed = tokio::time::timeout(Duration::from_secs(10), w.changed())
            .await
            .expect("a change is reported");
        assert_eq!(changed, vec![f.clone()]);
    }

    #[tokio::test]
    async fn a_change_between_the_load_and_the_start_of_the_watch_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("jwtgate.toml");
        std::fs::write(&f, "before").unwrap();
        let seen = Seen::before_load(Some(&f));
        // Written while the gate starts: no watcher exists to see an event.
        std::fs::write(&f, "after").unwrap();
        let mut w = FileWatch::new();
        w.start(vec![f.clone()], seen);
        let changed = tokio::time::timeout(Duration::from_secs(10), w.changed())
            .await
            .expect("the change is reported");
        assert_eq!(changed, vec![f]);
    }
}
