//! A mock OpenID provider for the `[[auth.issuers]]` tests.
//!
//! * discovery at `{issuer}/.well-known/openid-configuration` (`issuer`, `jwks_uri`);
//! * the JWKS at `{issuer}/jwks`;
//! * RSA (RS*/PS*), EC (ES256/ES384) and Ed25519 (EdDSA) keys made with aws-lc-rs;
//!   tokens signed with a chosen key and `kid`;
//! * a fetch counter per path;
//! * rotation: keys can be added, unpublished (still usable for signing) or removed;
//! * faults: 500, garbage body, oversized body, a delay, `Cache-Control: max-age`,
//!   and refusing connections altogether.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::tokens::{b64url, now, signing_input};

/// How the IdP answers its two endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdpMode {
    Normal,
    /// 500 with a short text body.
    Error500,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with a syntactically valid JSON body of about 5 MiB.
    Oversized,
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

struct IdpKey {
    kid: String,
    alg: String,
    signer: Signer,
    published: bool,
}

impl IdpKey {
    fn public_jwk(&self) -> Value {
        match &self.signer {
            Signer::Rsa(k) => {
                let pk = k.public_key();
                json!({
                    "kty": "RSA", "use": "sig", "kid": self.kid, "alg": self.alg,
                    "n": b64url(pk.modulus().big_endian_without_leading_zero()),
                    "e": b64url(pk.exponent().big_endian_without_leading_zero()),
                })
            }
            Signer::Ec(k) => {
                let point = k.public_key().as_ref();
                let n = (point.len() - 1) / 2;
                let crv = if self.alg == "ES384" {
                    "P-384"
                } else {
                    "P-256"
                };
                json!({
                    "kty": "EC", "use": "sig", "kid": self.kid, "alg": self.alg, "crv": crv,
                    "x": b64url(&point[1..1 + n]),
                    "y": b64url(&point[1 + n..]),
                })
            }
            Signer::Ed(k) => json!({
                "kty": "OKP", "use": "sig", "kid": self.kid, "alg": "EdDSA", "crv": "Ed25519",
                "x": b64url(k.public_key().as_ref()),
            }),
        }
    }

    fn public_der(&self) -> Vec<u8> {
        match &self.signer {
            Signer::Rsa(k) => k.public_key().as_der().expect("der").as_ref().to_vec(),
            Signer::Ec(k) => k.public_key().as_der().expect("der").as_ref().to_vec(),
            Signer::Ed(k) => k.public_key().as_der().expect("der").as_ref().to_vec(),
        }
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Rsa(k) => {
                let enc: &'static dyn signature::RsaEncoding = match self.alg.as_str() {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    "PS512" => &signature::RSA_PSS_SHA512,
                    other => panic!("unsupported RSA alg {other}"),
                };
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(enc, &rng, msg, &mut sig).expect("rsa sign");
                sig
            }
            Signer::Ec(k) => k.sign(&rng, msg).expect("ecdsa sign").as_ref().to_vec(),
            Signer::Ed(k) => k.sign(msg).as_ref().to_vec(),
        }
    }
}

/// Makes a standalone key (not attached to any IdP), e.g. for an attacker's
/// token with an embedded `jwk` header. `alg` is one of RS*, PS*, ES256,
/// ES384, EdDSA.
pub struct StandaloneKey(IdpKey);

impl StandaloneKey {
    pub fn new(kid: &str, alg: &str) -> Self {
        StandaloneKey(make_key(kid, alg))
    }

    pub fn public_jwk(&self) -> Value {
        self.0.public_jwk()
    }

    /// Signs `payload` with header `{"alg", "typ", "kid"}` merged with `extra_header`.
    pub fn sign(&self, extra_header: &Value, payload: &Value) -> String {
        sign_token(&self.0, true, extra_header, payload)
    }
}

fn make_key(kid: &str, alg: &str) -> IdpKey {
    let signer = match alg {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => {
            Signer::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa keygen"))
        }
        "ES256" => Signer::Ec(
            EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).expect("ec keygen"),
        ),
        "ES384" => Signer::Ec(
            EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).expect("ec keygen"),
        ),
        "EdDSA" => Signer::Ed(Ed25519KeyPair::generate().expect("ed25519 keygen")),
        other => panic!("unsupported alg {other}"),
    };
    IdpKey {
        kid: kid.into(),
        alg: alg.into(),
        signer,
        published: true,
    }
}

