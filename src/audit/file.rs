//! The append-only JSON-lines file sink: durability policy, rotation by size, recovery on start.
//!
//! Files live in one directory and are named `{prefix}-{n:06}.jsonl`, `n` counting from 1. The
//! chain runs across them: the first record of file `n + 1` links to the last record of file
//! `n`, so [`verify_log_dir`] verifies a rotated log as one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::chain::{ChainHead, SealedRecord, Tamper, Verified, Verifier};
use super::record::{AuditRecord, AuditTime, EventKind, Outcome};
use super::sink::{AuditSink, SinkError};

/// When appended records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// `write` + `fdatasync` before `append` returns. Loss window: 0 — a record the request path
    /// was told is kept survives a crash or power cut.
    PerRecord,
    /// `append` buffers in memory; a background thread writes and `fdatasync`s every `interval`.
    /// Loss window: up to `interval` plus one `fdatasync` of records already acknowledged
    /// (after a crash; a clean drop flushes). If a background flush fails, the sink refuses
    /// every later record ([`SinkError::Broken`]).
    GroupCommit {
        /// Time between flushes.
        interval: Duration,
    },
}

/// How a [`FileSink`] is set up.
#[derive(Debug, Clone)]
pub struct FileSinkConfig {
    dir: PathBuf,
    prefix: String,
    max_file_bytes: u64,
    durability: Durability,
    max_buffer_bytes: usize,
}

impl FileSinkConfig {
    /// Files in `dir` named `audit-NNNNNN.jsonl`, rotated at 64 MiB, fsync per record.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            prefix: "audit".to_owned(),
            max_file_bytes: 64 * 1024 * 1024,
            durability: Durability::PerRecord,
            max_buffer_bytes: 8 * 1024 * 1024,
        }
    }

    /// File name prefix: `[A-Za-z0-9_-]{1,32}` (checked when the sink opens).
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// Start a new file once the current one would exceed `bytes` (a single record larger than
    /// that still gets a file of its own).
    #[must_use]
    pub fn max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes.max(1);
        self
    }

    /// The durability policy.
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Group commit only: when this many bytes are buffered, `append` flushes (with fsync)
    /// itself instead of waiting for the timer, bounding memory under a burst.
    #[must_use]
    pub fn max_buffer_bytes(mut self, bytes: usize) -> Self {
        self.max_buffer_bytes = bytes.max(1);
        self
    }
}

/// What [`FileSink::open`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The chain head after the last complete record: pass it to [`super::AuditLog::new`].
    pub head: ChainHead,
    /// The log's files, oldest first (the last is the one being appended to).
    pub files: Vec<PathBuf>,
    /// A torn last line that was cut off the last file, and where its bytes were saved.
    pub torn_tail: Option<TornTailRecovered>,
    /// The last file ended with a complete record but no newline; one was added.
    pub newline_added: bool,
}

/// A torn line removed on start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTailRecovered {
    /// The file it was cut from.
    pub file: PathBuf,
    /// Byte offset where it started (the file's new length).
    pub offset: u64,
    /// Its length.
    pub len: u64,
    /// The side file its bytes were saved to (evidence; never appended to).
    pub saved_to: PathBuf,
}

impl Recovery {
    /// A record of the recovery to append as the first record after restart, if there was one.
    pub fn event(&self, time: AuditTime) -> Option<AuditRecord> {
        (self.torn_tail.is_some() || self.newline_added)
            .then(|| AuditRecord::new(time, EventKind::AuditLogRecovered, Outcome::Success))
    }
}

fn check_prefix(prefix: &str) -> std::io::Result<()> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 32
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "audit file prefix must be [A-Za-z0-9_-]{1,32}",
        ))
    }
}

fn file_name(prefix: &str, index: u64) -> String {
    format!("{prefix}-{index:06}.jsonl")
}

