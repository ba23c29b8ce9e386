//! The open-redirect guard for the return path (`rd`) of a sign-in: where
//! the browser may be sent once signed in. Pure.
//!
//! Two independent checks, both of which must pass:
//!
//! 1. **Syntax**, by hand, allowing only two shapes: a path on the gate's
//!    origin (`/` followed by anything but a second `/`, optional query),
//!    or an absolute `https://` URL (`http://` only when the gate itself is
//!    reached over http) whose host is the gate's or one of
//!    `redirect_hosts`, without userinfo. Refused anywhere in the input:
//!    anything but printable ASCII (controls, space, non-ASCII such as the
//!    full-width solidus), backslashes, `"` `<` `>` and backtick (browsers
//!    always encode those; refusing them is defence in depth for a caller
//!    that writes the location into HTML, which must still escape it),
//!    invalid percent-escapes, escapes of controls (`%09`, `%0a`, `%00` ...:
//!    some servers and clients decode before using the value), escapes of
//!    `/` and `\` (`%2f`, `%5c`, any case) and double escapes (`%25`
//!    followed by two hex digits: `%252f`), in the query too (a deep link
//!    whose query carries an encoded slash returns to `/` instead: the
//!    price of one simple rule). Dot segments (`.`, `..`, also escaped as
//!    `%2e`) are refused rather than normalised: browsers never send them,
//!    and `/.//evil.com` would normalise to `//evil.com`. A fragment
//!    (`#...`) is dropped: the browser never sends one to the gate, and the
//!    part before it must pass on its own (`https://evil.com#@good` is
//!    `https://evil.com`).
//! 2. **Resolution** with the `url` crate (the WHATWG URL Standard, as
//!    browsers resolve a `Location`): the candidate resolved against the
//!    gate's origin must have no userinfo and have the gate's origin, or,
//!    for an absolute URL, an allowed scheme and an allowed host.
//!
//! `redirect_hosts`: `app.example.com` matches that host only (any case,
//! any port); `.example.com` matches its subdomains on a dot boundary
//! (`a.example.com`, `a.b.example.com`; not `example.com` itself unless
//! also listed, nor `evilexample.com`).

use url::Url;

/// The longest return path accepted, in bytes.
pub const MAX_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    /// This host (lower case).
    Exact(String),
    /// Its subdomains: the suffix with its leading dot (lower case).
    Subdomains(String),
}

