#![allow(missing_docs)]
//! Scope engine costs: parsing and normalising a typical SMART request, and the covers checks
//! enforcement runs on every request. Targets: parse + normalise of a 12-scope request < 5 µs,
//! a covers check < 100 ns.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fhirguard::scope::{Context, FhirType, Permission, Scope, ScopeSet, negotiate};

const OBS_CAT: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

fn request() -> String {
    format!(
        "launch/patient openid fhirUser offline_access patient/Patient.rs patient/Condition.rs \
         patient/Observation.rs?category={OBS_CAT}|laboratory \
         patient/Observation.rs?category={OBS_CAT}|vital-signs patient/MedicationRequest.rs \
         patient/AllergyIntolerance.rs patient/Immunization.rs patient/Procedure.rs"
    )
}

fn bench(c: &mut Criterion) {
    let text = request();
    let set: ScopeSet = text.parse().unwrap_or_default();
    assert_eq!(set.len(), 12);

    // Floor for comparison on a busy machine: split the same string into 12 owned Strings.
    c.bench_function("scope/baseline_split_12", |b| {
        b.iter(|| {
            black_box(
                black_box(text.as_str())
                    .split(' ')
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<String>>(),
            )
        })
    });
    c.bench_function("scope/parse_12", |b| {
        b.iter(|| black_box(black_box(text.as_str()).parse::<ScopeSet>()))
    });
    c.bench_function("scope/parse_normalise_12", |b| {
        b.iter(|| {
            black_box(
                black_box(text.as_str())
                    .parse::<ScopeSet>()
                    .map(|s| s.normalized()),
            )
        })
    });
    c.bench_function("scope/display_12", |b| {
        b.iter(|| black_box(black_box(&set).to_string()))
    });

    let wildcard: Scope = "patient/*.rs".parse().unwrap_or(Scope::Launch);
    let obs: Scope = "patient/Observation.rs".parse().unwrap_or(Scope::Launch);
    let lab_or_vs: Scope =
        format!("patient/Observation.rs?category={OBS_CAT}|laboratory,{OBS_CAT}|vital-signs")
            .parse()
            .unwrap_or(Scope::Launch);
    let lab: Scope = format!("patient/Observation.s?category={OBS_CAT}|laboratory")
        .parse()
        .unwrap_or(Scope::Launch);
    c.bench_function("scope/covers_wildcard", |b| {
        b.iter(|| black_box(black_box(&wildcard).covers(black_box(&obs))))
    });
    c.bench_function("scope/covers_granular", |b| {
        b.iter(|| black_box(black_box(&lab_or_vs).covers(black_box(&lab))))
    });
    c.bench_function("scope/set_covers_12", |b| {
        b.iter(|| black_box(black_box(&set).covers(black_box(&lab))))
    });
    c.bench_function("scope/set_access_12", |b| {
        b.iter(|| {
            black_box(black_box(&set).access(
                Context::Patient,
                black_box(FhirType::PROCEDURE),
                Permission::Search,
            ))
        })
    });

    let client: ScopeSet = "launch/patient openid fhirUser offline_access patient/*.rs"
        .parse()
        .unwrap_or_default();
    let patient: ScopeSet = format!(
        "patient/Patient.rs patient/Observation.rs?category={OBS_CAT}|laboratory patient/Immunization.rs"
    )
    .parse()
    .unwrap_or_default();
    c.bench_function("scope/negotiate_12", |b| {
        b.iter(|| black_box(negotiate(black_box(&set), &client, &patient)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
