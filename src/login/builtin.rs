//! The gate's own sign-in page (`[login] provider = "builtin"`): users
//! from `issuer.users_file`, no provider.
//!
//! `GET /.jwtgate/login?rd=PATH` answers a plain HTML form (`form`);
//! `POST /.jwtgate/login` (form-encoded `username`, `password`, `csrf`,
//! `rd`) checks, in this order: the CSRF token, then the credentials under
//! the password grant's failure limits (`mint::passwords`: per user name
//! and per client address, shared through `[store]`; an unknown user costs
//! what a wrong password costs). Success makes the same sealed session as
//! the OpenID flow (claims: the user's `[issuer.claims]`, then `sub` = the
//! user name, `iss` = `issuer.issuer`, `iat` = now; no refresh: it ends at
//! `idle_timeout` or `max_lifetime`) and answers 303 to the checked return
//! path. Wrong credentials: 401 and the form again, with one message that
//! never says which field was wrong; locked out: 429 with `Retry-After`.
//!
//! The CSRF token is a random value kept in a sealed pre-session cookie,
//! `<cookie_name>-flow-signin` (`HttpOnly`, `SameSite=Lax`, 10 minutes,
//! stripped from the upstream like the other flow cookies), and the same
//! value in a hidden field; they are compared in constant time. A form
//! posted without the cookie, with another browser's token, or after the
//! cookie expired is answered 403 with a fresh form.

pub mod form;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use super::Login;
use super::flow::FLOW_MAX_AGE;
use super::session::Session;
use crate::auth::claims::now;
use crate::config::login::LoginConfig;
use crate::config::{Config, ConfigError};
use crate::mint::passwords::{Passwords, Refusal};
use crate::respond::{GateError, LoginRefusal, Style, respond};
use crate::store::mirror::now_ms;
use form::Form;

/// The message of a failed sign-in: one for a wrong user and a wrong
/// password alike.
const BAD_CREDENTIALS: &str = "The user name or password is incorrect.";
const LOCKED_OUT: &str = "Too many failed sign-ins. Please wait a few minutes and try again.";
const STALE_FORM: &str =
    "This sign-in form has expired or was not opened in this browser. Please sign in again.";
/// Longest password read (argon2 hashes any length; nobody types more).
const MAX_PASSWORD_BYTES: usize = 4096;

/// The built-in page of one configuration generation.
pub struct Page {
    passwords: Passwords,
    title: String,
    stylesheet: Option<String>,
    /// `iss` of the sessions: `issuer.issuer`.
    iss: String,
    claims: BTreeMap<String, Map<String, Value>>,
    max_body: usize,
}

impl Page {
    /// The users file, the limits, the title and the stylesheet (read now:
    /// an unreadable one is an error naming `login.stylesheet_file`).
    pub fn from_config(
        config: &Config,
        cfg: &LoginConfig,
        runtime: Arc<crate::mint::Runtime>,
    ) -> Result<Page, ConfigError> {
        let stylesheet = match &cfg.stylesheet_file {
            None => None,
            Some(p) => {
                let invalid = |m: String| {
                    ConfigError::invalid("login.stylesheet_file", p.display().to_string(), m)
                };
                let raw = std::fs::read(p).map_err(|e| invalid(format!("cannot be read: {e}")))?;
                Some(form::check_stylesheet(&raw).map_err(|m| invalid(m.to_owned()))?)
            }
        };
        Ok(Page {
            passwords: Passwords::from_config(config, runtime)?,
            title: cfg.page_title.clone().unwrap_or_else(|| "Sign in".into()),
            stylesheet,
            iss: config.issuer.issuer.clone(),
            claims: config.issuer.claims.clone(),
            max_body: config.issuer.max_body_bytes,
        })
    }
}

