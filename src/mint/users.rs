//! The users file: htpasswd lines `name:hash` with argon2 (PHC strings, as
//! `jwtgate hash-password` prints) or bcrypt (`$2a$`/`$2b$`/`$2y$`, as
//! `htpasswd -B` writes) hashes.
//!
//! The file is either understood entirely or refused: a line we cannot use
//! (no `:`, an MD5/SHA1/crypt hash, a duplicate name) makes the whole file
//! broken, and a broken file never replaces the last good copy. That way an
//! edit gone wrong cannot silently lock everybody out or let anybody in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tracing::{info, warn};

/// Longest user name looked up; longer ones are unknown without a lookup.
pub const MAX_USER_BYTES: usize = 256;
/// How often a login may look at the file's metadata to notice a change.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Why a users file could not be used. Messages name the line, never a hash.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} is not UTF-8")]
    NotUtf8 { path: String },
    #[error("{path} line {line}: expected NAME:HASH")]
    Syntax { path: String, line: usize },
    #[error("{path} line {line}: user {user:?} is listed twice")]
    Duplicate {
        path: String,
        line: usize,
        user: String,
    },
    #[error(
        "{path} line {line}: the hash of user {user:?} is not argon2 or bcrypt \
         (make one with `jwtgate hash-password` or `htpasswd -B`)"
    )]
    UnsupportedHash {
        path: String,
        line: usize,
        user: String,
    },
    #[error("cannot make the dummy hash: {0}")]
    Dummy(String),
}

/// One stored password hash.
#[derive(Clone)]
pub enum Hash {
    /// A PHC string (`$argon2id$v=19$m=...`).
    Argon2(String),
    /// A bcrypt string (`$2y$05$...`).
    Bcrypt(String),
}

// Hashes are offline-crackable secrets: never show them.
impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hash::Argon2(_) => f.write_str("Argon2(<redacted>)"),
            Hash::Bcrypt(_) => f.write_str("Bcrypt(<redacted>)"),
        }
    }
}

impl Hash {
    fn parse(text: &str) -> Option<Hash> {
        if text.starts_with("$argon2") {
            PasswordHash::new(text).ok()?;
            Some(Hash::Argon2(text.to_owned()))
        } else if ["$2a$", "$2b$", "$2y$", "$2x$"]
            .iter()
            .any(|p| text.starts_with(p))
        {
            // bcrypt's own parser decides whether the rest is well formed.
            text.parse::<bcrypt::HashParts>().ok()?;
            Some(Hash::Bcrypt(text.to_owned()))
        } else {
            None
        }
    }

