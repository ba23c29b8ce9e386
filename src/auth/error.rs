//! Why a token was refused: a leaf module, so that every part of `auth`
//! (and the rest of the gate) can name the error without importing the
//! verifier.

/// Why a token was refused. Descriptions never echo the token and never
/// tell which of several keys almost matched.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyError {
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("token is too large")]
    TooLarge,
    #[error("alg \"none\" is never accepted")]
    AlgNone,
    #[error("unsupported algorithm {0}")]
    UnsupportedAlg(String),
    #[error("algorithm {0} is not allowed")]
    AlgNotAllowed(String),
    #[error("token has a crit header; no extensions are understood")]
    Crit,
    #[error("signature is invalid")]
    BadSignature,
    #[error("token has no exp claim")]
    MissingExp,
    #[error("token expired {ago}s ago")]
    Expired { ago: u64 },
    #[error("token is not valid for another {in_secs}s (nbf)")]
    NotYetValid { in_secs: u64 },
    #[error("token is issued {in_secs}s in the future (iat)")]
    IssuedInFuture { in_secs: u64 },
    #[error("{0}")]
    BadClaim(String),
    #[error("issuer (iss) is not the one expected")]
    WrongIssuer,
    #[error("audience (aud) does not match")]
    WrongAudience,
    #[error("token names no user (none of the claims {0})")]
    NoUser(String),
    #[error("HMAC-signed tokens are not accepted here")]
    NoHmacKey,
    #[error("HMAC-signed token claims an asymmetric issuer")]
    HmacForAsymmetricIssuer,
    #[error("issuer (iss) is not trusted")]
    UntrustedIssuer,
    #[error("key id (kid) is not valid")]
    BadKid,
    #[error("no key of the issuer matches the token's kid")]
    UnknownKid,
    #[error("no key of the issuer fits the token's algorithm")]
    NoSuitableKey,
    #[error("the issuer's keys are not available yet")]
    KeysUnavailable { retry_after: u64 },
    #[error("token type (typ) is not the one required")]
    WrongType,
    #[error("token has been revoked")]
    Revoked,
    #[error("the revocation list is out of date (store.max_stale)")]
    RevocationsStale { retry_after: u64 },
}

impl VerifyError {
    /// A short label for metrics and access logs.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Malformed(_) | VerifyError::TooLarge => "malformed",
            VerifyError::AlgNone
            | VerifyError::UnsupportedAlg(_)
            | VerifyError::AlgNotAllowed(_)
            | VerifyError::NoHmacKey => "algorithm",
            VerifyError::Crit => "crit",
            VerifyError::BadSignature => "signature",
            VerifyError::MissingExp | VerifyError::BadClaim(_) => "claims",
            VerifyError::Expired { .. } => "expired",
            VerifyError::NotYetValid { .. } | VerifyError::IssuedInFuture { .. } => "not_yet_valid",
            VerifyError::WrongIssuer
            | VerifyError::UntrustedIssuer
            | VerifyError::HmacForAsymmetricIssuer => "issuer",
            VerifyError::WrongAudience => "audience",
            VerifyError::NoUser(_) => "no_user",
            VerifyError::BadKid | VerifyError::UnknownKid | VerifyError::NoSuitableKey => {
                "unknown_kid"
            }
            VerifyError::KeysUnavailable { .. } => "keys_unavailable",
            VerifyError::WrongType => "type",
            VerifyError::Revoked => "revoked",
            VerifyError::RevocationsStale { .. } => "store_stale",
        }
    }
}