impl Page {
    /// The form with this message, token and return path.
    fn form<'a>(&'a self, message: Option<&'a str>, csrf: &'a str, return_to: &'a str) -> Form<'a> {
        Form {
            title: &self.title,
            stylesheet: self.stylesheet.as_deref(),
            message,
            csrf,
            return_to,
        }
    }
}

/// What the pre-session cookie carries (sealed).
#[derive(Serialize, Deserialize)]
struct PreSession {
    #[serde(rename = "c")]
    csrf: String,
    #[serde(rename = "t")]
    started_ms: u64,
}

impl Login {
    /// The pre-session cookie's name.
    fn pre_session_name(&self) -> String {
        format!("{}signin", self.flow_prefix)
    }

    /// The CSRF token of this browser's pre-session cookie, if it holds.
    fn pre_session(&self, headers: &HeaderMap) -> Option<String> {
        let name = self.pre_session_name();
        let sealed = super::jar::read(headers, &name)?;
        let plain = self.keys.open(name.as_bytes(), &sealed)?;
        let p: PreSession = serde_json::from_slice(&plain).ok()?;
        (now_ms().saturating_sub(p.started_ms) <= FLOW_MAX_AGE * 1000).then_some(p.csrf)
    }

    /// A pre-session cookie for `csrf`, valid for ten minutes from now.
    fn pre_session_cookie(&self, csrf: &str) -> Vec<HeaderValue> {
        let name = self.pre_session_name();
        let plain = serde_json::to_vec(&PreSession {
            csrf: csrf.to_owned(),
            started_ms: now_ms(),
        });
        plain
            .ok()
            .and_then(|p| self.keys.seal(name.as_bytes(), &p).ok())
            .and_then(|v| super::jar::set_cookie_headers(&name, &v, Some(FLOW_MAX_AGE)).ok())
            .unwrap_or_default()
    }

    fn return_path(&self, rd: Option<&str>) -> String {
        rd.and_then(|rd| self.returns.check(rd))
            .unwrap_or_else(|| "/".into())
    }

    /// A fresh form (a new token unless this browser holds one), `status`.
    fn fresh_form(
        &self,
        page: &Page,
        headers: &HeaderMap,
        message: Option<&str>,
        return_to: &str,
        status: StatusCode,
    ) -> Result<Response<Full<Bytes>>, GateError> {
        let csrf = match self.pre_session(headers) {
            Some(c) => c,
            None => crate::random::token(32).map_err(|_| {
                GateError::Login(LoginRefusal {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    reason: "random_failed",
                })
            })?,
        };
        let mut resp = page.form(message, &csrf, return_to).response(status);
        // The same token, its ten minutes from now: other tabs' forms stay good.
        for c in self.pre_session_cookie(&csrf) {
            resp.headers_mut().append(SET_COOKIE, c);
        }
        Ok(resp)
    }

