//! The keyed hash chain: sealing records, and verifying a log of sealed records.
//!
//! # Format
//!
//! A sealed record is one JSON line:
//!
//! ```text
//! {"seq":41,"prev":"<64 hex>","kid":"k2026","mac":"<64 hex>","record":{…canonical record…}}
//! ```
//!
//! * `seq` counts records from 0 across the whole log (across rotated files too);
//! * `prev` is the *link hash* of the record before (32 zero bytes before the first record);
//! * `kid` names the HMAC key, so keys can rotate while old records stay verifiable;
//! * the *record digest* = SHA-256(`fhirguard-audit-record-v2\0` ‖ canonical record bytes);
//! * `mac` = HMAC-SHA-256(key\[kid\], `fhirguard-audit-mac-v2\0` ‖ seq (u64 BE) ‖ prev ‖
//!   len(kid) (u8) ‖ kid ‖ record digest);
//! * the record's own link hash = SHA-256(`fhirguard-audit-link-v2\0` ‖ seq ‖ prev ‖ len(kid) ‖
//!   kid ‖ record digest ‖ mac).
//!
//! The record's bytes are hashed once, and before the log's lock is taken (they do not depend on
//! the chain): what threads wait on is two hashes of about a hundred bytes and the append. The
//! MAC and the link bind the record through its digest, so they are as strong as SHA-256's
//! collision resistance, which the link chain rests on anyway.
//!
//! The link hash needs no key, so anyone can check that the chain is unbroken and compare its
//! head with an exported anchor; the MAC needs the key, so only a key holder can write a record
//! that verifies. An attacker who can edit the file but does not hold the key can neither alter a
//! record, nor insert one, nor delete one in the middle without the verifier naming the spot.
//! Deleting the *tail* leaves a shorter but valid chain: that is what [`ChainHead`] anchors,
//! exported to a separate store from time to time, are for.

use std::collections::BTreeSet;
use std::fmt;

use ring::{digest, hmac};
use serde::{Deserialize, Serialize};

use super::record::{AuditRecord, KeyId};

const RECORD_DOMAIN: &[u8] = b"fhirguard-audit-record-v2\0";
const MAC_DOMAIN: &[u8] = b"fhirguard-audit-mac-v2\0";
const LINK_DOMAIN: &[u8] = b"fhirguard-audit-link-v2\0";

/// Minimum length of a MAC key secret, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// A 32-byte hash or MAC, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The all-zero digest that precedes the first record of a log.
    pub const ZERO: Digest = Digest([0; 32]);

    /// The hex form.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        push_hex(&mut out, &self.0);
        out
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Digest(out))
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
}

/// Lowercase hex of `bytes`, appended to a byte buffer.
fn push_hex_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0x0f)]);
    }
}

/// `n` in decimal, appended to a byte buffer (what `n.to_string()` writes, without the
/// `String`).
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        // `n % 10` is below 10: the cast cannot truncate.
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::from_hex(&raw).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// Why a key could not be added to a [`KeyRing`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The secret is shorter than [`MIN_KEY_LEN`]: a short HMAC key can be brute-forced.
    #[error("audit MAC key is shorter than {min} bytes")]
    TooShort {
        /// The minimum length.
        min: usize,
    },
    /// A key with this id is already in the ring: reusing an id would make old records
    /// unverifiable.
    #[error("audit MAC key id {0} is already in use")]
    DuplicateId(KeyId),
}

/// The HMAC keys of a log: the current one seals, all of them verify.
///
/// `Debug` shows key ids only.
pub struct KeyRing {
    current: KeyId,
    keys: Vec<(KeyId, hmac::Key)>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("KeyRing")
            .field("current", &self.current.as_str())
            .field("keys", &ids)
            .field("secrets", &"<redacted>")
            .finish()
    }
}

