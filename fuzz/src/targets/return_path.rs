//! The sign-in's open-redirect guard: `login::return_path::ReturnPolicy::check`.
//!
//! Input: byte 0 chooses the gate (bit 0 clear: `https://cms.example.com`,
//! set: `http://127.0.0.1:8080`; both with `redirect_hosts`
//! `[".example.com", "docs.other.org"]`); the rest is the return path
//! (lossy UTF-8).
//!
//! Invariants: whatever `check` accepts is the input without its fragment,
//! at most 2,048 bytes of printable ASCII without a backslash, a valid
//! `Location` header value, and accepted again as is; decoded once, it
//! holds no control character and its path does not start with `//` or
//! `/\`. Resolved by the `url` crate against the gate's origin, as a
//! browser resolves a `Location`, it has no userinfo and either the gate's
//! origin (always, when it starts with `/`, which it then does without a
//! second `/`) or an allowed scheme and a host that a matcher written here
//! allows. Input with a non-ASCII character or a control character is
//! refused.

use std::sync::OnceLock;

use jwtgate::login::return_path::{MAX_LEN, ReturnPolicy};
use url::Url;

const GATES: [&str; 2] = ["https://cms.example.com", "http://127.0.0.1:8080"];

fn policies() -> &'static [ReturnPolicy; 2] {
    static P: OnceLock<[ReturnPolicy; 2]> = OnceLock::new();
    P.get_or_init(|| {
        let hosts = [".example.com".to_string(), "docs.other.org".to_string()];
        GATES.map(|g| ReturnPolicy::new(g, &hosts).expect("policy"))
    })
}

/// The reference host matcher for `redirect_hosts` above.
fn allowed_host(h: &str) -> bool {
    h == "docs.other.org"
        || h.strip_suffix(".example.com")
            .is_some_and(|sub| !sub.is_empty())
}

pub fn run(data: &[u8]) {
    let Some((&ctrl, rest)) = data.split_first() else {
        return;
    };
    let which = usize::from(ctrl & 1);
    let policy = &policies()[which];
    let gate = Url::parse(GATES[which]).expect("gate");
    let rd = String::from_utf8_lossy(rest);
    let got = policy.check(&rd);
    if rd.chars().any(|c| !c.is_ascii() || c.is_control()) {
        assert_eq!(got, None, "non-ASCII or control accepted: {rd:?}");
    }
    let Some(loc) = got else { return };

    assert_eq!(loc, rd.split('#').next().unwrap(), "{rd:?}");
    assert!(!loc.is_empty() && loc.len() <= MAX_LEN);
    assert!(
        loc.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'),
        "{loc:?}"
    );
    assert!(http::HeaderValue::from_str(&loc).is_ok());
    assert_eq!(
        policy.check(&loc).as_deref(),
        Some(&loc[..]),
        "not idempotent"
    );

    let once = percent_encoding::percent_decode_str(&loc).collect::<Vec<u8>>();
    assert!(
        !once.iter().any(|&b| b < 0x20 || b == 0x7f),
        "an escaped control character: {loc:?}"
    );
    let once_path = once.split(|&b| b == b'?').next().unwrap_or_default();

    let u = gate.join(&loc).expect("an accepted location resolves");
    assert!(u.username().is_empty() && u.password().is_none(), "{loc:?}");
    if loc.starts_with('/') {
        assert!(!loc.starts_with("//"), "{loc:?}");
        assert!(
            !once_path.starts_with(b"//") && !once_path.starts_with(b"/\\"),
            "{loc:?}"
        );
        assert_eq!(u.origin(), gate.origin(), "{loc:?} left the gate");
    } else {
        let https = which == 0;
        assert!(
            u.scheme() == "https" || (!https && u.scheme() == "http"),
            "{loc:?}"
        );
        let host = u.host_str().expect("a host");
        assert!(
            u.origin() == gate.origin() || allowed_host(host),
            "{loc:?} goes to {host}"
        );
    }
}
