#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]
//! Audit chain and sink throughput.
//!
//! * `audit/chain_append`: serialise one record canonically, HMAC-SHA-256 it with its link,
//!   hash the link — what every audited request costs in memory (target ≥ 300,000 records/s).
//! * `audit/log_record_null_sink`: the same through `AuditLog` (mutex + sink call).
//! * `audit/file_group_commit_10ms`: `AuditLog` over a `FileSink` with group commit every 10 ms
//!   (target ≥ 50,000 records/s).
//! * `audit/verify_10k`: verifying a 10,000-record log.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fhirguard::audit::{
    Actor, AuditInteraction, AuditLog, AuditRecord, AuditSink, AuditTime, Chain, ChainHead,
    Durability, Endpoint, EventKind, FileSink, FileSinkConfig, HttpMethod, KeyId, KeyRing, Outcome,
    PolicyDecision, PurposeOfUse, RequestId, ResourceId, Route, SealedRecord, SinkError, UserId,
    Verifier,
};
use fhirguard::{CategoryId, ClientId, GrantId, PatientId, ResourceType};

fn keys() -> KeyRing {
    KeyRing::new(KeyId::new("k1").unwrap(), &[0x42; 32]).unwrap()
}

fn record(i: u64) -> AuditRecord {
    let time = AuditTime::new(
        time::OffsetDateTime::UNIX_EPOCH
            + time::Duration::days(20_000)
            + time::Duration::nanoseconds(i as i64 * 1_234),
    )
    .unwrap();
    let mut r = AuditRecord::new(time, EventKind::RestAccess, Outcome::Success);
    r.request_id = Some(RequestId::new("3f1c9a62-7d1e-4e0b-9c55-0a8f2b7d4e11").unwrap());
    r.actor = Some(Actor::patient(
        UserId::new("u-355").unwrap(),
        &PatientId::new("355").unwrap(),
    ));
    r.client = Some(ClientId::new("research-app").unwrap());
    r.grant = Some(GrantId::new("g-7f3a").unwrap());
    r.source = Some("203.0.113.7".parse().unwrap());
    r.method = Some(HttpMethod::Get);
    r.endpoint = Some(Endpoint {
        route: Route::Instance,
        resource_type: ResourceType::new("Observation"),
        id: Some(ResourceId::new("obs-12345").unwrap()),
    });
    r.interaction = Some(AuditInteraction::Read);
    r.patient = Some(PatientId::new("355").unwrap());
    r.categories = BTreeSet::from([CategoryId::new("vital-signs").unwrap()]);
    r.purpose = Some(PurposeOfUse::PatientRequest);
    r.decision = Some(PolicyDecision::Permit);
    r
}

struct NullSink;

impl AuditSink for NullSink {
    fn append(&self, record: &SealedRecord) -> Result<(), SinkError> {
        black_box(record);
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(1));

    let template = record(1);
    let mut chain = Chain::new(keys(), ChainHead::GENESIS);
    group.bench_function("chain_append", |b| {
        b.iter(|| black_box(chain.append(black_box(template.clone()))))
    });

    let log = AuditLog::new(keys(), ChainHead::GENESIS, NullSink);
    group.bench_function("log_record_null_sink", |b| {
        b.iter(|| log.record(black_box(template.clone())).unwrap())
    });

    let dir = tempfile::tempdir().unwrap();
    let config = FileSinkConfig::new(dir.path())
        .max_file_bytes(256 * 1024 * 1024)
        .durability(Durability::GroupCommit {
            interval: Duration::from_millis(10),
        });
    let (sink, recovery) = FileSink::open(config).unwrap();
    let log = AuditLog::new(keys(), recovery.head, sink);
    group.measurement_time(Duration::from_secs(4));
    group.sample_size(20);
    group.bench_function("file_group_commit_10ms", |b| {
        // The flush of what is still buffered is part of the measured time.
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                log.record(template.clone()).unwrap();
            }
            log.flush().unwrap();
            start.elapsed()
        })
    });
    drop(log);
    drop(dir);

    let mut chain = Chain::new(keys(), ChainHead::GENESIS);
    let mut bytes = Vec::new();
    for i in 0..10_000 {
        chain.append(record(i)).write_json_line(&mut bytes);
    }
    let verify_keys = keys();
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("verify_10k", |b| {
        b.iter(|| {
            Verifier::new(&verify_keys)
                .verify_bytes(black_box(&bytes))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
