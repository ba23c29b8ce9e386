//! Correlation: the `X-Request-Id` every response carries and every
//! forwarded request takes along, and the trace id of a W3C `traceparent`
//! for the access log. (`traceparent` itself is forwarded untouched.)

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Longest incoming id kept. 128 holds a UUID, a W3C trace id, an AWS
/// `Root=1-...` id or an ingress-generated one with room to spare, and
/// keeps a client from making every log line of its requests huge.
pub(crate) const MAX_LEN: usize = 128;

/// Is an incoming id one to keep: 1 to [`MAX_LEN`] bytes of visible ASCII
/// (no space, no control character, nothing a log line or a header could
/// be split or forged with)?
pub(crate) fn is_sane(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= MAX_LEN && v.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// The request's id: the incoming `X-Request-Id` when there is exactly one
/// and it is sane, else a new one, which then replaces whatever came. On
/// return the request carries exactly that id, so it is what the upstream
/// receives.
pub(crate) fn ensure(headers: &mut HeaderMap) -> HeaderValue {
    let mut values = headers.get_all(&X_REQUEST_ID).iter();
    if let (Some(v), None) = (values.next(), values.next())
        && is_sane(v.as_bytes())
    {
        return v.clone();
    }
    let id = generate();
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

/// A new id: 32 lower-case hex digits, a random per-process prefix and a
/// counter. Unique across processes (the prefix) and within one (the
/// counter) without asking the system for randomness on every request; an
/// id is for correlation, not a secret, so being guessable is harmless.
pub(crate) fn generate() -> HeaderValue {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // Without the system generator, the time still tells processes apart.
    let prefix = *PREFIX.get_or_init(|| {
        crate::random::u64().unwrap_or_else(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        })
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 32];
    hex(prefix, &mut buf[..16]);
    hex(n, &mut buf[16..]);
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

fn hex(mut v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// The trace id of a valid W3C `traceparent` (version 00 layout:
/// `VV-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`; an all-zero id
/// is invalid). Anything else gives `None` and is still forwarded as it
/// came: the gate is not the one to repair a trace.
pub(crate) fn trace_id(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(&TRACEPARENT)?.to_str().ok()?.trim();
    let mut parts = v.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    // Version ff is forbidden; a future version may append fields, 00 may not.
    let valid = lower_hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && lower_hex(trace, 32)
        && lower_hex(parent, 16)
        && lower_hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_sane_id_and_replaces_others() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(ensure(&mut h), "abc-123");

        for bad in ["", "has space", &"x".repeat(MAX_LEN + 1)] {
            let mut h = HeaderMap::new();
            h.insert(X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = ensure(&mut h);
            assert_ne!(id, bad);
            assert_eq!(id.len(), 32);
            assert_eq!(h.get(X_REQUEST_ID), Some(&id));
        }
        let mut h = HeaderMap::new();
        h.append(X_REQUEST_ID, HeaderValue::from_static("a"));
        h.append(X_REQUEST_ID, HeaderValue::from_static("b"));
        let id = ensure(&mut h);
        assert_eq!(h.get_all(X_REQUEST_ID).iter().count(), 1);
        assert_eq!(id.len(), 32);
        assert!(is_sane(&"x".repeat(MAX_LEN).into_bytes()));
        assert!(!is_sane("é".as_bytes()));
    }

    #[test]
    fn generated_ids_differ() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
    }

    #[test]
    fn traceparent() {
        let t = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("traceparent", HeaderValue::from_str(v).unwrap());
            trace_id(&h).map(str::to_owned)
        };
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(t(good).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(t(&format!("{good}-x")), None);
        assert_eq!(
            t("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            t("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            t("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            t("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(t("00-4bf92f35-00f067aa0ba902b7-01"), None);
    }
}
