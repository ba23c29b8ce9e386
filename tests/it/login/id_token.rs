//! The callback's checks (issue, rule 4), against the scripted provider,
//! which records what the gate asks and answers what the test scripts:
//! PKCE S256, nonce and state on every authorization request; the code
//! redeemed with its verifier and the client's credentials; state, then
//! `iss` (RFC 9207), checked before the code is redeemed; every ID token
//! that fails a check (aud, azp, nonce, iss, exp, iat, signature, alg)
//! refused with a 400 that tells nothing, and counted by reason.

use reqwest::Url;
use serde_json::{Value, json};

use crate::support::idp::{Idp, StandaloneKey};
use crate::support::oidc::*;
use crate::support::*;

use super::common::*;

/// Starts a flow and drives the scripted provider: the callback URL the
/// browser is sent back to (not requested yet).
async fn pending(b: &mut Agent, site: &Site, rd: &str) -> Url {
    let begin = b.begin(&site.external, Some(rd)).await;
    assert_eq!(begin.status, 302, "{}", begin.describe());
    b.authorize(&begin.location().unwrap(), ALICE, "").await
}

fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_authorization_request_has_pkce_s256_a_nonce_and_a_state() {
    let (op, site) = scripted(true, Opts::new()).await;
    let mut b = Agent::new();
    let s1 = b.sign_in(&site.external, "/one", ALICE, "").await;
    assert_landed(&s1, &site.external, "/one", "first sign-in");
    let s2 = b.sign_in(&site.external, "/two", ALICE, "").await;
    assert_landed(&s2, &site.external, "/two", "second sign-in");
    assert!(
        s1.authorize
            .as_str()
            .starts_with(&op.authorization_endpoint()),
        "{}",
        s1.authorize
    );

    let auths = op.auth_requests();
    let tokens = op.token_requests();
    assert_eq!((auths.len(), tokens.len()), (2, 2), "{auths:?}\n{tokens:?}");
    for (a, t) in auths.iter().zip(&tokens) {
        assert_eq!(a.param("response_type").as_deref(), Some("code"), "{a:?}");
        assert_eq!(a.param("client_id").as_deref(), Some(CLIENT_ID), "{a:?}");
        assert_eq!(
            a.param("redirect_uri"),
            Some(site.url("/.jwtgate/callback")),
            "{a:?}"
        );
        let scopes: Vec<String> = a
            .param("scope")
            .unwrap_or_default()
            .split(' ')
            .map(str::to_string)
            .collect();
        for want in ["openid", "profile", "email"] {
            assert!(
                scopes.iter().any(|s| s == want),
                "scope {want} missing: {a:?}"
            );
        }
        assert_eq!(
            a.param("code_challenge_method").as_deref(),
            Some("S256"),
            "{a:?}"
        );
        let challenge = a.param("code_challenge").unwrap_or_default();
        assert!(
            challenge.len() == 43 && is_b64url(&challenge),
            "code_challenge {challenge:?}"
        );
        for k in ["state", "nonce"] {
            let v = a.param(k).unwrap_or_default();
            assert!(v.len() >= 16, "{k} {v:?} is too short to be unguessable");
        }

        // The token request: the code, the same redirect_uri, the verifier,
        // the client's credentials.
        assert_eq!(t.param("grant_type").as_deref(), Some("authorization_code"));
        assert_eq!(t.param("code"), Some(a.code.clone()));
        assert_eq!(t.param("redirect_uri"), a.param("redirect_uri"));
        let verifier = t.param("code_verifier").unwrap_or_default();
        assert!(
            (43..=128).contains(&verifier.len())
                && verifier
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-._~".contains(&c)),
            "code_verifier {verifier:?} (RFC 7636 §4.1)"
        );
        assert_eq!(s256(&verifier), challenge, "the verifier does not match");
        assert_eq!(
            t.client_credentials(),
            Some((CLIENT_ID.to_string(), CLIENT_SECRET.to_string()))
        );
        assert_eq!(t.status, 200);

        // The verifier stays with the gate: never in a header it sent the browser.
        for s in [&s1, &s2] {
            for (n, v) in s.begin.headers.iter().chain(&s.done.headers) {
                assert!(
                    !v.contains(&verifier),
                    "the verifier is readable in {n}: {v}"
                );
            }
        }
    }
    // Fresh values per flow.
    for k in ["state", "nonce", "code_challenge"] {
        assert_ne!(auths[0].param(k), auths[1].param(k), "{k} repeats");
    }
}

