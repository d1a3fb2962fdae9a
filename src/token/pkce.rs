//! PKCE (RFC 7636), `S256` only.
//!
//! Lengths and alphabets are checked before any hashing or comparison, so hostile input never
//! reaches a helper that might assert (oauth2's `PkceCodeVerifier` panics outside 43–128
//! characters).

use ring::digest::{SHA256, digest};
use subtle::ConstantTimeEq;

use super::jose::b64;

/// Why a PKCE value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PkceError {
    /// No `code_challenge` at the authorize step.
    #[error("code_challenge is missing")]
    MissingChallenge,
    /// No `code_challenge_method`: RFC 7636 would read that as `plain`, which is refused.
    #[error("code_challenge_method is missing")]
    MissingMethod,
    /// A method other than `S256` (including `plain`).
    #[error("only the S256 code_challenge_method is supported")]
    UnsupportedMethod,
    /// The challenge is not 43 base64url characters (the length of an S256 digest).
    #[error("code_challenge is malformed")]
    MalformedChallenge,
    /// No `code_verifier` (or an empty one) at the token step.
    #[error("code_verifier is missing")]
    MissingVerifier,
    /// The verifier is not 43–128 characters of `[A-Za-z0-9-._~]`.
    #[error("code_verifier is malformed")]
    MalformedVerifier,
    /// `BASE64URL(SHA256(verifier))` differs from the challenge.
    #[error("code_verifier does not match the code_challenge")]
    Mismatch,
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Checks the authorize step's `code_challenge` and `code_challenge_method`.
pub fn check_challenge(challenge: Option<&str>, method: Option<&str>) -> Result<(), PkceError> {
    let challenge = challenge.ok_or(PkceError::MissingChallenge)?;
    match method {
        None => return Err(PkceError::MissingMethod),
        Some("S256") => {}
        Some(_) => return Err(PkceError::UnsupportedMethod),
    }
    let ok = challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(PkceError::MalformedChallenge)
    }
}

/// Checks the token step's `code_verifier` against the stored S256 `challenge`.
pub fn verify(challenge: &str, verifier: Option<&str>) -> Result<(), PkceError> {
    let verifier = verifier
        .filter(|v| !v.is_empty())
        .ok_or(PkceError::MissingVerifier)?;
    if !(43..=128).contains(&verifier.len()) || !verifier.bytes().all(unreserved) {
        return Err(PkceError::MalformedVerifier);
    }
    let computed = s256(verifier);
    if computed.as_bytes().ct_eq(challenge.as_bytes()).into() {
        Ok(())
    } else {
        Err(PkceError::Mismatch)
    }
}

/// `BASE64URL(SHA256(verifier))`.
pub fn s256(verifier: &str) -> String {
    b64(digest(&SHA256, verifier.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(s256(verifier), challenge);
        assert_eq!(verify(challenge, Some(verifier)), Ok(()));
        assert_eq!(check_challenge(Some(challenge), Some("S256")), Ok(()));
    }

    #[test]
    fn refuses_plain_missing_blank_wrong_and_malformed() {
        let challenge = s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(
            check_challenge(Some(&challenge), Some("plain")),
            Err(PkceError::UnsupportedMethod)
        );
        assert_eq!(
            check_challenge(Some(&challenge), None),
            Err(PkceError::MissingMethod)
        );
        assert_eq!(
            check_challenge(None, Some("S256")),
            Err(PkceError::MissingChallenge)
        );
        assert_eq!(
            check_challenge(Some("short"), Some("S256")),
            Err(PkceError::MalformedChallenge)
        );
        assert_eq!(verify(&challenge, None), Err(PkceError::MissingVerifier));
        assert_eq!(
            verify(&challenge, Some("")),
            Err(PkceError::MissingVerifier)
        );
        assert_eq!(
            verify(&challenge, Some("x")),
            Err(PkceError::MalformedVerifier)
        );
        assert_eq!(
            verify(&challenge, Some(&"a".repeat(129))),
            Err(PkceError::MalformedVerifier)
        );
        assert_eq!(
            verify(&challenge, Some(&"a".repeat(43))),
            Err(PkceError::Mismatch)
        );
        // The "plain" attack: sending the challenge itself as the verifier.
        assert_eq!(
            verify(&challenge, Some(&challenge)),
            Err(PkceError::Mismatch)
        );
    }
}
