//! The configuration's unit tests: layering, seed names, every error at once.

use std::time::Duration;

use super::*;
use super::{Overrides, Sources};

fn env(pairs: &[(&str, &str)]) -> Sources {
    Sources {
        file: None,
        env: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        overrides: Overrides::default(),
    }
}

#[test]
fn values_that_do_not_parse_are_all_reported_with_the_rules_across_keys() {
    let err = Config::from_str_format(
        "listen = \"nowhere\"\nadmin_listen = \"unix:rel.sock\"\n\
         [upstream]\nurl = \"ftp://x\"\n[status]\npath = \"status\"\n\
         [auth]\ntoken_from = [\"header\", \"body\"]\n\
         [auth.secret]\nvalue = \"0123456789abcdef0123456789abcdef\"\nalgorithms = [\"RS256\"]\n\
         [[routes]]\nprefix = \"/a\"\nmethods = [\"GET\", \"B AD\"]\n\
         [forward]\nuser_header = \"X User\"\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
        "toml",
    )
    .unwrap_err();
    let ConfigError::Many(list) = &err else {
        panic!("expected every error at once: {err}");
    };
    let text = err.to_string();
    for key in [
        "`listen`",
        "`admin_listen`",
        "`upstream.url`",
        "`auth.token_from",
        "`routes",
        "`forward.user_header`",
        "`forward.trusted_proxies",
        "`status.path`",
        "`auth.secret.algorithms[0]`",
    ] {
        assert!(text.contains(key), "{key} not named: {text}");
    }
    assert_eq!(list.len(), 9, "{text}");
}

#[test]
fn refuses_to_run_without_key_source() {
    let err = Config::load(&env(&[])).unwrap_err().to_string();
    assert!(err.contains("no key source"), "{err}");
}

#[test]
fn seed_names_and_precedence() {
    let c = Config::load(&env(&[
        ("TOKENS_SECRET", "seed"),
        ("TOKENS_USERS", "alice, bob"),
        ("STATUS_TOKEN", "st"),
        ("JWTGATE_AUTH__LEEWAY", "5s"),
    ]))
    .unwrap();
    assert_eq!(c.auth.secret.value.expose(), "seed");
    assert_eq!(c.auth.allowed_users, vec!["alice", "bob"]);
    assert_eq!(c.status.token.expose(), "st");
    assert_eq!(c.auth.leeway, Duration::from_secs(5));

    let c = Config::load(&env(&[
        ("TOKENS_SECRET", "seed"),
        ("JWTGATE_AUTH__SECRET__VALUE", "wins"),
    ]))
    .unwrap();
    assert_eq!(c.auth.secret.value.expose(), "wins");
}

#[test]
fn unknown_key_names_key_and_file() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "gate.toml",
            "[auth]\nsecret = { value = \"x\" }\nbogus = 1\n",
        )?;
        let s = Sources {
            file: Some("gate.toml".into()),
            ..Default::default()
        };
        let err = Config::load(&s).unwrap_err().to_string();
        assert!(err.contains("unknown key `auth.bogus`"), "{err}");
        assert!(err.contains("gate.toml"), "{err}");
        Ok(())
    });
}

#[test]
fn yaml_and_flags() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "gate.yaml",
            "listen: 127.0.0.1:1\nauth:\n  secret:\n    value: abc\n",
        )?;
        let mut s = Sources {
            file: Some("gate.yaml".into()),
            ..Default::default()
        };
        assert_eq!(Config::load(&s).unwrap().listen.to_string(), "127.0.0.1:1");
        s.overrides.listen = Some("127.0.0.1:2".into());
        assert_eq!(Config::load(&s).unwrap().listen.to_string(), "127.0.0.1:2");
        Ok(())
    });
}

#[test]
fn secret_is_redacted_in_debug_and_serialize() {
    let s = Secret::new("hunter2");
    assert!(!format!("{s:?}").contains("hunter2"));
    assert!(!serde_json::to_string(&s).unwrap().contains("hunter2"));
}

