//! The sign-in's session cookie: `login::seal` (key ring, envelope) and
//! `login::jar` (reading, chunking, writing, stripping).
//!
//! Input: byte 0 is a control byte; the rest is split at its first three
//! NUL bytes into a key-ring text (lossy UTF-8), a cookie name (lossy
//! UTF-8), Cookie headers (one per line; lines that are not header values
//! are dropped) and a plaintext (the rest). Missing parts are empty.
//!
//! Invariants, beyond "no panic":
//! - key ring: a refusal's message and an accepted ring's `Debug` never
//!   contain a key line; an accepted ring has distinct key ids.
//! - `jar::read` returns at most `MAX_VALUE_LEN` bytes of cookie-octets and
//!   equals a reference reader written here (pairs counted by name, any
//!   repeat of the name or a chunk name is absent, chunks taken in order to
//!   the first gap); `jar::strip` with the name and the flow prefix
//!   (`NAME-flow-*`) leaves no cookie of ours (any case, any chunk, a
//!   trailing `*` a prefix) and keeps every other piece in order.
//! - `open` with a ring of keys made at start (that the fuzzer never sees)
//!   returns None for anything the fuzzer wrote: a value read from the
//!   cookies, each raw cookie value, the plaintext.
//! - with the fuzzer's ring: `seal` then `open` under the cookie name gives
//!   the plaintext back, also through `set_cookie_headers` and `read`
//!   among the fuzzer's other cookies, and through a ring with another key
//!   first (rotation); another name, the start-up ring, or any single
//!   flipped byte of the envelope does not open; `seal` refuses exactly the
//!   plaintexts whose sealed text would exceed `MAX_SEALED_LEN`, and the jar
//!   exactly the sealed texts beyond `MAX_VALUE_LEN`.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use jwtgate::login::jar::{self, CHUNK_LEN, MAX_CHUNKS, MAX_VALUE_LEN};
use jwtgate::login::seal::{KeyRing, MAX_SEALED_LEN, sealed_len};

/// A key line made at start: the fuzzer cannot seal for it.
fn hidden_line() -> &'static str {
    static LINE: OnceLock<String> = OnceLock::new();
    LINE.get_or_init(|| KeyRing::generate_line().expect("random"))
}

fn hidden_ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let second = KeyRing::generate_line().expect("random");
        KeyRing::parse(&format!("{}\n{second}", hidden_line())).expect("ring")
    })
}

fn cookie_octet(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\')
}

/// The non-empty `;`-separated pieces of every Cookie header, trimmed.
fn pieces(headers: &HeaderMap) -> Vec<Vec<u8>> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .map(|p| p.trim_ascii().to_vec())
        .filter(|p| !p.is_empty())
        .collect()
}

fn piece_name(p: &[u8]) -> Option<&[u8]> {
    let eq = p.iter().position(|&b| b == b'=')?;
    Some(p[..eq].trim_ascii())
}

/// The reference reader.
fn reference_read(headers: &HeaderMap, name: &str) -> Option<String> {
    if !jar::valid_name(name) {
        return None;
    }
    let names: Vec<String> = (0..MAX_CHUNKS).map(|i| jar::chunk_name(name, i)).collect();
    let mut found: Vec<Vec<Vec<u8>>> = vec![Vec::new(); MAX_CHUNKS];
    for p in pieces(headers) {
        let Some(eq) = p.iter().position(|&b| b == b'=') else {
            continue;
        };
        let k = p[..eq].trim_ascii();
        if let Some(i) = names.iter().position(|n| n.as_bytes() == k) {
            found[i].push(p[eq + 1..].trim_ascii().to_vec());
        }
    }
    if found.iter().any(|f| f.len() > 1) {
        return None;
    }
    let mut out = Vec::new();
    for f in &found {
        let Some(v) = f.first() else { break };
        let v = if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
            &v[1..v.len() - 1]
        } else {
            &v[..]
        };
        if v.len() > CHUNK_LEN || !v.iter().all(|&b| cookie_octet(b)) {
            return None;
        }
        out.extend_from_slice(v);
    }
    (!out.is_empty()).then(|| String::from_utf8(out).expect("ASCII"))
}

/// Does `strip` remove the cookie `k` for the pattern `entry`? A trailing
/// `*` makes a prefix; otherwise the name and `name-DIGITS`; any case.
fn stripped_by(k: &[u8], entry: &str) -> bool {
    let k = k.to_ascii_lowercase();
    if let Some(prefix) = entry.strip_suffix('*') {
        return k.starts_with(prefix.to_ascii_lowercase().as_bytes());
    }
    let n = entry.to_ascii_lowercase().into_bytes();
    if k == n {
        return true;
    }
    k.starts_with(&n)
        && k.get(n.len()) == Some(&b'-')
        && k.len() > n.len() + 1
        && k[n.len() + 1..].iter().all(u8::is_ascii_digit)
}

fn split3(data: &[u8]) -> [&[u8]; 4] {
    let mut parts = [&data[..0]; 4];
    let mut rest = data;
    for part in parts.iter_mut().take(3) {
        match rest.iter().position(|&b| b == 0) {
            Some(i) => {
                *part = &rest[..i];
                rest = &rest[i + 1..];
            }
            None => {
                *part = rest;
                rest = &rest[rest.len()..];
            }
        }
    }
    parts[3] = rest;
    parts
}