/// Where a sign-in may return to.
#[derive(Debug, Clone)]
pub struct ReturnPolicy {
    /// The gate's origin as a URL (`scheme://host[:port]/`).
    base: Url,
    origin: url::Origin,
    /// The gate's host as the `url` crate writes it (lower case, IDNA).
    host: String,
    /// The gate is reached over https (absolute return URLs must be https).
    https: bool,
    hosts: Vec<HostRule>,
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

fn host_rule(entry: &str) -> Result<HostRule, String> {
    let lower = entry.to_ascii_lowercase();
    let (subdomains, name) = match lower.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let labels_ok = !name.is_empty()
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !labels_ok {
        return Err(format!(
            "login.redirect_hosts: {entry:?} is not a host name (\"app.example.com\", or \".example.com\" for its subdomains; ASCII/punycode, no port, scheme or wildcard)"
        ));
    }
    if subdomains {
        if !name.contains('.') {
            return Err(format!(
                "login.redirect_hosts: {entry:?} would allow every host under a top-level domain"
            ));
        }
        Ok(HostRule::Subdomains(lower))
    } else {
        Ok(HostRule::Exact(lower))
    }
}

impl ReturnPolicy {
    /// `external_url`: the gate as browsers reach it, only scheme, host and
    /// port (`https://cms.example.com`, `http://127.0.0.1:8080`; http only
    /// on loopback, where browsers keep `Secure` cookies). `redirect_hosts`:
    /// the hosts absolute return URLs may name (see the module notes).
    pub fn new(external_url: &str, redirect_hosts: &[String]) -> Result<ReturnPolicy, String> {
        let what = |why: &str| format!("login.external_url {external_url:?}: {why}");
        if !external_url.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(what("not a plain ASCII URL"));
        }
        let base = Url::parse(external_url).map_err(|e| what(&e.to_string()))?;
        let https = match base.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(what("the scheme must be https (or http on loopback)")),
        };
        let Some(host) = base.host() else {
            return Err(what("no host"));
        };
        if !https && !is_loopback(&host) {
            return Err(what(
                "http is allowed only on loopback (browsers keep Secure cookies only over https)",
            ));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(what("no user name or password here"));
        }
        if base.path() != "/" || base.query().is_some() || base.fragment().is_some() {
            return Err(what(
                "only scheme, host and port (no path, query or fragment)",
            ));
        }
        let host = base.host_str().unwrap_or_default().to_owned();
        let hosts = redirect_hosts
            .iter()
            .map(|h| host_rule(h))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReturnPolicy {
            origin: base.origin(),
            base,
            host,
            https,
            hosts,
        })
    }

    /// The gate's origin (`https://cms.example.com`), without a slash.
    pub fn origin(&self) -> String {
        self.origin.ascii_serialization()
    }

    /// Is `host` (lower case) one of `redirect_hosts`?
    fn host_allowed(&self, host: &str) -> bool {
        self.hosts.iter().any(|rule| match rule {
            HostRule::Exact(h) => h == host,
            HostRule::Subdomains(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        })
    }

    /// The location to send the browser to after signing in, or None (the
    /// caller then uses `/`). What is returned is `rd` itself, without its
    /// fragment.
    pub fn check(&self, rd: &str) -> Option<String> {
        let candidate = self.syntax(rd)?;
        self.resolves_here(candidate).then(|| candidate.to_owned())
    }

    /// Check 1: `rd` has an allowed shape; the candidate is `rd` without
    /// its fragment.
    fn syntax<'a>(&self, rd: &'a str) -> Option<&'a str> {
        if rd.is_empty() || rd.len() > MAX_LEN {
            return None;
        }
        if !rd
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'\\' | b'"' | b'<' | b'>' | b'`'))
        {
            return None;
        }
        let s = rd.split('#').next().unwrap_or_default();
        if !escapes_ok(s) {
            return None;
        }
        if let Some(rest) = s.strip_prefix('/') {
            if rest.starts_with('/') {
                return None;
            }
            return path_ok(s).then_some(s);
        }
        let rest = strip_prefix_ignore_case(s, "https://")
            .or_else(|| strip_prefix_ignore_case(s, "http://").filter(|_| !self.https))?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return None;
        }
        let host = match authority.rsplit_once(':') {
            Some((host, port)) => {
                if port.is_empty()
                    || port.len() > 5
                    || !port.bytes().all(|b| b.is_ascii_digit())
                    || port.parse::<u32>().ok()? > 65_535
                {
                    return None;
                }
                host
            }
            None => authority,
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return None;
        }
        let host = host.to_ascii_lowercase();
        if host != self.host && !self.host_allowed(&host) {
            return None;
        }
        if !tail.is_empty() && !tail.starts_with('?') && !path_ok(tail) {
            return None;
        }
        Some(s)
    }

    /// Check 2: resolved as a browser would, the candidate stays on the
    /// gate's origin or, absolute, names an allowed scheme and host.
    fn resolves_here(&self, candidate: &str) -> bool {
        let Ok(u) = self.base.join(candidate) else {
            return false;
        };
        if !u.username().is_empty() || u.password().is_some() {
            return false;
        }
        if u.origin() == self.origin {
            return true;
        }
        if candidate.starts_with('/') {
            return false;
        }
        let scheme_ok = u.scheme() == "https" || (u.scheme() == "http" && !self.https);
        scheme_ok && u.host_str().is_some_and(|h| self.host_allowed(h))
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len()
        && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()))
    .then(|| &s[prefix.len()..])
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Every `%` starts a valid escape, of neither a control character, `/`
/// nor `\\`; and no escaped `%` is followed by two hex digits, raw or
/// escaped (`%252f`, `%25%32%66`: a second decoding would read another
/// character).
fn escapes_ok(s: &str) -> bool {
    let b = s.as_bytes();
    // The last three decoded bytes, and whether the first was an escaped `%`.
    let mut window: [(u8, bool); 3] = [(0, false); 3];
    let mut i = 0;
    while i < b.len() {
        let (c, escaped) = if b[i] == b'%' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) else {
                return false;
            };
            i += 3;
            (h * 16 + l, true)
        } else {
            i += 1;
            (b[i - 1], false)
        };
        if escaped && (c < 0x20 || c == 0x7f || c == b'/' || c == b'\\') {
            return false;
        }
        window = [window[1], window[2], (c, escaped)];
        if let [(b'%', true), (h, _), (l, _)] = window
            && hex(h).is_some()
            && hex(l).is_some()
        {
            return false;
        }
    }
    true
}

/// The path part (up to `?`) of `s`, which starts with `/`, has no dot
/// segment, raw or escaped.
fn path_ok(s: &str) -> bool {
    let path = s.split('?').next().unwrap_or_default();
    path.split('/').all(|seg| {
        let dots = seg.replace("%2e", ".").replace("%2E", ".");
        dots != "." && dots != ".."
    })
}

#[cfg(test)]
mod tests;