#[test]
fn env_values_are_typed_after_the_defaults() {
    let c = Config::load(&env(&[
        ("JWTGATE_AUTH__SECRET__VALUE", "12345"),
        ("JWTGATE_STATUS__TOKEN", "true"),
        ("JWTGATE_AUTH__TOKEN_FROM", "header,cookie:jwt"),
        ("JWTGATE_AUTH__TOKEN_CACHE", "0"),
        ("JWTGATE_AUTH__FORWARD_TOKEN", "true"),
        ("JWTGATE_AUTH__ALLOWED_USERS", "[alice, bob]"),
    ]))
    .unwrap();
    assert_eq!(c.auth.secret.value.expose(), "12345");
    assert_eq!(c.status.token.expose(), "true");
    assert_eq!(
        c.auth.token_from,
        vec![TokenSource::Header, TokenSource::Cookie("jwt".into())]
    );
    assert_eq!(c.auth.token_cache, 0);
    assert!(c.auth.forward_token);
    assert_eq!(c.auth.allowed_users, vec!["alice", "bob"]);
    let err = Config::load(&env(&[
        ("TOKENS_SECRET", "x"),
        ("JWTGATE_AUTH__TOKEN_CACHE", "lots"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("auth.token_cache") && err.contains("JWTGATE_AUTH__TOKEN_CACHE"),
        "{err}"
    );
}

#[test]
fn invalid_value_names_key() {
    let err = Config::load(&env(&[
        ("TOKENS_SECRET", "x"),
        ("JWTGATE_UPSTREAM__URL", "ftp://nope"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(err.contains("upstream.url"), "{err}");
}

#[test]
fn durations_and_sizes_are_bounded_by_name_and_the_top_values_load() {
    const SECRET: &str = "bounds-test-secret-0123456789abcdef0123";
    let load = |extra: &str| {
        Config::from_str_format(
            &format!("{extra}\n[auth.secret]\nvalue = \"{SECRET}\"\n"),
            "toml",
        )
    };
    // The top of each range is accepted, "1y" as humantime reads it too.
    let top = load(
        "[limits]\nmax_header_bytes = 16777216\nmax_connections = 1000000\n\
         [[auth.issuers]]\nissuer = \"https://idp.example\"\ncache_ttl = \"1y\"\n\
         refetch_interval = \"1y\"\nmax_stale = \"10y\"\n",
    );
    assert!(top.is_ok(), "{:?}", top.err());
    let err = load(
        "worker_threads = 5000\n[limits]\nmax_header_bytes = 4294967296\n\
         max_connections = 0\nheader_read_timeout = \"0s\"\n\
         [[auth.issuers]]\nissuer = \"https://idp.example\"\nrefetch_interval = \"1001y\"\n",
    )
    .unwrap_err()
    .to_string();
    for key in [
        "worker_threads",
        "limits.max_header_bytes",
        "limits.max_connections",
        "limits.header_read_timeout",
        "auth.issuers[0].refetch_interval",
    ] {
        assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
    }
}

#[test]
fn upstream_protocol_must_fit_the_url() {
    let load = |url: &str, proto: &str| {
        Config::load(&env(&[
            ("TOKENS_SECRET", "x"),
            ("JWTGATE_UPSTREAM__URL", url),
            ("JWTGATE_UPSTREAM__PROTOCOL", proto),
        ]))
    };
    assert_eq!(
        load("http://a:1", "h2c").unwrap().upstream.protocol,
        UpstreamProtocol::H2c
    );
    assert_eq!(
        load("https://a:1", "h2").unwrap().upstream.protocol,
        UpstreamProtocol::H2
    );
    for (url, proto) in [
        ("http://a:1", "h2"),
        ("https://a:1", "h2c"),
        ("unix:/tmp/x.sock", "h2"),
        ("http://a:1", "http3"),
    ] {
        let err = load(url, proto).unwrap_err().to_string();
        assert!(err.contains("upstream.protocol"), "{url} {proto}: {err}");
    }
    assert_eq!(Config::default().upstream.protocol, UpstreamProtocol::Auto);
}