impl KeyRing {
    /// A ring with one key, which seals new records.
    pub fn new(id: KeyId, secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort { min: MIN_KEY_LEN });
        }
        Ok(Self {
            current: id.clone(),
            keys: vec![(id, hmac::Key::new(hmac::HMAC_SHA256, secret))],
        })
    }

    /// Adds a key that only verifies (a retired key, for old records).
    pub fn add_verification_key(&mut self, id: KeyId, secret: &[u8]) -> Result<(), KeyError> {
        if secret.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort { min: MIN_KEY_LEN });
        }
        if self.get(&id).is_some() {
            return Err(KeyError::DuplicateId(id));
        }
        self.keys
            .push((id, hmac::Key::new(hmac::HMAC_SHA256, secret)));
        Ok(())
    }

    /// Adds a new key and seals with it from now on; the previous keys keep verifying.
    pub fn rotate(&mut self, id: KeyId, secret: &[u8]) -> Result<(), KeyError> {
        self.add_verification_key(id.clone(), secret)?;
        self.current = id;
        Ok(())
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &KeyId {
        &self.current
    }

    fn get(&self, id: &KeyId) -> Option<&hmac::Key> {
        self.keys.iter().find(|(k, _)| k == id).map(|(_, key)| key)
    }

    fn current_key(&self) -> &hmac::Key {
        // `current` is always one of `keys`: `new` and `rotate` are the only writers.
        match self.get(&self.current) {
            Some(key) => key,
            None => &self.keys[0].1,
        }
    }
}

/// The state of a chain after some record: the next sequence number and the last link hash.
///
/// Export it (with [`super::AuditLog::head`]) to a separate store from time to time; a verifier
/// given the anchor detects a log cut short before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChainHead {
    /// The sequence number the next record will carry (= records so far, from genesis).
    pub next_seq: u64,
    /// The link hash of the last record (zero before the first).
    pub last_hash: Digest,
}

impl ChainHead {
    /// The head of an empty log.
    pub const GENESIS: ChainHead = ChainHead {
        next_seq: 0,
        last_hash: Digest::ZERO,
    };
}

impl Default for ChainHead {
    fn default() -> Self {
        Self::GENESIS
    }
}

/// A record with its place in the chain and its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    seq: u64,
    prev: Digest,
    kid: KeyId,
    mac: Digest,
    hash: Digest,
    record: AuditRecord,
    canonical: Vec<u8>,
}

/// The fields of a log line, split without parsing the record: the verifier's fast path.
struct RawLine<'a> {
    seq: u64,
    prev: Digest,
    kid: KeyId,
    mac: Digest,
    record: &'a [u8],
}

/// Splits a line of exactly the shape [`SealedRecord::write_json_line`] produces. The MAC and
/// the link hash cover the record's bytes *as written*, so any other shape (reordered keys,
/// added whitespace, an extra field) cannot verify anyway and is refused here.
fn split_line(line: &[u8]) -> Option<RawLine<'_>> {
    fn hex32(rest: &[u8]) -> Option<(Digest, &[u8])> {
        // Lowercase only: the written form is lowercase, and accepting `A` for `a` would let a
        // line change without its MAC noticing.
        let hex = rest.get(..64)?;
        if !hex
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        {
            return None;
        }
        let digest = Digest::from_hex(std::str::from_utf8(hex).ok()?)?;
        Some((digest, &rest[64..]))
    }
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().position(|b| !b.is_ascii_digit())?;
    if digits == 0 || digits > 20 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let seq: u64 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(b",\"prev\":\"")?;
    let (prev, rest) = hex32(rest)?;
    let rest = rest.strip_prefix(b"\",\"kid\":\"")?;
    let kid_len = rest.iter().position(|&b| b == b'"')?;
    let kid = KeyId::new(std::str::from_utf8(&rest[..kid_len]).ok()?).ok()?;
    let rest = rest[kid_len..].strip_prefix(b"\",\"mac\":\"")?;
    let (mac, rest) = hex32(rest)?;
    let record = rest.strip_prefix(b"\",\"record\":")?.strip_suffix(b"}")?;
    if record.first() != Some(&b'{') || record.last() != Some(&b'}') {
        return None;
    }
    Some(RawLine {
        seq,
        prev,
        kid,
        mac,
        record,
    })
}