/// A correct ID token's claims with `change` applied (null removes a claim).
fn claims_with(idp: &Idp, req: &AuthRequest, change: &Value) -> Value {
    let mut c = ScriptedOp::good_claims(idp, req);
    for (k, v) in change.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

type Case = (&'static str, IdTokenFn);

/// An ID token signed with the provider's key, with claims changed.
fn signed(what: &'static str, change: Value) -> Case {
    (
        what,
        Box::new(move |idp: &Idp, req: &AuthRequest| {
            idp.sign("k1", &claims_with(idp, req, &change))
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_failing_any_check_are_refused_without_detail() {
    let (op, site) = scripted(true, Opts::new()).await;
    let mut b = Agent::new();
    let t = now();
    let impostor = StandaloneKey::new("k1", "RS256");
    let mut cases: Vec<Case> = vec![
        signed("aud is another client", json!({"aud": "someone-else"})),
        signed(
            "aud is a list without the client",
            json!({"aud": ["someone-else", "api"]}),
        ),
        signed("azp is another client", json!({"azp": "someone-else"})),
        signed(
            "aud lists the client but azp names another",
            json!({"aud": [CLIENT_ID, "someone-else"], "azp": "someone-else"}),
        ),
        signed(
            "nonce of another flow",
            json!({"nonce": "not-the-nonce-0123456789"}),
        ),
        signed("no nonce", json!({"nonce": null})),
        signed(
            "iss of another provider",
            json!({"iss": "http://127.0.0.1:1"}),
        ),
        signed(
            "expired",
            json!({"iat": t - 900, "exp": t - 600, "auth_time": t - 900}),
        ),
        signed(
            "iat an hour ahead",
            json!({"iat": t + 3600, "exp": t + 3900}),
        ),
        signed("no exp", json!({"exp": null})),
        signed("no sub", json!({"sub": null})),
        (
            "signed with another key under the same kid",
            Box::new(move |idp: &Idp, req: &AuthRequest| {
                impostor.sign(&json!({}), &ScriptedOp::good_claims(idp, req))
            }),
        ),
        (
            "alg none",
            Box::new(|idp: &Idp, req: &AuthRequest| {
                craft(
                    &json!({"alg": "none", "typ": "JWT"}),
                    &ScriptedOp::good_claims(idp, req),
                    "",
                )
            }),
        ),
        (
            "HS256 with the client secret as the key",
            Box::new(|idp: &Idp, req: &AuthRequest| {
                sign_hmac_with(
                    "HS256",
                    CLIENT_SECRET.as_bytes(),
                    &json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}),
                    &ScriptedOp::good_claims(idp, req),
                )
            }),
        ),
        (
            "the signature of another token",
            Box::new(|idp: &Idp, req: &AuthRequest| {
                let good = idp.sign("k1", &ScriptedOp::good_claims(idp, req));
                let other = idp.sign("k1", &claims_with(idp, req, &json!({"sub": "mallory"})));
                let sig = good.rsplit('.').next().unwrap().to_string();
                let (head, _) = other.rsplit_once('.').unwrap();
                format!("{head}.{sig}")
            }),
        ),
        (
            "not a JWT",
            Box::new(|_: &Idp, _: &AuthRequest| "not-a-jwt".to_string()),
        ),
        (
            "no id_token in the token response",
            Box::new(|_: &Idp, _: &AuthRequest| String::new()),
        ),
    ];

    // A good sign-in first: the gate works, so the refusals below are the checks.
    let s = b.sign_in(&site.external, "/before", ALICE, "").await;
    assert_landed(&s, &site.external, "/before", "a correct ID token");

    let mut failures = Vec::new();
    for (what, make) in cases.drain(..) {
        op.set_id_token(make);
        let redeemed = op.token_requests().len();
        let cb = pending(&mut b, &site, "/after").await;
        let page = b.callback(cb.as_str()).await;
        if op.token_requests().len() != redeemed + 1 {
            failures.push(format!("{what}: the code was not redeemed once"));
        }
        if page.status != 400 || page.sets_live_cookie(SESSION_COOKIE) {
            failures.push(format!("{what}: accepted?\n{}", page.describe()));
            continue;
        }
        let lower = page.body.to_ascii_lowercase();
        if ["nonce", "audience", "azp", "signature", "expired", "kid"]
            .iter()
            .any(|w| lower.contains(w))
        {
            failures.push(format!("{what}: the 400 page tells why:\n{}", page.body));
        }
    }
    op.reset_id_token();

    // The token endpoint failing.
    for (what, answer) in [
        ("invalid_grant", (400, json!({"error": "invalid_grant"}))),
        ("a 500", (500, json!({"error": "server_error"}))),
        ("200 without tokens", (200, json!({"token_type": "Bearer"}))),
    ] {
        op.set_token_answer(Some(answer));
        let cb = pending(&mut b, &site, "/after").await;
        let page = b.callback(cb.as_str()).await;
        if page.status != 400 || page.sets_live_cookie(SESSION_COOKIE) {
            failures.push(format!(
                "token endpoint {what}: accepted?\n{}",
                page.describe()
            ));
        }
    }
    op.set_token_answer(None);
    assert!(
        failures.is_empty(),
        "{} checks failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );

    // And a good one still works.
    let s = b.sign_in(&site.external, "/end", ALICE, "").await;
    assert_landed(
        &s,
        &site.external,
        "/end",
        "a correct ID token after the refusals",
    );

    // Counted, with the reason as a label.
    let m = site.metrics().await;
    let (ok, failed) = site.logins().await;
    assert_eq!(ok, 2.0, "{m}");
    assert!(failed >= 20.0, "{failed} failures counted:\n{m}");
    let reasons: Vec<String> = label_values(&m, "jwtgate_login_total", "result")
        .into_iter()
        .filter(|r| r != "ok")
        .collect();
    assert!(
        reasons.len() >= 2,
        "an ID token refused and a token endpoint failure share one result label ({reasons:?}):\n{m}"
    );
}

/// A change made to a callback URL.
type UrlEdit = Box<dyn Fn(&Url) -> Url>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_then_iss_are_checked_before_the_code_is_redeemed() {
    let (op, site) = scripted(true, Opts::new()).await;
    let mut b = Agent::new();
    let edits: Vec<(&str, UrlEdit)> = vec![
        ("no state", Box::new(|u: &Url| with_param(u, "state", None))),
        (
            "another state",
            Box::new(|u: &Url| with_param(u, "state", Some("bm90LXRoZS1zdGF0ZS1vZi10aGlzLWZsb3c"))),
        ),
        ("no iss", Box::new(|u: &Url| with_param(u, "iss", None))),
        (
            "iss of another provider",
            Box::new(|u: &Url| with_param(u, "iss", Some("http://127.0.0.1:1"))),
        ),
        (
            "iss with a trailing slash",
            Box::new(|u: &Url| {
                let iss = query_param(u, "iss").unwrap();
                with_param(u, "iss", Some(&format!("{iss}/")))
            }),
        ),
        (
            "iss in another case",
            Box::new(|u: &Url| {
                let iss = query_param(u, "iss").unwrap().to_uppercase();
                with_param(u, "iss", Some(&iss))
            }),
        ),
        (
            "an error from the provider",
            Box::new(|u: &Url| {
                let u = with_param(u, "code", None);
                with_param(&u, "error", Some("access_denied"))
            }),
        ),
    ];
    let mut failures = Vec::new();
    for (what, edit) in &edits {
        let cb = pending(&mut b, &site, "/x").await;
        let before = op.token_requests().len();
        let page = b.callback(edit(&cb).as_str()).await;
        if page.status != 400 || page.sets_live_cookie(SESSION_COOKIE) {
            failures.push(format!("{what}: not refused:\n{}", page.describe()));
        }
        if op.token_requests().len() != before {
            failures.push(format!("{what}: the code was redeemed before the check"));
        }
    }
    // Without the flow cookie (another browser), nothing is redeemed either.
    let cb = pending(&mut b, &site, "/x").await;
    let before = op.token_requests().len();
    let page = Agent::new().callback(cb.as_str()).await;
    if page.status != 400 || op.token_requests().len() != before {
        failures.push(format!(
            "no flow cookie: {} redeemed or accepted",
            page.status
        ));
    }
    // No code at all.
    let cb = pending(&mut b, &site, "/x").await;
    let page = b.callback(with_param(&cb, "code", None).as_str()).await;
    if page.status != 400 {
        failures.push(format!("no code: {}", page.status));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // The untouched callback of a new flow works.
    let cb = pending(&mut b, &site, "/x").await;
    let page = b.callback(cb.as_str()).await;
    assert_eq!(page.status, 302, "{}", page.describe());
    assert!(page.sets_live_cookie(SESSION_COOKIE), "{}", page.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iss_is_not_required_when_the_provider_does_not_advertise_it() {
    let (op, site) = scripted(false, Opts::new()).await;
    let mut b = Agent::new();
    let s = b.sign_in(&site.external, "/p", ALICE, "").await;
    assert!(query_param(&s.callback, "iss").is_none(), "{}", s.callback);
    assert_landed(&s, &site.external, "/p", "no iss, none advertised");
    // When it comes anyway, it must be the issuer.
    op.set_send_iss(true);
    let cb = pending(&mut b, &site, "/q").await;
    let page = b
        .callback(with_param(&cb, "iss", Some("http://127.0.0.1:1")).as_str())
        .await;
    assert_refused(&page, "a wrong iss the provider never advertised");
}
