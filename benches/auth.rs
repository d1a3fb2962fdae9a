//! Password hashing costs what its work factor promises, and a wrong password costs the same
//! as a right one (and an unknown account the same as a known one), so timing tells nothing.
//!
//! `cargo bench --bench auth`. The figures and their reading are in `docs/performance.md`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fhirguard::auth::{HashAlgorithm, HashParams, Password, PasswordHasher, dangerous};
use ring::pbkdf2;

fn hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("password");
    // A 600,000-iteration hash takes a large fraction of a second: few samples suffice.
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));

    let owasp = PasswordHasher::new(HashParams::OWASP_2023).unwrap();
    let right = Password::new("correct horse battery staple");
    let wrong = Password::new("correct horse battery stapler");
    let stored = owasp.hash(&right).unwrap();

    // The floor: ring's PBKDF2 itself with the same work factor and sizes.
    let salt = [7u8; 16];
    group.bench_function("ring_pbkdf2_sha256_600k_raw", |b| {
        let iterations = NonZeroU32::new(600_000).unwrap();
        b.iter(|| {
            let mut out = [0u8; 32];
            pbkdf2::derive(
                pbkdf2::PBKDF2_HMAC_SHA256,
                iterations,
                &salt,
                black_box(right.expose_secret().as_bytes()),
                &mut out,
            );
            out
        })
    });
    group.bench_function("hash_owasp_600k", |b| {
        b.iter(|| owasp.hash(black_box(&right)).unwrap())
    });
    group.bench_function("verify_right_600k", |b| {
        b.iter(|| owasp.verify(black_box(&right), &stored).unwrap())
    });
    group.bench_function("verify_wrong_600k", |b| {
        b.iter(|| owasp.verify(black_box(&wrong), &stored).unwrap())
    });
    group.bench_function("verify_unknown_user_600k", |b| {
        b.iter(|| owasp.verify_unknown_user(black_box(&wrong)))
    });

    // Linear in the work factor: a tenth of the iterations costs a tenth of the time.
    let tenth = dangerous::weak_hasher(HashParams {
        algorithm: HashAlgorithm::Pbkdf2Sha256,
        iterations: 60_000,
        salt_len: 16,
    })
    .unwrap();
    let stored_tenth = tenth.hash(&right).unwrap();
    group.bench_function("verify_right_60k", |b| {
        b.iter(|| tenth.verify(black_box(&right), &stored_tenth).unwrap())
    });
    group.finish();
}

criterion_group!(benches, hashing);
criterion_main!(benches);
