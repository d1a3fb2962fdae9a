#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]
//! Access-token validation cost against a bare ring P-256 verification of the same token.
//!
//! Issue 4's target: validating an ES256 access token (signature, claims, grant check) costs at
//! most 1.25× the bare verification, measured in the same run.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use fhirguard::consent::ActiveGrant;
use fhirguard::token::{
    AccessTokenClaims, AccessTokenValidator, Algorithm, InMemoryKeySource, KeySource,
    MemoryGrantStatus, SigningKey, ValidatorConfig, sign_access_token,
};
use fhirguard::{ClientId, GrantId, PatientId};
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use time::{Duration, OffsetDateTime};

fn bench(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let key = SigningKey::generate_ec(Algorithm::ES256, "k1").expect("key");
    let keys = Arc::new(InMemoryKeySource::with_keys(Duration::hours(2), [key]).expect("source"));
    let grants = Arc::new(MemoryGrantStatus::new());
    grants.insert(ActiveGrant {
        grant_id: GrantId::new("g1").expect("id"),
        patient: PatientId::new("355").expect("id"),
        client_id: ClientId::new("app").expect("id"),
        categories: BTreeSet::new(),
        ends_at: now + Duration::days(365),
    });
    let claims = AccessTokenClaims {
        iss: "https://ehr.example.org/auth".into(),
        sub: "user-1".into(),
        aud: vec!["https://ehr.example.org/fhir".into()],
        exp: (now + Duration::hours(1)).unix_timestamp(),
        iat: now.unix_timestamp(),
        nbf: None,
        jti: "0123456789abcdef0123456789abcdef".into(),
        client_id: ClientId::new("app").expect("id"),
        scope: "launch/patient openid fhirUser offline_access patient/*.rs".into(),
        grant_id: Some(GrantId::new("g1").expect("id")),
        patient: Some(PatientId::new("355").expect("id")),
        encounter: None,
        fhir_user: Some("Patient/355".into()),
        family: Some("fam-0123456789".into()),
        context: None,
    };
    let token = sign_access_token(&*keys, Algorithm::ES256, &claims).expect("sign");
    let validator = AccessTokenValidator::new(
        ValidatorConfig::new(
            "https://ehr.example.org/auth",
            "https://ehr.example.org/fhir",
        ),
        keys.clone(),
        grants,
    );
    assert!(validator.validate(&token, now).is_ok());

    // The bare verification: the same signing input and signature, ring only.
    let (input, sig) = token.rsplit_once('.').expect("jws");
    let sig = URL_SAFE_NO_PAD.decode(sig).expect("b64");
    let jwk = keys.jwks(now).keys.remove(0);
    let mut point = vec![4u8];
    point.extend(URL_SAFE_NO_PAD.decode(jwk.x.expect("x")).expect("x"));
    point.extend(URL_SAFE_NO_PAD.decode(jwk.y.expect("y")).expect("y"));

    // The machine is shared, so load drifts during a run. Both functions therefore time the
    // two operations interleaved, one after the other in every iteration, and each reports
    // only its own share: the ratio of the two medians compares like with like.
    let bare = || {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, black_box(&point))
            .verify(black_box(input.as_bytes()), black_box(&sig))
            .expect("verifies")
    };
    let full = || validator.validate(black_box(&token), now).expect("valid");
    let interleaved = |iters: u64, want_full: bool| {
        let (mut t_bare, mut t_full) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        for _ in 0..iters {
            let start = Instant::now();
            bare();
            t_bare += start.elapsed();
            let start = Instant::now();
            black_box(full());
            t_full += start.elapsed();
        }
        if want_full { t_full } else { t_bare }
    };
    let mut group = c.benchmark_group("access_token_es256");
    group.bench_function("bare_ring_p256_verify", |b| {
        b.iter_custom(|iters| interleaved(iters, false))
    });
    group.bench_function("validate_access_token", |b| {
        b.iter_custom(|iters| interleaved(iters, true))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
