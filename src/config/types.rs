//! The value types of the configuration that are more than strings: each
//! is parsed once, when the configuration is read, so that a bad value is
//! a configuration error naming its key and source, and no later module
//! parses (or silently skips) it again.
//!
//! Every type here serialises back to the string an operator writes, so
//! that the built-in defaults (a figment layer) and `check-config` output
//! round-trip.

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Serialises each type as its `Display` form and reads it back with its
/// `FromStr`, whose message becomes the configuration error.
macro_rules! as_string {
    ($($t:ty),+) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(D::Error::custom)
            }
        }
    )+};
}

as_string!(
    TokenSource,
    HeaderName,
    Method,
    ProxyNet,
    ListenAddr,
    UpstreamUrl,
    Algorithm
);

/// The prefix that marks a Unix socket address (`listen`, `upstream.url`).
pub(crate) const UNIX_PREFIX: &str = "unix:";

/// `unix:/absolute/path`: `None` when `s` is not a `unix:` address. The
/// path must be absolute, so that it does not depend on the directory the
/// gate was started in.
fn unix_path(s: &str) -> Option<Result<std::path::PathBuf, String>> {
    let path = std::path::Path::new(s.strip_prefix(UNIX_PREFIX)?);
    Some(if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Err(format!("{s:?}: expected unix:/absolute/path/to.sock"))
    })
}

/// A place a token may be read from (`auth.token_from`): `header`,
/// `query:NAME` or `cookie:NAME`.
#[derive(Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(with = "String")]
pub enum TokenSource {
    Header,
    Query(String),
    Cookie(String),
}

impl FromStr for TokenSource {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let named = |n: &str| (!n.is_empty()).then(|| n.to_owned());
        let parsed = if spec == "header" {
            Some(TokenSource::Header)
        } else if let Some(n) = spec.strip_prefix("query:") {
            named(n).map(TokenSource::Query)
        } else if let Some(n) = spec.strip_prefix("cookie:") {
            named(n).map(TokenSource::Cookie)
        } else {
            None
        };
        parsed.ok_or_else(|| {
            format!("{spec:?}: expected \"header\", \"query:NAME\" or \"cookie:NAME\"")
        })
    }
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Header => f.write_str("header"),
            TokenSource::Query(n) => write!(f, "query:{n}"),
            TokenSource::Cookie(n) => write!(f, "cookie:{n}"),
        }
    }
}

/// An HTTP header name, as configured (`forward.user_header`, ...).
/// Empty or invalid names are refused when the configuration is read; the
/// spelling as written is kept for `check-config` output.
#[derive(Clone, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[schemars(with = "String")]
pub struct HeaderName {
    name: http::HeaderName,
    written: Box<str>,
}

impl HeaderName {
    /// For built-in defaults, which are valid names (a unit test checks
    /// every one); an invalid literal would show as `x-invalid-static-name`.
    pub fn from_static(name: &'static str) -> Self {
        HeaderName {
            name: http::HeaderName::from_bytes(name.as_bytes())
                .unwrap_or_else(|_| http::HeaderName::from_static("x-invalid-static-name")),
            written: name.into(),
        }
    }
    pub fn name(&self) -> &http::HeaderName {
        &self.name
    }
    pub fn as_str(&self) -> &str {
        self.name.as_str()
    }
}

impl FromStr for HeaderName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        http::HeaderName::from_bytes(s.as_bytes())
            .map(|name| HeaderName {
                name,
                written: s.into(),
            })
            .map_err(|_| format!("{s:?} is not a valid header name"))
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// A header name as a backend may read it: lower case, `_` as `-` (CGI
/// and some frameworks treat `X_Auth_User` as `X-Auth-User`), so that an
/// alias of an identity header is recognised as that header.
pub fn canonical_header(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' => '-',
            b => b.to_ascii_lowercase() as char,
        })
        .collect()
}

/// An HTTP method of a route (`routes[].methods`), any case as written.
#[derive(Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(with = "String")]
pub struct Method(pub http::Method);

impl FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        http::Method::from_bytes(s.to_ascii_uppercase().as_bytes())
            .map(Method)
            .map_err(|_| format!("{s:?} is not a method"))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// A trusted proxy (`forward.trusted_proxies`): a CIDR range or a single
/// address (a /32 or /128).
#[derive(Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(with = "String")]
pub struct ProxyNet(pub ipnet::IpNet);

impl FromStr for ProxyNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        t.parse::<ipnet::IpNet>()
            .ok()
            .or_else(|| t.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
            .map(ProxyNet)
            .ok_or_else(|| format!("{s:?} is not an address or CIDR range (10.0.0.0/8, ::1)"))
    }
}

impl fmt::Display for ProxyNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a listener listens: `HOST:PORT` or `unix:/absolute/path.sock`.
#[derive(Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(with = "String")]
pub enum ListenAddr {
    Tcp(std::net::SocketAddr),
    Unix(std::path::PathBuf),
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = unix_path(s) {
            return path.map(ListenAddr::Unix);
        }
        s.parse()
            .map(ListenAddr::Tcp)
            .map_err(|e| format!("{s:?}: {e}: expected HOST:PORT or unix:/path"))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "{}{}", UNIX_PREFIX, p.display()),
        }
    }
}

/// The upstream (`upstream.url`): an `http://` or `https://` base URL
/// (a host, perhaps a base path, no query), or `unix:/absolute/path.sock`.
#[derive(Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(with = "String")]
pub enum UpstreamUrl {
    Http(http::Uri),
    Unix(std::path::PathBuf),
}

