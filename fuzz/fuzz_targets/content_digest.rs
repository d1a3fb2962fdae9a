//! Fuzzes the `Content-Digest` header parser and verifier (RFC 9530 over RFC 8941).
#![no_main]

use fhirguard::integrity::{parse_content_digest, verify_content_digest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_content_digest(data);
    if let Ok(v) = http::HeaderValue::from_bytes(data) {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-digest", v);
        // A fuzzer-made header must never verify a body it did not digest, except by a
        // SHA-256 collision.
        if verify_content_digest(&headers, b"fhirguard fuzz body").is_ok() {
            panic!("forged digest verified");
        }
    }
});