/// Why a log line is not a sealed record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// The line is not JSON of the sealed-record shape (or a field failed validation).
    #[error("log line is not a sealed audit record")]
    Malformed,
}

/// The digest of a record's canonical bytes, which the MAC and the link hash cover.
pub(crate) fn record_digest(canonical: &[u8]) -> Digest {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(RECORD_DOMAIN);
    ctx.update(canonical);
    let d = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Digest(out)
}

/// The longest input the MAC or the link hash covers: the link's domain, sequence number,
/// previous hash, key-id length and key id (at most 32 bytes), record digest and MAC.
const BOUND_MAX: usize = 24 + 8 + 32 + 1 + 32 + 32 + 32;

/// The bytes the MAC and the link hash cover, gathered on the stack and hashed in one call:
/// `domain ‖ seq (u64, big-endian) ‖ prev ‖ len(kid) (u8) ‖ kid ‖ record digest [‖ mac]`.
struct Bound {
    buf: [u8; BOUND_MAX],
    len: usize,
}

impl Bound {
    fn new(
        domain: &[u8],
        seq: u64,
        prev: &Digest,
        kid: &KeyId,
        record: &Digest,
        mac: Option<&Digest>,
    ) -> Self {
        let mut bound = Bound {
            buf: [0u8; BOUND_MAX],
            len: 0,
        };
        let kid = kid.as_str().as_bytes();
        bound.push(domain);
        bound.push(&seq.to_be_bytes());
        bound.push(&prev.0);
        // A key id is at most 32 bytes (`KeyId`'s limit), so its length fits one byte.
        bound.push(&[kid.len() as u8]);
        bound.push(kid);
        bound.push(&record.0);
        if let Some(mac) = mac {
            bound.push(&mac.0);
        }
        bound
    }

