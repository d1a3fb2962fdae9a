//! Crash tests: a child process (this test binary re-executed in "child mode") approves and
//! revokes grants as fast as it can, printing each acknowledged operation; the parent kills it
//! with SIGKILL at random points and checks that every acknowledged operation survived.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use fhirguard::GrantId;
use fhirguard::consent::{Approver, ConsentStore, GrantState, new_grant_id};
use time::Duration;

use super::suite::{T0, request};

const CHILD_ENV: &str = "FHIRGUARD_CONSENT_CRASH_CHILD";

fn open(target: &str) -> Box<dyn ConsentStore> {
    match target.split_once(':') {
        #[cfg(feature = "sqlite")]
        Some(("sqlite", path)) => Box::new(fhirguard::consent::SqliteStore::open(path).unwrap()),
        #[cfg(feature = "postgres")]
        Some(("postgres", schema)) => Box::new(super::pg::store(schema)),
        _ => panic!("unknown crash target {target}"),
    }
}

/// Child mode: only runs when the parent sets the variable (the test is ignored otherwise).
#[test]
#[ignore = "child process of the crash tests; run by them"]
fn crash_child() {
    let target = std::env::var(CHILD_ENV).expect("child mode needs its target");
    let store = open(&target);
    let mut live: Vec<GrantId> = Vec::new();
    for i in 0..100_000i64 {
        let now = T0 + Duration::milliseconds(i);
        let g = store.approve(request("355", "app-a", now), now).unwrap();
        println!("ACK A {}", g.id);
        live.push(g.id);
        if i % 3 == 2 {
            let id = live.remove(0);
            store
                .revoke(&id, Approver::Patient, "crash test", now)
                .unwrap();
            println!("ACK R {id}");
        }
    }
}

fn random_millis(lo: u64, hi: u64) -> u64 {
    // 128 random bits as hex; the first 8 hex digits are plenty.
    let hex = new_grant_id().unwrap();
    let r = u64::from_str_radix(&hex.as_str()[..8], 16).unwrap();
    lo + r % (hi - lo)
}

/// Several rounds of run-and-kill against `target`; returns the number of acknowledged
/// operations checked.
fn crash_rounds(target: &str, rounds: usize) -> usize {
    let exe = std::env::current_exe().unwrap();
    let mut approved: Vec<String> = Vec::new();
    let mut revoked: Vec<String> = Vec::new();
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "consent::crash::crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, target)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            })
        };
        // Let it get going (connect, migrate), then kill at a random point.
        let wait = random_millis(300, 1500);
        std::thread::sleep(StdDuration::from_millis(wait));
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child must have been killed"
        );
        reader.join().unwrap();
        let lines = lines.lock().unwrap();
        let before = approved.len();
        for line in lines.iter() {
            // libtest may print "test … ... " before the first line; a line cut by the kill has
            // no complete id to check; complete lines were acknowledged.
            let Some(at) = line.find("ACK ") else {
                continue;
            };
            let line = &line[at..];
            if let Some(id) = line.strip_prefix("ACK A ") {
                if id.len() == 32 {
                    approved.push(id.to_owned());
                }
            } else if let Some(id) = line.strip_prefix("ACK R ") {
                if id.len() == 32 {
                    revoked.push(id.to_owned());
                }
            }
        }
        assert!(
            approved.len() > before,
            "round {round}: the child acknowledged nothing in {wait} ms"
        );
    }
    let store = open(target);
    for id in &approved {
        let id = GrantId::new(id.as_str()).unwrap();
        assert!(
            store.grant(&id).unwrap().is_some(),
            "acknowledged approval {id} lost"
        );
    }
    for id in &revoked {
        let id = GrantId::new(id.as_str()).unwrap();
        let g = store.grant(&id).unwrap().unwrap();
        assert!(
            matches!(g.state, GrantState::Revoked { .. }),
            "acknowledged revocation of {id} lost"
        );
    }
    println!(
        "crash test {}: {rounds} SIGKILLs, {} approvals and {} revocations acknowledged, all present",
        target.split(':').next().unwrap_or(""),
        approved.len(),
        revoked.len()
    );
    approved.len() + revoked.len()
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_survives_sigkill_with_no_acknowledged_write_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let target = format!("sqlite:{}", path.display());
    assert!(crash_rounds(&target, 5) > 0);
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_survives_sigkill_with_no_acknowledged_write_lost() {
    let target = format!("postgres:{}", super::pg::fresh_schema());
    assert!(crash_rounds(&target, 5) > 0);
}
