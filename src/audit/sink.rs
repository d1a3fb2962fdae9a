//! Where sealed records go: the [`AuditSink`] trait, the in-memory and channel sinks, and
//! [`AuditLog`], which seals each record and refuses to let a request through when its record
//! could not be kept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};

use super::chain::{Chain, ChainHead, KeyError, KeyRing, SealedRecord};
use super::record::{AuditRecord, KeyId};

/// Why a sink could not keep a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// An I/O operation on the log failed (disk full, permission, device error).
    #[error("audit log {op} failed: {kind}")]
    Io {
        /// What the sink was doing (`write`, `fsync`, `rotate`, `open`).
        op: &'static str,
        /// The I/O error's kind (the message is not kept: it may name paths).
        kind: std::io::ErrorKind,
    },
    /// A background flush failed earlier; records buffered since may be lost, so the sink
    /// refuses every further record until it is reopened.
    #[error("audit log is broken after an earlier {op} failure ({kind})")]
    Broken {
        /// What had failed.
        op: &'static str,
        /// The I/O error's kind.
        kind: std::io::ErrorKind,
    },
    /// The receiving end of a channel sink is gone: nobody forwards the records any more.
    #[error("audit channel receiver is gone")]
    Disconnected,
}

impl SinkError {
    pub(crate) fn io(op: &'static str, err: &std::io::Error) -> Self {
        SinkError::Io {
            op,
            kind: err.kind(),
        }
    }
}

/// A place sealed records are appended to.
///
/// [`AuditLog`] calls `append` in chain order, one record at a time (it holds its lock across
/// the call), so a sink never has to reorder. Implementations must either keep the record
/// (within their documented durability) or return an error: a sink that drops records must say
/// so in its name and count what it drops.
pub trait AuditSink: Send + Sync {
    /// Appends one sealed record.
    fn append(&self, record: &SealedRecord) -> Result<(), SinkError>;

    /// Makes everything appended so far durable, as far as the sink can. Default: nothing to do.
    fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

impl<S: AuditSink + ?Sized> AuditSink for Arc<S> {
    fn append(&self, record: &SealedRecord) -> Result<(), SinkError> {
        (**self).append(record)
    }
    fn flush(&self) -> Result<(), SinkError> {
        (**self).flush()
    }
}

impl<S: AuditSink + ?Sized> AuditSink for Box<S> {
    fn append(&self, record: &SealedRecord) -> Result<(), SinkError> {
        (**self).append(record)
    }
    fn flush(&self) -> Result<(), SinkError> {
        (**self).flush()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keeps sealed records in memory: for tests, and as the store behind small deployments'
/// history pages. Unbounded: pair it with a durable sink in production.
#[derive(Debug, Default)]
pub struct MemorySink {
    records: Mutex<Vec<SealedRecord>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the records kept so far.
    pub fn records(&self) -> Vec<SealedRecord> {
        lock(&self.records).clone()
    }

    /// How many records are kept.
    pub fn len(&self) -> usize {
        lock(&self.records).len()
    }

    /// Whether no record is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records as a JSON-lines log (what a file sink would have written).
    pub fn to_json_lines(&self) -> Vec<u8> {
        let records = lock(&self.records);
        let mut out = Vec::with_capacity(records.len() * 512);
        for r in records.iter() {
            r.write_json_line(&mut out);
        }
        out
    }

    /// Runs `f` over the kept records without copying them.
    pub fn with_records<R>(&self, f: impl FnOnce(&[SealedRecord]) -> R) -> R {
        f(&lock(&self.records))
    }
}

impl AuditSink for MemorySink {
    fn append(&self, record: &SealedRecord) -> Result<(), SinkError> {
        lock(&self.records).push(record.clone());
        Ok(())
    }
}

/// What a [`ChannelSink`] does when its channel is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backpressure {
    /// Wait until the forwarder takes a record (the request waits too). Never loses a record.
    Block,
    /// Drop the record and count it ([`ChannelSink::dropped`]). Only for a *secondary* sink
    /// (a SIEM feed next to a durable file, joined with [`Tee`]): the name says what it does.
    DropNewestAndCount,
}

/// Hands sealed records to another thread (a SIEM forwarder) through a bounded channel.
#[derive(Debug)]
pub struct ChannelSink {
    tx: SyncSender<SealedRecord>,
    policy: Backpressure,
    sent: AtomicU64,
    dropped: AtomicU64,
}

impl ChannelSink {
    /// A sink and the receiver the forwarder reads from; `capacity` records fit in the channel.
    pub fn new(capacity: usize, policy: Backpressure) -> (Self, Receiver<SealedRecord>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        (
            Self {
                tx,
                policy,
                sent: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            },
            rx,
        )
    }