    fn push(&mut self, bytes: &[u8]) {
        // Unreachable overflow: the domains are constants and `KeyId` refuses more than 32
        // bytes, so every input fits `BOUND_MAX` (a unit test fills it exactly). Should that
        // ever change, a piece is left out rather than panicking.
        if let Some(slot) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            slot.copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn mac_context(key: &hmac::Key, seq: u64, prev: &Digest, kid: &KeyId, record: &Digest) -> Digest {
    let bound = Bound::new(MAC_DOMAIN, seq, prev, kid, record, None);
    let tag = hmac::sign(key, bound.bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    Digest(out)
}

fn link_hash(seq: u64, prev: &Digest, kid: &KeyId, record: &Digest, mac: &Digest) -> Digest {
    let bound = Bound::new(LINK_DOMAIN, seq, prev, kid, record, Some(mac));
    let d = digest::digest(&digest::SHA256, bound.bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Digest(out)
}

impl SealedRecord {
    /// The record's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The link hash of the previous record.
    pub fn prev(&self) -> &Digest {
        &self.prev
    }

    /// The id of the key that sealed it.
    pub fn key_id(&self) -> &KeyId {
        &self.kid
    }

    /// The MAC.
    pub fn mac(&self) -> &Digest {
        &self.mac
    }

    /// This record's link hash (what the next record carries as `prev`).
    pub fn hash(&self) -> &Digest {
        &self.hash
    }

    /// The record.
    pub fn record(&self) -> &AuditRecord {
        &self.record
    }

    /// The chain head right after this record.
    pub fn head_after(&self) -> ChainHead {
        ChainHead {
            next_seq: self.seq.wrapping_add(1),
            last_hash: self.hash,
        }
    }

    /// Whether the MAC verifies under `keys` (false if the key id is unknown).
    pub fn mac_verifies(&self, keys: &KeyRing) -> bool {
        match keys.get(&self.kid) {
            Some(key) => {
                let digest = record_digest(&self.canonical);
                let expected = mac_context(key, self.seq, &self.prev, &self.kid, &digest);
                // Constant-time comparison: a MAC check must not leak how many bytes matched.
                bool::from(subtle::ConstantTimeEq::ct_eq(
                    &expected.0[..],
                    &self.mac.0[..],
                ))
            }
            None => false,
        }
    }

    /// The JSON line (with its trailing `\n`) appended to a log.
    pub fn to_json_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.canonical.len() + 200);
        self.write_json_line(&mut out);
        out
    }

    /// Appends the JSON line (with its trailing `\n`) to `out`.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        out.reserve(self.canonical.len() + 200);
        out.extend_from_slice(b"{\"seq\":");
        push_decimal(out, self.seq);
        out.extend_from_slice(b",\"prev\":\"");
        push_hex_bytes(out, &self.prev.0);
        out.extend_from_slice(b"\",\"kid\":\"");
        // Key ids are `[A-Za-z0-9._-]`: nothing to escape.
        out.extend_from_slice(self.kid.as_str().as_bytes());
        out.extend_from_slice(b"\",\"mac\":\"");
        push_hex_bytes(out, &self.mac.0);
        out.extend_from_slice(b"\",\"record\":");
        out.extend_from_slice(&self.canonical);
        out.extend_from_slice(b"}\n");
    }

    /// Parses one log line (a trailing `\n` is allowed) of the shape
    /// [`SealedRecord::write_json_line`] writes, and the record in it (unknown fields refused).
    /// Recomputes the link hash; does not check the MAC (see [`SealedRecord::mac_verifies`]).
    pub fn from_json_line(line: &[u8]) -> Result<Self, LineError> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let raw = split_line(line).ok_or(LineError::Malformed)?;
        let record: AuditRecord =
            serde_json::from_slice(raw.record).map_err(|_| LineError::Malformed)?;
        let canonical = raw.record.to_vec();
        let digest = record_digest(&canonical);
        let hash = link_hash(raw.seq, &raw.prev, &raw.kid, &digest, &raw.mac);
        Ok(Self {
            seq: raw.seq,
            prev: raw.prev,
            kid: raw.kid,
            mac: raw.mac,
            hash,
            record,
            canonical,
        })
    }
}

/// The sealing side of a chain: keys and the current head.
#[derive(Debug)]
pub struct Chain {
    keys: KeyRing,
    head: ChainHead,
}

impl Chain {
    /// A chain that continues after `head` (use [`ChainHead::GENESIS`] for a new log, or the head
    /// a file sink recovered on start).
    pub fn new(keys: KeyRing, head: ChainHead) -> Self {
        Self { keys, head }
    }

    /// Seals `record` as the next record, without advancing the head (see [`Chain::commit`]).
    pub fn seal(&self, record: AuditRecord) -> SealedRecord {
        let canonical = record.canonical_bytes();
        let digest = record_digest(&canonical);
        self.seal_canonical(record, canonical, &digest)
    }

    /// [`Chain::seal`] with the record's canonical bytes already written and hashed
    /// ([`record_digest`]), so that a log shared by many threads does both before taking its
    /// lock (neither depends on the chain).
    pub(crate) fn seal_canonical(
        &self,
        record: AuditRecord,
        canonical: Vec<u8>,
        digest: &Digest,
    ) -> SealedRecord {
        debug_assert_eq!(canonical, record.canonical_bytes());
        debug_assert_eq!(*digest, record_digest(&canonical));
        let seq = self.head.next_seq;
        let prev = self.head.last_hash;
        let kid = self.keys.current_id().clone();
        let mac = mac_context(self.keys.current_key(), seq, &prev, &kid, digest);
        let hash = link_hash(seq, &prev, &kid, digest, &mac);
        SealedRecord {
            seq,
            prev,
            kid,
            mac,
            hash,
            record,
            canonical,
        }
    }