/// The log files of `prefix` in `dir`, oldest first, with their numbers.
pub fn log_files(dir: &Path, prefix: &str) -> std::io::Result<Vec<(u64, PathBuf)>> {
    check_prefix(prefix)?;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let Some(num) = rest
            .strip_prefix('-')
            .and_then(|r| r.strip_suffix(".jsonl"))
        else {
            continue;
        };
        if num.len() != 6 || !num.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(n) = num.parse::<u64>() {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Why a log directory could not be verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A file could not be listed or read.
    #[error("reading the audit log failed: {0}")]
    Io(#[from] std::io::Error),
    /// The log was tampered with (or damaged).
    #[error("audit log does not verify: {0}")]
    Tamper(#[from] Tamper),
}

/// Verifies every file of `prefix` in `dir` as one chain, with `verifier`'s keys, start and
/// anchors. Files are read one at a time.
pub fn verify_log_dir(
    mut verifier: Verifier<'_>,
    dir: &Path,
    prefix: &str,
) -> Result<Verified, VerifyError> {
    let files = log_files(dir, prefix)?;
    let count = files.len();
    for (i, (_, path)) in files.iter().enumerate() {
        let bytes = std::fs::read(path)?;
        verifier.feed_file(&bytes, i + 1 == count);
    }
    Ok(verifier.finish()?)
}

/// Reads every complete record of `prefix` in `dir`, oldest first (a torn last line is skipped;
/// MACs are not checked — use [`verify_log_dir`] for that). For history queries over a file log.
pub fn read_log_dir(dir: &Path, prefix: &str) -> std::io::Result<Vec<SealedRecord>> {
    let mut out = Vec::new();
    for (_, path) in log_files(dir, prefix)? {
        let bytes = std::fs::read(&path)?;
        for line in bytes.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            if let Ok(record) = SealedRecord::from_json_line(line) {
                out.push(record);
            }
        }
    }
    Ok(out)
}

struct FileState {
    dir: PathBuf,
    prefix: String,
    index: u64,
    file: File,
    size: u64,
    max_file_bytes: u64,
}

impl FileState {
    fn rotate(&mut self) -> Result<(), SinkError> {
        self.file
            .sync_data()
            .map_err(|e| SinkError::io("fsync", &e))?;
        let next = self.index + 1;
        let path = self.dir.join(file_name(&self.prefix, next));
        let file = private_file()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| SinkError::io("rotate", &e))?;
        sync_dir(&self.dir).map_err(|e| SinkError::io("rotate", &e))?;
        self.file = file;
        self.index = next;
        self.size = 0;
        Ok(())
    }

    /// Writes whole lines, rotating at line boundaries; then fsyncs.
    fn write_lines(&mut self, data: &[u8]) -> Result<(), SinkError> {
        let mut chunk_start = 0usize;
        let mut pos = 0usize;
        while pos < data.len() {
            let line_end = match data[pos..].iter().position(|&b| b == b'\n') {
                Some(i) => pos + i + 1,
                None => data.len(),
            };
            let pending = (pos - chunk_start) as u64;
            let line_len = (line_end - pos) as u64;
            if self.size + pending > 0 && self.size + pending + line_len > self.max_file_bytes {
                self.file
                    .write_all(&data[chunk_start..pos])
                    .map_err(|e| SinkError::io("write", &e))?;
                self.size += pending;
                self.rotate()?;
                chunk_start = pos;
            }
            pos = line_end;
        }
        self.file
            .write_all(&data[chunk_start..])
            .map_err(|e| SinkError::io("write", &e))?;
        self.size += (data.len() - chunk_start) as u64;
        self.file
            .sync_data()
            .map_err(|e| SinkError::io("fsync", &e))
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

struct Shared {
    file: Mutex<FileState>,
    buffer: Mutex<Vec<u8>>,
    broken: Mutex<Option<SinkError>>,
    stop: Mutex<bool>,
    wake: Condvar,
    max_buffer_bytes: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn check(&self) -> Result<(), SinkError> {
        match &*lock(&self.broken) {
            Some(SinkError::Io { op, kind }) | Some(SinkError::Broken { op, kind }) => {
                Err(SinkError::Broken { op, kind: *kind })
            }
            Some(other) => Err(other.clone()),
            None => Ok(()),
        }
    }

    /// Writes and fsyncs the buffer. The file lock is taken first, so flushes are serialised and
    /// records reach the file in the order they were buffered.
    fn flush_buffer(&self) -> Result<(), SinkError> {
        let mut state = lock(&self.file);
        let data = std::mem::take(&mut *lock(&self.buffer));
        if data.is_empty() {
            return Ok(());
        }
        let result = state.write_lines(&data);
        if let Err(err) = &result {
            *lock(&self.broken) = Some(err.clone());
        }
        result
    }
}

/// An append-only JSON-lines audit log on disk.
///
/// Open it with [`FileSink::open`], which recovers from a crash and reports the chain head to
/// continue from. Dropping a group-commit sink stops its flusher and flushes what is buffered.
pub struct FileSink {
    shared: Arc<Shared>,
    durability: Durability,
    flusher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

/// Options for the files this sink creates: readable by the service's user only (mode 0600
/// on Unix), whatever the umask. Audit records name patients, clients and addresses; other
/// local accounts have no business reading them. Files that already exist keep their mode.
fn private_file() -> OpenOptions {
    #[allow(unused_mut)]
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// A builder for the log directory (and missing parents): mode 0700 on Unix.
fn private_dir() -> std::fs::DirBuilder {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
}

impl FileSink {
    /// Opens (or creates) the log in the configured directory.
    ///
    /// If the last file ends with a torn line (a write interrupted by a crash), its bytes are
    /// saved to a side file `…jsonl.torn-<offset>`, cut from the log, and reported; the chain
    /// continues after the last complete record.
    pub fn open(config: FileSinkConfig) -> std::io::Result<(Self, Recovery)> {
        check_prefix(&config.prefix)?;
        private_dir().create(&config.dir)?;
        let mut files = log_files(&config.dir, &config.prefix)?;
        let mut torn_tail = None;
        let mut newline_added = false;
        if files.is_empty() {
            let path = config.dir.join(file_name(&config.prefix, 1));
            private_file().create_new(true).append(true).open(&path)?;
            sync_dir(&config.dir)?;
            files.push((1, path));
        }
        let (last_index, last_path) = files[files.len() - 1].clone();
        {
            let mut file = OpenOptions::new().read(true).write(true).open(&last_path)?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            if !bytes.is_empty() && bytes[bytes.len() - 1] != b'\n' {
                let start = bytes
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map(|i| i + 1)
                    .unwrap_or(0);
                let tail = &bytes[start..];
                if SealedRecord::from_json_line(tail).is_ok() {
                    file.seek(SeekFrom::End(0))?;
                    file.write_all(b"\n")?;
                    file.sync_data()?;
                    newline_added = true;
                } else {
                    let saved_to = last_path.with_extension(format!("jsonl.torn-{start}"));
                    let mut side = private_file()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(&saved_to)?;
                    side.write_all(tail)?;
                    side.sync_all()?;
                    file.set_len(start as u64)?;
                    file.sync_all()?;
                    sync_dir(&config.dir)?;
                    torn_tail = Some(TornTailRecovered {
                        file: last_path.clone(),
                        offset: start as u64,
                        len: tail.len() as u64,
                        saved_to,
                    });
                }
            }
        }
        // The head: the last complete record of the newest file that has one.
        let mut head = ChainHead::GENESIS;
        for (_, path) in files.iter().rev() {
            let bytes = std::fs::read(path)?;
            let last_line = bytes
                .split(|&b| b == b'\n')
                .rev()
                .find(|line| !line.is_empty());
            if let Some(line) = last_line {
                let record = SealedRecord::from_json_line(line).map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the audit log's last record is not a sealed record",
                    )
                })?;
                head = record.head_after();
                break;
            }
        }
        let file = OpenOptions::new().append(true).open(&last_path)?;
        let size = file.metadata()?.len();
        let state = FileState {
            dir: config.dir.clone(),
            prefix: config.prefix.clone(),
            index: last_index,
            file,
            size,
            max_file_bytes: config.max_file_bytes,
        };
        let shared = Arc::new(Shared {
            file: Mutex::new(state),
            buffer: Mutex::new(Vec::new()),
            broken: Mutex::new(None),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            max_buffer_bytes: config.max_buffer_bytes,
        });
        let flusher = match config.durability {
            Durability::PerRecord => None,
            Durability::GroupCommit { interval } => {
                let shared = Arc::clone(&shared);
                Some(
                    std::thread::Builder::new()
                        .name("fhirguard-audit-flush".to_owned())
                        .spawn(move || flusher_loop(&shared, interval))?,
                )
            }
        };
        let recovery = Recovery {
            head,
            files: files.into_iter().map(|(_, p)| p).collect(),
            torn_tail,
            newline_added,
        };
        Ok((
            Self {
                shared,
                durability: config.durability,
                flusher,
            },
            recovery,
        ))
    }

    /// The durability policy in force.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The path of the file being appended to.
    pub fn current_file(&self) -> PathBuf {
        let state = lock(&self.shared.file);
        state.dir.join(file_name(&state.prefix, state.index))
    }
}

fn flusher_loop(shared: &Shared, interval: Duration) {
    loop {
        let stop = {
            let guard = lock(&shared.stop);
            let (guard, _) = shared
                .wake
                .wait_timeout_while(guard, interval, |stop| !*stop)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            *guard
        };
        // A failure is recorded in `broken` and surfaces on the next append.
        let _ = shared.flush_buffer();
        if stop {
            return;
        }
    }
}

impl AuditSink for FileSink {
    fn append(&self, record: &SealedRecord) -> Result<(), SinkError> {
        self.shared.check()?;
        match self.durability {
            Durability::PerRecord => {
                let line = record.to_json_line();
                let mut state = lock(&self.shared.file);
                let result = state.write_lines(&line);
                if let Err(err) = &result {
                    *lock(&self.shared.broken) = Some(err.clone());
                }
                result
            }
            Durability::GroupCommit { .. } => {
                let full = {
                    let mut buffer = lock(&self.shared.buffer);
                    record.write_json_line(&mut buffer);
                    buffer.len() >= self.shared.max_buffer_bytes
                };
                if full {
                    self.shared.flush_buffer()?;
                }
                Ok(())
            }
        }
    }

    fn flush(&self) -> Result<(), SinkError> {
        self.shared.check()?;
        self.shared.flush_buffer()
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        if let Some(handle) = self.flusher.take() {
            *lock(&self.shared.stop) = true;
            self.shared.wake.notify_all();
            let _ = handle.join();
        }
    }
}
