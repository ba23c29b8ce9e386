//! The sealed envelope of the session and per-flow state cookies, and the
//! key ring that seals and opens it. Pure: no I/O (the caller reads the key
//! file and hands over its text).
//!
//! **Key ring.** One base64 32-byte key per line (standard or URL-safe
//! alphabet, padding optional); blank lines and `#` comments are skipped.
//! The first key seals, every key opens: rotating is adding a new first
//! line, and removing the old one once the longest session has expired.
//!
//! **AEAD: AES-256-GCM-SIV** (RFC 8452) through `aws_lc_rs::aead`, with a
//! fresh random 96-bit nonce per seal (`RandomizedNonceKey` draws it from
//! aws-lc's generator, and fails rather than use a fixed one). aws-lc-rs 1.x
//! has it, so no second crypto stack is needed. Why it over AES-256-GCM:
//! with random nonces, GCM's birthday bound caps a key at about 2^32 seals,
//! and one repeated nonce there leaks the authentication key (forgeries
//! from then on). GCM-SIV is nonce-misuse resistant: a repeated nonce only
//! reveals that two plaintexts were equal, and its per-nonce key derivation
//! raises the safe number of seals per key far beyond what a gate makes.
//! The cost (a second pass over a few hundred bytes) is invisible next to
//! a request.
//!
//! **Envelope**, base64url without padding:
//! `version (1 byte, = 1) || key id (4) || nonce (12) || ciphertext || tag (16)`.
//! The key id is the first 4 bytes of SHA-256 of the key, so opening picks
//! the key directly (no trial decryption). The associated data is the
//! version and key id followed by the caller's bytes (the cookie name: a
//! value moved to another cookie does not open).

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// The envelope version this code writes and reads.
pub const VERSION: u8 = 1;
/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// Bytes of a key id.
pub const KEY_ID_LEN: usize = 4;
/// The longest sealed text `open` reads (and `seal` writes), checked
/// before decoding so that memory stays bounded.
pub const MAX_SEALED_LEN: usize = 16 * 1024;

const HEADER_LEN: usize = 1 + KEY_ID_LEN;
const TAG_LEN: usize = 16;
/// Version, key id, nonce and tag: the envelope of an empty plaintext.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// Why a key file's text is not a key ring. Names the line, never the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    #[error("session keys, line {line}: not base64")]
    NotBase64 { line: usize },
    #[error("session keys, line {line}: a key must be {KEY_LEN} bytes, this one has {len}")]
    WrongSize { line: usize, len: usize },
    #[error("session keys, line {line}: the same key id as line {first} (the same key twice?)")]
    DuplicateId { line: usize, first: usize },
    #[error("session keys: no key (one base64 32-byte key per line)")]
    Empty,
    #[error("session keys, line {line}: the key was refused by the cipher")]
    Refused { line: usize },
}

/// Why a value could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the value to seal is too large ({len} bytes)")]
    TooLarge { len: usize },
    /// The random generator (the nonce, a new key) or the cipher failed.
    #[error("the system random number generator or the cipher failed")]
    Crypto,
}

struct RingKey {
    id: [u8; KEY_ID_LEN],
    /// The line of the key file (for errors).
    line: usize,
    key: RandomizedNonceKey,
}

/// The session keys: the first seals, all open.
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<String> = self.keys.iter().map(|k| hex(&k.id)).collect();
        f.debug_struct("KeyRing")
            .field("keys", &self.keys.len())
            .field("ids", &ids)
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key id: the first 4 bytes of SHA-256 of the key.
fn key_id(key: &[u8]) -> [u8; KEY_ID_LEN] {
    let d = digest::digest(&digest::SHA256, key);
    let mut id = [0; KEY_ID_LEN];
    id.copy_from_slice(&d.as_ref()[..KEY_ID_LEN]);
    id
}

