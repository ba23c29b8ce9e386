//! How a refusal is said in gRPC: the `grpc-status` for the gate's HTTP
//! status and the `grpc-message` encoding. `respond` renders it; which
//! requests are gRPC calls is `proxy::grpc`.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// gRPC status codes the gate answers with.
pub(crate) mod code {
    pub(crate) const UNKNOWN: u32 = 2;
    pub(crate) const INVALID_ARGUMENT: u32 = 3;
    pub(crate) const DEADLINE_EXCEEDED: u32 = 4;
    pub(crate) const PERMISSION_DENIED: u32 = 7;
    pub(crate) const UNIMPLEMENTED: u32 = 12;
    pub(crate) const UNAVAILABLE: u32 = 14;
    pub(crate) const UNAUTHENTICATED: u32 = 16;
}

/// The gRPC status for an HTTP status the gate refuses with. A 504 is
/// DEADLINE_EXCEEDED when the client set a deadline (the wait it asked
/// for is over), UNAVAILABLE otherwise (as gRPC maps an HTTP 504).
pub(crate) fn status_for(http: u16, deadline_given: bool) -> u32 {
    match http {
        400 => code::INVALID_ARGUMENT,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        405 => code::UNIMPLEMENTED,
        504 if deadline_given => code::DEADLINE_EXCEEDED,
        502..=504 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// gRPC's `grpc-message` encoding: printable ASCII except `%` as it is,
/// everything else percent-encoded (of its UTF-8 bytes).
const GRPC_MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

pub(crate) fn encode_message(m: &str) -> String {
    utf8_percent_encode(m, GRPC_MESSAGE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_messages() {
        assert_eq!(status_for(401, false), 16);
        assert_eq!(status_for(403, false), 7);
        assert_eq!(status_for(400, false), 3);
        assert_eq!(status_for(502, true), 14);
        assert_eq!(status_for(503, false), 14);
        assert_eq!(status_for(504, false), 14);
        assert_eq!(status_for(504, true), 4);
        assert_eq!(
            encode_message("a 100% \"ok\"\né"),
            "a 100%25 \"ok\"%0A%C3%A9"
        );
    }
}
