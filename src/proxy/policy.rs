//! What a request needs before it may pass: path normalisation, the status
//! exemption, routes, and authorisation of a verified identity.

use std::borrow::Cow;

use http::Method;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::auth::Identity;
use crate::auth::claims::lookup;
use crate::config::{Config, RouteAuth, RouteConfig};
use crate::uri::query_pairs;

pub use crate::respond::Denied;
pub use crate::uri::{PathError, normalize_path};

/// A route, compiled from configuration.
#[derive(Debug)]
pub struct Route {
    index: usize,
    matcher: PathMatch,
    methods: Vec<Method>,
    pub auth: RouteAuth,
    pub allowed_users: Vec<String>,
    pub require_claims: Vec<(String, Value)>,
    pub require_scopes: Vec<String>,
    pub allow_cors_preflight: bool,
    /// `on_missing` of this route (`[login]`), when it says one.
    pub on_missing: Option<crate::config::login::OnMissing>,
}

#[derive(Debug)]
enum PathMatch {
    Exact(String),
    Prefix(String),
}

impl Route {
    /// `case_insensitive`: the matcher is kept lower-cased, and so is the
    /// path it is compared with (`Policy::route`).
    fn from_config(index: usize, c: &RouteConfig, case_insensitive: bool) -> Route {
        // Compared in the form requests are: normalised like a request path
        // (validation has refused one that cannot be), so that a route
        // written `/Admin/../x` or `/café` means what a request for it sends.
        let form = |p: &str| {
            let p = crate::uri::normalize_config_path(p).unwrap_or_else(|_| p.to_string());
            if case_insensitive {
                p.to_ascii_lowercase()
            } else {
                p
            }
        };
        Route {
            index,
            matcher: if c.path.is_empty() {
                PathMatch::Prefix(form(&c.prefix))
            } else {
                PathMatch::Exact(form(&c.path))
            },
            methods: c.methods.iter().map(|m| m.0.clone()).collect(),
            auth: c.auth.clone(),
            allowed_users: c.allowed_users.clone(),
            require_claims: c
                .require_claims
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            require_scopes: c.require_scopes.clone(),
            allow_cors_preflight: c.allow_cors_preflight,
            on_missing: c.on_missing,
        }
    }

    /// The path or prefix the route matches, in normal form (`http.route`
    /// in the access log, and what `verify-token --path` reports).
    pub fn pattern(&self) -> &str {
        match &self.matcher {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
        }
    }

    /// Where the route is in `[[routes]]`, for messages.
    pub fn index(&self) -> usize {
        self.index
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        let path_ok = match &self.matcher {
            PathMatch::Exact(p) => path == p,
            // A prefix matches whole segments: "/api" matches "/api" and
            // "/api/x" but not "/apix".
            PathMatch::Prefix(p) => {
                path.starts_with(p.as_str())
                    && (p.ends_with('/')
                        || path.len() == p.len()
                        || path.as_bytes()[p.len()] == b'/')
            }
        };
        path_ok && (self.methods.is_empty() || self.methods.contains(method))
    }
}

/// The access policy of one configuration generation.
#[derive(Debug)]
pub struct Policy {
    routes: Vec<Route>,
    allowed_users: Vec<String>,
    status_path: String,
    status_token: Option<Vec<u8>>,
    allow_cors_preflight: bool,
    case_insensitive: bool,
}

impl Policy {
    pub fn from_config(c: &Config) -> Policy {
        Policy {
            routes: c
                .routes
                .iter()
                .enumerate()
                .map(|(i, r)| Route::from_config(i, r, c.paths.case_insensitive))
                .collect(),
            allowed_users: c.auth.allowed_users.clone(),
            status_path: crate::uri::normalize_config_path(&c.status.path)
                .unwrap_or_else(|_| c.status.path.clone()),
            status_token: Some(c.status.token.expose().as_bytes().to_vec())
                .filter(|t| !t.is_empty()),
            allow_cors_preflight: c.auth.allow_cors_preflight,
            case_insensitive: c.paths.case_insensitive,
        }
    }

