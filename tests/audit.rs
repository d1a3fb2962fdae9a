//! Audit: records without PHI, the keyed chain and its verifier, sinks, BALP mapping, history.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use fhirguard::audit::{
    AccessHistory, AccessIndex, AccessQuery, Actor, ActorRole, AuditInteraction, AuditLog,
    AuditRecord, AuditSink, AuditTime, Backpressure, BalpContext, BalpProfile, Chain, ChainHead,
    ChannelSink, DenyReason, Durability, Endpoint, EventKind, FailurePolicy, FileSink,
    FileSinkConfig, HttpMethod, KeyId, KeyRing, MemorySink, Outcome, ParamName, PolicyDecision,
    PurposeOfUse, Receipt, RequestId, ResourceId, Route, SealedRecord, SinkError, Tamper, Tee,
    UserId, Verifier, access_history, read_log_dir, summarize, verify_log_dir,
};
use fhirguard::{
    CategoryId, ClientId, FhirRequest, GrantId, Interaction, PatientId, ResourceType, SearchParam,
};
use time::macros::datetime;

const SECRET_1: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
const SECRET_2: &[u8; 32] = b"fedcba9876543210fedcba9876543210";

fn keys() -> KeyRing {
    KeyRing::new(KeyId::new("k1").unwrap(), SECRET_1).unwrap()
}

fn t(i: u64) -> AuditTime {
    AuditTime::new(datetime!(2026-11-24 10:00 UTC) + time::Duration::microseconds(i as i64 * 1500))
        .unwrap()
}

/// A realistic REST read record.
fn rec(i: u64) -> AuditRecord {
    let mut r = AuditRecord::new(t(i), EventKind::RestAccess, Outcome::Success);
    r.request_id = Some(RequestId::new(format!("req-{i}")).unwrap());
    r.actor = Some(Actor::patient(
        UserId::new("u-355").unwrap(),
        &PatientId::new("355").unwrap(),
    ));
    r.client = Some(ClientId::new(if i % 2 == 0 { "app-a" } else { "app-b" }).unwrap());
    r.grant = Some(GrantId::new(if i % 2 == 0 { "g-a" } else { "g-b" }).unwrap());
    r.source = Some("203.0.113.7".parse::<IpAddr>().unwrap());
    r.method = Some(HttpMethod::Get);
    r.endpoint = Some(Endpoint {
        route: Route::Instance,
        resource_type: ResourceType::new("Observation"),
        id: Some(ResourceId::new(format!("obs-{i}")).unwrap()),
    });
    r.interaction = Some(AuditInteraction::Read);
    r.patient = Some(PatientId::new("355").unwrap());
    r.categories = BTreeSet::from([CategoryId::new("vital-signs").unwrap()]);
    r.purpose = Some(PurposeOfUse::PatientRequest);
    r.decision = Some(PolicyDecision::Permit);
    r
}

fn sealed_log(n: u64, keys: KeyRing) -> (Vec<Vec<u8>>, ChainHead) {
    let mut chain = Chain::new(keys, ChainHead::GENESIS);
    let lines = (0..n)
        .map(|i| chain.append(rec(i)).to_json_line())
        .collect();
    (lines, chain.head())
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    lines.concat()
}

/// Replaces the first occurrence of `from` in a sealed line (the line stays well-formed JSON).
fn edit_line(line: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = std::str::from_utf8(line).unwrap();
    assert!(text.contains(from), "{from} not in {text}");
    text.replacen(from, to, 1).into_bytes()
}

fn verify(bytes: &[u8]) -> Result<fhirguard::audit::Verified, Tamper> {
    let keys = keys();
    Verifier::new(&keys).verify_bytes(bytes)
}

// ------------------------------------------------------------------------------------------
// The chain on a 10,000-record file.

const N: u64 = 10_000;
const K: usize = 4_321;

#[test]
fn clean_10k_file_verifies_with_its_anchor() {
    let (lines, head) = sealed_log(N, keys());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, join(&lines)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let keys = keys();
    let verified = Verifier::new(&keys)
        .with_anchor(head)
        .verify_bytes(&bytes)
        .unwrap();
    assert_eq!(verified.records, N);
    assert_eq!(verified.head, head);
    assert_eq!(verified.torn_tail, None);
    assert_eq!(verified.key_ids.len(), 1);
}