    /// The kind and cost, so that a dummy of the same price can be made.
    fn cost_class(&self) -> String {
        match self {
            Hash::Argon2(s) => match PasswordHash::new(s) {
                Ok(h) => format!(
                    "{}|{:?}|{}",
                    h.algorithm,
                    h.version,
                    h.params
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Err(_) => "argon2".into(),
            },
            Hash::Bcrypt(s) => format!("bcrypt|{:02}", bcrypt_cost(s)),
        }
    }

    /// A hash of a random password with exactly the kind and cost of `self`,
    /// so that verifying against it takes as long as against `self`.
    fn dummy_like(&self) -> Result<Hash, UsersError> {
        let password = crate::random::token(24).map_err(|e| UsersError::Dummy(e.to_string()))?;
        match self {
            Hash::Argon2(s) => {
                let model = PasswordHash::new(s).map_err(|e| UsersError::Dummy(e.to_string()))?;
                let params = argon2::Params::try_from(&model)
                    .map_err(|e| UsersError::Dummy(e.to_string()))?;
                let salt = SaltString::encode_b64(
                    crate::random::token(16)
                        .map_err(|e| UsersError::Dummy(e.to_string()))?
                        .as_bytes(),
                )
                .map_err(|e| UsersError::Dummy(e.to_string()))?;
                let hash = argon2::Argon2::default()
                    .hash_password_customized(
                        password.as_bytes(),
                        Some(model.algorithm),
                        model.version,
                        params,
                        &salt,
                    )
                    .map_err(|e| UsersError::Dummy(e.to_string()))?;
                Ok(Hash::Argon2(hash.to_string()))
            }
            Hash::Bcrypt(s) => {
                let hash = bcrypt::hash(&password, bcrypt_cost(s))
                    .map_err(|e| UsersError::Dummy(e.to_string()))?;
                Ok(Hash::Bcrypt(hash))
            }
        }
    }

    /// Checks `password`. CPU-heavy by design: call it from a blocking thread.
    pub fn verify(&self, password: &str) -> bool {
        match self {
            Hash::Argon2(s) => match PasswordHash::new(s) {
                Ok(h) => argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok(),
                Err(_) => false,
            },
            Hash::Bcrypt(s) => bcrypt::verify(password, s).unwrap_or(false),
        }
    }
}

/// The cost of a bcrypt hash (checked by `Hash::parse`).
fn bcrypt_cost(s: &str) -> u32 {
    s.parse::<bcrypt::HashParts>()
        .map(|p| p.get_cost())
        .unwrap_or(bcrypt::DEFAULT_COST)
}

/// The users of one good copy of the file.
pub struct Users {
    map: HashMap<String, Hash>,
    /// Verified instead of a real hash for unknown users, so that an unknown
    /// name costs the same time as a wrong password.
    dummy: Hash,
}

impl Users {
    /// Parses the file's text; `path` only labels errors.
    pub fn parse(path: &str, text: &str) -> Result<Users, UsersError> {
        let mut map = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(UsersError::Syntax {
                    path: path.into(),
                    line: i + 1,
                });
            };
            if user.is_empty() || user.len() > MAX_USER_BYTES || hash.is_empty() {
                return Err(UsersError::Syntax {
                    path: path.into(),
                    line: i + 1,
                });
            }
            let Some(hash) = Hash::parse(hash) else {
                return Err(UsersError::UnsupportedHash {
                    path: path.into(),
                    line: i + 1,
                    user: user.into(),
                });
            };
            if map.insert(user.to_owned(), hash).is_some() {
                return Err(UsersError::Duplicate {
                    path: path.into(),
                    line: i + 1,
                    user: user.into(),
                });
            }
        }
        // The dummy copies the most common kind and cost: an unknown name is
        // then indistinguishable from the typical user with a wrong password.
        let mut classes: HashMap<String, (usize, &Hash)> = HashMap::new();
        for h in map.values() {
            classes.entry(h.cost_class()).or_insert((0, h)).0 += 1;
        }
        let model = classes
            .into_values()
            .max_by_key(|(n, _)| *n)
            .map(|(_, h)| h.clone());
        let dummy = match model {
            Some(m) => m.dummy_like()?,
            None => default_dummy()?,
        };
        Ok(Users { map, dummy })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn contains(&self, user: &str) -> bool {
        self.map.contains_key(user)
    }

    /// The user's hash, or the dummy (and `false`) for an unknown user.
    pub fn hash_for(&self, user: &str) -> (Hash, bool) {
        match self.map.get(user) {
            Some(h) => (h.clone(), true),
            None => (self.dummy.clone(), false),
        }
    }
}

/// An argon2id hash with the crate's default cost, as `hash-password` makes.
fn default_dummy() -> Result<Hash, UsersError> {
    let random = |n| crate::random::token(n).map_err(|e| UsersError::Dummy(e.to_string()));
    let salt = SaltString::encode_b64(random(16)?.as_bytes())
        .map_err(|e| UsersError::Dummy(e.to_string()))?;
    let hash = argon2::Argon2::default()
        .hash_password(random(24)?.as_bytes(), &salt)
        .map_err(|e| UsersError::Dummy(e.to_string()))?;
    Ok(Hash::Argon2(hash.to_string()))
}

/// What identifies one version of the file on disk.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        ino,
    })
}

