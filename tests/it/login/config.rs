//! `[login]` at load: `check-config` accepts a good table (and redacts the
//! client secret), and refuses a bad one naming the key: no or bad session
//! keys, plain http off loopback, an issuer without discovery, a route that
//! would redirect without needing auth, a route claiming `/.jwtgate/`.

use std::path::Path;

use crate::support::oidc::*;
use crate::support::*;

use super::common::*;

/// A config with `[login]` for `issuer`; `issuers` are extra lines of its
/// `[[auth.issuers]]` entry, `login` of `[login]`, `tail` tables after.
fn config(issuer: &str, keys: &Path, issuers: &str, login: &str, tail: &str) -> String {
    format!(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n\
         [[auth.issuers]]\nissuer = \"{issuer}\"\n{issuers}\n\
         [login]\nprovider = \"oidc\"\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT_ID}\"\n\
         client_secret = \"{CLIENT_SECRET}\"\n\
         session_keys_file = \"{}\"\n{login}\n{tail}\n",
        keys.display()
    )
}

/// `jwtgate check-config` on this text (on a blocking thread: the mock
/// IdP keeps serving discovery meanwhile).
async fn check(toml: String) -> RunOutput {
    tokio::task::spawn_blocking(move || run_jwtgate(&["check-config"]).toml(&toml).run())
        .await
        .unwrap()
}

/// `login` with `external_url` first.
fn ext(url: &str, rest: &str) -> String {
    format!("external_url = \"{url}\"\n{rest}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_login_table_passes_with_its_secret_redacted() {
    let idp = Idp::start().await;
    idp.add_rsa("k1");
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, keys_text(&[new_key(), new_key()])).unwrap();
    for external in [
        "http://127.0.0.1:8080",
        "http://localhost:8080",
        "https://cms.example.com",
    ] {
        let out = check(config(
            &idp.issuer,
            &keys,
            "",
            &ext(external, "scopes = [\"openid\", \"email\", \"offline_access\"]\n[[routes]]\nprefix = \"/api/\"\non_missing = \"401\""),
            "",
        ))
        .await;
        assert_eq!(out.code, Some(0), "{external}: {out:?}");
        assert!(out.stdout.contains("external_url"), "{}", out.stdout);
        assert!(
            !out.all().contains(CLIENT_SECRET),
            "the client secret is printed:\n{}",
            out.all()
        );
        let key_text = std::fs::read_to_string(&keys).unwrap();
        assert!(
            !out.all().contains(key_text.lines().next().unwrap()),
            "a session key is printed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_login_tables_are_refused_naming_the_key() {
    let idp = Idp::start().await;
    idp.add_rsa("k1");
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let good = write("good", &keys_text(&[new_key()]));
    let empty = write("empty", "");
    let short = write(
        "short",
        &(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 16]) + "\n"),
    );
    let long = write(
        "long",
        &(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 48]) + "\n"),
    );
    let garbage = write("garbage", "this is not base64!\n");
    let missing = dir.path().join("no-such-file");
    let pem = write("key.pem", &idp.public_key_pem("k1"));
    let local = "http://127.0.0.1:8080";
    let iss = idp.issuer.as_str();

    let no_keys = format!(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[auth.issuers]]\nissuer = \"{iss}\"\n\
         [login]\nprovider = \"oidc\"\nissuer = \"{iss}\"\nclient_id = \"{CLIENT_ID}\"\n\
         client_secret = \"{CLIENT_SECRET}\"\nexternal_url = \"{local}\"\n"
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("no session_keys_file", no_keys, "login.session_keys_file"),
        (
            "an empty keys file",
            config(iss, &empty, "", &ext(local, ""), ""),
            "login.session_keys_file",
        ),
        (
            "a 16-byte key",
            config(iss, &short, "", &ext(local, ""), ""),
            "login.session_keys_file",
        ),
        (
            "a 48-byte key",
            config(iss, &long, "", &ext(local, ""), ""),
            "login.session_keys_file",
        ),
        (
            "a key that is not base64",
            config(iss, &garbage, "", &ext(local, ""), ""),
            "login.session_keys_file",
        ),
        (
            "a keys file that does not exist",
            config(iss, &missing, "", &ext(local, ""), ""),
            "login.session_keys_file",
        ),
        (
            "plain http off loopback",
            config(iss, &good, "", &ext("http://cms.example.com", ""), ""),
            "login.external_url",
        ),
        (
            "no external_url",
            config(iss, &good, "", "", ""),
            "login.external_url",
        ),
        (
            "an issuer with a fixed jwks_uri",
            config(
                iss,
                &good,
                &format!("jwks_uri = \"{}\"", idp.jwks_uri()),
                &ext(local, ""),
                "",
            ),
            "login.issuer",
        ),
        (
            "an issuer with a public_key_file",
            config(
                iss,
                &good,
                &format!("public_key_file = \"{}\"", pem.display()),
                &ext(local, ""),
                "",
            ),
            "login.issuer",
        ),
        (
            "an issuer that is not among auth.issuers",
            config(iss, &good, "", &ext(local, ""), "").replacen(
                &format!("[[auth.issuers]]\nissuer = \"{iss}\""),
                "[[auth.issuers]]\nissuer = \"http://127.0.0.1:1\"",
                1,
            ),
            "login.issuer",
        ),
        (
            "no client_id",
            config(iss, &good, "", &ext(local, ""), "")
                .replace(&format!("client_id = \"{CLIENT_ID}\"\n"), ""),
            "login.client_id",
        ),
        (
            "an unknown provider kind",
            config(iss, &good, "", &ext(local, ""), "")
                .replace("provider = \"oidc\"", "provider = \"saml\""),
            "login.provider",
        ),
        (
            "an unknown on_missing",
            config(
                iss,
                &good,
                "",
                &ext(local, "on_missing = \"sometimes\""),
                "",
            ),
            "login.on_missing",
        ),
        (
            "a route with auth = \"none\" and on_missing = \"redirect\"",
            config(
                iss,
                &good,
                "",
                &ext(local, ""),
                "[[routes]]\nprefix = \"/open/\"\nauth = \"none\"\non_missing = \"redirect\"",
            ),
            "routes[0].on_missing",
        ),
        (
            "a route on /.jwtgate/",
            config(
                iss,
                &good,
                "",
                &ext(local, ""),
                "[[routes]]\nprefix = \"/.jwtgate/\"\nauth = \"none\"",
            ),
            "routes[0].prefix",
        ),
        (
            "a route on /.jwtgate (no slash)",
            config(
                iss,
                &good,
                "",
                &ext(local, ""),
                "[[routes]]\nprefix = \"/.jwtgate\"\nauth = \"none\"",
            ),
            "routes[0].prefix",
        ),
        (
            "a route on /.jwtgate/session",
            config(
                iss,
                &good,
                "",
                &ext(local, ""),
                "[[routes]]\npath = \"/.jwtgate/session\"\nauth = \"none\"",
            ),
            "routes[0].path",
        ),
    ];
    let mut failures = Vec::new();
    for (what, toml, key) in cases {
        let out = check(toml).await;
        if out.code != Some(1) || !out.stderr.contains(key) {
            failures.push(format!(
                "{what}: expected exit 1 naming {key}, got {:?}:\n{}",
                out.code,
                out.all()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
