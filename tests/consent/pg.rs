//! PostgreSQL: the suites, migrations, and two nodes with their own caches on one database.

use std::time::{Duration as StdDuration, Instant};

use fhirguard::consent::GrantStatusSource;
use fhirguard::consent::{
    Approver, ConsentStore, GrantStatus, PostgresConfig, PostgresStore, new_grant_id,
};
use fhirguard::token::{RevocationList, TokenStore};
use time::Duration;

use super::suite::{T0, consent_suite, request};
use super::token_suite::token_suite;

/// The server to use. Never skipped silently: without it the test fails and says why.
pub fn url() -> String {
    std::env::var("FHIRGUARD_PG_URL").unwrap_or_else(|_| {
        panic!(
            "FHIRGUARD_PG_URL is not set: the PostgreSQL tests need a server \
             (scripts/test-all.sh starts one; see docs/consent.md)"
        )
    })
}

/// A schema no other test uses.
pub fn fresh_schema() -> String {
    format!("t_{}", new_grant_id().unwrap())
}

pub fn config(schema: &str) -> PostgresConfig {
    PostgresConfig::new(url()).with_schema(schema)
}

pub fn store(schema: &str) -> PostgresStore {
    PostgresStore::connect_with(config(schema)).unwrap()
}

#[test]
fn postgres_passes_the_consent_suite() {
    consent_suite(&store(&fresh_schema()));
}

#[test]
fn postgres_passes_the_token_suite() {
    token_suite(&store(&fresh_schema()));
}

#[test]
fn postgres_migrations_are_embedded_and_idempotent() {
    let schema = fresh_schema();
    // Several nodes starting at once: the advisory lock serialises the migration.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let schema = schema.clone();
            std::thread::spawn(move || store(&schema).schema_version().unwrap())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 2);
    }
    let a = store(&schema);
    let g = a.approve(request("355", "app-a", T0), T0).unwrap();
    drop(a);
    let b = store(&schema);
    assert_eq!(b.grant(&g.id).unwrap().unwrap(), g);
    assert!(
        b.grant_status(&g.id, T0).active().is_some(),
        "cache warmed on connect"
    );
    assert!(PostgresStore::connect_with(config("Bad-Schema")).is_err());
}

fn wait_until(deadline: StdDuration, mut done: impl FnMut() -> bool) -> Option<StdDuration> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(StdDuration::from_micros(200));
    }
    None
}

fn propagation(node_a: &PostgresStore, node_b: &PostgresStore, rounds: usize) -> Vec<StdDuration> {
    let mut times = Vec::new();
    for i in 0..rounds {
        let now = T0 + Duration::seconds(i64::try_from(i).unwrap());
        let g = node_a.approve(request("355", "app-a", now), now).unwrap();
        // The new grant reaches B too (it must, before the revoke is meaningful).
        wait_until(StdDuration::from_secs(2), || {
            node_b.grant_status(&g.id, now).active().is_some()
        })
        .expect("approval propagated");
        let start = Instant::now();
        node_a
            .revoke(&g.id, Approver::Patient, "two-node test", now)
            .unwrap();
        let seen = wait_until(StdDuration::from_secs(2), || {
            node_b.grant_status(&g.id, now) == GrantStatus::Revoked
        });
        let took = seen
            .map(|_| start.elapsed())
            .expect("revocation reached node B");
        times.push(took);
    }
    times.sort();
    times
}

#[test]
fn postgres_two_nodes_see_a_revocation_within_one_second() {
    let schema = fresh_schema();
    let a = store(&schema);
    let b = store(&schema);
    let times = propagation(&a, &b, 20);
    let (median, max) = (times[times.len() / 2], times[times.len() - 1]);
    println!("two-node revocation propagation (LISTEN/NOTIFY): median {median:?}, max {max:?}");
    assert!(max < StdDuration::from_secs(1), "max {max:?}");

    // A family revoked on A (refresh-token reuse) is refused on B too.
    a.revoke_family("fam-two-node").unwrap();
    wait_until(StdDuration::from_secs(1), || {
        b.is_revoked("x", Some("fam-two-node"), T0)
    })
    .expect("family revocation reached node B");
    a.revoke_access_token("jti-two-node", T0 + Duration::hours(1))
        .unwrap();
    wait_until(StdDuration::from_secs(1), || {
        b.is_revoked("jti-two-node", None, T0)
    })
    .expect("access-token revocation reached node B");
}

#[test]
fn postgres_polling_fallback_alone_meets_one_second() {
    let schema = fresh_schema();
    let a = store(&schema);
    let mut cfg = config(&schema);
    cfg.listen = false;
    cfg.poll_interval = StdDuration::from_millis(300);
    let b = PostgresStore::connect_with(cfg).unwrap();
    let times = propagation(&a, &b, 5);
    let max = times[times.len() - 1];
    println!(
        "two-node revocation propagation (polling every 300 ms, no LISTEN): median {:?}, max {max:?}",
        times[times.len() / 2]
    );
    assert!(max < StdDuration::from_secs(1), "max {max:?}");
}

#[test]
fn postgres_expiry_and_purge_reach_other_nodes() {
    let schema = fresh_schema();
    let a = store(&schema);
    let b = store(&schema);
    let g = a.approve(request("355", "app-a", T0), T0).unwrap();
    wait_until(StdDuration::from_secs(1), || {
        b.grant_status(&g.id, T0).active().is_some()
    })
    .expect("approval propagated");
    // Expiry needs no propagation: every node's cache compares ends_at with now.
    assert_eq!(b.grant_status(&g.id, g.ends_at), GrantStatus::Expired);
    assert_eq!(a.expire_due(g.ends_at).unwrap(), 1);
    assert_eq!(
        a.purge(g.ends_at + Duration::days(1), Duration::days(1))
            .unwrap(),
        1
    );
    wait_until(StdDuration::from_secs(1), || {
        b.grant_status(&g.id, T0) == GrantStatus::Unknown
    })
    .expect("purge propagated");
    assert!(b.grant(&g.id).unwrap().is_none());
}