#[test]
fn every_kind_of_tampering_is_found_at_its_index() {
    let (lines, head) = sealed_log(N, keys());
    let at = |index: usize| fhirguard::audit::Location {
        file: 0,
        line: index as u64 + 1,
    };

    // Altered content (the client id changed, the line still parses).
    let mut l = lines.clone();
    l[K] = edit_line(&l[K], "\"client\":\"app-b\"", "\"client\":\"evil-app\"");
    assert_eq!(
        verify(&join(&l)),
        Err(Tamper::Altered {
            index: K as u64,
            at: at(K),
            seq: K as u64
        })
    );

    // Altered categories (widening what the log says was disclosed is tampering too).
    let mut l = lines.clone();
    l[K] = edit_line(
        &l[K],
        "[\"vital-signs\"]",
        "[\"laboratory\",\"vital-signs\"]",
    );
    assert!(matches!(verify(&join(&l)), Err(Tamper::Altered { index, .. }) if index == K as u64));

    // Altered MAC.
    let mut l = lines.clone();
    let text = String::from_utf8(l[K].clone()).unwrap();
    let at_mac = text.find("\"mac\":\"").unwrap() + 7;
    let flipped = if &text[at_mac..=at_mac] == "0" {
        "1"
    } else {
        "0"
    };
    l[K] = format!("{}{flipped}{}", &text[..at_mac], &text[at_mac + 1..]).into_bytes();
    assert!(matches!(verify(&join(&l)), Err(Tamper::Altered { index, .. }) if index == K as u64));

    // Altered sequence number.
    let mut l = lines.clone();
    l[K] = edit_line(
        &l[K],
        &format!("{{\"seq\":{K},"),
        &format!("{{\"seq\":{},", K + 7),
    );
    assert!(matches!(verify(&join(&l)), Err(Tamper::Altered { index, .. }) if index == K as u64));

    // Inserted forgery (a modified copy of the record before, placed before record K).
    let mut l = lines.clone();
    let forged = edit_line(
        &edit_line(
            &l[K - 1],
            &format!("{{\"seq\":{},", K - 1),
            &format!("{{\"seq\":{K},"),
        ),
        "\"client\":\"app-a\"",
        "\"client\":\"evil-app\"",
    );
    l.insert(K, forged);
    assert_eq!(
        verify(&join(&l)),
        Err(Tamper::Inserted {
            index: K as u64,
            at: at(K)
        })
    );

    // Inserted duplicate of an earlier authentic record.
    let mut l = lines.clone();
    l.insert(K, lines[10].clone());
    assert_eq!(
        verify(&join(&l)),
        Err(Tamper::Inserted {
            index: K as u64,
            at: at(K)
        })
    );

    // Inserted duplicate of a later authentic record.
    let mut l = lines.clone();
    l.insert(K, lines[9_000].clone());
    assert_eq!(
        verify(&join(&l)),
        Err(Tamper::Inserted {
            index: K as u64,
            at: at(K)
        })
    );

    // Inserted garbage line.
    let mut l = lines.clone();
    l.insert(K, b"{\"hello\":1}\n".to_vec());
    assert_eq!(
        verify(&join(&l)),
        Err(Tamper::Inserted {
            index: K as u64,
            at: at(K)
        })
    );

    // Missing record.
    let mut l = lines.clone();
    l.remove(K);
    assert_eq!(
        verify(&join(&l)),
        Err(Tamper::Missing {
            index: K as u64,
            at: at(K),
            expected_seq: K as u64,
            found_seq: K as u64 + 1
        })
    );

    // Several missing records.
    let mut l = lines.clone();
    l.drain(K..K + 5);
    assert!(matches!(
        verify(&join(&l)),
        Err(Tamper::Missing { index, expected_seq, found_seq, .. })
            if index == K as u64 && expected_seq == K as u64 && found_seq == K as u64 + 5
    ));

    // Reordered: two neighbours swapped.
    let mut l = lines.clone();
    l.swap(K, K + 1);
    assert_eq!(
        verify(&join(&l)),
        Err(Tamper::Reordered {
            index: K as u64,
            at: at(K),
            expected_seq: K as u64,
            found_seq: K as u64 + 1
        })
    );

    // Reordered: a record moved far later.
    let mut l = lines.clone();
    let moved = l.remove(K);
    l.insert(8_000, moved);
    assert!(matches!(
        verify(&join(&l)),
        Err(Tamper::Reordered { index, expected_seq, .. })
            if index == K as u64 && expected_seq == K as u64
    ));

    // A line cut in the middle (not the last one).
    let mut l = lines.clone();
    l[K].truncate(40);
    l[K].push(b'\n');
    assert_eq!(
        verify(&join(&l)),
        Err(Tamper::Malformed {
            index: K as u64,
            at: at(K)
        })
    );

    // A record smuggling an extra field (a body, a search value) neither verifies nor parses.
    let mut l = lines.clone();
    l[K] = edit_line(
        &l[K],
        "\"outcome\":\"success\"",
        "\"outcome\":\"success\",\"body\":\"Smith, John\"",
    );
    assert!(matches!(verify(&join(&l)), Err(Tamper::Altered { index, .. }) if index == K as u64));
    assert!(SealedRecord::from_json_line(l[K].strip_suffix(b"\n").unwrap()).is_err());

    // Truncated tail: undetectable without an anchor, named with one.
    let l = &lines[..(N as usize - 25)];
    assert_eq!(verify(&join(l)).unwrap().records, N - 25);
    let keys = keys();
    assert_eq!(
        Verifier::new(&keys)
            .with_anchor(head)
            .verify_bytes(&join(l)),
        Err(Tamper::TruncatedTail {
            next_seq: N - 25,
            anchor_next_seq: N
        })
    );
    // The whole log deleted.
    assert_eq!(
        Verifier::new(&keys).with_anchor(head).verify_bytes(b""),
        Err(Tamper::TruncatedTail {
            next_seq: 0,
            anchor_next_seq: N
        })
    );

    // A log rewritten from scratch by someone holding the key disagrees with the anchor.
    let mut chain = Chain::new(self::keys(), ChainHead::GENESIS);
    let mut rewritten = Vec::new();
    for i in 0..N {
        let mut r = rec(i);
        if i == 77 {
            r.outcome = Outcome::Denied(DenyReason::GrantRevoked);
        }
        rewritten.push(chain.append(r).to_json_line());
    }
    assert_eq!(
        Verifier::new(&keys)
            .with_anchor(head)
            .verify_bytes(&join(&rewritten)),
        Err(Tamper::AnchorMismatch { next_seq: N })
    );
}

