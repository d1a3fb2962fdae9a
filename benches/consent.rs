#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]
//! The grant-status check on the request path, from a warm cache.
//!
//! Issue 5's target: under 200 ns with a warm cache. Measured for the in-memory store and (with
//! `--features sqlite`) the SQLite store's cache, each holding 10 000 grants, against the token
//! component's minimal `MemoryGrantStatus` map as a baseline in the same run.

use std::collections::BTreeSet;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fhirguard::consent::{
    ActiveGrant, Approver, ConsentStore, Disclosure, GrantStatusSource, MemoryConsentStore,
    RightOfAccessRequest,
};
use fhirguard::token::MemoryGrantStatus;
use fhirguard::{CategoryId, ClientId, GrantId, PatientId};
use time::{Duration, OffsetDateTime};

const GRANTS: usize = 10_000;

fn request(i: usize, now: OffsetDateTime) -> RightOfAccessRequest {
    let client = ClientId::new(format!("app-{}", i % 50)).unwrap();
    let disclosure = Disclosure::render("Clinic", "App", &client, &[("Vital signs", "BP")]);
    RightOfAccessRequest::new(
        PatientId::new(format!("p{i}")).unwrap(),
        Approver::Patient,
        client,
        "App",
        BTreeSet::from([
            CategoryId::new("vital-signs").unwrap(),
            CategoryId::new("laboratory").unwrap(),
        ]),
        disclosure.reference(),
        now,
    )
}

fn fill(store: &dyn ConsentStore, now: OffsetDateTime) -> (GrantId, GrantId) {
    let mut ids = Vec::with_capacity(GRANTS);
    for i in 0..GRANTS {
        ids.push(store.approve(request(i, now), now).unwrap().id);
    }
    let revoked = ids[GRANTS / 3].clone();
    store
        .revoke(&revoked, Approver::Patient, "bench", now)
        .unwrap();
    (ids[GRANTS / 2].clone(), revoked)
}

fn bench(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let mut group = c.benchmark_group("grant_status");

    let baseline = MemoryGrantStatus::new();
    for i in 0..GRANTS {
        baseline.insert(ActiveGrant {
            grant_id: GrantId::new(format!("{i:032x}")).unwrap(),
            patient: PatientId::new(format!("p{i}")).unwrap(),
            client_id: ClientId::new("app").unwrap(),
            categories: BTreeSet::new(),
            ends_at: now + Duration::days(365),
        });
    }
    let base_id = GrantId::new(format!("{:032x}", GRANTS / 2)).unwrap();
    assert!(baseline.grant_status(&base_id, now).active().is_some());
    group.bench_function("baseline_memory_grant_status_map", |b| {
        b.iter(|| black_box(baseline.grant_status(black_box(&base_id), black_box(now))))
    });

    let memory = MemoryConsentStore::new();
    let (active, revoked) = fill(&memory, now);
    assert!(memory.grant_status(&active, now).active().is_some());
    group.bench_function("memory_store_active", |b| {
        b.iter(|| black_box(memory.grant_status(black_box(&active), black_box(now))))
    });
    group.bench_function("memory_store_revoked", |b| {
        b.iter(|| black_box(memory.grant_status(black_box(&revoked), black_box(now))))
    });

    #[cfg(feature = "sqlite")]
    {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = fhirguard::consent::SqliteStore::open(dir.path().join("bench.db")).unwrap();
        let (active, _) = fill(&sqlite, now);
        assert!(sqlite.grant_status(&active, now).active().is_some());
        group.bench_function("sqlite_store_active_warm_cache", |b| {
            b.iter(|| black_box(sqlite.grant_status(black_box(&active), black_box(now))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
