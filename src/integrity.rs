//! Payload integrity: RFC 9530 `Content-Digest` and detached JWS signatures.
//!
//! A `Content-Digest` lets the receiver of a FHIR payload detect that the bytes it got are not
//! the bytes that were sent (a proxy that rewrote a Bundle, a truncated body, a tampered
//! cache). [`content_digest`] computes the header for a body; [`verify_content_digest`]
//! parses a received header as an RFC 8941 dictionary (through the `sfv` crate) and checks
//! every supported digest in it against the body in constant time.
//!
//! Hosts that sign payloads can add a detached JWS (RFC 7515 appendix F): the JWS header and
//! signature travel apart from the payload, which stays the exact bytes of the Bundle sent.
//! Only ES256 through `ring` is offered; a verifier refuses every other `alg` (including
//! `none` and HMAC algorithms), and any `crit` or `b64` header, so there is no algorithm
//! confusion to exploit.
//!
//! ```
//! use fhirguard::integrity::{DigestAlgorithm, content_digest, verify_content_digest};
//!
//! let body = br#"{"resourceType":"Bundle","type":"searchset"}"#;
//! let header = content_digest(body, &[DigestAlgorithm::Sha256]);
//! let mut headers = http::HeaderMap::new();
//! headers.insert("content-digest", header);
//! assert_eq!(verify_content_digest(&headers, body), Ok(DigestAlgorithm::Sha256));
//! assert!(verify_content_digest(&headers, b"tampered").is_err());
//! ```

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderValue};
use ring::digest;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use subtle::ConstantTimeEq;

/// The `Content-Digest` header name.
pub const CONTENT_DIGEST: &str = "content-digest";

/// The header fhirguard uses to carry a detached JWS over a response body.
pub const JWS_SIGNATURE: &str = "x-jws-signature";

/// Longest `Content-Digest` value accepted (bytes): room for several algorithms, no more.
pub const MAX_DIGEST_HEADER: usize = 1024;

/// A digest algorithm of the HTTP Digest Algorithm Values registry that fhirguard supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DigestAlgorithm {
    /// `sha-256`.
    Sha256,
    /// `sha-512`.
    Sha512,
}

impl DigestAlgorithm {
    /// The registry key (`"sha-256"`).
    pub fn key(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha-256",
            DigestAlgorithm::Sha512 => "sha-512",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        match key {
            "sha-256" => Some(DigestAlgorithm::Sha256),
            "sha-512" => Some(DigestAlgorithm::Sha512),
            _ => None,
        }
    }

    fn ring(self) -> &'static digest::Algorithm {
        match self {
            DigestAlgorithm::Sha256 => &digest::SHA256,
            DigestAlgorithm::Sha512 => &digest::SHA512,
        }
    }

    /// The digest of `body`.
    pub fn digest(self, body: &[u8]) -> Vec<u8> {
        digest::digest(self.ring(), body).as_ref().to_vec()
    }
}

/// Why a `Content-Digest` did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// No `Content-Digest` header was sent.
    #[error("no Content-Digest header")]
    Missing,
    /// The header is longer than [`MAX_DIGEST_HEADER`].
    #[error("Content-Digest header too long")]
    TooLong,
    /// The header is not an RFC 8941 dictionary, or a supported algorithm's value is not a
    /// byte sequence of the algorithm's digest length.
    #[error("Content-Digest header is malformed")]
    Malformed,
    /// Only unknown or insecure algorithms (`md5`, `sha`, `crc32c`…) were offered.
    #[error("no supported digest algorithm offered")]
    NoSupportedAlgorithm,
    /// A supported digest does not match the body: the body was altered.
    #[error("{0} digest does not match the body")]
    Mismatch(&'static str),
}