fn sign_token(key: &IdpKey, with_kid: bool, extra_header: &Value, payload: &Value) -> String {
    let mut header = json!({"alg": key.alg, "typ": "JWT"});
    if with_kid {
        header["kid"] = json!(key.kid);
    }
    if let Some(extra) = extra_header.as_object() {
        for (k, v) in extra {
            if v.is_null() {
                header.as_object_mut().unwrap().remove(k);
            } else {
                header[k] = v.clone();
            }
        }
    }
    let input = signing_input(&header, payload);
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64url(&sig))
}

struct IdpState {
    prefix: String,
    issuer: String,
    keys: Mutex<Vec<IdpKey>>,
    mode: Mutex<IdpMode>,
    delay_ms: AtomicU64,
    max_age: Mutex<Option<u64>>,
    fetches: Mutex<HashMap<String, usize>>,
    discovery_override: Mutex<Option<Value>>,
}

/// A running mock IdP; stops when dropped.
pub struct Idp {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT{prefix}`
    pub issuer: String,
    state: Arc<IdpState>,
    task: Mutex<Option<JoinHandle<()>>>,
    shutdown: watch::Sender<u64>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
        self.shutdown.send_modify(|g| *g += 1);
    }
}

impl Idp {
    /// An IdP whose issuer is `http://127.0.0.1:PORT`.
    pub async fn start() -> Idp {
        Self::start_with_path("").await
    }

    /// An IdP whose issuer is `http://127.0.0.1:PORT{prefix}` (e.g. "/realms/test").
    pub async fn start_with_path(prefix: &str) -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind idp");
        let addr = listener.local_addr().unwrap();
        let prefix = prefix.trim_end_matches('/').to_string();
        let issuer = format!("http://{addr}{prefix}");
        let state = Arc::new(IdpState {
            prefix,
            issuer: issuer.clone(),
            keys: Mutex::new(Vec::new()),
            mode: Mutex::new(IdpMode::Normal),
            delay_ms: AtomicU64::new(0),
            max_age: Mutex::new(None),
            fetches: Mutex::new(HashMap::new()),
            discovery_override: Mutex::new(None),
        });
        let (shutdown, _) = watch::channel(0u64);
        let task = spawn_accept(listener, state.clone(), shutdown.clone());
        Idp {
            addr,
            issuer,
            state,
            task: Mutex::new(Some(task)),
            shutdown,
        }
    }

    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// Adds (and publishes) a new key; `alg` is RS*, PS*, ES256, ES384 or EdDSA.
    pub fn add_key(&self, kid: &str, alg: &str) {
        let key = make_key(kid, alg);
        let mut keys = self.state.keys.lock().unwrap();
        keys.retain(|k| k.kid != kid);
        keys.push(key);
    }

    pub fn add_rsa(&self, kid: &str) {
        self.add_key(kid, "RS256")
    }

    pub fn add_ec(&self, kid: &str) {
        self.add_key(kid, "ES256")
    }

    /// Takes a key out of the JWKS but keeps it for signing (rotation).
    pub fn unpublish(&self, kid: &str) {
        self.set_published(kid, false)
    }

    pub fn publish(&self, kid: &str) {
        self.set_published(kid, true)
    }

    fn set_published(&self, kid: &str, on: bool) {
        let mut keys = self.state.keys.lock().unwrap();
        let k = keys.iter_mut().find(|k| k.kid == kid).expect("unknown kid");
        k.published = on;
    }

    /// Forgets a key entirely.
    pub fn remove_key(&self, kid: &str) {
        self.state.keys.lock().unwrap().retain(|k| k.kid != kid);
    }

    /// The JWKS as currently published.
    pub fn jwks(&self) -> Value {
        jwks_of(&self.state)
    }

    /// The public JWK of a key (published or not).
    pub fn public_jwk(&self, kid: &str) -> Value {
        self.with_key(kid, |k| k.public_jwk())
    }

    /// The public key as a PEM `PUBLIC KEY` (SPKI).
    pub fn public_key_pem(&self, kid: &str) -> String {
        let der = self.with_key(kid, |k| k.public_der());
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    fn with_key<T>(&self, kid: &str, f: impl FnOnce(&IdpKey) -> T) -> T {
        let keys = self.state.keys.lock().unwrap();
        f(keys.iter().find(|k| k.kid == kid).expect("unknown kid"))
    }

    /// Standard claims: `iss` = this issuer, `sub`, `iat`, `nbf`, `exp` (+10 min).
    pub fn claims(&self, sub: &str) -> Value {
        let t = now();
        json!({"iss": self.issuer, "sub": sub, "iat": t, "nbf": t, "exp": t + 600})
    }

    /// Signs with header `{"alg", "typ": "JWT", "kid"}`.
    pub fn sign(&self, kid: &str, payload: &Value) -> String {
        self.sign_with_header(kid, &json!({}), payload)
    }

    /// Signs with the default header merged with `extra` (a `null` value removes
    /// a field, e.g. `{"kid": null}`; `{"kid": "other"}` lies about the kid).
    pub fn sign_with_header(&self, kid: &str, extra: &Value, payload: &Value) -> String {
        self.with_key(kid, |k| sign_token(k, true, extra, payload))
    }

    pub fn set_mode(&self, mode: IdpMode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Delays every answer by `d`.
    pub fn set_delay(&self, d: Duration) {
        self.state
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Adds `Cache-Control: max-age=N` to the JWKS and discovery answers.
    pub fn set_max_age(&self, secs: Option<u64>) {
        *self.state.max_age.lock().unwrap() = secs;
    }

    /// Serves this document as discovery instead of the default one.
    pub fn set_discovery(&self, doc: Option<Value>) {
        *self.state.discovery_override.lock().unwrap() = doc;
    }

    /// Requests seen for a path (e.g. "/jwks" with the prefix, as requested).
    pub fn fetch_count(&self, path: &str) -> usize {
        *self.state.fetches.lock().unwrap().get(path).unwrap_or(&0)
    }

    pub fn discovery_fetches(&self) -> usize {
        self.fetch_count(&format!(
            "{}/.well-known/openid-configuration",
            self.state.prefix
        ))
    }

    pub fn jwks_fetches(&self) -> usize {
        self.fetch_count(&format!("{}/jwks", self.state.prefix))
    }

    /// Every request path seen, with its count.
    pub fn all_fetches(&self) -> HashMap<String, usize> {
        self.state.fetches.lock().unwrap().clone()
    }

    /// Stops listening and drops every open connection: new connections are refused.
    pub fn refuse_connections(&self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
        self.shutdown.send_modify(|g| *g += 1);
    }

    /// Listens again on the same port after [`Idp::refuse_connections`].
    pub async fn accept_connections(&self) {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket.bind(self.addr).expect("rebind idp port");
        let listener = socket.listen(128).expect("listen");
        let task = spawn_accept(listener, self.state.clone(), self.shutdown.clone());
        *self.task.lock().unwrap() = Some(task);
    }
}

fn jwks_of(state: &IdpState) -> Value {
    let keys = state.keys.lock().unwrap();
    json!({"keys": keys.iter().filter(|k| k.published).map(|k| k.public_jwk()).collect::<Vec<_>>()})
}

fn spawn_accept(
    listener: TcpListener,
    state: Arc<IdpState>,
    shutdown: watch::Sender<u64>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            let mut stop = shutdown.subscribe();
            tokio::spawn(async move {
                let svc = service_fn(move |req| answer(req, state.clone()));
                let builder = Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                tokio::select! {
                    _ = conn => {}
                    _ = stop.changed() => {}
                }
            });
        }
    })
}