    /// The first route whose path and method match (`path` normalised).
    /// With `paths.case_insensitive`, for backends such as IIS that ignore
    /// case, `/ADMIN` takes the route written `/admin`.
    pub fn route(&self, method: &Method, path: &str) -> Option<&Route> {
        let path: Cow<'_, str> =
            if self.case_insensitive && path.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(path.to_ascii_lowercase())
            } else {
                Cow::Borrowed(path)
            };
        self.routes.iter().find(|r| r.matches(method, &path))
    }

    /// The status exemption: GET/HEAD on exactly the status path, with
    /// exactly one `token` parameter equal to `status.token`.
    pub fn status_exempt(&self, method: &Method, path: &str, query: Option<&str>) -> bool {
        let Some(expected) = &self.status_token else {
            return false;
        };
        if !(method == Method::GET || method == Method::HEAD) || path != self.status_path {
            return false;
        }
        let Some(q) = query else { return false };
        let mut given = query_pairs(q).filter(|(k, _)| k == "token").map(|(_, v)| v);
        let (Some(token), None) = (given.next(), given.next()) else {
            return false;
        };
        bool::from(token.as_bytes().ct_eq(expected))
    }

    /// A CORS preflight that may pass without a token: `OPTIONS` with
    /// `Origin` and `Access-Control-Request-Method`, allowed globally or by
    /// the route that the *requested* method would take (a route limited to
    /// `GET` still governs the preflight of its `GET`).
    pub fn cors_preflight_exempt(
        &self,
        method: &Method,
        headers: &http::HeaderMap,
        path: &str,
    ) -> bool {
        if method != Method::OPTIONS || !headers.contains_key(http::header::ORIGIN) {
            return false;
        }
        let Some(requested) = headers
            .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| Method::from_bytes(v.as_bytes()).ok())
        else {
            return false;
        };
        self.allow_cors_preflight
            || self
                .route(&requested, path)
                .is_some_and(|r| r.allow_cors_preflight)
    }

    /// May this verified identity use this route?
    pub fn authorize(&self, id: &Identity, route: Option<&Route>) -> Result<(), Denied> {
        if !self.allowed_users.is_empty() && !self.allowed_users.contains(&id.user) {
            return Err(Denied::UserNotAllowed);
        }
        let Some(route) = route else { return Ok(()) };
        if !route.allowed_users.is_empty() && !route.allowed_users.contains(&id.user) {
            return Err(Denied::UserNotAllowed);
        }
        for (name, want) in &route.require_claims {
            if !claim_matches(lookup(&id.claims, name), want) {
                return Err(Denied::MissingClaim(name.clone()));
            }
        }
        if !route.require_scopes.is_empty() {
            let granted: Vec<&str> = ["scope", "scp"]
                .iter()
                .filter_map(|c| id.claims.get(*c))
                .flat_map(|v| match v {
                    Value::String(s) => s.split(' ').collect::<Vec<_>>(),
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                })
                .collect();
            for s in &route.require_scopes {
                if !granted.contains(&s.as_str()) {
                    return Err(Denied::MissingScope(s.clone()));
                }
            }
        }
        Ok(())
    }
}

/// A claim equals the wanted value, or is an array containing it.
fn claim_matches(have: Option<&Value>, want: &Value) -> bool {
    match have {
        None => false,
        Some(v @ Value::Array(items)) => items.contains(want) || v == want,
        Some(v) => v == want,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflight_follows_the_route_of_the_requested_method() {
        let mut c = Config::default();
        c.routes.push(RouteConfig {
            prefix: "/api".into(),
            methods: vec!["GET".parse().unwrap()],
            allow_cors_preflight: true,
            ..Default::default()
        });
        let p = Policy::from_config(&c);
        let mut h = http::HeaderMap::new();
        h.insert(http::header::ORIGIN, "https://app".parse().unwrap());
        h.insert(
            http::header::ACCESS_CONTROL_REQUEST_METHOD,
            "GET".parse().unwrap(),
        );
        assert!(p.cors_preflight_exempt(&Method::OPTIONS, &h, "/api/x"));
        assert!(!p.cors_preflight_exempt(&Method::GET, &h, "/api/x"));
        assert!(!p.cors_preflight_exempt(&Method::OPTIONS, &h, "/other"));
        h.insert(
            http::header::ACCESS_CONTROL_REQUEST_METHOD,
            "DELETE".parse().unwrap(),
        );
        assert!(!p.cors_preflight_exempt(&Method::OPTIONS, &h, "/api/x"));
    }

    #[test]
    fn prefix_on_segment_boundary() {
        let r = Route::from_config(
            0,
            &RouteConfig {
                prefix: "/api".into(),
                ..Default::default()
            },
            false,
        );
        assert!(r.matches(&Method::GET, "/api"));
        assert!(r.matches(&Method::GET, "/api/x"));
        assert!(!r.matches(&Method::GET, "/apix"));
    }
}