    /// Advances the head past `sealed` (which must come from [`Chain::seal`] on this head).
    pub fn commit(&mut self, sealed: &SealedRecord) {
        self.head = sealed.head_after();
    }

    /// Seals and commits.
    pub fn append(&mut self, record: AuditRecord) -> SealedRecord {
        let sealed = self.seal(record);
        self.commit(&sealed);
        sealed
    }

    /// The current head (the anchor to export).
    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// The keys, to rotate.
    pub fn keys_mut(&mut self) -> &mut KeyRing {
        &mut self.keys
    }

    /// The keys.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }
}

/// Where in a log a line sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    /// Which file of the verified sequence (0 for a single file).
    pub file: usize,
    /// The line number in that file, from 1.
    pub line: u64,
}

/// A problem the verifier found. Indices count lines across the whole verified sequence from 0,
/// so in an untouched log a record's index is its `seq` minus the starting sequence number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Tamper {
    /// A line is not a sealed record (and is not a torn last line).
    #[error("line {index} is not a sealed audit record")]
    Malformed {
        /// Position of the line.
        index: u64,
        /// File and line.
        at: Location,
    },
    /// The record at its expected place does not verify: its content, seq, link or MAC changed.
    #[error("record {index} (seq {seq}) was altered")]
    Altered {
        /// Position of the line.
        index: u64,
        /// File and line.
        at: Location,
        /// The sequence number expected here.
        seq: u64,
    },
    /// The record is sealed with a key the verifier does not hold.
    #[error("record {index} is sealed with unknown key {kid}")]
    UnknownKey {
        /// Position of the line.
        index: u64,
        /// File and line.
        at: Location,
        /// The key id it names.
        kid: KeyId,
    },
    /// A line that does not belong to the chain: without it, the chain continues.
    #[error("line {index} was inserted")]
    Inserted {
        /// Position of the line.
        index: u64,
        /// File and line.
        at: Location,
    },
    /// An authentic record out of order: the record expected here appears later.
    #[error("record {index} is out of order: expected seq {expected_seq}, found {found_seq}")]
    Reordered {
        /// Position of the line.
        index: u64,
        /// File and line.
        at: Location,
        /// The sequence number expected here.
        expected_seq: u64,
        /// The sequence number found.
        found_seq: u64,
    },
    /// Records `expected_seq..found_seq` are missing before this line.
    #[error("records {expected_seq}..{found_seq} are missing before line {index}")]
    Missing {
        /// Position of the line after the gap.
        index: u64,
        /// File and line.
        at: Location,
        /// The first missing sequence number.
        expected_seq: u64,
        /// The sequence number found after the gap.
        found_seq: u64,
    },
    /// An authentic record at the right sequence number links to a different predecessor: two
    /// chains (two writers, or a log restarted from the wrong head) were spliced together.
    #[error("record {index} (seq {seq}) belongs to a different chain")]
    Forked {
        /// Position of the line.
        index: u64,
        /// File and line.
        at: Location,
        /// Its sequence number.
        seq: u64,
    },
    /// The log ends before an exported anchor: its tail was cut off.
    #[error("log ends at seq {next_seq}, before the anchor at {anchor_next_seq}")]
    TruncatedTail {
        /// Records verified (the next sequence number the log would carry).
        next_seq: u64,
        /// The anchor's next sequence number: `anchor_next_seq - next_seq` records are gone.
        anchor_next_seq: u64,
    },
    /// The chain reaches an anchor's position with a different hash: the log was rewritten.
    #[error("chain at seq {next_seq} does not match the exported anchor")]
    AnchorMismatch {
        /// The anchor's next sequence number.
        next_seq: u64,
    },
}

