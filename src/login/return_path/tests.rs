use super::*;

fn policy() -> ReturnPolicy {
    ReturnPolicy::new(
        "https://cms.example.com",
        &[".example.com".into(), "docs.other.org".into()],
    )
    .unwrap()
}

fn local() -> ReturnPolicy {
    ReturnPolicy::new("http://127.0.0.1:8080", &["app.test.example".into()]).unwrap()
}

#[test]
fn accepts_paths_on_this_origin() {
    let p = policy();
    for ok in [
        "/",
        "/a/b/",
        "/docs/a?b=1&c=%20",
        "/docs/a?b=1&c=%20#frag",
        "/caf%C3%A9",
        "/a//b",
        "/a?next=//evil.com",
        "/a?x=https://evil.com",
        "/a/b.c/..d/.e",
        "/search?q=a+b&x=%41%7e",
        "/a;b=c",
        "/'{|}^~!$&()*+,=:@",
        "/?",
        "/%25",
    ] {
        let want = ok.split('#').next().unwrap();
        assert_eq!(p.check(ok).as_deref(), Some(want), "{ok:?}");
    }
}

#[test]
fn accepts_absolute_urls_of_allowed_hosts() {
    let p = policy();
    for ok in [
        "https://app.example.com/x",
        "https://app.example.com",
        "https://APP.Example.COM/x?y=1",
        "HTTPS://a.b.example.com:8443/x",
        "https://docs.other.org/guide",
        "https://cms.example.com/back",
        "https://app.example.com?x=1",
        "https://app.example.com/x#top",
    ] {
        let want = ok.split('#').next().unwrap();
        assert_eq!(p.check(ok).as_deref(), Some(want), "{ok:?}");
    }
    let l = local();
    for ok in [
        "http://127.0.0.1:8080/x",
        "http://app.test.example/x",
        "https://app.test.example/x",
        "/x",
    ] {
        assert_eq!(l.check(ok).as_deref(), Some(ok), "{ok:?}");
    }
}

#[test]
fn host_rules_match_on_a_dot_boundary() {
    let p = policy();
    for bad in [
        "https://example.com/",
        "https://evilexample.com/",
        "https://example.com.evil.com/",
        "https://app.example.com.evil.com/",
        "https://other.org/",
        "https://x.docs.other.org/",
        "https://app.example.com./",
        "https://cms.example.com:8443.evil.com/",
    ] {
        assert_eq!(p.check(bad), None, "{bad:?}");
    }
    let apex = ReturnPolicy::new(
        "https://cms.example.com",
        &[".example.com".into(), "example.com".into()],
    )
    .unwrap();
    assert!(apex.check("https://example.com/").is_some());
}

#[test]
fn the_gates_own_host_on_another_port_or_scheme_is_not_its_origin() {
    let p = ReturnPolicy::new("https://gate.test", &[]).unwrap();
    assert!(p.check("https://gate.test/x").is_some());
    assert!(p.check("https://gate.test:443/x").is_some());
    assert_eq!(p.check("https://gate.test:8443/x"), None);
    assert_eq!(p.check("http://gate.test/x"), None);
    let l = local();
    assert_eq!(l.check("http://127.0.0.1:9090/x"), None);
    assert_eq!(l.check("http://localhost:8080/x"), None);
}

#[test]
fn http_return_urls_only_when_the_gate_is_http() {
    assert_eq!(policy().check("http://app.example.com/x"), None);
    assert!(local().check("http://app.test.example/x").is_some());
}

/// Known open-redirect payloads and every spelling the module refuses.
#[test]
fn refuses_the_battery() {
    let p = policy();
    let long = format!("/{}", "a".repeat(MAX_LEN));
    for bad in [
        // Empty, too long.
        "",
        &long,
        // Scheme-relative and its disguises.
        "//evil.com",
        "///evil.com",
        "////evil.com",
        "//evil.com@cms.example.com",
        "/\\evil.com",
        "\\/evil.com",
        "\\\\evil.com",
        "/\\/evil.com",
        "/x\\y",
        // Controls and spaces, raw and escaped.
        "/\t/evil.com",
        "/%09/evil.com",
        "/%0a/evil.com",
        "/%0D%0ALocation:%20https://evil.com",
        "/x\r\nSet-Cookie: a=b",
        " /x",
        "/x ",
        "/x\u{0}",
        "/x%00",
        "/x%7f",
        "/x\u{7f}",
        "\t/x",
        // Escaped separators, any case, doubly escaped.
        "/%2F%2Fevil.com",
        "/%2f%2fevil.com",
        "/%5Cevil.com",
        "/%5cevil.com",
        "/%252f%252fevil.com",
        "/%255cevil.com",
        "/%25%32%66evil.com",
        "/x?next=%2F%2Fevil.com",
        // Invalid escapes.
        "/%",
        "/%2",
        "/%zz",
        "/%u002f%u002fevil.com",
        // Dot segments, raw and escaped.
        "/.//evil.com",
        "/./x",
        "/../x",
        "/a/../../x",
        "/a/..",
        "/a/.",
        "/%2e%2e/x",
        "/%2E/x",
        "/.%2e/x",
        // Schemes and scheme-only spellings.
        "https:evil.com",
        "https:/evil.com",
        "https:\\\\evil.com",
        "https:\\/evil.com",
        "https:///evil.com",
        "https://",
        "http://evil.com",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "java%0ascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "ftp://app.example.com/",
        "evil.com",
        "x/y",
        "?x=1",
        "#/x",
        ".",
        // Userinfo.
        "https://cms.example.com@evil.com/",
        "https://user@app.example.com/",
        "https://user:pw@app.example.com/",
        "https://evil.com#@app.example.com",
        "https://evil.com?@app.example.com",
        "https://evil.com\\@app.example.com",
        // Hosts not allowed or not plain.
        "https://evil.com/",
        "http://good.com.evil.com",
        "https://[::1]/",
        "https://app.example.com:99999/",
        "https://app.example.com:/",
        "https://app.example.com:x/",
        "https://app%2eexample.com/",
        "https://app.example.com%2f@evil.com/",
        "https://0x7f.1/",
        // Non-ASCII, HTML-breaking characters.
        "／／evil.com",
        "/\u{ff0f}evil.com",
        "/café",
        "https://аpp.example.com/",
        "/\"><script>",
        "/<x>",
        "/`x`",
    ] {
        assert_eq!(p.check(bad), None, "{bad:?}");
    }
}