/// Computes the `Content-Digest` value for `body` with each algorithm
/// (`sha-256=:…:, sha-512=:…:`). An empty `algorithms` means sha-256.
pub fn content_digest(body: &[u8], algorithms: &[DigestAlgorithm]) -> HeaderValue {
    let algorithms = if algorithms.is_empty() {
        &[DigestAlgorithm::Sha256][..]
    } else {
        algorithms
    };
    let mut value = String::with_capacity(algorithms.len() * 100);
    for (i, alg) in algorithms.iter().enumerate() {
        if i > 0 {
            value.push_str(", ");
        }
        value.push_str(alg.key());
        value.push_str("=:");
        STANDARD.encode_string(digest::digest(alg.ring(), body), &mut value);
        value.push(':');
    }
    // Keys and base64 are visible ASCII, so this cannot fail; an empty value would make
    // verification fail closed.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Sets `Content-Digest` on a response (or request) from its body.
pub fn add_content_digest<B: AsRef<[u8]>>(
    message: &mut http::Response<B>,
    algorithms: &[DigestAlgorithm],
) {
    let value = content_digest(message.body().as_ref(), algorithms);
    message.headers_mut().insert(CONTENT_DIGEST, value);
}

/// Parses a `Content-Digest` value into the supported `(algorithm, digest)` pairs it holds.
///
/// Unknown and insecure algorithms are skipped, as RFC 9530 §2 allows; a supported one whose
/// value is not a byte sequence of the right length makes the whole header malformed.
pub fn parse_content_digest(value: &[u8]) -> Result<Vec<(DigestAlgorithm, Vec<u8>)>, DigestError> {
    if value.len() > MAX_DIGEST_HEADER {
        return Err(DigestError::TooLong);
    }
    let dict: sfv::Dictionary = sfv::Parser::new(value)
        .with_version(sfv::Version::Rfc8941)
        .parse()
        .map_err(|_| DigestError::Malformed)?;
    let mut out = Vec::new();
    for (key, entry) in &dict {
        let Some(alg) = DigestAlgorithm::from_key(key.as_str()) else {
            continue;
        };
        let sfv::ListEntry::Item(item) = entry else {
            return Err(DigestError::Malformed);
        };
        let bytes = item
            .bare_item
            .as_byte_sequence()
            .ok_or(DigestError::Malformed)?;
        if bytes.len() != alg.ring().output_len() {
            return Err(DigestError::Malformed);
        }
        out.push((alg, bytes.to_vec()));
    }
    Ok(out)
}

/// Verifies the `Content-Digest` header(s) in `headers` against `body`.
///
/// Every supported algorithm offered must match; the strongest one is returned. Several
/// header lines are combined as RFC 9110 §5.3 says.
pub fn verify_content_digest(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<DigestAlgorithm, DigestError> {
    let mut lines = headers.get_all(CONTENT_DIGEST).iter();
    let first = lines.next().ok_or(DigestError::Missing)?;
    let mut combined = first.as_bytes().to_vec();
    for more in lines {
        combined.extend_from_slice(b", ");
        combined.extend_from_slice(more.as_bytes());
    }
    let digests = parse_content_digest(&combined)?;
    let mut strongest = None;
    for (alg, expected) in &digests {
        let actual = digest::digest(alg.ring(), body);
        if !bool::from(actual.as_ref().ct_eq(expected)) {
            return Err(DigestError::Mismatch(alg.key()));
        }
        strongest = strongest.max(Some(*alg));
    }
    strongest.ok_or(DigestError::NoSupportedAlgorithm)
}

/// Why a JWS could not be made or did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// The PKCS#8 document is not a P-256 ECDSA key.
    #[error("signing key is not a P-256 PKCS#8 key")]
    InvalidKey,
    /// A key id outside `[A-Za-z0-9._-]{1,64}`.
    #[error("invalid key id")]
    InvalidKeyId,
    /// The random number generator failed while signing.
    #[error("signing failed")]
    SigningFailed,
    /// Not `header..signature` with base64url parts, or the header is not the expected JSON.
    #[error("malformed detached JWS")]
    Malformed,
    /// An `alg` other than ES256, or a `crit`/`b64` header this verifier does not support.
    #[error("JWS algorithm or header not accepted")]
    UnsupportedHeader,
    /// The signature does not verify over this payload with this key.
    #[error("JWS signature does not verify")]
    BadSignature,
}

/// Signs payloads (e.g. the exact bytes of a FHIR Bundle) with ES256, producing detached JWS.
pub struct JwsSigner {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl fmt::Debug for JwsSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwsSigner")
            .field("kid", &self.kid)
            .field("key", &"<redacted>")
            .finish()
    }
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 64
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl JwsSigner {
    /// A signer from a P-256 PKCS#8 private key and the key id verifiers look it up by.
    pub fn from_pkcs8(pkcs8: &[u8], kid: &str) -> Result<Self, JwsError> {
        if !valid_kid(kid) {
            return Err(JwsError::InvalidKeyId);
        }
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
                .map_err(|_| JwsError::InvalidKey)?;
        Ok(Self {
            key,
            kid: kid.to_owned(),
            rng,
        })
    }

    /// The public key (uncompressed SEC1 point) verifiers need.
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A detached compact JWS (`header..signature`) over `payload`.
    pub fn sign_detached(&self, payload: &[u8]) -> Result<String, JwsError> {
        let header = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, self.kid);
        let mut signing_input = URL_SAFE_NO_PAD.encode(header.as_bytes());
        let header_len = signing_input.len();
        signing_input.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut signing_input);
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| JwsError::SigningFailed)?;
        let mut jws = String::with_capacity(header_len + 90);
        jws.push_str(&signing_input[..header_len]);
        jws.push_str("..");
        URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut jws);
        Ok(jws)
    }
}

