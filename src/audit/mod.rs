//! Audit records shaped as FHIR AuditEvents, a keyed hash chain that makes alteration and
//! deletion detectable, and the sinks that keep them.
//!
//! * [`AuditRecord`]: one record per request or security event; every field is typed, so a
//!   record cannot carry a resource body, a search value, a token or a password.
//! * [`Chain`] seals records: each carries its predecessor's link hash and an HMAC-SHA-256 under
//!   a key named by id (keys rotate). [`Verifier`] walks a log and names the first altered,
//!   inserted, reordered or missing record; exported [`ChainHead`] anchors expose a cut tail.
//! * [`AuditSink`] keeps them: [`MemorySink`], [`FileSink`] (JSON lines, fsync per record or
//!   group commit, rotation, crash recovery), [`ChannelSink`] (to a SIEM forwarder, blocking or
//!   counted drops), [`Tee`]. [`AuditLog`] ties chain and sink together and fails closed.
//! * [`AuditRecord::to_audit_event`] maps to FHIR R4 AuditEvent per the IHE BALP profiles.
//! * [`access_history`] / [`AccessIndex`]: who accessed a patient's record, through which app,
//!   under which grant, which categories, when.
//!
//! ```
//! use fhirguard::audit::{AuditLog, AuditRecord, AuditTime, ChainHead, EventKind, KeyId, KeyRing,
//!     MemorySink, Outcome, Verifier};
//! use fhirguard::{Clock, SystemClock};
//!
//! let keys = KeyRing::new(KeyId::new("k1").unwrap(), &[7u8; 32]).unwrap();
//! let log = AuditLog::new(keys, ChainHead::GENESIS, MemorySink::new());
//! let now = AuditTime::new(SystemClock.now()).unwrap();
//! log.record(AuditRecord::new(now, EventKind::LoginFailed, Outcome::Success)).unwrap();
//!
//! let keys = KeyRing::new(KeyId::new("k1").unwrap(), &[7u8; 32]).unwrap();
//! let verified = Verifier::new(&keys)
//!     .with_anchor(log.head())
//!     .verify_bytes(&log.sink().to_json_lines())
//!     .unwrap();
//! assert_eq!(verified.records, 1);
//! ```
//!
//! See `docs/audit.md` for the field list, the BALP mapping, the chain format, how to verify a
//! log and how to choose a durability policy.

mod balp;
mod canonical;
mod chain;
mod file;
mod history;
mod record;
mod sink;

pub use balp::{BalpContext, BalpProfile, FHIRGUARD_SYSTEM};
pub use chain::{
    Chain, ChainHead, Digest, KeyError, KeyRing, LineError, Location, MIN_KEY_LEN, SealedRecord,
    Tamper, TornTail, Verified, Verifier,
};
pub use file::{
    Durability, FileSink, FileSinkConfig, Recovery, TornTailRecovered, VerifyError, log_files,
    read_log_dir, verify_log_dir,
};
pub use history::{
    AccessEntry, AccessHistory, AccessIndex, AccessQuery, AppAccessSummary, access_history,
    summarize,
};
pub use record::{
    Actor, ActorRole, AuditInteraction, AuditRecord, AuditTime, DenyReason, Endpoint, ErrorKind,
    EventKind, FhirUser, FhirUserType, HttpMethod, KeyId, OperationName, Outcome, ParamName,
    PolicyDecision, PurposeOfUse, RecordError, RequestId, ResourceId, Route, UserId,
};
pub use sink::{
    AuditError, AuditLog, AuditSink, Backpressure, ChannelSink, FailurePolicy, MemorySink, Receipt,
    SinkError, Tee,
};