#[test]
fn torn_last_line_is_reported_not_tampering() {
    let (mut lines, _) = sealed_log(100, keys());
    let torn = lines[99][..57].to_vec();
    lines[99] = torn;
    let verified = verify(&join(&lines)).unwrap();
    assert_eq!(verified.records, 99);
    let torn = verified.torn_tail.unwrap();
    assert_eq!(torn.at.line, 100);
    assert_eq!(torn.len, 57);
}

#[test]
fn key_rotation_keeps_old_records_verifiable() {
    let mut chain = Chain::new(keys(), ChainHead::GENESIS);
    let mut lines: Vec<Vec<u8>> = (0..50)
        .map(|i| chain.append(rec(i)).to_json_line())
        .collect();
    chain
        .keys_mut()
        .rotate(KeyId::new("k2").unwrap(), SECRET_2)
        .unwrap();
    lines.extend((50..100).map(|i| chain.append(rec(i)).to_json_line()));
    let mut both = keys();
    both.rotate(KeyId::new("k2").unwrap(), SECRET_2).unwrap();
    let verified = Verifier::new(&both).verify_bytes(&join(&lines)).unwrap();
    assert_eq!(verified.records, 100);
    assert_eq!(verified.key_ids.len(), 2);
    // Without the old key the first record is sealed with an unknown key.
    let only_new = KeyRing::new(KeyId::new("k2").unwrap(), SECRET_2).unwrap();
    assert!(matches!(
        Verifier::new(&only_new).verify_bytes(&join(&lines)),
        Err(Tamper::UnknownKey { index: 0, .. })
    ));
    // A wrong secret under the right id: every record fails its MAC.
    let wrong = KeyRing::new(KeyId::new("k1").unwrap(), SECRET_2).unwrap();
    assert!(matches!(
        Verifier::new(&wrong).verify_bytes(&join(&lines)),
        Err(Tamper::Altered { index: 0, .. })
    ));
    // Short keys and reused ids are refused.
    assert!(KeyRing::new(KeyId::new("k").unwrap(), b"short").is_err());
    assert!(both.rotate(KeyId::new("k1").unwrap(), SECRET_2).is_err());
    assert!(!format!("{both:?}").contains("0123456789abcdef"));
}

#[test]
fn verification_can_start_from_an_archived_anchor() {
    let (lines, _) = sealed_log(200, keys());
    let mid = SealedRecord::from_json_line(&lines[99])
        .unwrap()
        .head_after();
    let keys = keys();
    let verified = Verifier::new(&keys)
        .starting_at(mid)
        .verify_bytes(&join(&lines[100..]))
        .unwrap();
    assert_eq!(verified.records, 100);
    assert!(
        Verifier::new(&keys)
            .verify_bytes(&join(&lines[100..]))
            .is_err()
    );
}

// ------------------------------------------------------------------------------------------
// File sink: durability, recovery, rotation.