/// A torn last line: the tail of an interrupted write, not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// Where it starts.
    pub at: Location,
    /// Byte offset of its start in its file.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
}

/// A log that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records verified.
    pub records: u64,
    /// The head after the last record.
    pub head: ChainHead,
    /// The key ids seen.
    pub key_ids: BTreeSet<KeyId>,
    /// A torn last line, if the log ends with one (left by a crash; not tampering by itself).
    pub torn_tail: Option<TornTail>,
}

/// What the verifier keeps of each line: enough to classify, not the record.
#[derive(Debug, Clone)]
enum Summary {
    Record {
        seq: u64,
        prev: Digest,
        hash: Digest,
        authentic: bool,
        unknown_kid: Option<KeyId>,
    },
    Malformed,
}

type Anchors = std::iter::Peekable<std::vec::IntoIter<ChainHead>>;

fn check_anchors(anchors: &mut Anchors, seq: u64, prev: &Digest) -> Result<(), Tamper> {
    while let Some(anchor) = anchors.peek() {
        if anchor.next_seq != seq {
            break;
        }
        if anchor.last_hash != *prev {
            return Err(Tamper::AnchorMismatch { next_seq: seq });
        }
        anchors.next();
    }
    Ok(())
}

/// Walks a log of sealed records and names the first problem precisely.
#[derive(Debug)]
pub struct Verifier<'k> {
    keys: &'k KeyRing,
    start: ChainHead,
    anchors: Vec<ChainHead>,
    lines: Vec<(Summary, Location)>,
    key_ids: BTreeSet<KeyId>,
    torn_tail: Option<TornTail>,
    files_fed: usize,
}

impl<'k> Verifier<'k> {
    /// A verifier for a log that starts at genesis.
    pub fn new(keys: &'k KeyRing) -> Self {
        Self {
            keys,
            start: ChainHead::GENESIS,
            anchors: Vec::new(),
            lines: Vec::new(),
            key_ids: BTreeSet::new(),
            torn_tail: None,
            files_fed: 0,
        }
    }

    /// The log starts after `head` (older files were archived; `head` is their last anchor).
    #[must_use]
    pub fn starting_at(mut self, head: ChainHead) -> Self {
        self.start = head;
        self
    }

    /// An exported anchor the log must reach and agree with.
    #[must_use]
    pub fn with_anchor(mut self, anchor: ChainHead) -> Self {
        self.anchors.push(anchor);
        self
    }

    /// Feeds the bytes of the next file of the log. `last` says whether it is the last file
    /// (only the last may end with a torn line).
    pub fn feed_file(&mut self, bytes: &[u8], last: bool) {
        let file = self.files_fed;
        self.files_fed += 1;
        let mut offset = 0usize;
        let mut line_no = 0u64;
        while offset < bytes.len() {
            line_no += 1;
            let rest = &bytes[offset..];
            let (line, terminated) = match rest.iter().position(|&b| b == b'\n') {
                Some(end) => (&rest[..end], true),
                None => (rest, false),
            };
            let at = Location {
                file,
                line: line_no,
            };
            let summary = match split_line(line).ok_or(LineError::Malformed) {
                Ok(raw) => {
                    let digest = record_digest(raw.record);
                    let key = self.keys.get(&raw.kid);
                    let authentic = key.is_some_and(|key| {
                        let expected = mac_context(key, raw.seq, &raw.prev, &raw.kid, &digest);
                        bool::from(subtle::ConstantTimeEq::ct_eq(
                            &expected.0[..],
                            &raw.mac.0[..],
                        ))
                    });
                    let unknown_kid = key.is_none().then(|| raw.kid.clone());
                    if authentic {
                        self.key_ids.insert(raw.kid.clone());
                    }
                    Summary::Record {
                        seq: raw.seq,
                        prev: raw.prev,
                        hash: link_hash(raw.seq, &raw.prev, &raw.kid, &digest, &raw.mac),
                        authentic,
                        unknown_kid,
                    }
                }
                Err(_) if !terminated && last => {
                    self.torn_tail = Some(TornTail {
                        at,
                        offset: offset as u64,
                        len: line.len() as u64,
                    });
                    break;
                }
                Err(_) => Summary::Malformed,
            };
            self.lines.push((summary, at));
            offset += line.len() + usize::from(terminated);
        }
    }

