//! The sign-in endpoints under `/.jwtgate/` (no route may claim them):
//! `GET /.jwtgate/login?rd=PATH` starts a sign-in, `GET /.jwtgate/callback`
//! ends it, `GET /.jwtgate/logout` shows a sign-out form that `POST
//! /.jwtgate/logout` acts on, and `GET /.jwtgate/session` tells page
//! scripts who is signed in. Every refusal is a `GateError` answered by
//! `respond`, as a small page (`Style::Page`) or JSON for `session`.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, ORIGIN, REFERER, REFERRER_POLICY, SET_COOKIE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;
use tracing::{info, warn};

use super::Login;
use super::flow::{self, CallbackParams, Flow};
use super::session::{self, Record, Session};
use crate::auth::Verifier;
use crate::auth::claims::now;
use crate::respond::{GateError, LoginRefusal, Style, json_response, page_response, respond};

/// An endpoint's answer, and the reason label of a refusal (metrics, log).
pub struct Answer {
    pub response: Response<Full<Bytes>>,
    pub reason: &'static str,
}

/// The paths of the sign-in endpoints (whatever the method and provider).
pub const PATHS: &[&str] = &[
    "/.jwtgate/login",
    "/.jwtgate/callback",
    "/.jwtgate/logout",
    "/.jwtgate/session",
    "/.jwtgate/backchannel-logout",
];

/// Is `path` (normalised) one of the sign-in endpoints?
pub fn is_endpoint(path: &str) -> bool {
    PATHS.contains(&path)
}

fn refusal(status: StatusCode, reason: &'static str) -> GateError {
    GateError::Login(LoginRefusal { status, reason })
}

impl Login {
    /// Answers a request for `path` (normalised, under `/.jwtgate/`), from
    /// `client` (the address the failure limits count).
    pub async fn handle(
        &self,
        verifier: &Verifier,
        path: &str,
        query: Option<&str>,
        req: Request<Incoming>,
        client: IpAddr,
    ) -> Answer {
        let method = req.method();
        let headers = req.headers();
        let get = *method == Method::GET || *method == Method::HEAD;
        let post = *method == Method::POST;
        let builtin = self.is_builtin();
        if path == "/.jwtgate/backchannel-logout" && post && !builtin {
            return self.backchannel_logout(verifier, req).await.with_no_store();
        }
        if path == "/.jwtgate/login"
            && post
            && let Some(page) = &self.builtin
        {
            return Answer {
                response: self.builtin_sign_in(page, req, client).await,
                reason: "login_endpoint",
            }
            .with_no_store();
        }
        let result = match path {
            "/.jwtgate/callback" | "/.jwtgate/backchannel-logout" if builtin => {
                Err(refused(StatusCode::NOT_FOUND, "not_found"))
            }
            "/.jwtgate/login" if get && builtin => match &self.builtin {
                Some(page) => Ok(self.builtin_form(page, query, headers)),
                None => Err(refused(StatusCode::SERVICE_UNAVAILABLE, "no_page")),
            },
            "/.jwtgate/login" if get => self.start(verifier, query, headers).await,
            "/.jwtgate/callback" if get => self.callback(verifier, query, headers).await,
            "/.jwtgate/logout" if get => Ok(self.logout_page(verifier).await),
            "/.jwtgate/logout" if *method == Method::POST => self.logout(verifier, headers).await,
            "/.jwtgate/session" if get => {
                return self.session_json(verifier, headers).await;
            }
            "/.jwtgate/login"
            | "/.jwtgate/callback"
            | "/.jwtgate/session"
            | "/.jwtgate/logout"
            | "/.jwtgate/backchannel-logout" => Err(refused(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            )),
            _ => Err(refused(StatusCode::NOT_FOUND, "not_found")),
        };
        match result {
            Ok(response) => Answer {
                response,
                reason: "login_endpoint",
            },
            Err((err, cookies)) => {
                let mut response = respond(&err, Style::Page, "");
                for c in cookies {
                    response.headers_mut().append(SET_COOKIE, c);
                }
                Answer {
                    reason: err.reason(),
                    response,
                }
            }
        }
        .with_no_store()
    }