pub fn run(data: &[u8]) {
    let Some((&ctrl, rest)) = data.split_first() else {
        return;
    };
    let [ring_text, name, cookie_lines, plaintext] = split3(rest);
    let ring_text = String::from_utf8_lossy(ring_text);
    let name = String::from_utf8_lossy(name).into_owned();
    let mut headers = HeaderMap::new();
    for line in cookie_lines.split(|&b| b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(COOKIE, v);
        }
    }

    // The key ring never shows its keys.
    let ring = KeyRing::parse(&ring_text);
    let key_lines: Vec<&str> = ring_text
        .lines()
        .map(str::trim)
        // Lines that could be keys (a longer text could be a substring of
        // a message by chance: "line 1: not base64").
        .filter(|l| {
            l.len() >= 16
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/-_=".contains(&b))
        })
        .collect();
    let shown = match &ring {
        Ok(r) => {
            let mut ids = r.key_ids();
            assert_eq!(ids.len(), r.len());
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), r.len(), "two keys with one id");
            format!("{r:?}")
        }
        Err(e) => format!("{e} {e:?}"),
    };
    for l in &key_lines {
        assert!(!shown.contains(l), "a key line shown: {shown}");
    }

    // Reading agrees with the reference and is bounded.
    let got = jar::read(&headers, &name).map(std::borrow::Cow::into_owned);
    assert_eq!(got, reference_read(&headers, &name));
    if let Some(v) = &got {
        assert!(!v.is_empty() && v.len() <= MAX_VALUE_LEN);
        assert!(v.bytes().all(cookie_octet));
        assert_eq!(hidden_ring().open(name.as_bytes(), v), None);
    }
    for p in pieces(&headers) {
        if let Some(eq) = p.iter().position(|&b| b == b'=')
            && let Ok(v) = std::str::from_utf8(&p[eq + 1..])
        {
            assert_eq!(hidden_ring().open(name.as_bytes(), v.trim()), None);
        }
    }
    if let Ok(p) = std::str::from_utf8(plaintext) {
        assert_eq!(hidden_ring().open(name.as_bytes(), p), None);
    }

    // Stripping.
    let flow_entry = format!("{name}-flow-*");
    let patterns = [name.as_str(), flow_entry.as_str()];
    let mut stripped = headers.clone();
    jar::strip(&mut stripped, &patterns);
    let kept: Vec<Vec<u8>> = pieces(&headers)
        .into_iter()
        .filter(|p| !piece_name(p).is_some_and(|k| patterns.iter().any(|e| stripped_by(k, e))))
        .collect();
    assert_eq!(pieces(&stripped), kept);
    assert!(stripped.get_all(COOKIE).iter().count() <= 1);
    assert_eq!(stripped.contains_key(COOKIE), !kept.is_empty());
    assert_eq!(jar::read(&stripped, &name), None);

    // Round trips with the fuzzer's ring.
    let Ok(ring) = ring else { return };
    let aad = name.as_bytes();
    let sealed = match ring.seal(aad, plaintext) {
        Ok(s) => s,
        Err(_) => {
            assert!(sealed_len(plaintext.len()) > MAX_SEALED_LEN);
            return;
        }
    };
    assert_eq!(sealed.len(), sealed_len(plaintext.len()));
    assert!(sealed.len() <= MAX_SEALED_LEN);
    assert_eq!(ring.open(aad, &sealed).as_deref(), Some(plaintext));
    let mut other = aad.to_vec();
    other.push(b'x');
    assert_eq!(ring.open(&other, &sealed), None);
    assert_eq!(hidden_ring().open(aad, &sealed), None);
    let rotated = KeyRing::parse(&format!("{}\n{ring_text}", hidden_line())).expect("rotated");
    assert_eq!(rotated.open(aad, &sealed).as_deref(), Some(plaintext));

    let raw = URL_SAFE_NO_PAD.decode(&sealed).expect("base64url");
    let positions: Vec<usize> = if raw.len() <= 256 {
        (0..raw.len()).collect()
    } else {
        let mut p: Vec<usize> = (0..32).collect();
        p.extend((0..16).map(|i| (usize::from(ctrl) * 31 + i * 997) % raw.len()));
        p.extend(raw.len() - 16..raw.len());
        p
    };
    for i in positions {
        let mut t = raw.clone();
        t[i] ^= 1 << (ctrl % 8);
        assert_eq!(
            ring.open(aad, &URL_SAFE_NO_PAD.encode(&t)),
            None,
            "byte {i}"
        );
    }

    // Through the jar, among the fuzzer's other cookies.
    let set = jar::set_cookie_headers(&name, &sealed, Some(60));
    let Ok(set) = set else {
        assert!(!jar::valid_name(&name) || sealed.len() > MAX_VALUE_LEN);
        return;
    };
    assert!(jar::valid_name(&name) && sealed.len() <= MAX_VALUE_LEN);
    assert_eq!(set.len(), MAX_CHUNKS);
    let mut ours: Vec<&str> = set
        .iter()
        .map(|v| v.to_str().expect("ASCII"))
        .filter(|v| !v.contains("Max-Age=0;"))
        .map(|v| v.split(';').next().expect("pair"))
        .collect();
    assert_eq!(ours.len(), sealed.len().div_ceil(CHUNK_LEN));
    if ctrl & 0x10 != 0 {
        ours.reverse();
    }
    let mut jar_in = stripped;
    for p in ours {
        if ctrl & 0x20 != 0 {
            jar_in.append(COOKIE, HeaderValue::from_str(p).expect("value"));
        } else {
            let mut all = jar_in
                .get(COOKIE)
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default();
            if !all.is_empty() {
                all.extend_from_slice(b"; ");
            }
            all.extend_from_slice(p.as_bytes());
            jar_in.insert(COOKIE, HeaderValue::from_bytes(&all).expect("value"));
        }
    }
    let back = jar::read(&jar_in, &name).expect("our cookie read back");
    assert_eq!(back, sealed);
    assert_eq!(ring.open(aad, &back).as_deref(), Some(plaintext));
}
