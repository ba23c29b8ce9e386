//! Files made by real third-party tools (Apache's `htpasswd`, `openssl`),
//! committed under tests/fixtures/ by tests/fixtures/make.sh, so that the
//! interop tests need neither tool installed.

use std::path::{Path, PathBuf};

/// The absolute path of a file under tests/fixtures/.
pub fn fixture_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// The text of a file under tests/fixtures/.
pub fn fixture(rel: &str) -> String {
    let p = fixture_path(rel);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("fixture {}: {e} (run tests/fixtures/make.sh)", p.display()))
}

/// `USER:$2y$05$...` as Apache's `htpasswd -nbB USER PASSWORD` wrote it.
/// Panics unless the fixture has that user with exactly that password, so a
/// test cannot silently log in with a password the fixture was not made with.
pub fn htpasswd_bcrypt(user: &str, password: &str) -> String {
    let text = fixture("htpasswd-bcrypt.txt");
    let line = text
        .lines()
        .find(|l| l.split_once(':').is_some_and(|(u, _)| u == user))
        .unwrap_or_else(|| panic!("no user {user:?} in htpasswd-bcrypt.txt (add it to make.sh)"))
        .to_string();
    let hash = &line[user.len() + 1..];
    assert!(hash.starts_with("$2y$"), "not htpasswd -B output: {line}");
    assert!(
        bcrypt::verify(password, hash).unwrap_or(false),
        "the fixture for {user:?} was not made with password {password:?}"
    );
    line
}

/// A private key written by openssl and its public key (`openssl pkey -pubout`):
/// `rsa-pkcs1`, `p256-sec1`, `p384-sec1` or `ed25519-pkcs8`.
pub fn openssl_key(name: &str) -> (String, String) {
    (
        fixture(&format!("openssl/{name}.pem")),
        fixture(&format!("openssl/{name}.pub.pem")),
    )
}

/// Copies the self-signed certificate `name` (`one` or `two`, for 127.0.0.1,
/// made by `openssl req -x509`) and its key into `dir`, where a test may
/// overwrite them; returns (cert path, key path).
pub fn tls_cert(dir: &Path, name: &str) -> (String, String) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::copy(fixture_path(&format!("tls/{name}.crt")), &cert).expect("copy cert fixture");
    std::fs::copy(fixture_path(&format!("tls/{name}.key")), &key).expect("copy key fixture");
    (cert.display().to_string(), key.display().to_string())
}
