//! What the gate needs to know about gRPC: which requests are gRPC calls
//! and their deadline (`grpc-timeout`). How a refusal is said in gRPC
//! (`grpc-status`, `grpc-message`) is `respond::grpc`.

use std::time::{Duration, Instant};

use http::HeaderMap;
use http::header::{CONTENT_TYPE, TE};

/// A gRPC call as the gate sees it, decided once from the request head.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GrpcCall {
    /// When the client's `grpc-timeout` runs out, if it sent one.
    pub deadline: Option<Instant>,
}

impl GrpcCall {
    /// `Some` for a gRPC request (`content-type: application/grpc`,
    /// `application/grpc+proto`, `application/grpc;...`). gRPC-Web
    /// (`application/grpc-web*`) is not: it is plain HTTP/1-compatible and
    /// is handled like any other HTTP request.
    pub(crate) fn of(headers: &HeaderMap, now: Instant) -> Option<GrpcCall> {
        if !is_grpc(headers) {
            return None;
        }
        let deadline = headers
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_timeout)
            .and_then(|t| now.checked_add(t));
        Some(GrpcCall { deadline })
    }
}

/// Does the content type name gRPC (and not gRPC-Web)?
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let ct = ct.trim_start();
    let Some(prefix) = ct.get(.."application/grpc".len()) else {
        return false;
    };
    if !prefix.eq_ignore_ascii_case("application/grpc") {
        return false;
    }
    matches!(
        ct.as_bytes().get("application/grpc".len()),
        None | Some(b'+') | Some(b';') | Some(b' ')
    )
}

/// Did the client send `TE: trailers` (the only TE value gRPC allows, and
/// the one HTTP/2 permits)?
pub(crate) fn asks_for_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
}

/// `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n). A value
/// that is not one is ignored here (the upstream receives it and decides).
pub(crate) fn parse_timeout(v: &str) -> Option<Duration> {
    let v = v.trim();
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, v.parse().unwrap());
        h
    }

    #[test]
    fn grpc_content_types() {
        assert!(is_grpc(&ct("application/grpc")));
        assert!(is_grpc(&ct("application/grpc+proto")));
        assert!(is_grpc(&ct("Application/GRPC;charset=x")));
        assert!(!is_grpc(&ct("application/grpc-web")));
        assert!(!is_grpc(&ct("application/grpc-web+proto")));
        assert!(!is_grpc(&ct("application/grpcx")));
        assert!(!is_grpc(&ct("application/json")));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(
            parse_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        assert_eq!(parse_timeout("123456789S"), None);
        assert_eq!(parse_timeout("S"), None);
        assert_eq!(parse_timeout("-1S"), None);
        assert_eq!(parse_timeout("1s"), None);
    }
}
