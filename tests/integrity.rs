//! Integrity tests: Content-Digest round trips, tampering, header parsing edge cases, and
//! detached JWS over a fixture Bundle.

use fhirguard::integrity::{
    CONTENT_DIGEST, DigestAlgorithm, DigestError, JwsError, JwsSigner, add_content_digest,
    content_digest, parse_content_digest, verify_content_digest, verify_detached,
};
use http::{HeaderMap, HeaderValue};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

use crate::common::fixture_path;

fn bundle_bytes() -> Vec<u8> {
    std::fs::read(fixture_path("85")).unwrap()
}

fn headers_with(v: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_DIGEST, HeaderValue::from_str(v).unwrap());
    h
}

#[test]
fn rfc9530_examples() {
    // RFC 9530 §2: the body `{"hello": "world"}`.
    let body = br#"{"hello": "world"}"#;
    let v = content_digest(body, &[DigestAlgorithm::Sha256, DigestAlgorithm::Sha512]);
    assert_eq!(
        v,
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"
    );
    assert_eq!(
        verify_content_digest(&headers_with(v.to_str().unwrap()), body),
        Ok(DigestAlgorithm::Sha512)
    );
}

#[test]
fn response_digest_round_trip_and_tamper_detection() {
    let body = bundle_bytes();
    let mut resp = http::Response::new(body.clone());
    add_content_digest(&mut resp, &[DigestAlgorithm::Sha256]);
    assert_eq!(
        verify_content_digest(resp.headers(), &body),
        Ok(DigestAlgorithm::Sha256)
    );

    // One flipped byte anywhere, truncation, or an appended byte is detected.
    for i in [0, body.len() / 2, body.len() - 1] {
        let mut t = body.clone();
        t[i] ^= 0x01;
        assert_eq!(
            verify_content_digest(resp.headers(), &t),
            Err(DigestError::Mismatch("sha-256"))
        );
    }
    assert!(verify_content_digest(resp.headers(), &body[..body.len() - 1]).is_err());
    let mut longer = body.clone();
    longer.push(b' ');
    assert!(verify_content_digest(resp.headers(), &longer).is_err());
}

#[test]
fn every_offered_supported_digest_must_match() {
    let body = b"payload";
    let good256 = content_digest(body, &[DigestAlgorithm::Sha256]);
    let bad512 = content_digest(b"other", &[DigestAlgorithm::Sha512]);
    let mixed = format!(
        "{}, {}",
        good256.to_str().unwrap(),
        bad512.to_str().unwrap()
    );
    assert_eq!(
        verify_content_digest(&headers_with(&mixed), body),
        Err(DigestError::Mismatch("sha-512"))
    );
    // Split over two header lines, combined per RFC 9110.
    let mut h = HeaderMap::new();
    h.append(CONTENT_DIGEST, good256.clone());
    h.append(CONTENT_DIGEST, bad512);
    assert!(verify_content_digest(&h, body).is_err());
}

#[test]
fn header_parsing_edge_cases() {
    let body = b"x";
    assert_eq!(
        verify_content_digest(&HeaderMap::new(), body),
        Err(DigestError::Missing)
    );
    for (v, want) in [
        (
            "md5=:AAAAAAAAAAAAAAAAAAAAAA==:",
            DigestError::NoSupportedAlgorithm,
        ),
        (
            "unixsum=12345, sha=:AAAA:",
            DigestError::NoSupportedAlgorithm,
        ),
        (
            "SHA-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
            DigestError::Malformed,
        ),
        (
            "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
            DigestError::Malformed,
        ),
        ("sha-256=:not base64!:", DigestError::Malformed),
        ("sha-256=:AAAA:", DigestError::Malformed),
        (
            "sha-256=\"X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=\"",
            DigestError::Malformed,
        ),
        (
            "sha-256=(:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:)",
            DigestError::Malformed,
        ),
        (
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:,",
            DigestError::Malformed,
        ),
        (",", DigestError::Malformed),
        ("", DigestError::Malformed),
    ] {
        let got = verify_content_digest(&headers_with(v), body);
        // An empty header may parse as an empty dictionary: nothing supported, refused.
        if v.is_empty() {
            assert!(got.is_err());
        } else {
            assert_eq!(got, Err(want), "{v}");
        }
    }
    assert_eq!(
        parse_content_digest("a=1, sha-256=:AAAA:".repeat(100).as_bytes()),
        Err(DigestError::TooLong)
    );
    // Parameters on a digest item are allowed by RFC 8941 and ignored.
    let v = format!("{};x=1", content_digest(body, &[]).to_str().unwrap());
    assert_eq!(
        verify_content_digest(&headers_with(&v), body),
        Ok(DigestAlgorithm::Sha256)
    );
}

fn signer(kid: &str) -> JwsSigner {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    JwsSigner::from_pkcs8(pkcs8.as_ref(), kid).unwrap()
}

#[test]
fn detached_jws_over_a_bundle() {
    let bundle = bundle_bytes();
    let s = signer("ehr-2026-11");
    let jws = s.sign_detached(&bundle).unwrap();
    assert_eq!(jws.split('.').nth(1), Some(""), "payload is detached");
    assert_eq!(
        verify_detached(&jws, &bundle, s.public_key()).unwrap(),
        "ehr-2026-11"
    );

    let mut tampered = bundle.clone();
    tampered[100] ^= 1;
    assert_eq!(
        verify_detached(&jws, &tampered, s.public_key()),
        Err(JwsError::BadSignature)
    );
    let other = signer("other");
    assert_eq!(
        verify_detached(&jws, &bundle, other.public_key()),
        Err(JwsError::BadSignature)
    );
    assert!(format!("{s:?}").contains("redacted"));
}

#[test]
fn jws_verifier_refuses_algorithm_confusion_and_malformed_input() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let s = signer("k1");
    let payload = b"{}";
    let jws = s.sign_detached(payload).unwrap();
    let sig = jws.rsplit('.').next().unwrap().to_owned();
    for header in [
        r#"{"alg":"none","kid":"k1"}"#,
        r#"{"alg":"HS256","kid":"k1"}"#,
        r#"{"alg":"ES256","kid":"k1","crit":["b64"],"b64":false}"#,
        r#"{"alg":"ES256","kid":"k1","jku":"https://evil.example/jwks"}"#,
        r#"{"alg":"ES256","jwk":{"kty":"EC"}}"#,
    ] {
        let forged = format!("{}..{}", b64(header), sig);
        assert_eq!(
            verify_detached(&forged, payload, s.public_key()),
            Err(JwsError::UnsupportedHeader),
            "{header}"
        );
    }
    // An attached payload, missing parts, junk.
    let attached = jws.replacen("..", &format!(".{}.", b64("{}")), 1);
    assert_eq!(
        verify_detached(&attached, payload, s.public_key()),
        Err(JwsError::Malformed)
    );
    for junk in [
        "",
        "..",
        "a.b",
        "a..b..c",
        "!!..!!",
        &format!("{}..", b64("{}")),
    ] {
        assert!(
            verify_detached(junk, payload, s.public_key()).is_err(),
            "{junk}"
        );
    }
    assert_eq!(
        JwsSigner::from_pkcs8(b"not a key", "k").unwrap_err(),
        JwsError::InvalidKey
    );
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    assert_eq!(
        JwsSigner::from_pkcs8(pkcs8.as_ref(), "bad\"kid").unwrap_err(),
        JwsError::InvalidKeyId
    );
}