    /// Verifies one whole log held in memory (a single file, which may end with a torn line).
    pub fn verify_bytes(mut self, bytes: &[u8]) -> Result<Verified, Tamper> {
        self.feed_file(bytes, true);
        self.finish()
    }

    /// Walks everything fed and returns the verdict.
    pub fn finish(self) -> Result<Verified, Tamper> {
        let start = self.start;
        let mut anchors: Vec<ChainHead> = self
            .anchors
            .into_iter()
            .filter(|a| a.next_seq >= start.next_seq)
            .collect();
        anchors.sort_by_key(|a| a.next_seq);
        let mut anchors_vec = anchors.into_iter().peekable();
        let mut expected_seq = start.next_seq;
        let mut expected_prev = start.last_hash;
        check_anchors(&mut anchors_vec, expected_seq, &expected_prev)?;
        let lines = &self.lines;
        for (i, (summary, at)) in lines.iter().enumerate() {
            let index = i as u64;
            let at = *at;
            let continues_from = |j: usize, seq: u64, prev: &Digest| -> bool {
                matches!(
                    lines.get(j),
                    Some((Summary::Record { seq: s, prev: p, authentic: true, .. }, _))
                        if *s == seq && p == prev
                )
            };
            match summary {
                Summary::Malformed => {
                    if continues_from(i + 1, expected_seq, &expected_prev) {
                        return Err(Tamper::Inserted { index, at });
                    }
                    return Err(Tamper::Malformed { index, at });
                }
                Summary::Record {
                    seq,
                    prev,
                    hash,
                    authentic,
                    unknown_kid,
                } => {
                    if !authentic {
                        if continues_from(i + 1, expected_seq, &expected_prev) {
                            return Err(Tamper::Inserted { index, at });
                        }
                        if let Some(kid) = unknown_kid {
                            return Err(Tamper::UnknownKey {
                                index,
                                at,
                                kid: kid.clone(),
                            });
                        }
                        return Err(Tamper::Altered {
                            index,
                            at,
                            seq: expected_seq,
                        });
                    }
                    let seq = *seq;
                    if seq == expected_seq {
                        if *prev != expected_prev {
                            return Err(Tamper::Forked { index, at, seq });
                        }
                        expected_seq = expected_seq.wrapping_add(1);
                        expected_prev = *hash;
                        check_anchors(&mut anchors_vec, expected_seq, &expected_prev)?;
                        continue;
                    }
                    let duplicated_later = lines[i + 1..].iter().any(|(s, _)| {
                        matches!(s, Summary::Record { seq: s, hash: h, authentic: true, .. }
                            if *s == seq && h == hash)
                    });
                    if seq < expected_seq || duplicated_later {
                        // A copy of an earlier (or a later) record.
                        return Err(Tamper::Inserted { index, at });
                    }
                    let later = lines[i + 1..].iter().any(|(s, _)| {
                        matches!(s, Summary::Record { seq: s, authentic: true, .. } if *s == expected_seq)
                    });
                    if later {
                        return Err(Tamper::Reordered {
                            index,
                            at,
                            expected_seq,
                            found_seq: seq,
                        });
                    }
                    return Err(Tamper::Missing {
                        index,
                        at,
                        expected_seq,
                        found_seq: seq,
                    });
                }
            }
        }
        if let Some(anchor) = anchors_vec.next() {
            return Err(Tamper::TruncatedTail {
                next_seq: expected_seq,
                anchor_next_seq: anchor.next_seq,
            });
        }
        Ok(Verified {
            records: expected_seq.wrapping_sub(start.next_seq),
            head: ChainHead {
                next_seq: expected_seq,
                last_hash: expected_prev,
            },
            key_ids: self.key_ids,
            torn_tail: self.torn_tail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{AuditTime, EventKind, Outcome};

    fn ring() -> KeyRing {
        KeyRing::new(KeyId::new("k1").unwrap(), &[9u8; 32]).unwrap()
    }

    fn record() -> AuditRecord {
        let time = AuditTime::new(time::macros::datetime!(2026-11-24 10:00:00.000123 UTC)).unwrap();
        AuditRecord::new(time, EventKind::ConsentRevoked, Outcome::Success)
    }

    #[test]
    fn line_numbers_and_hex_are_written_as_before() {
        for n in [0u64, 1, 9, 10, 41, 1_000_000, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        let d = Digest([0x0f; 32]);
        let mut out = Vec::new();
        push_hex_bytes(&mut out, &d.0);
        assert_eq!(out, d.to_hex().into_bytes());
    }

    #[test]
    fn the_bound_bytes_are_the_documented_concatenation() {
        let prev = Digest([7u8; 32]);
        let record = Digest([9u8; 32]);
        let mac = Digest([5u8; 32]);
        let kid = KeyId::new("k".repeat(32)).unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(LINK_DOMAIN);
        expected.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        expected.extend_from_slice(&prev.0);
        expected.push(32);
        expected.extend_from_slice(kid.as_str().as_bytes());
        expected.extend_from_slice(&record.0);
        expected.extend_from_slice(&mac.0);
        let bound = Bound::new(
            LINK_DOMAIN,
            0x0102_0304_0506_0708,
            &prev,
            &kid,
            &record,
            Some(&mac),
        );
        // The longest key id and the MAC fill the buffer exactly: nothing is cut off.
        assert_eq!(expected.len(), BOUND_MAX);
        assert_eq!(bound.bytes(), &expected[..]);
        let mac_bound = Bound::new(MAC_DOMAIN, 3, &prev, &kid, &record, None);
        assert_eq!(
            mac_bound.bytes().len(),
            MAC_DOMAIN.len() + 8 + 32 + 1 + 32 + 32
        );
    }

    #[test]
    fn digest_hex_round_trips() {
        let d = Digest([0xab; 32]);
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("ab"), None);
        assert_eq!(Digest::from_hex(&"zz".repeat(32)), None);
    }

    #[test]
    fn a_sealed_line_round_trips_and_verifies() {
        let mut chain = Chain::new(ring(), ChainHead::GENESIS);
        let sealed = chain.append(record());
        let line = sealed.to_json_line();
        let parsed = SealedRecord::from_json_line(&line).unwrap();
        assert_eq!(parsed, sealed);
        assert!(parsed.mac_verifies(&ring()));
        assert_eq!(parsed.to_json_line(), line);
        assert_eq!(chain.head(), sealed.head_after());
    }

    #[test]
    fn the_strict_line_shape_is_required() {
        let mut chain = Chain::new(ring(), ChainHead::GENESIS);
        let line = String::from_utf8(chain.append(record()).to_json_line()).unwrap();
        let line = line.trim_end();
        assert!(split_line(line.as_bytes()).is_some());
        // Uppercase hex, leading zeros, spaces, reordered keys: all refused.
        let zeros = "0".repeat(64);
        let upper = line.replacen(&zeros, &format!("{}A", &zeros[1..]), 1);
        assert!(split_line(upper.as_bytes()).is_none());
        assert!(split_line(line.replacen("{\"seq\":0", "{\"seq\":00", 1).as_bytes()).is_none());
        assert!(split_line(line.replacen(",\"prev\"", ", \"prev\"", 1).as_bytes()).is_none());
        assert!(split_line(b"{\"prev\":\"\",\"seq\":0}").is_none());
    }
}
