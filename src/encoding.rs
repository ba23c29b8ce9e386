//! base64url without padding (RFC 7515 §2), the encoding of JWS parts, JWK
//! members and the random strings the gate makes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