impl UpstreamUrl {
    /// `http` or `https`; `None` for a Unix socket.
    pub fn scheme(&self) -> Option<&str> {
        match self {
            UpstreamUrl::Http(u) => u.scheme_str(),
            UpstreamUrl::Unix(_) => None,
        }
    }
}

impl FromStr for UpstreamUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = unix_path(s) {
            return path.map(UpstreamUrl::Unix);
        }
        let uri: http::Uri = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            Err(format!("{s:?} must start with http://, https:// or unix:/"))
        } else if uri.host().is_none_or(str::is_empty) {
            Err(format!("{s:?} has no host"))
        } else if uri.query().is_some() {
            Err(format!("{s:?} must not carry a query"))
        } else {
            Ok(UpstreamUrl::Http(uri))
        }
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamUrl::Http(u) => write!(f, "{u}"),
            UpstreamUrl::Unix(p) => write!(f, "{}{}", UNIX_PREFIX, p.display()),
        }
    }
}

/// A signature algorithm as configured (`auth.secret.algorithms`,
/// `auth.issuers[].algorithms`). Which family a key source accepts (HMAC
/// for the secret, asymmetric for issuers) is checked in `validate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(with = "String")]
pub struct Algorithm(pub jsonwebtoken::Algorithm);

impl FromStr for Algorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        jsonwebtoken::Algorithm::from_str(s)
            .map(Algorithm)
            .map_err(|_| format!("{s:?} is not a JWS algorithm (HS256, RS256, ES256, EdDSA, ...)"))
    }
}

impl Algorithm {
    pub fn is_hmac(self) -> bool {
        use jsonwebtoken::Algorithm as A;
        matches!(self.0, A::HS256 | A::HS384 | A::HS512)
    }
    /// The asymmetric algorithms jwtgate verifies.
    pub fn is_supported_asymmetric(self) -> bool {
        use jsonwebtoken::Algorithm as A;
        matches!(
            self.0,
            A::RS256
                | A::RS384
                | A::RS512
                | A::PS256
                | A::PS384
                | A::PS512
                | A::ES256
                | A::ES384
                | A::EdDSA
        )
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The algorithms of one key source, in order.
pub fn algorithms(list: &[Algorithm]) -> Vec<jsonwebtoken::Algorithm> {
    list.iter().map(|a| a.0).collect()
}

/// `Option<T>` where the configuration writes `""` for "not set" (the
/// habit of env-var driven deployments): `""` and a missing key are `None`.
pub mod optional {
    use std::str::FromStr;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => v.serialize(s),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr<Err = String>,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse().map(Some).map_err(D::Error::custom)
        }
    }
}

/// A file named by the configuration: `""` (or no key) is `None`.
pub mod optional_path {
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_deref().and_then(|p| p.to_str()).unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        let s = String::deserialize(d)?;
        Ok((!s.is_empty()).then(|| PathBuf::from(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_sources_round_trip_and_refuse_nameless() {
        for s in ["header", "query:access_token", "cookie:jwt"] {
            assert_eq!(s.parse::<TokenSource>().unwrap().to_string(), s);
        }
        for bad in ["", "query:", "cookie:", "Header", "body"] {
            assert!(bad.parse::<TokenSource>().is_err(), "{bad}");
        }
    }

    #[test]
    fn methods_read_any_case_and_proxies_take_bare_addresses() {
        assert_eq!("get".parse::<Method>().unwrap().0, http::Method::GET);
        assert!("GE T".parse::<Method>().is_err());
        let p: ProxyNet = "10.1.2.3".parse().unwrap();
        assert_eq!(p.0.to_string(), "10.1.2.3/32");
        assert!("10.0.0.0/33".parse::<ProxyNet>().is_err());
    }

    #[test]
    fn default_header_names_are_valid_and_keep_their_spelling() {
        let h = crate::config::ForwardConfig::default().user_header;
        assert_eq!(h.name().as_str(), "x-auth-user");
        assert_eq!(serde_json::to_value(&h).unwrap(), "X-Auth-User");
        assert!("X Auth".parse::<HeaderName>().is_err() && "".parse::<HeaderName>().is_err());
    }

    #[test]
    fn addresses() {
        let l = |s: &str| s.parse::<ListenAddr>();
        assert_eq!(
            l("unix:/run/a.sock").unwrap(),
            ListenAddr::Unix("/run/a.sock".into())
        );
        assert_eq!(l("127.0.0.1:80").unwrap().to_string(), "127.0.0.1:80");
        assert!(l("unix:a.sock").is_err() && l("unix:").is_err() && l("localhost").is_err());
        let u = |s: &str| s.parse::<UpstreamUrl>();
        assert_eq!(u("unix:/run/b.sock").unwrap().scheme(), None);
        assert_eq!(u("https://app:8443/base").unwrap().scheme(), Some("https"));
        for bad in [
            "unix:b.sock",
            "ftp://app",
            "http://app/?q=1",
            "/just/a/path",
            "http://",
        ] {
            assert!(u(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn algorithm_families() {
        let a = |s: &str| s.parse::<Algorithm>().unwrap();
        assert!(a("HS384").is_hmac() && !a("HS384").is_supported_asymmetric());
        assert!(a("EdDSA").is_supported_asymmetric());
        assert!("none".parse::<Algorithm>().is_err());
        assert_eq!(a("PS512").to_string(), "PS512");
    }
}
