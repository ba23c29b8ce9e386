//! Forwarding to the upstream: phase 5 (`prepare`, the request the
//! upstream receives) and phase 7 (`finish`, the response the client gets),
//! built from header hygiene (`headers`), identity headers (`identity`),
//! the client's address and forwarding headers (`client_view`) and
//! upgrades (`upgrade`).

mod client_view;
mod headers;
mod identity;
mod upgrade;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, Uri};
use http_body_util::{Either, Full};
use hyper_util::rt::TokioIo;
use tracing::debug;

pub(crate) use client_view::ClientView;
pub(crate) use client_view::set_forwarded;
pub(crate) use headers::HeaderRules;
pub(crate) use headers::remove_hop_by_hop;
pub(crate) use upgrade::Upgrade;

use crate::auth::Identity;
use crate::proxy::upstream::UpstreamBody;
use crate::respond::{GateError, UpstreamError};

/// The body of every response the gate sends: the upstream's, streamed as
/// it comes, or one of the gate's own small replies.
pub(crate) type GateBody = Either<UpstreamBody, Full<Bytes>>;

/// What the decision phases let through, as `prepare` needs it.
pub(crate) struct Verdict<'a> {
    pub identity: Option<&'a Identity>,
    /// The verified token came from `Authorization` on this request and
    /// `auth.forward_token` is on: keep that header.
    pub keep_authorization: bool,
}

/// Phase 5: makes the request the upstream will receive. Header hygiene,
/// identity headers, forwarding headers, the allowed upgrade, and `uri`
/// (the normalised path with the cleaned query) as the target. The upstream
/// receives exactly the request the decision was made on. Returns the
/// upgrade that was kept, which `finish` completes.
pub(crate) fn prepare<B>(
    rules: &HeaderRules,
    req: &mut Request<B>,
    verdict: Verdict<'_>,
    view: &ClientView,
    tls: bool,
    uri: Uri,
    peer_text: Option<&HeaderValue>,
) -> Option<Upgrade> {
    let upgrade = rules.upgrade_for(req);
    let original_authority = req.uri().authority().cloned();
    let headers = req.headers_mut();
    // gRPC servers may insist on `TE: trailers` (it says the client reads
    // trailers, where gRPC puts its status). It is the one TE value HTTP/2
    // allows, so it survives the hop-by-hop cleaning for gRPC alone.
    let keep_te =
        crate::proxy::grpc::is_grpc(headers) && crate::proxy::grpc::asks_for_trailers(headers);
    rules.strip(headers);
    if keep_te {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if !verdict.keep_authorization {
        headers.remove(header::AUTHORIZATION);
    }
    if let Some(id) = verdict.identity {
        rules.identity.set(headers, id);
    }
    if !headers.contains_key(header::HOST)
        && let Some(a) = &original_authority
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        headers.insert(header::HOST, v);
    }
    set_forwarded(
        headers,
        original_authority.as_ref(),
        view,
        tls,
        rules.trusts_forwarding(view),
        peer_text,
    );
    rules.set_client_view(headers, view, tls);
    if let Some(proto) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, proto.clone());
    }
    *req.uri_mut() = uri;
    upgrade.map(|asked| Upgrade {
        asked,
        client: hyper::upgrade::on(req),
    })
}

/// Phase 7: the upstream's response as the client gets it. A 101 is
/// accepted only for the upgrade that was asked for and allowed; the two
/// connections are then spliced. Any other switch would hand the
/// connection to a protocol the gate never sees into: 502.
pub(crate) fn finish(
    mut resp: Response<UpstreamBody>,
    upgrade: Option<Upgrade>,
) -> Result<Response<UpstreamBody>, GateError> {
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        remove_hop_by_hop(resp.headers_mut());
        return Ok(resp);
    }
    let Some(upgrade) = upgrade.filter(|u| HeaderRules::upgrade_accepted(&u.asked, resp.headers()))
    else {
        return Err(GateError::Upstream(UpstreamError::Failed(
            "upstream switched to a protocol that was not asked for".into(),
        )));
    };
    let upstream = hyper::upgrade::on(&mut resp);
    // The tunnel holds the upstream connection: it keeps its place under
    // `upstream.max_connections` until it closes.
    let place = resp.body_mut().take_permit();
    tokio::spawn(async move {
        let _place = place;
        match tokio::try_join!(upgrade.client, upstream) {
            Ok((client, upstream)) => {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            Err(e) => debug!("upgrade failed: {e}"),
        }
    });
    Ok(resp)
}

/// Checks that the request names one host: at most one `Host` header, and
/// one that agrees with the authority of an absolute-form target or of
/// HTTP/2's `:authority`. A disagreement would let the gate and the
/// upstream (or a virtual-host router behind it) read different hosts.
pub(crate) fn check_host<B>(req: &Request<B>) -> Result<(), &'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host header");
    }
    if let (Some(host), Some(authority)) = (host, req.uri().authority()) {
        let default_port = match req.uri().scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        };
        let same = host
            .to_str()
            .ok()
            .and_then(|h| h.parse::<Authority>().ok())
            .is_some_and(|h| {
                h.host().eq_ignore_ascii_case(authority.host())
                    && h.port_u16().or(default_port) == authority.port_u16().or(default_port)
            });
        if !same {
            return Err("Host header disagrees with the request target");
        }
    }
    Ok(())
}
