//! Access-token validation from arbitrary bytes (header and Authorization forms).
#![no_main]

use std::sync::{Arc, OnceLock};

use fhirguard::token::{
    AccessTokenValidator, Algorithm, InMemoryKeySource, MemoryGrantStatus, SigningKey,
    ValidatorConfig,
};
use libfuzzer_sys::fuzz_target;
use time::{Duration, OffsetDateTime};

fn validator() -> &'static AccessTokenValidator {
    static V: OnceLock<AccessTokenValidator> = OnceLock::new();
    V.get_or_init(|| {
        let key = SigningKey::generate_ec(Algorithm::ES256, "es-1").expect("key");
        let keys = Arc::new(InMemoryKeySource::with_keys(Duration::hours(2), [key]).expect("keys"));
        AccessTokenValidator::new(
            ValidatorConfig::new("https://ehr.example.org/auth", "https://ehr.example.org/fhir"),
            keys,
            Arc::new(MemoryGrantStatus::new()),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = validator().validate(text, now);
    }
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value);
        let _ = validator().validate_headers(&headers, now);
    }
});