const NODE_ENV: &str = "FHIRGUARD_CONSENT_NODE_B";

/// Child mode for the two-process test: node B in its own process, with its own connections
/// and cache. Ignored unless the parent runs it.
#[test]
#[ignore = "node B of the two-process test; run by it"]
fn two_process_node_b() {
    use std::io::Write;
    let spec = std::env::var(NODE_ENV).expect("child mode needs schema:grant");
    let (schema, grant) = spec.split_once(':').unwrap();
    let grant = fhirguard::GrantId::new(grant).unwrap();
    let node_b = store(schema);
    assert!(node_b.grant_status(&grant, T0).active().is_some());
    println!("READY");
    std::io::stdout().flush().unwrap();
    let start = Instant::now();
    while node_b.grant_status(&grant, T0) != GrantStatus::Revoked {
        assert!(
            start.elapsed() < StdDuration::from_secs(5),
            "never saw the revocation"
        );
        std::thread::sleep(StdDuration::from_micros(200));
    }
    println!("REVOKED");
    std::io::stdout().flush().unwrap();
}

#[test]
fn postgres_two_processes_see_a_revocation_within_one_second() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let schema = fresh_schema();
    let node_a = store(&schema);
    let mut times = Vec::new();
    for i in 0..5i64 {
        let now = T0 + Duration::seconds(i);
        let g = node_a.approve(request("355", "app-a", now), now).unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "consent::pg::two_process_node_b",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(NODE_ENV, format!("{schema}:{}", g.id))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next_marker = || {
            lines
                .by_ref()
                .map(Result::unwrap)
                // libtest may print "test … ... " on the same line before the child's output.
                .find_map(|l| {
                    ["READY", "REVOKED"]
                        .into_iter()
                        .find(|m| l.ends_with(m))
                        .map(str::to_owned)
                })
        };
        assert_eq!(next_marker().as_deref(), Some("READY"));
        let start = Instant::now();
        node_a
            .revoke(&g.id, Approver::Patient, "two-process test", now)
            .unwrap();
        assert_eq!(next_marker().as_deref(), Some("REVOKED"));
        times.push(start.elapsed());
        assert!(child.wait().unwrap().success());
    }
    times.sort();
    let max = times[times.len() - 1];
    println!(
        "two-process revocation propagation (LISTEN/NOTIFY): median {:?}, max {max:?}",
        times[times.len() / 2]
    );
    assert!(max < StdDuration::from_secs(1), "max {max:?}");
}

/// The shared rate-limit store decides exactly as the in-memory token bucket does, take by
/// take, over a long pseudo-random sequence of costs and clock steps (including a clock that
/// steps backwards).
#[test]
fn postgres_rate_limit_store_matches_the_token_bucket() {
    use fhirguard::abuse::{BucketOutcome, Limit, RateLimitStore, TokenBucket};
    let store = store(&fresh_schema());
    let limit = Limit::new(5, 2.0).unwrap();
    let mut model = TokenBucket::full(&limit, T0);
    let mut now = T0;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for step in 0..400 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let cost = u32::try_from(seed % 3).unwrap() + 1;
        let millis = i64::try_from((seed >> 8) % 900).unwrap() - 100;
        now += Duration::milliseconds(millis);
        let (next, expected) = model.take(&limit, cost, now);
        model = next;
        let got = store
            .take("fhir_read|client:app", &limit, cost, now)
            .unwrap();
        match (expected, got) {
            (BucketOutcome::Allowed { remaining: a }, BucketOutcome::Allowed { remaining: b }) => {
                assert_eq!(a, b, "step {step}")
            }
            (
                BucketOutcome::Limited { retry_after: a },
                BucketOutcome::Limited { retry_after: b },
            ) => assert!(
                (a - b).abs() < Duration::microseconds(10),
                "step {step}: {a} vs {b}"
            ),
            (a, b) => panic!("step {step}: memory {a:?}, postgres {b:?}"),
        }
    }
}

/// Two nodes, eight threads, one bucket of ten: exactly ten requests get through in total,
/// and other buckets are untouched.
#[test]
fn postgres_rate_limits_are_shared_by_every_node() {
    use fhirguard::abuse::{BucketOutcome, Limit, RateLimitStore};
    use std::sync::Arc;
    let schema = fresh_schema();
    let nodes = [Arc::new(store(&schema)), Arc::new(store(&schema))];
    let limit = Limit::new(10, 0.001).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let node = Arc::clone(&nodes[i % 2]);
            std::thread::spawn(move || {
                (0..5)
                    .filter(|_| {
                        matches!(
                            node.take("token|address:203.0.113.9", &limit, 1, T0)
                                .unwrap(),
                            BucketOutcome::Allowed { .. }
                        )
                    })
                    .count()
            })
        })
        .collect();
    let allowed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(allowed, 10, "40 attempts across two nodes, capacity 10");
    assert!(matches!(
        nodes[1]
            .take("token|address:198.51.100.1", &limit, 1, T0)
            .unwrap(),
        BucketOutcome::Allowed { remaining: 9 }
    ));
}