    /// `GET /.jwtgate/login?rd=...` with the built-in page.
    pub(super) fn builtin_form(
        &self,
        page: &Page,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Response<Full<Bytes>> {
        let rd = crate::uri::query_pairs(query.unwrap_or_default())
            .find(|(k, _)| k == "rd")
            .map(|(_, v)| v);
        let return_to = self.return_path(rd.as_deref());
        self.fresh_form(page, headers, None, &return_to, StatusCode::OK)
            .unwrap_or_else(|e| respond(&e, Style::Page, ""))
    }

    /// `POST /.jwtgate/login` with the built-in page.
    pub(super) async fn builtin_sign_in(
        &self,
        page: &Page,
        req: Request<Incoming>,
        client: IpAddr,
    ) -> Response<Full<Bytes>> {
        let (result, label) = match self.builtin_checked(page, req, client).await {
            Ok(r) => r,
            Err(e) => {
                let label = e.reason();
                (respond(&e, Style::Page, ""), label)
            }
        };
        self.count_login(label);
        if label != "ok" {
            warn!(result = label, "sign-in refused");
        }
        result
    }

    async fn builtin_checked(
        &self,
        page: &Page,
        req: Request<Incoming>,
        client: IpAddr,
    ) -> Result<(Response<Full<Bytes>>, &'static str), GateError> {
        let headers = req.headers().clone();
        let fields = crate::mint::read_form(req, page.max_body).await?;
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let return_to = self.return_path(field("rd"));
        // 1. This browser's form: the token of its pre-session cookie.
        let expected = self.pre_session(&headers);
        let matches = match (&expected, field("csrf")) {
            (Some(want), Some(got)) => bool::from(want.as_bytes().ct_eq(got.as_bytes())),
            _ => false,
        };
        if !matches {
            // This browser's own token again (a new one if it has none):
            // the form it gets now, and its other tabs', work.
            let resp = self.fresh_form(
                page,
                &headers,
                Some(STALE_FORM),
                &return_to,
                StatusCode::FORBIDDEN,
            )?;
            return Ok((resp, "csrf_mismatch"));
        }
        let csrf = expected.unwrap_or_default();
        let again = |status, message| page.form(Some(message), &csrf, &return_to).response(status);
        // 2. The credentials, under the limits.
        let (user, password) = match (field("username"), field("password")) {
            (Some(u), Some(p))
                if !u.is_empty()
                    && !p.is_empty()
                    && u.len() <= crate::mint::users::MAX_USER_BYTES
                    && p.len() <= MAX_PASSWORD_BYTES =>
            {
                (u, p)
            }
            _ => {
                return Ok((
                    again(StatusCode::UNAUTHORIZED, BAD_CREDENTIALS),
                    "bad_credentials",
                ));
            }
        };
        match page.passwords.check(user, password, client, "page").await {
            Ok(()) => {}
            Err(Refusal::BadCredentials) => {
                return Ok((
                    again(StatusCode::UNAUTHORIZED, BAD_CREDENTIALS),
                    "bad_credentials",
                ));
            }
            Err(Refusal::Limited(wait)) => {
                let resp = page
                    .form(Some(LOCKED_OUT), &csrf, &return_to)
                    .limited(wait.as_secs());
                return Ok((resp, "rate_limited"));
            }
            Err(Refusal::NoUsers) => {
                return Err(GateError::Login(LoginRefusal {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    reason: "users_unavailable",
                }));
            }
        }
        // 3. A session, as the OpenID flow makes one; a new id every time.
        let s = self.builtin_session(page, user)?;
        let mut cookies = self.seal_session(&s);
        if cookies.is_empty() {
            return Err(GateError::Login(LoginRefusal {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                reason: "session_too_large",
            }));
        }
        cookies
            .extend(super::jar::clear_cookie_headers(&self.pre_session_name()).unwrap_or_default());
        info!(user = %s.user, "signed in (built-in page)");
        let location = if return_to.starts_with('/') {
            self.location(&return_to)
        } else {
            return_to.clone()
        };
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SEE_OTHER;
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(http::header::LOCATION, v);
        }
        for c in cookies {
            resp.headers_mut().append(SET_COOKIE, c);
        }
        Ok((resp, "ok"))
    }

    /// The session of `user`, signed in now, until `max_lifetime` (no
    /// refresh).
    fn builtin_session(&self, page: &Page, user: &str) -> Result<Session, GateError> {
        let sid = crate::random::token(16).map_err(|_| {
            GateError::Login(LoginRefusal {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                reason: "random_failed",
            })
        })?;
        let now = now();
        let mut claims = page.claims.get(user).cloned().unwrap_or_default();
        claims.insert("sub".into(), user.into());
        claims.insert("iss".into(), page.iss.clone().into());
        claims.insert("iat".into(), now.into());
        Ok(Session {
            sid,
            user: user.to_owned(),
            claims,
            signed_in: now,
            sealed_at: now,
            access_exp: now.saturating_add(self.cfg.max_lifetime.as_secs()),
            obtained: now,
            refreshable: false,
            generation: 0,
        })
    }
}
