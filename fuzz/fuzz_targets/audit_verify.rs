//! The audit-log verifier against hostile files: it must never panic, and on a real log with
//! one known tampering it must name the right kind of problem at the right index.
//!
//! The first byte picks the mode: even = the input *is* a log file (arbitrary bytes, split into
//! files); odd = a valid log of up to 48 records is built and one operation chosen by the input
//! is applied to it, and the verdict is checked.
#![no_main]

use fhirguard::audit::{
    AuditRecord, AuditTime, Chain, ChainHead, EventKind, KeyId, KeyRing, Outcome, SealedRecord,
    Tamper, Verifier,
};
use fhirguard::{ClientId, PatientId};
use libfuzzer_sys::fuzz_target;

fn keys() -> KeyRing {
    let mut ring = KeyRing::new(KeyId::new("k1").unwrap(), &[0x42; 32]).unwrap();
    ring.add_verification_key(KeyId::new("k0").unwrap(), &[0x24; 32])
        .unwrap();
    ring
}

fn build(n: usize) -> (Vec<Vec<u8>>, ChainHead) {
    let mut chain = Chain::new(keys(), ChainHead::GENESIS);
    let lines = (0..n)
        .map(|i| {
            let time: AuditTime =
                serde_json::from_str(&format!("\"2026-11-24T10:00:00.{:03}Z\"", i)).unwrap();
            let mut r = AuditRecord::new(time, EventKind::RestAccess, Outcome::Success);
            r.client = Some(ClientId::new(format!("app-{}", i % 3)).unwrap());
            r.patient = Some(PatientId::new(format!("p{}", i % 5)).unwrap());
            chain.append(r).to_json_line()
        })
        .collect();
    (lines, chain.head())
}

fn index_of(result: &Result<fhirguard::audit::Verified, Tamper>) -> Option<u64> {
    match result {
        Err(Tamper::Malformed { index, .. })
        | Err(Tamper::Altered { index, .. })
        | Err(Tamper::UnknownKey { index, .. })
        | Err(Tamper::Inserted { index, .. })
        | Err(Tamper::Reordered { index, .. })
        | Err(Tamper::Missing { index, .. })
        | Err(Tamper::Forked { index, .. }) => Some(*index),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 64 * 1024 {
        return;
    }
    let keys = keys();
    match data.first() {
        None => {}
        Some(mode) if mode % 2 == 0 => {
            let body = &data[1..];
            // As one file, then split into up to three files at input-chosen points.
            let _ = Verifier::new(&keys).verify_bytes(body);
            let cut1 = usize::from(*mode) * 7 % (body.len() + 1);
            let cut2 = cut1 + (body.len() - cut1) / 2;
            let mut v = Verifier::new(&keys).with_anchor(ChainHead::GENESIS);
            v.feed_file(&body[..cut1], false);
            v.feed_file(&body[cut1..cut2], false);
            v.feed_file(&body[cut2..], true);
            let _ = v.finish();
            for line in body.split(|&b| b == b'\n') {
                if let Ok(record) = SealedRecord::from_json_line(line) {
                    // A line that parses round-trips exactly.
                    assert_eq!(&record.to_json_line()[..line.len()], line);
                    let _ = record.mac_verifies(&keys);
                }
            }
        }
        Some(_) => {
            let get = |i: usize| usize::from(data.get(i).copied().unwrap_or(0));
            let n = get(1) % 48 + 2;
            let (mut lines, head) = build(n);
            let i = get(3) % n;
            match get(2) % 7 {
                0 => {
                    let verified = Verifier::new(&keys).with_anchor(head).verify_bytes(&lines.concat());
                    assert_eq!(verified.map(|v| v.records), Ok(n as u64));
                }
                1 => {
                    // Change one byte of line i (not its newline) to a different value.
                    let line = &mut lines[i];
                    let pos = (get(4) << 8 | get(5)) % (line.len() - 1);
                    let new = data.get(6).copied().unwrap_or(1);
                    if new == line[pos] {
                        return;
                    }
                    line[pos] = new;
                    let result = Verifier::new(&keys).verify_bytes(&lines.concat());
                    assert_eq!(index_of(&result), Some(i as u64), "{result:?}");
                }
                2 => {
                    lines.remove(i);
                    let result = Verifier::new(&keys).with_anchor(head).verify_bytes(&lines.concat());
                    if i + 1 == n {
                        assert!(matches!(result, Err(Tamper::TruncatedTail { .. })), "{result:?}");
                    } else {
                        assert!(
                            matches!(result, Err(Tamper::Missing { index, .. }) if index == i as u64),
                            "{result:?}"
                        );
                    }
                }
                3 => {
                    let j = get(4) % n;
                    if i == j {
                        return;
                    }
                    lines.swap(i, j);
                    let result = Verifier::new(&keys).verify_bytes(&lines.concat());
                    let first = i.min(j) as u64;
                    assert!(
                        matches!(result, Err(Tamper::Reordered { index, .. }) if index == first),
                        "{result:?}"
                    );
                }
                4 => {
                    let p = get(4) % (n + 1);
                    let copy = lines[i].clone();
                    lines.insert(p, copy);
                    let result = Verifier::new(&keys).verify_bytes(&lines.concat());
                    // A copy right where the original was makes the original the odd one out.
                    let expected = if p == i { i + 1 } else { p } as u64;
                    assert!(
                        matches!(result, Err(Tamper::Inserted { index, .. }) if index == expected),
                        "{result:?}"
                    );
                }
                5 => {
                    // A torn last line: a prefix of the last record without its newline.
                    let last = lines.len() - 1;
                    let keep = get(4) % (lines[last].len() - 1);
                    lines[last].truncate(keep);
                    let result = Verifier::new(&keys).verify_bytes(&lines.concat());
                    let verified = result.expect("a torn tail is not tampering");
                    assert_eq!(verified.records, n as u64 - 1);
                    assert_eq!(verified.torn_tail.is_some(), keep > 0);
                }
                _ => {
                    // Hostile bytes spliced in as a line of their own at position i.
                    let mut junk: Vec<u8> =
                        data[4.min(data.len())..].iter().copied().filter(|&b| b != b'\n').collect();
                    junk.push(b'\n');
                    if lines.contains(&junk) {
                        return;
                    }
                    lines.insert(i, junk);
                    let result = Verifier::new(&keys).verify_bytes(&lines.concat());
                    assert_eq!(index_of(&result), Some(i as u64), "{result:?}");
                }
            }
        }
    }
});