    /// Records handed to the channel.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Records dropped because the channel was full (only with
    /// [`Backpressure::DropNewestAndCount`]).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl AuditSink for ChannelSink {
    fn append(&self, record: &SealedRecord) -> Result<(), SinkError> {
        match self.policy {
            Backpressure::Block => {
                self.tx
                    .send(record.clone())
                    .map_err(|_| SinkError::Disconnected)?;
            }
            Backpressure::DropNewestAndCount => match self.tx.try_send(record.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(TrySendError::Disconnected(_)) => return Err(SinkError::Disconnected),
            },
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Two sinks in a row: the record is kept only if both keep it (the first error wins).
#[derive(Debug)]
pub struct Tee<A, B> {
    /// The first sink (typically the durable file).
    pub first: A,
    /// The second sink (a forwarder, an index).
    pub second: B,
}

impl<A: AuditSink, B: AuditSink> Tee<A, B> {
    /// Joins two sinks.
    pub fn new(first: A, second: B) -> Self {
        Self { first, second }
    }
}

impl<A: AuditSink, B: AuditSink> AuditSink for Tee<A, B> {
    fn append(&self, record: &SealedRecord) -> Result<(), SinkError> {
        self.first.append(record)?;
        self.second.append(record)
    }
    fn flush(&self) -> Result<(), SinkError> {
        self.first.flush()?;
        self.second.flush()
    }
}

/// What [`AuditLog::record`] does when the sink fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Return an error: the caller must fail the request. No request is served unaudited.
    #[default]
    FailClosed,
    /// Let the request through and count the lost record ([`AuditLog::lost`]). Chosen only by
    /// this name, for deployments that value availability over accountability.
    FailOpenAndCount,
}

/// Why a record was not kept, under [`FailurePolicy::FailClosed`]: the request must fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The sink refused the record.
    #[error("audit record could not be kept: {0}")]
    Sink(#[from] SinkError),
}

/// What happened to a record handed to [`AuditLog::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Receipt {
    /// Sealed and kept with this sequence number.
    Stored {
        /// Its place in the chain.
        seq: u64,
    },
    /// The sink failed and the policy is [`FailurePolicy::FailOpenAndCount`]: the record is
    /// lost (and counted); the chain did not advance, so it shows no gap.
    Lost,
}

/// Seals records into the chain and appends them to a sink.
///
/// The chain only advances when the sink accepted the record, so a failed append leaves no
/// hole for the verifier to report.
#[derive(Debug)]
pub struct AuditLog<S> {
    chain: Mutex<Chain>,
    sink: S,
    policy: FailurePolicy,
    lost: AtomicU64,
}

impl<S: AuditSink> AuditLog<S> {
    /// A fail-closed log that continues the chain after `head` (a new log: [`ChainHead::GENESIS`];
    /// a reopened file: the head its recovery reported).
    pub fn new(keys: KeyRing, head: ChainHead, sink: S) -> Self {
        Self {
            chain: Mutex::new(Chain::new(keys, head)),
            sink,
            policy: FailurePolicy::FailClosed,
            lost: AtomicU64::new(0),
        }
    }

    /// Sets the failure policy.
    #[must_use]
    pub fn with_failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Seals `record` and appends it. Under [`FailurePolicy::FailClosed`] a sink failure is an
    /// error and the request it describes must fail.
    pub fn record(&self, record: AuditRecord) -> Result<Receipt, AuditError> {
        // The canonical bytes and their digest do not depend on the chain: done before the
        // lock, they keep the section other threads wait on to two short hashes and the
        // sink's append.
        let canonical = record.canonical_bytes();
        let digest = super::chain::record_digest(&canonical);
        let mut chain = lock(&self.chain);
        let sealed = chain.seal_canonical(record, canonical, &digest);
        match self.sink.append(&sealed) {
            Ok(()) => {
                chain.commit(&sealed);
                Ok(Receipt::Stored { seq: sealed.seq() })
            }
            Err(err) => match self.policy {
                FailurePolicy::FailClosed => Err(AuditError::Sink(err)),
                FailurePolicy::FailOpenAndCount => {
                    self.lost.fetch_add(1, Ordering::Relaxed);
                    Ok(Receipt::Lost)
                }
            },
        }
    }

    /// The chain's head: export it to a separate store from time to time as an anchor.
    pub fn head(&self) -> ChainHead {
        lock(&self.chain).head()
    }

    /// Starts sealing with a new key (older keys keep verifying).
    pub fn rotate_key(&self, id: KeyId, secret: &[u8]) -> Result<(), KeyError> {
        lock(&self.chain).keys_mut().rotate(id, secret)
    }

    /// Records lost under [`FailurePolicy::FailOpenAndCount`].
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Flushes the sink.
    pub fn flush(&self) -> Result<(), SinkError> {
        self.sink.flush()
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }
}