/// Reads and parses the file; returns the stamp seen before reading, so a
/// write that races the read is noticed at the next check.
fn load(path: &Path) -> Result<(Users, Option<Stamp>), UsersError> {
    let label = path.display().to_string();
    let before = stamp(path);
    let bytes = std::fs::read(path).map_err(|e| UsersError::Read {
        path: label.clone(),
        message: e.to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| UsersError::NotUtf8 {
        path: label.clone(),
    })?;
    Ok((Users::parse(&label, &text)?, before))
}

struct Loaded {
    path: PathBuf,
    users: Arc<Users>,
    /// The file version `users` came from, or the broken one last refused
    /// (so that a broken file is reported once, not at every login).
    seen: Option<Stamp>,
    checked: Instant,
}

/// The last good copy of the users file; lives in the process-wide
/// `Runtime`, so a configuration reload with a broken file keeps it.
#[derive(Default)]
pub struct UserStore {
    loaded: Mutex<Option<Loaded>>,
    /// Single flight for reloads noticed by logins.
    reloading: tokio::sync::Mutex<()>,
}

impl UserStore {
    /// Loads `path` now (start-up and configuration reloads). A broken file
    /// is an error only when there is no good copy of the same file to keep.
    pub fn load_now(&self, path: &Path) -> Result<(), UsersError> {
        let result = load(path);
        let mut guard = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok((users, seen)) => {
                info!(path = %path.display(), users = users.len(), "users file loaded");
                if users.is_empty() {
                    warn!(path = %path.display(), "users file has no users: every login fails");
                }
                *guard = Some(Loaded {
                    path: path.to_owned(),
                    users: Arc::new(users),
                    seen,
                    checked: Instant::now(),
                });
                Ok(())
            }
            Err(e) => match guard.as_mut() {
                Some(l) if l.path == path => {
                    warn!(
                        "users file refused, keeping the last good copy ({} users): {e}",
                        l.users.len()
                    );
                    l.seen = stamp(path);
                    l.checked = Instant::now();
                    Ok(())
                }
                _ => Err(e),
            },
        }
    }

    /// The current users of `path`, reloading them first when the file has
    /// changed (looked at most once per second). A broken new version is
    /// logged and the last good copy is used.
    pub async fn current(&self, path: &Path) -> Option<Arc<Users>> {
        let (users, due) = {
            let guard = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            let l = guard.as_ref().filter(|l| l.path == path)?;
            (l.users.clone(), l.checked.elapsed() >= CHECK_INTERVAL)
        };
        if !due {
            return Some(users);
        }
        // One login looks at the disk; the others use the current copy.
        let Ok(_flight) = self.reloading.try_lock() else {
            return Some(users);
        };
        let owned = path.to_owned();
        let seen = {
            let mut guard = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            let l = guard.as_mut()?;
            l.checked = Instant::now();
            l.seen.clone()
        };
        // Metadata, reading and the dummy hash are blocking work.
        let outcome = tokio::task::spawn_blocking(move || {
            let now = stamp(&owned);
            if now == seen {
                return None;
            }
            Some((load(&owned), now))
        })
        .await
        .ok()
        .flatten();
        let Some((result, now)) = outcome else {
            return Some(users);
        };
        let mut guard = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let l = guard.as_mut().filter(|l| l.path == path)?;
        match result {
            Ok((new, seen)) => {
                info!(path = %path.display(), users = new.len(), "users file changed: reloaded");
                l.users = Arc::new(new);
                l.seen = seen;
            }
            Err(e) => {
                warn!(
                    "users file changed but was refused, keeping the last good copy ({} users): {e}",
                    l.users.len()
                );
                l.seen = now;
            }
        }
        Some(l.users.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Cheap parameters keep the unit tests fast in debug builds.
    fn cheap_argon2(password: &str) -> String {
        let params = argon2::Params::new(256, 1, 1, None).unwrap();
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        a.hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn parses_and_verifies_both_kinds() {
        let bc = bcrypt::hash("b-pass", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        let text = format!("# comment\n\nalice:{}\nbob:{bc}\n", cheap_argon2("a-pass"));
        let users = Users::parse("f", &text).unwrap();
        assert_eq!(users.len(), 2);
        let (h, known) = users.hash_for("alice");
        assert!(known && h.verify("a-pass") && !h.verify("nope"));
        let (h, known) = users.hash_for("bob");
        assert!(known && h.verify("b-pass") && !h.verify("a-pass"));
        let (h, known) = users.hash_for("carol");
        assert!(!known && !h.verify("a-pass"));
    }

    #[test]
    fn dummy_has_the_same_cost() {
        let text = format!("alice:{}\n", cheap_argon2("x"));
        let users = Users::parse("f", &text).unwrap();
        let (real, _) = users.hash_for("alice");
        assert_eq!(real.cost_class(), users.dummy.cost_class());
        let bc = bcrypt::hash("y", 4).unwrap();
        let users = Users::parse("f", &format!("bob:{bc}\n")).unwrap();
        assert_eq!(users.dummy.cost_class(), "bcrypt|04");
    }

    #[test]
    fn broken_files_are_refused_without_showing_hashes() {
        for (text, needle) in [
            ("alice\n", "line 1"),
            ("alice:$apr1$abc$def\n", "not argon2 or bcrypt"),
            ("alice:{SHA}abc=\n", "not argon2 or bcrypt"),
        ] {
            let err = Users::parse("f", text).err().unwrap().to_string();
            assert!(err.contains(needle), "{err}");
            assert!(!err.contains("apr1") && !err.contains("SHA}"), "{err}");
        }
        let h = cheap_argon2("x");
        let err = Users::parse("f", &format!("a:{h}\na:{h}\n"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("twice"), "{err}");
        assert!(!format!("{:?}", Hash::Argon2(h.clone())).contains(&h));
    }
}
