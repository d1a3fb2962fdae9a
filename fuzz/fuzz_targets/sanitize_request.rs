//! Fuzzes the FHIR request parser: arbitrary method, target, headers and body must give a
//! typed result or a typed error, never a panic.
#![no_main]

use fhirguard::sanitize::{InteractionCode, Sanitizer, SanitizerConfig};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static SANITIZER: OnceLock<Option<Sanitizer>> = OnceLock::new();

const METHODS: [http::Method; 5] = [
    http::Method::GET,
    http::Method::POST,
    http::Method::PUT,
    http::Method::PATCH,
    http::Method::DELETE,
];

fuzz_target!(|data: &[u8]| {
    // Every write enabled, so that their bodies are parsed too (the default refuses them
    // before the body).
    let Some(s) = SANITIZER
        .get_or_init(|| {
            let config = InteractionCode::WRITES.into_iter().fold(
                SanitizerConfig::us_core("/fhir"),
                SanitizerConfig::allow_interaction,
            );
            Sanitizer::new(config).ok()
        })
        .as_ref()
    else {
        return;
    };
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    // Layout: method byte, target, then optionally `\n` + content-type selector byte + body.
    let (target, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(p) => (&rest[..p], &rest[p + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    let (ct, body) = match body.split_first() {
        Some((c, b)) => (*c, b),
        None => (0, body),
    };
    let ct = match ct % 4 {
        0 => "application/fhir+json",
        1 => "application/x-www-form-urlencoded",
        2 => "application/json-patch+json",
        _ => "text/plain",
    };
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(ct));
    if m & 0x80 != 0 {
        headers.insert("prefer", http::HeaderValue::from_static("handling=lenient"));
    }
    let method = &METHODS[usize::from(m) % METHODS.len()];
    if let Ok(ok) = s.parse_parts(method, target, &headers, body) {
        // Whatever was accepted is typed one-to-one.
        assert_eq!(ok.typed.len(), ok.request.params.len());
    }
});