/// Standard base64, padding optional (URL-safe input is mapped to it).
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl KeyRing {
    /// Reads a key file's text: one base64 32-byte key per line, blank lines
    /// and lines starting with `#` skipped (surrounding spaces allowed).
    pub fn parse(text: &str) -> Result<KeyRing, KeyRingError> {
        let mut keys: Vec<RingKey> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let s = raw.trim();
            if s.is_empty() || s.starts_with('#') {
                continue;
            }
            // One alphabet: URL-safe characters mapped to standard ones.
            let std_alphabet: String = s
                .chars()
                .map(|c| match c {
                    '-' => '+',
                    '_' => '/',
                    c => c,
                })
                .collect();
            let mut bytes = STANDARD_ANY_PAD
                .decode(std_alphabet.as_bytes())
                .map_err(|_| KeyRingError::NotBase64 { line })?;
            if bytes.len() != KEY_LEN {
                return Err(KeyRingError::WrongSize {
                    line,
                    len: bytes.len(),
                });
            }
            let id = key_id(&bytes);
            let key = RandomizedNonceKey::new(&AES_256_GCM_SIV, &bytes);
            bytes.fill(0);
            let key = key.map_err(|_| KeyRingError::Refused { line })?;
            if let Some(first) = keys.iter().find(|k| k.id == id) {
                return Err(KeyRingError::DuplicateId {
                    line,
                    first: first.line,
                });
            }
            keys.push(RingKey { id, line, key });
        }
        if keys.is_empty() {
            return Err(KeyRingError::Empty);
        }
        Ok(KeyRing { keys })
    }

    /// One new random key as a line of a key file (base64url, no padding,
    /// no newline).
    pub fn generate_line() -> Result<String, SealError> {
        let mut key = [0u8; KEY_LEN];
        crate::random::fill(&mut key).map_err(|_| SealError::Crypto)?;
        let line = crate::encoding::b64url(&key);
        key.fill(0);
        Ok(line)
    }

    /// How many keys the ring holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true: a ring has at least one key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The ids of the keys (hex), the sealing key first.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| hex(&k.id)).collect()
    }

    /// Seals `plaintext` with the first key, bound to `aad` (the cookie name).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<String, SealError> {
        // (The first test keeps `sealed_len` from overflowing.)
        if plaintext.len() > MAX_SEALED_LEN || sealed_len(plaintext.len()) > MAX_SEALED_LEN {
            return Err(SealError::TooLarge {
                len: plaintext.len(),
            });
        }
        let k = &self.keys[0];
        let mut buf = Vec::with_capacity(OVERHEAD + plaintext.len());
        buf.push(VERSION);
        buf.extend_from_slice(&k.id);
        buf.extend_from_slice(&[0; NONCE_LEN]);
        buf.extend_from_slice(plaintext);
        let ad = associated_data(&buf[..HEADER_LEN], aad);
        let (nonce, tag) = k
            .key
            .seal_in_place_separate_tag(Aad::from(&ad[..]), &mut buf[HEADER_LEN + NONCE_LEN..])
            .map_err(|_| SealError::Crypto)?;
        let nonce: &[u8; NONCE_LEN] = nonce.as_ref();
        buf[HEADER_LEN..HEADER_LEN + NONCE_LEN].copy_from_slice(nonce);
        buf.extend_from_slice(tag.as_ref());
        Ok(crate::encoding::b64url(&buf))
    }

    /// Opens what `seal` made with any key of the ring under the same `aad`.
    /// None for anything else: too long, not base64url, too short, another
    /// version, an unknown key id, a wrong tag.
    pub fn open(&self, aad: &[u8], sealed: &str) -> Option<Vec<u8>> {
        if sealed.len() > MAX_SEALED_LEN {
            return None;
        }
        let mut buf = URL_SAFE_NO_PAD.decode(sealed.as_bytes()).ok()?;
        if buf.len() < OVERHEAD || buf[0] != VERSION {
            return None;
        }
        let k = self.keys.iter().find(|k| k.id[..] == buf[1..HEADER_LEN])?;
        let nonce =
            Nonce::try_assume_unique_for_key(&buf[HEADER_LEN..HEADER_LEN + NONCE_LEN]).ok()?;
        let ad = associated_data(&buf[..HEADER_LEN], aad);
        let len = k
            .key
            .open_in_place(
                nonce,
                Aad::from(&ad[..]),
                &mut buf[HEADER_LEN + NONCE_LEN..],
            )
            .ok()?
            .len();
        buf.copy_within(HEADER_LEN + NONCE_LEN..HEADER_LEN + NONCE_LEN + len, 0);
        buf.truncate(len);
        Some(buf)
    }
}

