#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]
//! Filtering a 1 MB searchset Bundle built from the fixtures, against a plain serde_json parse +
//! serialise of the same bytes (the budget: at most 1.5×).

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fhirguard::category::CategoryRegistry;
use fhirguard::enforce::{EnforceConfig, Enforcer, Permissions, ResourceGrant, ScopeContext};
use fhirguard::{CategoryId, PatientId};
use serde_json::{Value, json};

fn resolve(value: &mut Value, map: &HashMap<String, String>) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj.iter_mut() {
                if k == "reference" {
                    if let Some(t) = v.as_str().and_then(|s| map.get(s)) {
                        *v = Value::String(t.clone());
                    }
                } else {
                    resolve(v, map);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| resolve(i, map)),
        _ => {}
    }
}

/// A searchset of at least 1 MiB: the resources of both fixture patients, references resolved.
fn searchset() -> Vec<u8> {
    let mut resources = Vec::new();
    for patient in ["355", "85"] {
        let path = format!(
            "{}/tests/fixtures/uscore_bundle_patient_{patient}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let bundle: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let entries = bundle["entry"].as_array().unwrap();
        let map: HashMap<String, String> = entries
            .iter()
            .map(|e| {
                let r = &e["resource"];
                (
                    e["fullUrl"].as_str().unwrap().to_owned(),
                    format!(
                        "{}/{}",
                        r["resourceType"].as_str().unwrap(),
                        r["id"].as_str().unwrap()
                    ),
                )
            })
            .collect();
        for e in entries {
            let mut r = e["resource"].clone();
            resolve(&mut r, &map);
            resources.push(r);
        }
    }
    let mut entries = Vec::new();
    let mut size = 0;
    for r in resources.iter().cycle() {
        if size >= 1 << 20 {
            break;
        }
        size += serde_json::to_vec(r).unwrap().len() + 40;
        entries.push(json!({"fullUrl": format!("https://ehr.example/fhir/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap()),
            "resource": r, "search": {"mode": "match"}}));
    }
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(),
        "link": [{"relation": "self", "url": "https://ehr.example/fhir/Observation?patient=355"}],
        "entry": entries});
    serde_json::to_vec(&bundle).unwrap()
}

fn bench(c: &mut Criterion) {
    let bytes = searchset();
    let registry = CategoryRegistry::default_registry();
    let granted = [
        "vital-signs",
        "laboratory",
        "smoking-status",
        "problems",
        "clinical-notes",
    ]
    .map(|c| CategoryId::new(c).unwrap());
    let enforcer = Enforcer::new(
        &registry,
        vec![ResourceGrant::wildcard(
            ScopeContext::Patient,
            Permissions::READ_SEARCH,
        )],
        Some(PatientId::new("355").unwrap()),
        granted,
        EnforceConfig::default(),
    );
    let (_, report) = enforcer.filter_bundle_bytes(&bytes).unwrap();
    eprintln!(
        "searchset: {} bytes, {} entries kept, {} dropped",
        bytes.len(),
        report.kept,
        report.dropped
    );

    let mut group = c.benchmark_group("searchset_1mb");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.sample_size(30);
    group.bench_function("serde_json_parse_serialise", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_slice(black_box(&bytes)).unwrap();
            black_box(serde_json::to_vec(&v).unwrap())
        })
    });
    group.bench_function("classify_filter_serialise", |b| {
        b.iter(|| black_box(enforcer.filter_bundle_bytes(black_box(&bytes)).unwrap()))
    });
    group.finish();

    let resource = serde_json::to_vec(&json!({
        "resourceType": "Observation", "id": "x", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "social-history"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
        "subject": {"reference": "Patient/355"},
        "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "266919005"}]}
    }))
    .unwrap();
    c.bench_function("classify_bytes_observation", |b| {
        b.iter(|| black_box(registry.classify_bytes(black_box(&resource)).unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
