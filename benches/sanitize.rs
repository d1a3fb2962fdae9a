#![allow(missing_docs, clippy::expect_used)]
//! Sanitizer and integrity benches: parse + validate a typical US Core search request, and
//! `Content-Digest` over a 1 MB body against ring's raw SHA-256 over the same bytes.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fhirguard::integrity::{DigestAlgorithm, content_digest, verify_content_digest};
use fhirguard::sanitize::{Sanitizer, SanitizerConfig};

fn sanitize(c: &mut Criterion) {
    let sanitizer = Sanitizer::new(SanitizerConfig::us_core("/fhir")).expect("config");
    let req = http::Request::get(
        "/fhir/Observation?patient=Patient/85&category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs&date=ge2024-01-01&_count=50",
    )
    .body(Vec::<u8>::new())
    .expect("request");
    let mut g = c.benchmark_group("sanitize");
    g.bench_function("parse_validate_us_core_search", |b| {
        b.iter(|| sanitizer.parse(black_box(&req)).expect("valid"))
    });
    let hostile =
        http::Request::get("/fhir/Observation?patient=1%27%20OR%20%271%27=%271&_count=50")
            .body(Vec::<u8>::new())
            .expect("request");
    g.bench_function("refuse_injection", |b| {
        b.iter(|| sanitizer.parse(black_box(&hostile)).expect_err("refused"))
    });
    g.finish();
}

fn digest(c: &mut Criterion) {
    // 1 MB of JSON-ish bytes (content does not matter to SHA-256's speed).
    let body: Vec<u8> = (0..1_048_576u32)
        .map(|i| b"{\"a\":[1,2,3]}"[(i % 13) as usize])
        .collect();
    let mut g = c.benchmark_group("digest_1mb");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("ring_sha256_raw", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA256, black_box(&body)))
    });
    g.bench_function("content_digest_sha256", |b| {
        b.iter(|| content_digest(black_box(&body), &[DigestAlgorithm::Sha256]))
    });
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "content-digest",
        content_digest(&body, &[DigestAlgorithm::Sha256]),
    );
    g.bench_function("verify_content_digest_sha256", |b| {
        b.iter(|| verify_content_digest(black_box(&headers), black_box(&body)).expect("ok"))
    });
    g.bench_function("ring_sha512_raw", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA512, black_box(&body)))
    });
    g.bench_function("content_digest_sha512", |b| {
        b.iter(|| content_digest(black_box(&body), &[DigestAlgorithm::Sha512]))
    });
    g.finish();
}

criterion_group!(benches, sanitize, digest);
criterion_main!(benches);
