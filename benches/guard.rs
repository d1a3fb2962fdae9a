#![allow(
    missing_docs,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout
)]
//! The guard's in-process cost on one thread: the demo EHR's read of an 836-byte
//! vital-signs Observation, handled bare and behind `GuardLayer`, with the handler answering
//! with the resource's bytes and with `FhirJson` (the resource itself). Every iteration reads
//! the whole response body, as a server would (a `FhirJson` is serialised then).
//!
//! Before the timed benches it prints the allocations per request of each of the four,
//! counted by a counting global allocator. That allocator's shared counters are why the
//! loopback load test (`examples/guard_load.rs`) does not count: across two busy cores they
//! would contend on every allocation.
//!
//! Issue 8's throughput target is measured over sockets by `scripts/load-test.sh`; these
//! figures say where the guard's time goes without the network.

#[path = "../examples/support/fhir_store.rs"]
#[allow(unreachable_pub)]
mod fhir_store;
#[path = "../examples/support/guard_fixture.rs"]
mod guard_fixture;

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use fhirguard::middleware::{FhirJson, GuardLayer};
use http_body_util::Full;
use tower::Layer;

use guard_fixture::{Answer, Fixture, serve_one};

#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

fn kind<A: Answer>(c: &mut Criterion, fixture: &Fixture, name: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bare = fixture.handler::<A>();
    let guarded = GuardLayer::new(fixture.config.clone()).layer(fixture.handler::<A>());
    for (label, allocations) in [
        ("bare", count(|| serve_one(&rt, &bare, fixture.request()))),
        (
            "guarded",
            count(|| serve_one(&rt, &guarded, fixture.request())),
        ),
    ] {
        println!("guard/{name}: {label}: {allocations} allocations per request");
    }
    let mut group = c.benchmark_group(format!("guard/{name}"));
    group.bench_function("bare", |b| {
        b.iter(|| black_box(serve_one(&rt, &bare, fixture.request())));
    });
    group.bench_function("guarded", |b| {
        b.iter(|| black_box(serve_one(&rt, &guarded, fixture.request())));
    });
    group.finish();
}

/// Allocations per call of `f`, over 1,000 calls after a warm-up.
fn count(mut f: impl FnMut() -> usize) -> u64 {
    for _ in 0..100 {
        black_box(f());
    }
    let region = stats_alloc::Region::new(GLOBAL);
    for _ in 0..1000 {
        black_box(f());
    }
    region.change().allocations as u64 / 1000
}

fn bench(c: &mut Criterion) {
    let fixture = Fixture::new(true);
    kind::<Full<Bytes>>(c, &fixture, "read_bytes");
    kind::<FhirJson>(c, &fixture, "read_fhir_json");
}

criterion_group!(benches, bench);
criterion_main!(benches);