async fn answer(
    req: Request<Incoming>,
    state: Arc<IdpState>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    *state
        .fetches
        .lock()
        .unwrap()
        .entry(path.clone())
        .or_insert(0) += 1;
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let discovery = format!("{}/.well-known/openid-configuration", state.prefix);
    let jwks = format!("{}/jwks", state.prefix);
    let doc = if path == discovery {
        state
            .discovery_override
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| {
                json!({
                    "issuer": state.issuer,
                    "jwks_uri": format!("{}/jwks", state.issuer),
                    "authorization_endpoint": format!("{}/authorize", state.issuer),
                    "token_endpoint": format!("{}/token", state.issuer),
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                })
            })
    } else if path == jwks {
        jwks_of(&state)
    } else {
        return Ok(Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"not found")))
            .unwrap());
    };
    let mode = *state.mode.lock().unwrap();
    let (status, body): (StatusCode, Bytes) = match mode {
        IdpMode::Normal => (StatusCode::OK, Bytes::from(doc.to_string())),
        IdpMode::Error500 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(b"internal error"),
        ),
        IdpMode::Garbage => (StatusCode::OK, Bytes::from_static(b"<html>not json{{{")),
        IdpMode::Oversized => {
            let mut big = Vec::with_capacity(5 * 1024 * 1024 + 16);
            big.extend_from_slice(b"{\"keys\":[");
            big.resize(5 * 1024 * 1024, b' ');
            big.extend_from_slice(b"]}");
            (StatusCode::OK, Bytes::from(big))
        }
    };
    let mut resp = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(age) = *state.max_age.lock().unwrap() {
        resp = resp.header("cache-control", format!("public, max-age={age}"));
    }
    Ok(resp.body(Full::new(body)).unwrap())
}