#[test]
fn file_sink_recovers_from_a_torn_write_and_the_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let config = FileSinkConfig::new(dir.path()).durability(Durability::PerRecord);
    {
        let (sink, recovery) = FileSink::open(config.clone()).unwrap();
        assert_eq!(recovery.head, ChainHead::GENESIS);
        let log = AuditLog::new(keys(), recovery.head, sink);
        for i in 0..50 {
            assert_eq!(log.record(rec(i)).unwrap(), Receipt::Stored { seq: i });
        }
    }
    // A crash in the middle of writing record 50.
    let path = dir.path().join("audit-000001.jsonl");
    let mut chain = Chain::new(keys(), ChainHead::GENESIS);
    let full: Vec<u8> = (0..51)
        .flat_map(|i| chain.append(rec(i)).to_json_line())
        .collect();
    let written = std::fs::read(&path).unwrap();
    assert_eq!(written, full[..written.len()]);
    let torn = &full[written.len()..written.len() + 100];
    let mut bytes = written.clone();
    bytes.extend_from_slice(torn);
    std::fs::write(&path, &bytes).unwrap();

    let (sink, recovery) = FileSink::open(config).unwrap();
    let torn_tail = recovery.torn_tail.clone().unwrap();
    assert_eq!(torn_tail.offset, written.len() as u64);
    assert_eq!(torn_tail.len, 100);
    assert_eq!(std::fs::read(&torn_tail.saved_to).unwrap(), torn);
    assert_eq!(recovery.head.next_seq, 50);
    let log = AuditLog::new(keys(), recovery.head, sink);
    let event = recovery.event(t(50)).unwrap();
    assert_eq!(log.record(event).unwrap(), Receipt::Stored { seq: 50 });
    for i in 51..60 {
        log.record(rec(i)).unwrap();
    }
    let keys = keys();
    let verified = verify_log_dir(
        Verifier::new(&keys).with_anchor(log.head()),
        dir.path(),
        "audit",
    )
    .unwrap();
    assert_eq!(verified.records, 60);
    assert_eq!(verified.torn_tail, None);
}

#[test]
fn a_complete_last_record_without_newline_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (lines, head) = sealed_log(5, keys());
    let mut bytes = join(&lines);
    bytes.pop();
    std::fs::write(dir.path().join("audit-000001.jsonl"), &bytes).unwrap();
    let (_sink, recovery) = FileSink::open(FileSinkConfig::new(dir.path())).unwrap();
    assert!(recovery.newline_added);
    assert_eq!(recovery.head, head);
}

/// The sink's files and directory are the service user's alone, whatever the umask.
#[cfg(unix)]
fn assert_private(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let actual = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(actual, mode, "{}", path.display());
}

#[cfg(not(unix))]
fn assert_private(_: &std::path::Path, _: u32) {}

#[test]
fn the_log_directory_and_a_torn_tail_are_private() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("nested").join("audit");
    {
        let (_sink, _) = FileSink::open(FileSinkConfig::new(&dir)).unwrap();
    }
    assert_private(&dir, 0o700);
    assert_private(&dir.join("audit-000001.jsonl"), 0o600);
    // A torn tail saved aside gets the same protection as the log it came from.
    std::fs::write(dir.join("audit-000001.jsonl"), b"{\"torn").unwrap();
    let (_sink, recovery) = FileSink::open(FileSinkConfig::new(&dir)).unwrap();
    let torn = recovery.torn_tail.expect("torn tail saved");
    assert_private(&torn.saved_to, 0o600);
}

#[test]
fn rotation_keeps_the_chain_verifiable_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = FileSinkConfig::new(dir.path())
        .max_file_bytes(20_000)
        .durability(Durability::GroupCommit {
            interval: Duration::from_millis(5),
        });
    let head = {
        let (sink, recovery) = FileSink::open(config.clone()).unwrap();
        let log = AuditLog::new(keys(), recovery.head, sink);
        for i in 0..400 {
            log.record(rec(i)).unwrap();
        }
        log.flush().unwrap();
        log.head()
    };
    let files = fhirguard::audit::log_files(dir.path(), "audit").unwrap();
    assert!(
        files.len() > 5,
        "expected rotation, got {} files",
        files.len()
    );
    for (_, path) in &files {
        assert!(std::fs::metadata(path).unwrap().len() <= 20_000);
        assert_private(path, 0o600);
    }
    let keys = keys();
    let verified =
        verify_log_dir(Verifier::new(&keys).with_anchor(head), dir.path(), "audit").unwrap();
    assert_eq!(verified.records, 400);

    // Reopening continues in the last file, with the right head.
    {
        let (sink, recovery) = FileSink::open(config).unwrap();
        assert_eq!(recovery.head, head);
        assert_eq!(recovery.files.len(), files.len());
        let log = AuditLog::new(self::keys(), recovery.head, sink);
        log.record(rec(400)).unwrap();
        log.flush().unwrap();
    }
    let verified = verify_log_dir(Verifier::new(&keys), dir.path(), "audit").unwrap();
    assert_eq!(verified.records, 401);
    assert_eq!(read_log_dir(dir.path(), "audit").unwrap().len(), 401);

    // A whole middle file deleted: the gap is named at the first record after it.
    let middle = &files[2].1;
    let first_missing = SealedRecord::from_json_line(
        std::fs::read(middle)
            .unwrap()
            .split(|&b| b == b'\n')
            .next()
            .unwrap(),
    )
    .unwrap()
    .seq();
    std::fs::remove_file(middle).unwrap();
    match verify_log_dir(Verifier::new(&keys), dir.path(), "audit") {
        Err(fhirguard::audit::VerifyError::Tamper(Tamper::Missing {
            expected_seq, at, ..
        })) => {
            assert_eq!(expected_seq, first_missing);
            assert_eq!(at.line, 1);
        }
        other => panic!("expected a gap, got {other:?}"),
    }
}

