//! The one source of randomness: secrets, token ids, generated keys and
//! the request-id prefix. The system generator failing is an error, never
//! a buffer of zeros that would make every "random" value the same.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// The system's random generator did not answer.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

/// Fills `buf` with random bytes.
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    SystemRandom::new().fill(buf).map_err(|_| RandomError)
}

/// A random URL-safe string carrying `n` bytes of entropy.
pub(crate) fn token(n: usize) -> Result<String, RandomError> {
    let mut buf = vec![0u8; n];
    fill(&mut buf)?;
    Ok(crate::encoding::b64url(&buf))
}

/// A random 64-bit number.
pub(crate) fn u64() -> Result<u64, RandomError> {
    let mut buf = [0u8; 8];
    fill(&mut buf)?;
    Ok(u64::from_le_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_and_have_the_asked_entropy() {
        let a = token(16).unwrap();
        let b = token(16).unwrap();
        assert_ne!(a, b);
        // 16 bytes are 22 base64url characters without padding.
        assert_eq!(a.len(), 22);
        assert_ne!(u64().unwrap(), u64().unwrap());
    }
}
