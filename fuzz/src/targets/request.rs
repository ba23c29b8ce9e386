//! A whole request through the decision phases (normalise, route, status /
//! public / preflight exemptions, bearer extraction, verification,
//! authorisation) of `gate::decide` with the fixture's state; the upstream
//! is never reached.
//!
//! Input: text lines. The first line is `METHOD TARGET`; the others are
//! `name: value` headers (lines that are not valid are dropped). In the
//! target and the header values, `$0` .. `$7` are replaced by fixed tokens
//! signed with the fixture's keys (see `TOKENS`), so that valid tokens of
//! several users, algorithms and claims are reachable.
//!
//! Invariants: each kind of allow has its reason (status token, public
//! route, CORS preflight, verified and authorised token); the decision
//! equals composing the phases one by one, and a refusal is the one the
//! first failing phase gives (its reason, status and code; the user only
//! for a refusal by policy); the forwarded query carries neither the status
//! token nor any parameter that may carry a JWT (whatever the allow), and
//! keeps every other parameter in order; the token source is reported only
//! for a token allow; an allowed request can be forwarded
//! (`Upstream::uri_for`) under the upstream's base path.

use std::sync::{Arc, OnceLock};

use crate::{AUDIENCE, FAR_EXP, ISS, STATUS_TOKEN, runtime, token};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use jsonwebtoken::Algorithm;
use jwtgate::auth::VerifyError;
use jwtgate::auth::bearer::{self, TokenSource};
use jwtgate::config::RouteAuth;
use jwtgate::proxy::gate::{Allow, Denial, decide};
use jwtgate::proxy::state::Shared;
use jwtgate::respond::GateError;
use jwtgate::uri::{normalize_path, query_pairs, strip_query_params};
use serde_json::json;

struct Fixture {
    shared: Arc<Shared>,
    tokens: Vec<String>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut cfg = crate::config(0);
        cfg.upstream.url = "http://127.0.0.1:9/base/".parse().expect("upstream URL");
        let tokens = vec![
            token(
                Algorithm::HS256,
                &json!({"sub": "alice", "exp": FAR_EXP, "scope": "read write", "role": "admin"}),
            ),
            token(Algorithm::HS256, &json!({"sub": "bob", "exp": FAR_EXP})),
            token(
                Algorithm::RS256,
                &json!({"iss": ISS, "aud": AUDIENCE, "sub": "alice", "exp": FAR_EXP, "scp": ["read"]}),
            ),
            token(
                Algorithm::ES256,
                &json!({"iss": ISS, "aud": [AUDIENCE, "x"], "user": "carol", "exp": FAR_EXP, "role": ["user", "admin"]}),
            ),
            // Expired.
            token(Algorithm::HS256, &json!({"sub": "alice", "exp": 1_000_000_000})),
            // Right key, issuer not trusted for HS.
            token(Algorithm::HS256, &json!({"iss": ISS, "sub": "alice", "exp": FAR_EXP})),
            token(
                Algorithm::PS256,
                &json!({"iss": ISS, "aud": AUDIENCE, "login": "dave", "exp": FAR_EXP, "scope": "read"}),
            ),
            token(Algorithm::HS384, &json!({"sub": "erin", "exp": FAR_EXP, "nbf": 0})),
        ];
        Fixture {
            shared: crate::shared(cfg),
            tokens,
        }
    })
}