/// Verifies a detached JWS over `payload` with a P-256 public key (uncompressed SEC1 point);
/// returns the `kid` from its header.
pub fn verify_detached(jws: &str, payload: &[u8], public_key: &[u8]) -> Result<String, JwsError> {
    if jws.len() > 2048 {
        return Err(JwsError::Malformed);
    }
    let mut parts = jws.split('.');
    let (Some(h), Some(""), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed);
    };
    let header_bytes = URL_SAFE_NO_PAD.decode(h).map_err(|_| JwsError::Malformed)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header_bytes).map_err(|_| JwsError::Malformed)?;
    if header.get("alg").and_then(|v| v.as_str()) != Some("ES256")
        || header.contains_key("crit")
        || header.contains_key("b64")
        || header.contains_key("jku")
        || header.contains_key("x5u")
        || header.contains_key("jwk")
    {
        return Err(JwsError::UnsupportedHeader);
    }
    let kid = match header.get("kid") {
        None => String::new(),
        Some(serde_json::Value::String(k)) if valid_kid(k) => k.clone(),
        Some(_) => return Err(JwsError::Malformed),
    };
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwsError::Malformed)?;
    let mut signing_input = String::with_capacity(h.len() + 1 + payload.len() * 4 / 3 + 4);
    signing_input.push_str(h);
    signing_input.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut signing_input);
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, public_key)
        .verify(signing_input.as_bytes(), &sig)
        .map_err(|_| JwsError::BadSignature)?;
    Ok(kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9530_example_sha256() {
        // RFC 9530 §2 / appendix: `{"hello": "world"}` has this sha-256 digest.
        let body = br#"{"hello": "world"}"#;
        let v = content_digest(body, &[DigestAlgorithm::Sha256]);
        assert_eq!(v, "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:");
    }

    #[test]
    fn parse_skips_unknown_and_rejects_bad_supported() {
        assert_eq!(
            parse_content_digest(b"md5=:AAAA:, unixsum=1").unwrap(),
            vec![]
        );
        assert_eq!(
            parse_content_digest(b"sha-256=:AAAA:"),
            Err(DigestError::Malformed)
        );
        assert_eq!(
            parse_content_digest(b"sha-256=abc"),
            Err(DigestError::Malformed)
        );
        assert_eq!(
            parse_content_digest(b"sha-256=:"),
            Err(DigestError::Malformed)
        );
        assert_eq!(
            parse_content_digest(b"sha-256=(:AAAA:)"),
            Err(DigestError::Malformed)
        );
    }
}