/// The length of the sealed text of a plaintext of `len` bytes.
pub const fn sealed_len(len: usize) -> usize {
    // base64 without padding: ceil(8n / 6) characters.
    ((OVERHEAD + len) * 8).div_ceil(6)
}

/// The envelope's header (version, key id) followed by the caller's bytes.
fn associated_data(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(header.len() + aad.len());
    ad.extend_from_slice(header);
    ad.extend_from_slice(aad);
    ad
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    const NAME: &[u8] = b"__Host-jwtgate";

    fn line(byte: u8) -> String {
        URL_SAFE_NO_PAD.encode([byte; KEY_LEN])
    }

    fn ring(bytes: &[u8]) -> KeyRing {
        let text: Vec<String> = bytes.iter().map(|b| line(*b)).collect();
        KeyRing::parse(&text.join("\n")).unwrap()
    }

    #[test]
    fn parses_every_base64_spelling_and_skips_comments() {
        // Key bytes chosen so that the encodings use `+`/`/` and `-`/`_`.
        let key = [0xfb_u8; KEY_LEN];
        let text = format!(
            "# session keys\n\n  {}  \n{}\r\n{}\n# old\n{}\n",
            STANDARD.encode(key),
            URL_SAFE.encode([1u8; KEY_LEN]),
            STANDARD.encode([2u8; KEY_LEN]).trim_end_matches('='),
            URL_SAFE_NO_PAD.encode([3u8; KEY_LEN]),
        );
        let r = KeyRing::parse(&text).unwrap();
        assert_eq!(r.len(), 4);
        assert!(!r.is_empty());
        assert_eq!(r.key_ids()[0], hex(&key_id(&key)));
        // A URL-safe spelling of the same key is the same key.
        let url = KeyRing::parse(&URL_SAFE_NO_PAD.encode(key)).unwrap();
        assert_eq!(url.key_ids(), vec![hex(&key_id(&key))]);
    }

    #[test]
    fn refuses_bad_lines_naming_the_line_not_the_key() {
        let short = STANDARD.encode([7u8; 16]);
        let e = KeyRing::parse(&format!("# c\n{}\n{short}\n", line(1))).unwrap_err();
        assert_eq!(e, KeyRingError::WrongSize { line: 3, len: 16 });
        assert!(!e.to_string().contains(&short));
        assert!(e.to_string().contains("line 3"));
        let long = STANDARD.encode([7u8; 33]);
        assert_eq!(
            KeyRing::parse(&long).unwrap_err(),
            KeyRingError::WrongSize { line: 1, len: 33 }
        );
        let bad = "not base64 at all!";
        let e = KeyRing::parse(&format!("\n{bad}")).unwrap_err();
        assert_eq!(e, KeyRingError::NotBase64 { line: 2 });
        assert!(!e.to_string().contains(bad));
        for empty in ["", "\n\n", "# only a comment\n   \n"] {
            assert_eq!(KeyRing::parse(empty).unwrap_err(), KeyRingError::Empty);
        }
        let e = KeyRing::parse(&format!("{}\n{}\n{}", line(1), line(2), line(1))).unwrap_err();
        assert_eq!(e, KeyRingError::DuplicateId { line: 3, first: 1 });
    }

    #[test]
    fn debug_shows_count_and_ids_only() {
        let r = ring(&[9, 10]);
        let d = format!("{r:?}");
        assert!(d.contains("keys: 2"), "{d}");
        for id in r.key_ids() {
            assert!(d.contains(&id));
        }
        assert!(!d.contains(&line(9)) && !d.contains(&line(10)));
        assert!(!d.contains("0909090909"));
    }

    #[test]
    fn generated_lines_are_keys_and_differ() {
        let a = KeyRing::generate_line().unwrap();
        let b = KeyRing::generate_line().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let r = KeyRing::parse(&format!("{a}\n{b}")).unwrap();
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn round_trip_and_layout() {
        let r = ring(&[1]);
        for pt in [&b""[..], b"x", &[0u8; 600][..], &vec![0xa5; 5000][..]] {
            let s = r.seal(NAME, pt).unwrap();
            assert_eq!(s.len(), sealed_len(pt.len()));
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert_eq!(r.open(NAME, &s).as_deref(), Some(pt));
            let raw = URL_SAFE_NO_PAD.decode(&s).unwrap();
            assert_eq!(raw[0], VERSION);
            assert_eq!(raw[1..5], key_id(&[1; KEY_LEN]));
            assert_eq!(raw.len(), OVERHEAD + pt.len());
        }
        // A fresh nonce each time: the same plaintext seals differently.
        assert_ne!(
            r.seal(NAME, b"same").unwrap(),
            r.seal(NAME, b"same").unwrap()
        );
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let old = ring(&[1]);
        let rotated = ring(&[2, 1]);
        let by_old = old.seal(NAME, b"claims").unwrap();
        assert_eq!(rotated.open(NAME, &by_old).as_deref(), Some(&b"claims"[..]));
        let by_new = rotated.seal(NAME, b"claims").unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&by_new).unwrap();
        assert_eq!(raw[1..5], key_id(&[2; KEY_LEN]));
        // The old ring does not know the new key.
        assert_eq!(old.open(NAME, &by_new), None);
        // Another ring, same id bytes forged onto another key's value: no.
        assert_eq!(ring(&[3]).open(NAME, &by_old), None);
    }

    #[test]
    fn another_cookie_name_does_not_open() {
        let r = ring(&[1]);
        let s = r.seal(NAME, b"v").unwrap();
        assert_eq!(r.open(b"__Host-jwtgate-flow", &s), None);
        assert_eq!(r.open(b"", &s), None);
    }

    #[test]
    fn anything_altered_does_not_open() {
        let r = ring(&[1, 2]);
        let s = r.seal(NAME, b"some session claims").unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&s).unwrap();
        for i in 0..raw.len() {
            for bit in [0x01, 0x80] {
                let mut t = raw.clone();
                t[i] ^= bit;
                assert_eq!(r.open(NAME, &URL_SAFE_NO_PAD.encode(&t)), None, "byte {i}");
            }
        }
        // Truncated, extended, re-versioned.
        for n in 0..raw.len() {
            assert_eq!(r.open(NAME, &URL_SAFE_NO_PAD.encode(&raw[..n])), None);
        }
        let mut longer = raw.clone();
        longer.push(0);
        assert_eq!(r.open(NAME, &URL_SAFE_NO_PAD.encode(&longer)), None);
        let mut v2 = raw.clone();
        v2[0] = 2;
        assert_eq!(r.open(NAME, &URL_SAFE_NO_PAD.encode(&v2)), None);
    }

    #[test]
    fn garbage_is_none_never_a_panic() {
        let r = ring(&[1]);
        let s = r.seal(NAME, b"v").unwrap();
        for g in [
            "",
            "A",
            "AA",
            "====",
            "!!!!",
            "héllo",
            &format!("{s}="),
            &format!("{s} "),
            &format!(" {s}"),
            &format!("+{}", &s[1..]),
            &format!("{}/", &s[..s.len() - 1]),
            &"A".repeat(MAX_SEALED_LEN + 1),
            &"A".repeat(1_000_000),
        ] {
            assert_eq!(r.open(NAME, g), None, "{:.40}", g);
        }
        // Padding and standard-alphabet spellings are not ours.
        let padded = URL_SAFE.encode(URL_SAFE_NO_PAD.decode(&s).unwrap());
        if padded != s {
            assert_eq!(r.open(NAME, &padded), None);
        }
    }

    #[test]
    fn size_limits_agree() {
        let r = ring(&[1]);
        // The largest plaintext whose sealed text fits.
        let max = (0..MAX_SEALED_LEN)
            .rev()
            .find(|n| sealed_len(*n) <= MAX_SEALED_LEN)
            .unwrap();
        let s = r.seal(NAME, &vec![7; max]).unwrap();
        assert!(s.len() <= MAX_SEALED_LEN);
        assert_eq!(r.open(NAME, &s).map(|v| v.len()), Some(max));
        let e = r.seal(NAME, &vec![7; max + 1]).unwrap_err();
        assert_eq!(e, SealError::TooLarge { len: max + 1 });
    }

    #[test]
    fn the_ring_is_shareable_across_threads() {
        fn check<T: Send + Sync>() {}
        check::<KeyRing>();
    }
}