    /// `GET /.jwtgate/login?rd=...`: a new flow, and off to the provider.
    async fn start(
        &self,
        verifier: &Verifier,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Response<Full<Bytes>>, Refused> {
        let rd = query
            .into_iter()
            .flat_map(|q| url::form_urlencoded::parse(q.as_bytes()))
            .find(|(k, _)| k == "rd")
            .map(|(_, v)| v.into_owned());
        let return_to = rd
            .as_deref()
            .and_then(|rd| self.returns.check(rd))
            .unwrap_or_else(|| "/".into());
        let endpoints = verifier
            .provider_endpoints(&self.cfg.issuer)
            .await
            .map_err(|e| {
                warn!("sign-in: the provider's endpoints are unavailable: {e}");
                refused(StatusCode::SERVICE_UNAVAILABLE, "provider_unavailable")
            })?;
        let flow = flow::new_flow(return_to)
            .map_err(|_| refused(StatusCode::INTERNAL_SERVER_ERROR, "random_failed"))?;
        let name = flow::cookie_name(&self.flow_prefix, &flow.state)
            .ok_or(refused(StatusCode::INTERNAL_SERVER_ERROR, "state_name"))?;
        let sealed = serde_json::to_vec(&flow)
            .ok()
            .and_then(|plain| self.keys.seal(name.as_bytes(), &plain).ok())
            .ok_or(refused(StatusCode::INTERNAL_SERVER_ERROR, "seal_failed"))?;
        let mut cookies = self.expire_old_flows(headers);
        cookies.extend(
            super::jar::set_cookie_headers(&name, &sealed, Some(flow::FLOW_MAX_AGE))
                .map_err(|_| refused(StatusCode::INTERNAL_SERVER_ERROR, "cookie_failed"))?,
        );
        let location = flow::authorization_url(
            &endpoints.authorization_endpoint,
            &self.cfg.client_id,
            &self.redirect_uri,
            &self.cfg.scopes,
            &flow,
        );
        Ok(redirect(StatusCode::FOUND, &location, cookies))
    }

    /// Set-Cookie headers expiring the oldest flows of this browser, so
    /// that at most `MAX_FLOWS` are kept with the new one.
    fn expire_old_flows(&self, headers: &HeaderMap) -> Vec<HeaderValue> {
        let names = flow::flow_cookies(headers, &self.flow_prefix);
        if names.len() < flow::MAX_FLOWS {
            return Vec::new();
        }
        let mut dated: Vec<(u64, String)> = names
            .into_iter()
            .map(|n| {
                let started = super::jar::read(headers, &n)
                    .and_then(|v| self.keys.open(n.as_bytes(), &v))
                    .and_then(|p| serde_json::from_slice::<Flow>(&p).ok())
                    .map_or(0, |f| f.started_ms);
                (started, n)
            })
            .collect();
        dated.sort();
        let drop = dated.len() + 1 - flow::MAX_FLOWS;
        dated
            .iter()
            .take(drop)
            .filter_map(|(_, n)| super::jar::clear_cookie_headers(n).ok())
            .flatten()
            .collect()
    }

    /// `GET /.jwtgate/callback`: the checks in their order, then a session.
    async fn callback(
        &self,
        verifier: &Verifier,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Response<Full<Bytes>>, Refused> {
        let outcome = self.callback_checked(verifier, query, headers).await;
        let result = match &outcome {
            Ok(_) => "ok",
            Err((GateError::Login(r), _)) => r.reason,
            Err(_) => "error",
        };
        self.count_login(result);
        if result != "ok" {
            warn!(result, "sign-in refused");
        }
        outcome
    }

    async fn callback_checked(
        &self,
        verifier: &Verifier,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Response<Full<Bytes>>, Refused> {
        let p = CallbackParams::parse(query);
        if p.repeated {
            return Err(bad("repeated_parameter", Vec::new()));
        }
        let state = p
            .state
            .as_deref()
            .ok_or(bad("state_mismatch", Vec::new()))?;
        // 1. The flow cookie of this state; used once, whatever follows.
        let (flow, name) = flow::matching_flow(&self.keys, headers, &self.flow_prefix, state)
            .map_err(|r| {
                let clear = flow::cookie_name(&self.flow_prefix, state)
                    .and_then(|n| super::jar::clear_cookie_headers(&n).ok())
                    .unwrap_or_default();
                (GateError::Login(r), clear)
            })?;
        let spent = super::jar::clear_cookie_headers(&name).unwrap_or_default();
        let fail = |reason: &'static str| bad(reason, spent.clone());
        if let Some(e) = &p.error {
            let e: String = e.chars().filter(char::is_ascii_graphic).take(64).collect();
            info!(error = %e, "sign-in: the provider answered with an error");
            return Err(fail("provider_error"));
        }
        let endpoints = verifier
            .provider_endpoints(&self.cfg.issuer)
            .await
            .map_err(|_| {
                (
                    refusal(StatusCode::SERVICE_UNAVAILABLE, "provider_unavailable"),
                    spent.clone(),
                )
            })?;
        // 2. RFC 9207: which provider answered.
        flow::check_iss(
            p.iss.as_deref(),
            &self.cfg.issuer,
            endpoints.iss_parameter_supported,
        )
        .map_err(|r| (GateError::Login(r), spent.clone()))?;
        // 3. The code, redeemed with the flow's PKCE verifier.
        let code = p.code.as_deref().ok_or(fail("no_code"))?;
        let tokens = self
            .tokens
            .redeem(
                &endpoints.token_endpoint,
                code,
                &self.redirect_uri,
                &flow.verifier,
            )
            .await
            .map_err(|e| {
                info!("sign-in: the code was not redeemed: {e}");
                fail("code_redeem_failed")
            })?;
        // 4. The ID token: this issuer's keys, for this client, this flow.
        let id_token = tokens.id_token.as_deref().ok_or(fail("no_id_token"))?;
        let id = verifier
            .verify_id_token(id_token, &self.cfg.issuer, &self.cfg.client_id)
            .await
            .map_err(|e| {
                info!("sign-in: ID token refused: {e}");
                fail("id_token_invalid")
            })?;
        flow::check_id_token_claims(&id.claims, &self.cfg.client_id, &flow.nonce, self.leeway)
            .map_err(|r| (GateError::Login(r), spent.clone()))?;
        // A new session id at every sign-in: no fixation.
        let sid = crate::random::token(16).map_err(|_| fail("random_failed"))?;
        let now = now();
        let access_exp = now
            + tokens
                .expires_in
                .unwrap_or(id.exp.saturating_sub(now))
                .max(1);
        let s = Session::new(
            sid.clone(),
            &id,
            tokens.scope.as_deref(),
            access_exp,
            tokens.refresh_token.is_some(),
            now,
        );
        let record = Record {
            refresh_token: tokens.refresh_token,
            id_token: id_token.to_owned(),
            access_token: tokens.access_token,
            access_exp,
            obtained: now,
            generation: 0,
        };
        self.remember_access_token(&sid, &record.access_token);
        match (&self.store, self.seal_record(&sid, &record)) {
            (Some(store), Some(sealed)) => {
                if let Err(e) = store
                    .put_record(&session::record_key(&sid), sealed, self.record_ttl(&s))
                    .await
                {
                    warn!(
                        "sign-in: the session's tokens could not be stored ({e}); it ends with its access token"
                    );
                }
            }
            _ => warn!("sign-in: no store for the session's tokens; it ends with its access token"),
        }
        let mut cookies = self.seal_session(&s);
        if cookies.is_empty() {
            return Err(fail("session_too_large"));
        }
        cookies.extend(spent.iter().cloned());
        info!(user = %s.user, "signed in");
        let location = if flow.return_to.starts_with('/') {
            self.location(&flow.return_to)
        } else {
            flow.return_to.clone()
        };
        Ok(redirect(StatusCode::FOUND, &location, cookies))
    }

    /// `GET /.jwtgate/logout`: a confirmation form; signs nobody out.
    /// The page sends its origin with the POST (`Referrer-Policy:
    /// same-origin`: with `no-referrer` a browser sends `Origin: null`),
    /// and its `form-action` allows the provider's sign-out page, which the
    /// POST redirects to (browsers apply `form-action` to redirects too).
    async fn logout_page(&self, verifier: &Verifier) -> Response<Full<Bytes>> {
        let provider = match self.is_builtin() {
            true => None,
            false => verifier.provider_endpoints(&self.cfg.issuer).await.ok(),
        }
        .and_then(|e| e.end_session_endpoint.as_deref().and_then(origin_of));
        let mut resp = page_response(
            StatusCode::OK,
            "<!doctype html>\n<meta charset=\"utf-8\">\n<title>Sign out</title>\n\
             <form method=\"post\" action=\"/.jwtgate/logout\">\n\
             <p>Sign out?</p>\n<button type=\"submit\" id=\"signout\">Sign out</button>\n\
             </form>\n"
                .to_owned(),
        );
        let csp = format!(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'{}; frame-ancestors 'none'",
            provider.map(|o| format!(" {o}")).unwrap_or_default()
        );
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&csp) {
            h.insert(CONTENT_SECURITY_POLICY, v);
        }
        h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        resp
    }

    /// Is this POST from a page of the gate's own origin?
    fn same_origin(&self, headers: &HeaderMap) -> bool {
        let text = |v: &HeaderValue| v.to_str().ok().map(str::to_owned);
        let mut origins = headers.get_all(ORIGIN).iter();
        match (origins.next().and_then(text), origins.next()) {
            (Some(o), None) => o.eq_ignore_ascii_case(&self.origin),
            (None, None) => {
                let mut referers = headers.get_all(REFERER).iter();
                match (referers.next().and_then(text), referers.next()) {
                    (Some(r), None) => r
                        .get(..self.origin.len() + 1)
                        .is_some_and(|p| p.eq_ignore_ascii_case(&format!("{}/", self.origin))),
                    _ => false,
                }
            }
            _ => false,
        }
    }

    /// `POST /.jwtgate/logout`: revoke on every gate, clear, and sign out
    /// at the provider too.
    async fn logout(
        &self,
        verifier: &Verifier,
        headers: &HeaderMap,
    ) -> Result<Response<Full<Bytes>>, Refused> {
        if !self.same_origin(headers) {
            return Err((
                refusal(StatusCode::FORBIDDEN, "logout_cross_site"),
                Vec::new(),
            ));
        }
        let mut cookies =
            super::jar::clear_cookie_headers(&self.cfg.cookie_name).unwrap_or_default();
        let back = self.location(&self.cfg.post_logout_redirect);
        let opened = super::jar::read(headers, &self.cfg.cookie_name).and_then(|v| self.open(&v));
        let Some(opened) = opened else {
            return Ok(redirect(StatusCode::SEE_OTHER, &back, cookies));
        };
        let s = &opened.session;
        let record = self.load_record(&s.sid).await.ok().flatten();
        self.end_session(&s.sid, s.signed_in).await;
        self.metrics.logout.inc();
        info!(user = %s.user, "signed out");
        // The built-in page has no provider to sign out of.
        let provider = match self.is_builtin() {
            true => Err(crate::auth::VerifyError::UntrustedIssuer),
            false => verifier.provider_endpoints(&self.cfg.issuer).await,
        };
        let location = match provider {
            Ok(e) => match &e.end_session_endpoint {
                Some(end) => {
                    let mut q = url::form_urlencoded::Serializer::new(String::new());
                    if let Some(r) = &record {
                        q.append_pair("id_token_hint", &r.id_token);
                    }
                    q.append_pair("client_id", &self.cfg.client_id)
                        .append_pair("post_logout_redirect_uri", &back)
                        .append_pair("state", &crate::random::token(16).unwrap_or_default());
                    let sep = if end.contains('?') { '&' } else { '?' };
                    format!("{end}{sep}{}", q.finish())
                }
                None => back,
            },
            Err(_) => back,
        };
        cookies.extend(self.clear_flows(headers));
        Ok(redirect(StatusCode::SEE_OTHER, &location, cookies))
    }

    fn clear_flows(&self, headers: &HeaderMap) -> Vec<HeaderValue> {
        flow::flow_cookies(headers, &self.flow_prefix)
            .iter()
            .filter_map(|n| super::jar::clear_cookie_headers(n).ok())
            .flatten()
            .collect()
    }

    /// `GET /.jwtgate/session`: who is signed in, for page scripts.
    async fn session_json(&self, verifier: &Verifier, headers: &HeaderMap) -> Answer {
        let hit = match self.session(verifier, headers).await {
            Ok(Some(hit)) => hit,
            Ok(None) => {
                return Answer {
                    response: json_response(
                        StatusCode::UNAUTHORIZED,
                        &json!({"error": "unauthorized", "error_description": "no session"}),
                    ),
                    reason: "no_session",
                };
            }
            Err(e) => {
                return Answer {
                    response: respond(&e, Style::Gate, ""),
                    reason: e.reason(),
                };
            }
        };
        let deadline = super::jar::read(headers, &self.cfg.cookie_name)
            .and_then(|v| self.open(&v))
            .map(|o| self.expires_at(&o.session));
        let mut response = json_response(
            StatusCode::OK,
            &json!({
                "user": hit.identity.user,
                "expires_at": deadline,
                "claims": hit.identity.claims,
            }),
        );
        for c in hit.set_cookies {
            response.headers_mut().append(SET_COOKIE, c);
        }
        Answer {
            response,
            reason: "session",
        }
    }

    /// When the session ends if nothing happens: the first of its deadlines.
    fn expires_at(&self, s: &Session) -> u64 {
        session::ends_at(
            s,
            self.cfg.idle_timeout.as_secs(),
            self.cfg.max_lifetime.as_secs(),
        )
    }
}

/// A refusal and the cookies to set with it (a spent flow's expiry).
type Refused = (GateError, Vec<HeaderValue>);

fn refused(status: StatusCode, reason: &'static str) -> Refused {
    (refusal(status, reason), Vec::new())
}

fn bad(reason: &'static str, cookies: Vec<HeaderValue>) -> Refused {
    (GateError::Login(flow::refused(reason)), cookies)
}

fn redirect(
    status: StatusCode,
    location: &str,
    cookies: Vec<HeaderValue>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(LOCATION, v);
    }
    for c in cookies {
        h.append(SET_COOKIE, c);
    }
    resp
}

impl Answer {
    /// Nothing the sign-in endpoints answer may be cached.
    pub(super) fn with_no_store(mut self) -> Self {
        self.response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        self
    }
}

/// `scheme://host[:port]` of an absolute URL, for a CSP source (None when
/// it has characters a CSP source cannot carry).
pub(super) fn origin_of(u: &str) -> Option<String> {
    let url = url::Url::parse(u).ok()?;
    let o = url.origin().ascii_serialization();
    (o != "null" && !o.contains([';', ',', ' ', '\'', '"'])).then_some(o)
}