#[test]
fn the_url_check_stands_on_its_own() {
    let p = policy();
    for (candidate, here) in [
        ("/x", true),
        ("/a?b", true),
        ("https://app.example.com/x", true),
        ("https://cms.example.com/x", true),
        ("//evil.com", false),
        ("/\\evil.com", false),
        ("\\\\evil.com", false),
        ("https:/evil.com", true), // the same special scheme: a path here
        ("https:evil.com", true),  // relative to the base: same origin
        ("/\t/evil.com", false),   // the tab is removed: `//evil.com`
        ("https://user@app.example.com/", false),
        ("https://evil.com/", false),
        ("http://app.example.com/", false),
        ("javascript:alert(1)", false),
        ("https://APP.EXAMPLE.COM/", true),
        ("https://xn--pp-8cd.example.com/", true),
    ] {
        assert_eq!(p.resolves_here(candidate), here, "{candidate:?}");
    }
}

#[test]
fn external_url_is_only_scheme_host_and_port() {
    for ok in [
        "https://cms.example.com",
        "https://cms.example.com/",
        "https://CMS.example.com:8443",
        "http://127.0.0.1:8080",
        "http://localhost:3000",
        "http://[::1]:8080",
    ] {
        let p = ReturnPolicy::new(ok, &[]).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert!(p.check("/x").is_some());
    }
    assert_eq!(
        ReturnPolicy::new("https://CMS.example.com:443/", &[])
            .unwrap()
            .origin(),
        "https://cms.example.com"
    );
    for bad in [
        "",
        "cms.example.com",
        "/path",
        "https://cms.example.com/app",
        "https://cms.example.com/?x=1",
        "https://cms.example.com/#f",
        "https://user@cms.example.com",
        "https://user:pw@cms.example.com",
        "ftp://cms.example.com",
        "http://cms.example.com",
        "http://10.0.0.1:8080",
        "https:///",
        " https://cms.example.com",
        "https://cms.example.com\n",
    ] {
        let e = ReturnPolicy::new(bad, &[]).map(|_| ()).unwrap_err();
        assert!(e.contains("external_url"), "{bad:?}: {e}");
    }
}

#[test]
fn redirect_hosts_are_plain_host_names() {
    for ok in [
        "app.example.com",
        ".example.com",
        "localhost",
        "10.0.0.1",
        "A.Example.COM",
    ] {
        assert!(
            ReturnPolicy::new("https://g.test", &[ok.into()]).is_ok(),
            "{ok}"
        );
    }
    for bad in [
        "",
        ".",
        ".com",
        "*.example.com",
        "example.com:443",
        "https://example.com",
        "a..b",
        "a.b.",
        "ex ample.com",
        "bücher.example",
        "[::1]",
    ] {
        let e = ReturnPolicy::new("https://g.test", &[bad.into()]).unwrap_err();
        assert!(e.contains("redirect_hosts"), "{bad:?}: {e}");
    }
}

#[test]
fn whatever_is_accepted_resolves_here_and_reads_plainly() {
    let p = policy();
    // A crude generator over the alphabet that matters.
    let parts = [
        "/",
        "//",
        "\\",
        "%2f",
        "%5c",
        "%09",
        "%25",
        "2f",
        ".",
        "..",
        "%2e",
        "@",
        "#",
        "?",
        ":",
        "https:",
        "evil.com",
        "app.example.com",
        "cms.example.com",
        "x",
        " ",
        "\t",
        ";",
        "%",
    ];
    let mut n = 0;
    for a in parts {
        for b in parts {
            for c in parts {
                let rd = format!("{a}{b}{c}");
                if let Some(loc) = p.check(&rd) {
                    n += 1;
                    assert!(
                        !loc.bytes()
                            .any(|b| b.is_ascii_control() || b == b'\\' || b == b' ')
                    );
                    let u = p.base.join(&loc).unwrap();
                    assert!(u.username().is_empty() && u.password().is_none());
                    if loc.starts_with('/') {
                        assert!(!loc.starts_with("//"), "{rd:?}");
                        assert_eq!(u.origin(), p.origin, "{rd:?}");
                    } else {
                        let h = u.host_str().unwrap();
                        assert!(
                            h == "cms.example.com" || h.ends_with(".example.com"),
                            "{rd:?}"
                        );
                    }
                }
            }
        }
    }
    assert!(n > 0);
}