#[test]
fn deleting_the_newest_file_is_caught_by_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let config = FileSinkConfig::new(dir.path()).max_file_bytes(10_000);
    let (sink, recovery) = FileSink::open(config).unwrap();
    let log = AuditLog::new(keys(), recovery.head, sink);
    for i in 0..100 {
        log.record(rec(i)).unwrap();
    }
    let anchor = log.head();
    drop(log);
    let files = fhirguard::audit::log_files(dir.path(), "audit").unwrap();
    std::fs::remove_file(&files.last().unwrap().1).unwrap();
    let keys = keys();
    assert!(verify_log_dir(Verifier::new(&keys), dir.path(), "audit").is_ok());
    assert!(matches!(
        verify_log_dir(
            Verifier::new(&keys).with_anchor(anchor),
            dir.path(),
            "audit"
        ),
        Err(fhirguard::audit::VerifyError::Tamper(
            Tamper::TruncatedTail {
                anchor_next_seq: 100,
                ..
            }
        ))
    ));
}

#[test]
fn group_commit_writes_everything_on_flush_and_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let config = FileSinkConfig::new(dir.path()).durability(Durability::GroupCommit {
        interval: Duration::from_millis(10),
    });
    let (sink, recovery) = FileSink::open(config.clone()).unwrap();
    let log = Arc::new(AuditLog::new(keys(), recovery.head, sink));
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..250 {
                    log.record(rec(w * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let head = log.head();
    // The timer flushes without being asked.
    std::thread::sleep(Duration::from_millis(60));
    let keys = keys();
    let verified =
        verify_log_dir(Verifier::new(&keys).with_anchor(head), dir.path(), "audit").unwrap();
    assert_eq!(verified.records, 1000);
    log.record(rec(5000)).unwrap();
    drop(log);
    let verified = verify_log_dir(Verifier::new(&keys), dir.path(), "audit").unwrap();
    assert_eq!(verified.records, 1001);
}

// ------------------------------------------------------------------------------------------
// Failure policy and the channel sink.

struct BrokenSink;

impl AuditSink for BrokenSink {
    fn append(&self, _: &SealedRecord) -> Result<(), SinkError> {
        Err(SinkError::Io {
            op: "write",
            kind: std::io::ErrorKind::StorageFull,
        })
    }
}

#[test]
fn a_failing_sink_fails_the_request_closed_unless_told_otherwise_by_name() {
    let log = AuditLog::new(keys(), ChainHead::GENESIS, BrokenSink);
    assert!(log.record(rec(0)).is_err());
    assert_eq!(log.head(), ChainHead::GENESIS);

    let log = AuditLog::new(keys(), ChainHead::GENESIS, BrokenSink)
        .with_failure_policy(FailurePolicy::FailOpenAndCount);
    assert_eq!(log.record(rec(0)).unwrap(), Receipt::Lost);
    assert_eq!(log.record(rec(1)).unwrap(), Receipt::Lost);
    assert_eq!(log.lost(), 2);
    assert_eq!(log.head(), ChainHead::GENESIS);

    // A tee fails if either side fails.
    let log = AuditLog::new(
        keys(),
        ChainHead::GENESIS,
        Tee::new(MemorySink::new(), BrokenSink),
    );
    assert!(log.record(rec(0)).is_err());
}

#[test]
fn channel_sink_blocks_or_drops_and_counts() {
    let (sink, rx) = ChannelSink::new(4, Backpressure::Block);
    let log = Arc::new(AuditLog::new(keys(), ChainHead::GENESIS, sink));
    let forwarder = std::thread::spawn(move || rx.iter().map(|r| r.seq()).collect::<Vec<_>>());
    for i in 0..100 {
        log.record(rec(i)).unwrap();
    }
    assert_eq!(log.sink().sent(), 100);
    drop(log);
    let seqs = forwarder.join().unwrap();
    assert_eq!(seqs, (0..100).collect::<Vec<_>>());

    let (sink, rx) = ChannelSink::new(2, Backpressure::DropNewestAndCount);
    let log = AuditLog::new(keys(), ChainHead::GENESIS, sink);
    for i in 0..5 {
        log.record(rec(i)).unwrap();
    }
    assert_eq!(log.sink().sent(), 2);
    assert_eq!(log.sink().dropped(), 3);
    assert_eq!(rx.try_iter().count(), 2);
    drop(rx);
    assert!(matches!(
        log.record(rec(9)),
        Err(fhirguard::audit::AuditError::Sink(SinkError::Disconnected))
    ));
}

// ------------------------------------------------------------------------------------------
// No PHI, no secrets.

#[test]
fn identifier_types_refuse_free_text() {
    assert!(UserId::new("jane.doe@example.org").is_err());
    assert!(UserId::new("Jane Doe").is_err());
    assert!(RequestId::new("name=Smith").is_err());
    assert!(RequestId::new("Bearer eyJhbGciOi").is_err());
    assert!(ResourceId::new("Smith, John").is_err());
    assert!(ResourceId::new("1/../2").is_err());
    assert!(ParamName::new("name=Smith").is_err());
    assert!(ParamName::new("birthdate").is_ok());
    assert!(KeyId::new("k".repeat(33)).is_err());
    // Times are UTC.
    let line = serde_json::json!({
        "time": "2026-11-24T10:00:00+01:00", "event": "rest-access", "outcome": "success"
    });
    assert!(serde_json::from_value::<AuditRecord>(line).is_err());
    // Unknown fields are refused everywhere.
    let line = serde_json::json!({
        "time": "2026-11-24T10:00:00Z", "event": "rest-access", "outcome": "success",
        "note": "patient said she was depressed"
    });
    assert!(serde_json::from_value::<AuditRecord>(line).is_err());
}

#[test]
fn serialised_records_and_audit_events_carry_no_phi_or_secrets() {
    // A search full of identifying values and a request carrying a token.
    let mut req = FhirRequest::new(Interaction::SearchType);
    req.resource_type = ResourceType::new("Patient");
    req.params = vec![
        SearchParam {
            name: "name".into(),
            modifier: Some("exact".into()),
            values: vec!["Smith".into()],
        },
        SearchParam {
            name: "birthdate".into(),
            modifier: None,
            values: vec!["1970-01-01".into()],
        },
        SearchParam {
            name: "address-postalcode".into(),
            modifier: None,
            values: vec!["02139".into()],
        },
    ];
    let mut record = AuditRecord::for_request(t(0), &req, Outcome::Success).unwrap();
    record.client = Some(ClientId::new("app-a").unwrap());
    record.actor = Some(Actor::new(ActorRole::Practitioner));
    let mut chain = Chain::new(keys(), ChainHead::GENESIS);
    let sealed = chain.append(record);
    let ctx = BalpContext {
        observer: "Device/fhirguard".into(),
        server_base: "https://ehr.example.org/fhir".into(),
    };
    let outputs = [
        String::from_utf8(sealed.to_json_line()).unwrap(),
        sealed.to_audit_event(&ctx).to_string(),
        format!("{:?}", sealed),
    ];
    for out in &outputs {
        for forbidden in [
            "Smith",
            "1970-01-01",
            "02139",
            "Bearer",
            "eyJ",
            "password",
            "secret",
            SECRET_1
                .iter()
                .map(|&b| b as char)
                .collect::<String>()
                .as_str(),
        ] {
            assert!(!out.contains(forbidden), "{forbidden:?} leaked into {out}");
        }
    }
    // The parameter names are kept: auditors can see what kind of search it was.
    assert!(outputs[0].contains("\"name:exact\""));
    assert!(outputs[0].contains("\"birthdate\""));
}

// ------------------------------------------------------------------------------------------
// FHIR AuditEvent per BALP.

fn coding_has(v: &serde_json::Value, system: &str, code: &str) -> bool {
    let matches = |c: &serde_json::Value| c["system"] == system && c["code"] == code;
    matches(v)
        || v["coding"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(matches))
        || v.as_array()
            .is_some_and(|cs| cs.iter().any(|c| coding_has(c, system, code)))
}

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";

/// The elements the BALP RESTful profiles require (cardinality ≥ 1 or fixed patterns).
fn check_balp(event: &serde_json::Value, profile: BalpProfile, subtype: &str, action: &str) {
    assert_eq!(event["resourceType"], "AuditEvent");
    assert_eq!(event["meta"]["profile"][0], profile.url());
    assert!(coding_has(
        &event["type"],
        "http://terminology.hl7.org/CodeSystem/audit-event-type",
        "rest"
    ));
    assert!(coding_has(
        &event["subtype"],
        "http://hl7.org/fhir/restful-interaction",
        subtype
    ));
    assert_eq!(event["action"], action);
    let recorded = event["recorded"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(recorded, &time::format_description::well_known::Rfc3339)
            .is_ok()
    );
    assert!(["0", "4", "8", "12"].contains(&event["outcome"].as_str().unwrap()));
    let agents = event["agent"].as_array().unwrap();
    let client = agents
        .iter()
        .find(|a| coding_has(&a["type"], DCM, "110153"))
        .expect("client agent (Source Role ID)");
    assert_eq!(client["requestor"], false);
    assert!(client["who"].is_object());
    assert!(client["network"]["address"].is_string());
    let server = agents
        .iter()
        .find(|a| coding_has(&a["type"], DCM, "110152"))
        .expect("server agent (Destination Role ID)");
    assert_eq!(server["requestor"], false);
    assert!(server["who"].is_object());
    assert!(server["network"]["address"].is_string());
    assert!(event["source"]["observer"]["reference"].is_string());
    let entities = event["entity"].as_array().unwrap();
    let patient_variant = matches!(
        profile,
        BalpProfile::PatientCreate
            | BalpProfile::PatientRead
            | BalpProfile::PatientUpdate
            | BalpProfile::PatientDelete
            | BalpProfile::PatientQuery
    );
    let patient = entities.iter().find(|e| coding_has(&e["role"], ROLE, "1"));
    if patient_variant {
        let patient = patient.expect("patient entity");
        assert!(
            patient["what"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Patient/")
        );
    } else {
        assert!(patient.is_none());
    }
    if matches!(profile, BalpProfile::Query | BalpProfile::PatientQuery) {
        let query = entities
            .iter()
            .find(|e| coding_has(&e["role"], ROLE, "24"))
            .expect("query entity");
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(query["query"].as_str().unwrap())
            .unwrap();
        assert!(String::from_utf8(decoded).unwrap().starts_with("GET "));
    } else {
        let data = entities
            .iter()
            .find(|e| coding_has(&e["role"], ROLE, "4"))
            .expect("data entity");
        assert!(data["what"].is_object());
        assert!(
            data["what"]["reference"].is_string() || data["what"]["type"].is_string(),
            "data entity names what was touched"
        );
    }
}

#[test]
fn audit_events_meet_the_balp_restful_profiles() {
    let ctx = BalpContext {
        observer: "Device/fhirguard".into(),
        server_base: "https://ehr.example.org/fhir".into(),
    };
    let cases = [
        (
            AuditInteraction::Read,
            Route::Instance,
            "read",
            "R",
            BalpProfile::Read,
        ),
        (
            AuditInteraction::Create,
            Route::Type,
            "create",
            "C",
            BalpProfile::Create,
        ),
        (
            AuditInteraction::Update,
            Route::Instance,
            "update",
            "U",
            BalpProfile::Update,
        ),
        (
            AuditInteraction::Delete,
            Route::Instance,
            "delete",
            "D",
            BalpProfile::Delete,
        ),
        (
            AuditInteraction::SearchType,
            Route::Type,
            "search-type",
            "E",
            BalpProfile::Query,
        ),
    ];
    for (interaction, route, subtype, action, profile) in cases {
        for with_patient in [false, true] {
            let mut r = rec(1);
            r.interaction = Some(interaction.clone());
            r.endpoint.as_mut().unwrap().route = route;
            if route == Route::Type {
                r.endpoint.as_mut().unwrap().id = None;
                r.params = vec![ParamName::new("code").unwrap()];
            }
            if !with_patient {
                r.patient = None;
            }
            let expected = match (profile, with_patient) {
                (p, false) => p,
                (BalpProfile::Read, true) => BalpProfile::PatientRead,
                (BalpProfile::Create, true) => BalpProfile::PatientCreate,
                (BalpProfile::Update, true) => BalpProfile::PatientUpdate,
                (BalpProfile::Delete, true) => BalpProfile::PatientDelete,
                (_, true) => BalpProfile::PatientQuery,
            };
            assert_eq!(BalpProfile::for_record(&r), Some(expected));
            let event = r.to_audit_event(&ctx);
            check_balp(&event, expected, subtype, action);
        }
    }
    // A denial maps with a failure outcome and its typed reason.
    let mut r = rec(2);
    r.outcome = Outcome::Denied(DenyReason::CategoryNotGranted);
    let event = r.to_audit_event(&ctx);
    assert_eq!(event["outcome"], "4");
    assert_eq!(event["outcomeDesc"], "denied: category-not-granted");
    // Security events are Security Alerts, not REST events.
    let r = AuditRecord::new(
        t(3),
        EventKind::RefreshTokenReuse,
        Outcome::Denied(DenyReason::TokenReuse),
    );
    let event = r.to_audit_event(&ctx);
    assert!(coding_has(&event["type"], DCM, "110113"));
    assert!(event["meta"].is_null());
}

#[test]
fn records_are_built_from_typed_requests() {
    let mut req = FhirRequest::new(Interaction::SearchCompartment);
    req.resource_type = ResourceType::new("Observation");
    req.compartment = Some((ResourceType::new("Patient").unwrap(), "355".into()));
    req.params = vec![SearchParam {
        name: "category".into(),
        modifier: None,
        values: vec!["vital-signs".into()],
    }];
    let r = AuditRecord::for_request(t(0), &req, Outcome::Success).unwrap();
    assert_eq!(r.patient, Some(PatientId::new("355").unwrap()));
    assert_eq!(r.endpoint.as_ref().unwrap().route, Route::Compartment);
    assert_eq!(r.interaction, Some(AuditInteraction::SearchCompartment));
    assert_eq!(r.params, vec![ParamName::new("category").unwrap()]);

    let mut req = FhirRequest::new(Interaction::Read);
    req.resource_type = ResourceType::new("Patient");
    req.id = Some("85".into());
    let r = AuditRecord::for_request(t(0), &req, Outcome::Success).unwrap();
    assert_eq!(r.patient, Some(PatientId::new("85").unwrap()));

    let mut req = FhirRequest::new(Interaction::Operation("everything".into()));
    req.resource_type = ResourceType::new("Patient");
    req.id = Some("85".into());
    let r = AuditRecord::for_request(t(0), &req, Outcome::Success).unwrap();
    assert_eq!(r.endpoint.unwrap().route, Route::Operation);

    let mut req = FhirRequest::new(Interaction::Read);
    req.resource_type = ResourceType::new("Observation");
    req.id = Some("bad id with spaces".into());
    assert!(AuditRecord::for_request(t(0), &req, Outcome::Success).is_err());
}

// ------------------------------------------------------------------------------------------
// Patient access history.

#[test]
fn patient_sees_which_app_read_which_categories_when() {
    let index = Arc::new(AccessIndex::new());
    let memory = Arc::new(MemorySink::new());
    let log = AuditLog::new(
        keys(),
        ChainHead::GENESIS,
        Tee::new(Arc::clone(&memory), Arc::clone(&index)),
    );
    let p355 = PatientId::new("355").unwrap();
    for i in 0..10 {
        log.record(rec(i)).unwrap();
    }
    // A denied attempt by app-b after its grant was revoked.
    let mut denied = rec(10);
    denied.client = Some(ClientId::new("app-b").unwrap());
    denied.grant = Some(GrantId::new("g-b").unwrap());
    denied.event = EventKind::RequestDenied;
    denied.outcome = Outcome::Denied(DenyReason::GrantRevoked);
    denied.categories = BTreeSet::from([CategoryId::new("laboratory").unwrap()]);
    log.record(denied).unwrap();
    // Another patient's access, and a security event.
    let mut other = rec(11);
    other.patient = Some(PatientId::new("85").unwrap());
    log.record(other).unwrap();
    log.record(AuditRecord::new(
        t(12),
        EventKind::LoginFailed,
        Outcome::Denied(DenyReason::BadCredentials),
    ))
    .unwrap();
    let mut smoking = rec(14);
    smoking.categories = BTreeSet::from([CategoryId::new("smoking-status").unwrap()]);
    log.record(smoking).unwrap();

    let query = AccessQuery::for_patient(p355.clone());
    let history = index.access_history(&query);
    assert_eq!(history, memory.access_history(&query));
    assert_eq!(history.len(), 11);
    assert!(
        history.windows(2).all(|w| w[0].time >= w[1].time),
        "newest first"
    );
    assert_eq!(history[0].time, t(14));
    assert_eq!(history[0].client, Some(ClientId::new("app-a").unwrap()));
    assert_eq!(history[0].interaction, Some(AuditInteraction::Read));
    assert_eq!(history[0].actor_role, Some(ActorRole::Patient));

    let summary = summarize(&history);
    assert_eq!(summary.len(), 2);
    assert_eq!(summary[0].client, Some(ClientId::new("app-a").unwrap()));
    assert_eq!(summary[0].accesses, 6);
    assert_eq!(
        summary[0].categories,
        BTreeSet::from([
            CategoryId::new("smoking-status").unwrap(),
            CategoryId::new("vital-signs").unwrap()
        ])
    );
    assert_eq!(summary[1].accesses, 5);
    assert_eq!(summary[1].first, t(1));
    assert_eq!(summary[1].last, t(9));

    // A grant's history, with refused attempts.
    let mut query = AccessQuery::for_grant(p355.clone(), GrantId::new("g-b").unwrap());
    query.include_denied = true;
    let grant_history = index.access_history(&query);
    assert_eq!(grant_history.len(), 6);
    assert_eq!(
        grant_history[0].outcome,
        Outcome::Denied(DenyReason::GrantRevoked)
    );
    // A time window.
    let mut query = AccessQuery::for_patient(p355);
    query.since = Some(t(5).get());
    query.until = Some(t(9).get());
    assert_eq!(index.access_history(&query).len(), 4);

    // The same answer from the records of a file log.
    let sealed = memory.records();
    let from_records = access_history(
        sealed.iter().map(|s| s.record()),
        &AccessQuery::for_patient(PatientId::new("355").unwrap()),
    );
    assert_eq!(from_records, history);
    let rebuilt = AccessIndex::from_records(sealed.iter());
    assert_eq!(
        rebuilt.access_history(&AccessQuery::for_patient(PatientId::new("355").unwrap())),
        history
    );
}