fn expand(s: &[u8], tokens: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'$'
            && let Some(d) = s.get(i + 1).filter(|d| (b'0'..b'8').contains(d))
        {
            out.extend_from_slice(tokens[(d - b'0') as usize].as_bytes());
            i += 2;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

pub fn run(data: &[u8]) {
    let f = fixture();
    let mut lines = data.split(|&b| b == b'\n');
    let Some(first) = lines.next() else { return };
    let first = expand(first, &f.tokens);
    let Some(sp) = first.iter().position(|&b| b == b' ') else {
        return;
    };
    let Ok(method) = Method::from_bytes(&first[..sp]) else {
        return;
    };
    let Ok(uri) = Uri::try_from(&first[sp + 1..]) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = expand(&line[colon + 1..], &f.tokens);
        let value = value.strip_prefix(b" ").unwrap_or(&value);
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(n, v);
        }
    }

    // As gate::run does.
    let Ok(path) = normalize_path(uri.path()) else {
        return;
    };
    let query = uri.query();
    let state = f.shared.current();
    let rt = runtime();
    let route = state.policy.route(&method, &path);
    let result = rt.block_on(decide(&state, &method, &headers, &path, query, route));

    // The phases one by one.
    let status = state.policy.status_exempt(&method, &path, query);
    let public = route.is_some_and(|r| r.auth == RouteAuth::None);
    let preflight = state.policy.cors_preflight_exempt(&method, &headers, &path);
    let extracted = bearer::extract(&headers, query, &state.config.auth.token_from);
    let verified = match &extracted {
        Ok(Some(found)) => Some(rt.block_on(state.verifier.verify(&found.token))),
        _ => None,
    };
    let authorized = match &verified {
        Some(Ok(id)) => Some(state.policy.authorize(id, route)),
        _ => None,
    };
    let expected = if status {
        Some(Allow::Status)
    } else if public {
        Some(Allow::Public)
    } else if preflight {
        Some(Allow::Preflight)
    } else {
        match &authorized {
            Some(Ok(())) => Some(Allow::Token),
            _ => None,
        }
    };
    match &result {
        Ok(d) => assert_eq!(Some(d.allow), expected),
        Err(d) => assert_eq!(None, expected, "denied: {}", d.error.reason()),
    }
    // Every parameter that may carry a token (and, for the status
    // exemption, the status token) is removed, whatever the allow.
    let token_params: Vec<&str> = state
        .config
        .auth
        .token_from
        .iter()
        .filter_map(|s| match s {
            TokenSource::Query(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    assert!(token_params.contains(&"access_token"));

    let decision = match result {
        Ok(d) => d,
        Err(Denial { error, user }) => {
            // The refusal is the first failing phase's.
            match (&extracted, &verified, &authorized) {
                (Err(e), _, _) => {
                    assert!(
                        matches!(&error, GateError::Extract(x) if x == e),
                        "{error:?}"
                    );
                    assert!(user.is_none());
                }
                (Ok(None), _, _) => {
                    assert!(matches!(error, GateError::NoToken), "{error:?}");
                    assert_eq!(error.reason(), "no_token");
                    assert_eq!(error.status(), http::StatusCode::UNAUTHORIZED);
                    assert!(user.is_none());
                }
                (Ok(Some(_)), Some(Err(v)), _) => {
                    assert!(matches!(&error, GateError::Verify(_)), "{error:?}");
                    assert_eq!(error.reason(), v.reason());
                    if matches!(
                        v,
                        VerifyError::KeysUnavailable { .. } | VerifyError::RevocationsStale { .. }
                    ) {
                        assert_eq!(error.status(), http::StatusCode::SERVICE_UNAVAILABLE);
                    } else {
                        assert_eq!(error.status(), http::StatusCode::UNAUTHORIZED);
                        assert_eq!(error.code(), "invalid_token");
                    }
                    assert!(user.is_none());
                }
                (Ok(Some(_)), Some(Ok(id)), Some(Err(denied))) => {
                    assert!(
                        matches!(&error, GateError::Policy(d) if d == denied),
                        "{error:?}"
                    );
                    assert_eq!(error.status(), http::StatusCode::FORBIDDEN);
                    assert_eq!(user.as_deref(), Some(id.user.as_str()));
                }
                other => panic!("refused ({error:?}) although every phase passed: {other:?}"),
            }
            return;
        }
    };
    let stripped = |extra: Option<&str>| {
        let mut names = token_params.clone();
        names.extend(extra);
        query.and_then(|q| strip_query_params(q, &names))
    };
    match decision.allow {
        Allow::Status => {
            assert!(method == Method::GET || method == Method::HEAD);
            assert_eq!(&*path, "/status");
            let tokens: Vec<_> = query_pairs(query.unwrap())
                .filter(|(k, _)| k == "token")
                .collect();
            assert_eq!(tokens.len(), 1);
            assert_eq!(tokens[0].1, STATUS_TOKEN);
            assert!(decision.identity.is_none());
            assert!(decision.token_source.is_none());
            assert_eq!(decision.query, stripped(Some("token")));
        }
        Allow::Public => {
            assert!(decision.identity.is_none());
            assert!(decision.token_source.is_none());
            assert_eq!(decision.query, stripped(None));
        }
        Allow::Preflight => {
            assert_eq!(method, Method::OPTIONS);
            assert!(headers.contains_key(http::header::ORIGIN));
            assert!(headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD));
            assert!(decision.identity.is_none());
            assert!(decision.token_source.is_none());
            assert_eq!(decision.query, stripped(None));
        }
        Allow::Token => {
            let id = decision.identity.as_ref().expect("identity");
            let found = extracted.unwrap().unwrap();
            assert_eq!(verified.unwrap().unwrap().user, id.user);
            if path == "/admin" && (method == Method::GET || method == Method::POST) {
                assert_eq!(id.user, "alice", "admin route let another user through");
            }
            assert_eq!(decision.token_source.as_ref(), Some(&found.source));
            assert_eq!(decision.query, stripped(None));
        }
        Allow::Issuer => panic!("the issuer is off"),
        Allow::Session | Allow::Login => panic!("[login] is off"),
    }
    // Nothing secret is forwarded in the query; everything else is, in order.
    if let Some(q) = &decision.query {
        for (k, _) in query_pairs(q) {
            if matches!(decision.allow, Allow::Status) {
                assert_ne!(k, "token", "status token forwarded");
            }
            assert!(!token_params.contains(&k.as_str()), "query token forwarded");
        }
    }
    let kept = |q: Option<&str>| -> Vec<(String, String)> {
        q.map(|q| query_pairs(q).collect()).unwrap_or_default()
    };
    let expected_pairs: Vec<_> = kept(query)
        .into_iter()
        .filter(|(k, _)| {
            let dropped = token_params.contains(&k.as_str())
                || (matches!(decision.allow, Allow::Status) && k == "token");
            !dropped
        })
        .collect();
    assert_eq!(kept(decision.query.as_deref()), expected_pairs);
    // An allowed request can be forwarded, under the base path.
    let up = state
        .upstream
        .uri_for(&path, decision.query.as_deref())
        .expect("an allowed request must be forwardable");
    assert_eq!(up.path(), format!("/base{path}"));
    assert_eq!(up.query(), decision.query.as_deref());
}
