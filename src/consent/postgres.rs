//! The PostgreSQL store (feature `postgres`) for several API nodes sharing one database.
//!
//! * Migrations embedded, applied on connect under an advisory lock (several nodes may start
//!   at once), each node in its own schema if the host wants (tests use one schema each).
//! * A small connection pool (no extra crate): connections are created on demand up to
//!   [`PostgresConfig::pool_size`] and reused.
//! * Every write is one transaction that locks the rows it changes (`SELECT … FOR UPDATE`),
//!   always grant first, then refresh family, so a revoke racing a refresh rotation is decided
//!   by the database: whichever commits second sees the other's effect. Deadlocks and
//!   serialization failures are retried. No application lock decides anything.
//! * Each write also `pg_notify`s its keys on the schema's channel inside the transaction
//!   (delivered only on commit). Each node runs a listener thread that applies notifications
//!   to its warm [`GrantCache`] and revocation cache, and also polls the change columns every
//!   [`PostgresConfig::poll_interval`] as a fallback for a lost listener connection.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, IsolationLevel, NoTls, Transaction};
use time::{Duration, OffsetDateTime};

use super::cache::GrantCache;
use super::codec::{
    FamilyRow, RevocationCache, backend, classify_refresh, code_body, code_from_body, family_body,
    family_from_body, from_ns, grant_body, grant_from_body, ns,
};
use super::error::ConsentError;
use super::record::{Approver, Grant, GrantState, RightOfAccessRequest};
use super::status::{GrantStatus, GrantStatusSource};
use super::store::{ConsentStore, new_grant_id, purge_due, sort_newest_first};
use crate::ids::{CategoryId, ClientId, GrantId, PatientId};
use crate::scope::ScopeSet;
use crate::token::{
    CodeRecord, CodeRedemption, RefreshFamily, RefreshLookup, RevocationList, StoreError,
    TokenHash, TokenStore,
};

/// The embedded migrations, in order.
const MIGRATIONS: &[&str] = &[
    // 1: grants, token tables, change columns for polling.
    "CREATE TABLE grants (
        id TEXT PRIMARY KEY,
        patient TEXT NOT NULL,
        client_id TEXT NOT NULL,
        state TEXT NOT NULL,
        approved_at BIGINT NOT NULL,
        ends_at BIGINT NOT NULL,
        closed_at BIGINT,
        changed_at BIGINT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX grants_patient ON grants(patient);
    CREATE INDEX grants_state_ends ON grants(state, ends_at);
    CREATE INDEX grants_changed ON grants(changed_at);
    CREATE TABLE codes (
        hash BYTEA PRIMARY KEY,
        grant_id TEXT NOT NULL,
        used BOOLEAN NOT NULL,
        family_id TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        body TEXT
    );
    CREATE INDEX codes_grant ON codes(grant_id);
    CREATE TABLE families (
        family_id TEXT PRIMARY KEY,
        grant_id TEXT NOT NULL,
        current BYTEA NOT NULL,
        revoked BOOLEAN NOT NULL,
        expires_at BIGINT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX families_grant ON families(grant_id);
    CREATE TABLE refresh_tokens (hash BYTEA PRIMARY KEY, family_id TEXT NOT NULL);
    CREATE TABLE revoked_families (family_id TEXT PRIMARY KEY, changed_at BIGINT NOT NULL);
    CREATE INDEX revoked_families_changed ON revoked_families(changed_at);
    CREATE TABLE jtis (
        client_id TEXT NOT NULL,
        jti TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (client_id, jti)
    );
    CREATE TABLE revoked_jtis (jti TEXT PRIMARY KEY, expires_at BIGINT NOT NULL, changed_at BIGINT NOT NULL);
    CREATE INDEX revoked_jtis_changed ON revoked_jtis(changed_at);",
    // 2: token buckets shared by the nodes' rate limiters. UNLOGGED: a crash forgets how full
    // the buckets were (they restart full), which is the right trade for state this hot and
    // this short-lived; nothing a patient or an audit depends on lives here.
    "CREATE UNLOGGED TABLE rate_buckets (
        bucket TEXT PRIMARY KEY,
        tokens DOUBLE PRECISION NOT NULL,
        updated_at BIGINT NOT NULL,
        allowed BOOLEAN NOT NULL
    );",
];

/// One atomic token-bucket take (`TokenBucket::take`, in SQL): refill by the time elapsed since
/// the bucket's last update (never backwards), cap at capacity, take the cost if it fits.
/// `$1` bucket, `$2` capacity, `$3` refill per second, `$4` cost, `$5` now (ns since epoch).
/// A new bucket starts full. The row lock of the upsert serialises concurrent takes.
const TAKE_BUCKET: &str = "
    INSERT INTO rate_buckets AS b (bucket, tokens, updated_at, allowed)
    VALUES ($1::text, CASE WHEN $2::float8 >= $4::float8 THEN $2::float8 - $4::float8 ELSE $2::float8 END, $5::int8, $2::float8 >= $4::float8)
    ON CONFLICT (bucket) DO UPDATE SET
        tokens = CASE
            WHEN LEAST($2::float8, b.tokens + GREATEST($5::int8 - b.updated_at, 0) * $3::float8 / 1e9) >= $4::float8
            THEN LEAST($2::float8, b.tokens + GREATEST($5::int8 - b.updated_at, 0) * $3::float8 / 1e9) - $4::float8
            ELSE LEAST($2::float8, b.tokens + GREATEST($5::int8 - b.updated_at, 0) * $3::float8 / 1e9)
        END,
        updated_at = GREATEST($5::int8, b.updated_at),
        allowed = LEAST($2::float8, b.tokens + GREATEST($5::int8 - b.updated_at, 0) * $3::float8 / 1e9) >= $4::float8
    RETURNING tokens, allowed";

/// The database's clock in microseconds, for the change columns the pollers read.
const DB_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";

fn db(e: postgres::Error) -> StoreError {
    backend("postgres", e)
}

fn cdb(e: postgres::Error) -> ConsentError {
    ConsentError::Store(db(e))
}

fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// How to reach the database and how to behave.
#[derive(Clone)]
pub struct PostgresConfig {
    /// A libpq connection string (`host=… port=… user=… dbname=…`).
    pub url: String,
    /// The schema holding the tables (created if missing): `[a-z_][a-z0-9_]{0,40}`.
    pub schema: String,
    /// Most pooled connections (at least 1).
    pub pool_size: usize,
    /// Whether to LISTEN for other nodes' changes (on by default).
    pub listen: bool,
    /// How often the fallback poller reads changes (default 500 ms).
    pub poll_interval: std::time::Duration,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string may carry a password.
        f.debug_struct("PostgresConfig")
            .field("url", &"<redacted>")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("listen", &self.listen)
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

impl PostgresConfig {
    /// Defaults: schema `fhirguard`, 8 connections, LISTEN on, polling every 500 ms.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: "fhirguard".into(),
            pool_size: 8,
            listen: true,
            poll_interval: std::time::Duration::from_millis(500),
        }
    }

    /// The same configuration with another schema.
    #[must_use]
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    fn check(&self) -> Result<(), ConsentError> {
        let s = self.schema.as_bytes();
        let ok = !s.is_empty()
            && s.len() <= 40
            && (s[0].is_ascii_lowercase() || s[0] == b'_')
            && s.iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if !ok || self.pool_size == 0 {
            return Err(ConsentError::Store(StoreError::Backend(
                "invalid PostgreSQL store configuration (schema name or pool size)".into(),
            )));
        }
        Ok(())
    }

    fn channel(&self) -> String {
        format!("fhirguard_{}", self.schema)
    }

    fn connect(&self) -> Result<Client, StoreError> {
        let mut client = Client::connect(&self.url, NoTls).map_err(db)?;
        client
            .batch_execute(&format!("SET search_path TO {}", self.schema))
            .map_err(db)?;
        Ok(client)
    }
}

struct Pool {
    config: PostgresConfig,
    /// Idle connections and the number currently open (idle + lent).
    state: Mutex<(Vec<Client>, usize)>,
    freed: Condvar,
}

impl Pool {
    /// Runs `f` with a pooled connection. A connection that reports closed is dropped.
    fn with<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut client = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(c) = state.0.pop() {
                    break Some(c);
                }
                if state.1 < self.config.pool_size {
                    state.1 += 1;
                    break None;
                }
                state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        };
        let mut client = match client.take() {
            Some(c) => c,
            None => match self.config.connect() {
                Ok(c) => c,
                Err(e) => {
                    self.give_back(None);
                    return Err(e.into());
                }
            },
        };
        let out = f(&mut client);
        self.give_back((!client.is_closed()).then_some(client));
        out
    }

    fn give_back(&self, client: Option<Client>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match client {
            Some(c) => state.0.push(c),
            None => state.1 = state.1.saturating_sub(1),
        }
        drop(state);
        self.freed.notify_one();
    }
}

/// Runs `f` in one transaction, retrying serialization failures and deadlocks.
fn in_tx<T, E: From<StoreError>>(
    client: &mut Client,
    mut f: impl FnMut(&mut Transaction<'_>) -> Result<T, TxError<E>>,
) -> Result<T, E> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = (|| {
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::ReadCommitted)
                .start()
                .map_err(TxError::Db)?;
            let out = f(&mut tx)?;
            tx.commit().map_err(TxError::Db)?;
            Ok(out)
        })();
        match result {
            Ok(v) => return Ok(v),
            Err(TxError::Db(e)) if retryable(&e) && attempts < 10 => continue,
            Err(TxError::Db(e)) => return Err(E::from(db(e))),
            Err(TxError::Other(e)) => return Err(e),
        }
    }
}

/// A failure inside a transaction: the database's (maybe retried) or the operation's own.
enum TxError<E> {
    Db(postgres::Error),
    Other(E),
}

impl<E> From<postgres::Error> for TxError<E> {
    fn from(e: postgres::Error) -> Self {
        TxError::Db(e)
    }
}

fn other<E>(e: impl Into<E>) -> TxError<E> {
    TxError::Other(e.into())
}

/// The caches one node keeps, shared with its listener thread.
#[derive(Debug, Default)]
struct Caches {
    grants: GrantCache,
    revoked: RevocationCache,
}

/// The PostgreSQL [`ConsentStore`] and [`TokenStore`].
pub struct PostgresStore {
    pool: Arc<Pool>,
    caches: Arc<Caches>,
    stop: Arc<AtomicBool>,
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("config", &self.pool.config)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let handle = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            // The listener wakes at least every poll interval and sees the flag.
            let _ = h.join();
        }
    }
}

impl PostgresStore {
    /// Connects with [`PostgresConfig::new`]`(url)` defaults.
    pub fn connect(url: &str) -> Result<Self, ConsentError> {
        Self::connect_with(PostgresConfig::new(url))
    }

    /// Connects, applies pending migrations, loads the caches and starts the listener.
    pub fn connect_with(config: PostgresConfig) -> Result<Self, ConsentError> {
        config.check()?;
        let mut first = Client::connect(&config.url, NoTls).map_err(cdb)?;
        migrate(&mut first, &config.schema)?;
        first
            .batch_execute(&format!("SET search_path TO {}", config.schema))
            .map_err(cdb)?;
        let caches = Arc::new(Caches::default());
        full_load(&mut first, &caches)?;
        let pool = Arc::new(Pool {
            config: config.clone(),
            state: Mutex::new((vec![first], 1)),
            freed: Condvar::new(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let listener = {
            let (caches, stop, config) = (Arc::clone(&caches), Arc::clone(&stop), config);
            std::thread::Builder::new()
                .name("fhirguard-pg-listener".into())
                .spawn(move || listen_loop(&config, &caches, &stop))
                .map_err(|e| backend("spawn listener", e))?
        };
        Ok(Self {
            pool,
            caches,
            stop,
            listener: Mutex::new(Some(listener)),
        })
    }

    /// The number of migrations applied.
    pub fn schema_version(&self) -> Result<usize, ConsentError> {
        self.pool.with(|c| {
            let row = c
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM fhirguard_migrations",
                    &[],
                )
                .map_err(cdb)?;
            let v: i32 = row.get(0);
            Ok(usize::try_from(v).unwrap_or(0))
        })
    }

    /// Re-reads every grant and revocation into this node's caches.
    pub fn resync(&self) -> Result<(), ConsentError> {
        self.pool.with(|c| full_load(c, &self.caches))
    }

    fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnMut(&mut Transaction<'_>) -> Result<T, TxError<E>>,
    ) -> Result<T, E> {
        self.pool.with(|c| in_tx(c, f))
    }

    fn channel(&self) -> String {
        self.pool.config.channel()
    }

    fn update_grant(
        &self,
        id: &GrantId,
        change: impl Fn(&mut Grant) -> Result<(), ConsentError>,
    ) -> Result<Grant, ConsentError> {
        let channel = self.channel();
        let (grant, families) = self.write(|tx| {
            let row = tx.query_opt(
                "SELECT body FROM grants WHERE id = $1 FOR UPDATE",
                &[&id.as_str()],
            )?;
            let Some(row) = row else {
                return Err(other(ConsentError::UnknownGrant(id.clone())));
            };
            let mut grant = grant_from_body(row.get(0)).map_err(TxError::Other)?;
            change(&mut grant).map_err(TxError::Other)?;
            store_grant(tx, &grant)?;
            let families = if matches!(grant.state, GrantState::Active) {
                Vec::new()
            } else {
                close_tokens(tx, &grant.id)?
            };
            notify(tx, &channel, &format!("g:{}", grant.id))?;
            Ok((grant, families))
        })?;
        for f in &families {
            self.caches.revoked.add_family(f);
        }
        self.caches.grants.put(&grant);
        Ok(grant)
    }

    /// Forgets token records that can no longer matter at `now`; returns how many rows went.
    pub fn prune_tokens(&self, now: OffsetDateTime) -> Result<usize, ConsentError> {
        let now_ns = ns(now)?;
        let hour = ns(now - Duration::hours(1))?;
        let n = self.write(|tx| {
            let mut n = tx.execute(
                "DELETE FROM codes WHERE (NOT used AND expires_at <= $1) OR (used AND expires_at <= $2)",
                &[&now_ns, &hour],
            )?;
            n += tx.execute("DELETE FROM jtis WHERE expires_at <= $1", &[&now_ns])?;
            n += tx.execute("DELETE FROM revoked_jtis WHERE expires_at <= $1", &[&now_ns])?;
            Ok::<_, TxError<ConsentError>>(n)
        })?;
        self.caches.revoked.prune(now);
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

fn migrate(client: &mut Client, schema: &str) -> Result<(), ConsentError> {
    let mut tx = client.transaction().map_err(cdb)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("fhirguard:{schema}")],
    )
    .map_err(cdb)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}; SET LOCAL search_path TO {schema};
         CREATE TABLE IF NOT EXISTS fhirguard_migrations (version INTEGER PRIMARY KEY)"
    ))
    .map_err(cdb)?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM fhirguard_migrations",
            &[],
        )
        .map_err(cdb)?
        .get(0);
    let current = usize::try_from(current).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "database schema version {current} is newer than this library ({})",
            MIGRATIONS.len()
        ))
        .into());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.batch_execute(sql).map_err(cdb)?;
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO fhirguard_migrations (version) VALUES ($1)",
            &[&version],
        )
        .map_err(cdb)?;
    }
    tx.commit().map_err(cdb)
}

fn full_load(client: &mut Client, caches: &Caches) -> Result<(), ConsentError> {
    let rows = client.query("SELECT body FROM grants", &[]).map_err(cdb)?;
    let grants = rows
        .iter()
        .map(|r| grant_from_body(r.get(0)))
        .collect::<Result<Vec<_>, _>>()?;
    caches.grants.replace_all(&grants);
    for r in client
        .query("SELECT family_id FROM revoked_families", &[])
        .map_err(cdb)?
    {
        caches.revoked.add_family(r.get(0));
    }
    for r in client
        .query("SELECT jti, expires_at FROM revoked_jtis", &[])
        .map_err(cdb)?
    {
        caches.revoked.add_jti(r.get(0), from_ns(r.get(1))?);
    }
    Ok(())
}

fn notify<E>(tx: &mut Transaction<'_>, channel: &str, payload: &str) -> Result<(), TxError<E>> {
    tx.execute("SELECT pg_notify($1, $2)", &[&channel, &payload])?;
    Ok(())
}

fn store_grant<E>(tx: &mut Transaction<'_>, g: &Grant) -> Result<(), TxError<E>>
where
    E: From<ConsentError> + From<StoreError>,
{
    let closed = match g.closed_at(g.ends_at) {
        Some(at) if !matches!(g.state, GrantState::Active) => Some(ns(at).map_err(other)?),
        _ => None,
    };
    let body = grant_body(g).map_err(other)?;
    tx.execute(
        &format!(
            "INSERT INTO grants (id, patient, client_id, state, approved_at, ends_at, closed_at, changed_at, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, {DB_NOW}, $8)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, closed_at = excluded.closed_at,
                 changed_at = excluded.changed_at, body = excluded.body"
        ),
        &[
            &g.id.as_str(),
            &g.request.patient.as_str(),
            &g.request.client_id.as_str(),
            &g.state.kind().as_str(),
            &ns(g.request.approved_at).map_err(other)?,
            &ns(g.ends_at).map_err(other)?,
            &closed,
            &body,
        ],
    )?;
    Ok(())
}

/// A closed grant takes its tokens with it: families revoked (and announced), unused codes
/// deleted. Runs after the grant row is locked, so the lock order is grant → family.
fn close_tokens<E>(tx: &mut Transaction<'_>, grant: &GrantId) -> Result<Vec<String>, TxError<E>> {
    let rows = tx.query(
        "SELECT family_id FROM families WHERE grant_id = $1
         UNION SELECT family_id FROM codes WHERE grant_id = $1",
        &[&grant.as_str()],
    )?;
    let families: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    tx.execute(
        "UPDATE families SET revoked = TRUE WHERE grant_id = $1",
        &[&grant.as_str()],
    )?;
    for f in &families {
        tx.execute(
            &format!(
                "INSERT INTO revoked_families (family_id, changed_at) VALUES ($1, {DB_NOW})
                 ON CONFLICT (family_id) DO NOTHING"
            ),
            &[f],
        )?;
    }
    tx.execute(
        "DELETE FROM codes WHERE grant_id = $1 AND NOT used",
        &[&grant.as_str()],
    )?;
    Ok(families)
}

/// The listener thread: LISTEN for other nodes' changes, poll as a fallback, reconnect on
/// failure. Never panics; errors only delay propagation until the next successful poll.
fn listen_loop(config: &PostgresConfig, caches: &Caches, stop: &AtomicBool) {
    let mut since: Option<i64> = None;
    while !stop.load(Ordering::SeqCst) {
        let mut client = match config.connect() {
            Ok(c) => c,
            Err(_) => {
                std::thread::sleep(config.poll_interval);
                continue;
            }
        };
        if config.listen
            && client
                .batch_execute(&format!("LISTEN {}", config.channel()))
                .is_err()
        {
            std::thread::sleep(config.poll_interval);
            continue;
        }
        // Whatever happened while disconnected is caught by reading from a little before.
        let mut last_poll = std::time::Instant::now();
        if poll(&mut client, caches, &mut since).is_err() {
            continue;
        }
        while !stop.load(Ordering::SeqCst) && !client.is_closed() {
            if config.listen {
                let wait = config
                    .poll_interval
                    .min(std::time::Duration::from_millis(200));
                match next_payloads(&mut client, wait) {
                    Ok(payloads) => {
                        for p in payloads {
                            if apply(&mut client, caches, &p).is_err() {
                                break;
                            }
                        }
                    }
                    Err(_) => break,
                }
            } else {
                std::thread::sleep(
                    config
                        .poll_interval
                        .min(std::time::Duration::from_millis(100)),
                );
            }
            if last_poll.elapsed() >= config.poll_interval {
                last_poll = std::time::Instant::now();
                if poll(&mut client, caches, &mut since).is_err() {
                    break;
                }
            }
        }
    }
}

/// Waits up to `wait` for a notification, then takes every one already queued: applying them
/// at once instead of waiting out the timeout keeps propagation in milliseconds.
fn next_payloads(
    client: &mut Client,
    wait: std::time::Duration,
) -> Result<Vec<String>, postgres::Error> {
    let mut payloads = Vec::new();
    let mut notifications = client.notifications();
    let first = notifications.timeout_iter(wait).next()?;
    if let Some(first) = first {
        payloads.push(first.payload().to_owned());
        let mut queued = notifications.iter();
        while let Some(n) = queued.next()? {
            payloads.push(n.payload().to_owned());
        }
    }
    Ok(payloads)
}

/// Applies one notification: `g:<grant id>`, `f:<family id>` or `j:<jti>`.
fn apply(client: &mut Client, caches: &Caches, payload: &str) -> Result<(), ConsentError> {
    if let Some(id) = payload.strip_prefix("g:") {
        let Ok(id) = GrantId::new(id) else {
            return Ok(());
        };
        match client
            .query_opt("SELECT body FROM grants WHERE id = $1", &[&id.as_str()])
            .map_err(cdb)?
        {
            Some(row) => caches.grants.put(&grant_from_body(row.get(0))?),
            None => caches.grants.remove(&id),
        }
    } else if let Some(family) = payload.strip_prefix("f:") {
        caches.revoked.add_family(family);
    } else if let Some(jti) = payload.strip_prefix("j:") {
        if let Some(row) = client
            .query_opt(
                "SELECT expires_at FROM revoked_jtis WHERE jti = $1",
                &[&jti],
            )
            .map_err(cdb)?
        {
            caches.revoked.add_jti(jti, from_ns(row.get(0))?);
        }
    }
    Ok(())
}

/// Reads every change since `since` (minus a margin covering transactions that committed late)
/// and advances `since` to the database's clock at the start of this poll.
fn poll(client: &mut Client, caches: &Caches, since: &mut Option<i64>) -> Result<(), ConsentError> {
    let started: i64 = client
        .query_one(&format!("SELECT {DB_NOW}"), &[])
        .map_err(cdb)?
        .get(0);
    let from = since.map_or(i64::MIN, |s| s.saturating_sub(10_000_000));
    for row in client
        .query("SELECT body FROM grants WHERE changed_at >= $1", &[&from])
        .map_err(cdb)?
    {
        caches.grants.put(&grant_from_body(row.get(0))?);
    }
    for row in client
        .query(
            "SELECT family_id FROM revoked_families WHERE changed_at >= $1",
            &[&from],
        )
        .map_err(cdb)?
    {
        caches.revoked.add_family(row.get(0));
    }
    for row in client
        .query(
            "SELECT jti, expires_at FROM revoked_jtis WHERE changed_at >= $1",
            &[&from],
        )
        .map_err(cdb)?
    {
        caches.revoked.add_jti(row.get(0), from_ns(row.get(1))?);
    }
    *since = Some(started);
    Ok(())
}

fn grants_where(client: &mut Client, sql: &str, arg: &str) -> Result<Vec<Grant>, ConsentError> {
    client
        .query(sql, &[&arg])
        .map_err(cdb)?
        .iter()
        .map(|r| grant_from_body(r.get(0)))
        .collect()
}

impl GrantStatusSource for PostgresStore {
    fn grant_status(&self, grant: &GrantId, now: OffsetDateTime) -> GrantStatus {
        self.caches.grants.grant_status(grant, now)
    }
}

impl ConsentStore for PostgresStore {
    fn approve(
        &self,
        request: RightOfAccessRequest,
        now: OffsetDateTime,
    ) -> Result<Grant, ConsentError> {
        let ends_at = request.validate(now)?;
        let grant = Grant::new(new_grant_id()?, request, ends_at);
        let channel = self.channel();
        self.write(|tx| {
            if tx
                .query_opt("SELECT 1 FROM grants WHERE id = $1", &[&grant.id.as_str()])?
                .is_some()
            {
                return Err(other(StoreError::Duplicate));
            }
            store_grant::<ConsentError>(tx, &grant)?;
            notify(tx, &channel, &format!("g:{}", grant.id))
        })?;
        self.caches.grants.put(&grant);
        Ok(grant)
    }

    fn grant(&self, id: &GrantId) -> Result<Option<Grant>, ConsentError> {
        self.pool.with(|c| {
            c.query_opt("SELECT body FROM grants WHERE id = $1", &[&id.as_str()])
                .map_err(cdb)?
                .map(|r| grant_from_body(r.get(0)))
                .transpose()
        })
    }

    fn connected_apps(
        &self,
        patient: &PatientId,
        now: OffsetDateTime,
    ) -> Result<Vec<Grant>, ConsentError> {
        let mut out = self.pool.with(|c| {
            grants_where(
                c,
                "SELECT body FROM grants WHERE patient = $1 AND state = 'active'",
                patient.as_str(),
            )
        })?;
        out.retain(|g| g.is_active_at(now));
        sort_newest_first(&mut out);
        Ok(out)
    }

    fn grants_of(&self, patient: &PatientId) -> Result<Vec<Grant>, ConsentError> {
        let mut out = self.pool.with(|c| {
            grants_where(
                c,
                "SELECT body FROM grants WHERE patient = $1",
                patient.as_str(),
            )
        })?;
        sort_newest_first(&mut out);
        Ok(out)
    }

    fn revoke(
        &self,
        id: &GrantId,
        by: Approver,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<Grant, ConsentError> {
        self.update_grant(id, |g| g.apply_revoke(by.clone(), reason, now))
    }

    fn narrow(
        &self,
        id: &GrantId,
        remove: &BTreeSet<CategoryId>,
        now: OffsetDateTime,
    ) -> Result<Grant, ConsentError> {
        self.update_grant(id, |g| g.apply_narrow(remove, now))
    }

    fn expire_due(&self, now: OffsetDateTime) -> Result<usize, ConsentError> {
        let now_ns = ns(now)?;
        let channel = self.channel();
        let closed = self.write(|tx| {
            let rows = tx.query(
                "SELECT body FROM grants WHERE state = 'active' AND ends_at <= $1 FOR UPDATE SKIP LOCKED",
                &[&now_ns],
            )?;
            let mut closed = Vec::new();
            for row in rows {
                let mut grant = grant_from_body(row.get(0)).map_err(TxError::Other)?;
                if grant.apply_expire(now).is_ok() {
                    store_grant::<ConsentError>(tx, &grant)?;
                    let families = close_tokens(tx, &grant.id)?;
                    notify(tx, &channel, &format!("g:{}", grant.id))?;
                    closed.push((grant, families));
                }
            }
            Ok(closed)
        })?;
        for (grant, families) in &closed {
            for f in families {
                self.caches.revoked.add_family(f);
            }
            self.caches.grants.put(grant);
        }
        Ok(closed.len())
    }

    fn purge(&self, now: OffsetDateTime, retention: Duration) -> Result<usize, ConsentError> {
        let cutoff = ns(now - retention)?;
        let channel = self.channel();
        let purged = self.write(|tx| {
            let rows = tx.query(
                "SELECT body FROM grants WHERE ((state <> 'active' AND closed_at <= $1)
                 OR (state = 'active' AND ends_at <= $1)) FOR UPDATE SKIP LOCKED",
                &[&cutoff],
            )?;
            let mut purged = Vec::new();
            for row in rows {
                let grant = grant_from_body(row.get(0)).map_err(TxError::Other)?;
                if purge_due(&grant, now, retention) {
                    let id = grant.id.as_str();
                    close_tokens::<ConsentError>(tx, &grant.id)?;
                    tx.execute(
                        "DELETE FROM refresh_tokens WHERE family_id IN
                         (SELECT family_id FROM families WHERE grant_id = $1)",
                        &[&id],
                    )?;
                    tx.execute("DELETE FROM families WHERE grant_id = $1", &[&id])?;
                    tx.execute("DELETE FROM codes WHERE grant_id = $1", &[&id])?;
                    tx.execute("DELETE FROM grants WHERE id = $1", &[&id])?;
                    notify(tx, &channel, &format!("g:{id}"))?;
                    purged.push(grant.id);
                }
            }
            Ok(purged)
        })?;
        for id in &purged {
            self.caches.grants.remove(id);
        }
        Ok(purged.len())
    }
}

impl RevocationList for PostgresStore {
    fn is_revoked(&self, jti: &str, family: Option<&str>, now: OffsetDateTime) -> bool {
        self.caches.revoked.is_revoked(jti, family, now)
    }
}

impl TokenStore for PostgresStore {
    fn put_code(&self, code: TokenHash, record: CodeRecord) -> Result<(), StoreError> {
        let body = code_body(&record)?;
        let exp = ns(record.expires_at)?;
        self.write(|tx| {
            let n = tx.execute(
                "INSERT INTO codes (hash, grant_id, used, family_id, expires_at, body)
                 VALUES ($1, $2, FALSE, $3, $4, $5) ON CONFLICT (hash) DO NOTHING",
                &[
                    &&code.0[..],
                    &record.context.grant_id.as_str(),
                    &record.family_id,
                    &exp,
                    &body,
                ],
            )?;
            if n == 0 {
                return Err(other(StoreError::Duplicate));
            }
            Ok(())
        })
    }

    fn redeem_code(
        &self,
        code: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<CodeRedemption, StoreError> {
        self.write(|tx| {
            let Some(row) = tx.query_opt(
                "SELECT used, family_id, expires_at, body FROM codes WHERE hash = $1 FOR UPDATE",
                &[&&code.0[..]],
            )?
            else {
                return Ok(CodeRedemption::Unknown);
            };
            let (used, family_id, expires_at, body): (bool, String, i64, Option<String>) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            if used {
                return Ok(CodeRedemption::Reused { family_id });
            }
            tx.execute(
                "UPDATE codes SET used = TRUE, body = NULL WHERE hash = $1",
                &[&&code.0[..]],
            )?;
            if from_ns(expires_at).map_err(other)? <= now {
                return Ok(CodeRedemption::Expired);
            }
            let body =
                body.ok_or_else(|| other(StoreError::Backend("unused code without body".into())))?;
            Ok(CodeRedemption::Fresh(Box::new(
                code_from_body(&body).map_err(other)?,
            )))
        })
    }

    fn put_refresh(&self, token: TokenHash, family: RefreshFamily) -> Result<(), StoreError> {
        let body = family_body(&family)?;
        let exp = ns(family.expires_at)?;
        self.write(|tx| {
            let revoked = tx
                .query_opt(
                    "SELECT 1 FROM revoked_families WHERE family_id = $1",
                    &[&family.family_id],
                )?
                .is_some();
            let n = tx.execute(
                "INSERT INTO families (family_id, grant_id, current, revoked, expires_at, body)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (family_id) DO NOTHING",
                &[
                    &family.family_id,
                    &family.context.grant_id.as_str(),
                    &&token.0[..],
                    &revoked,
                    &exp,
                    &body,
                ],
            )?;
            let m = tx.execute(
                "INSERT INTO refresh_tokens (hash, family_id) VALUES ($1, $2)
                 ON CONFLICT (hash) DO NOTHING",
                &[&&token.0[..], &family.family_id],
            )?;
            if n == 0 || m == 0 {
                // Nothing is kept: the transaction is rolled back.
                return Err(other(StoreError::Duplicate));
            }
            Ok(())
        })
    }

    fn lookup_refresh(
        &self,
        token: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<RefreshLookup, StoreError> {
        self.pool.with(|c| {
            let Some(row) = c
                .query_opt(
                    "SELECT f.family_id, f.current, f.revoked, f.expires_at, f.body
                     FROM refresh_tokens t JOIN families f ON f.family_id = t.family_id
                     WHERE t.hash = $1",
                    &[&&token.0[..]],
                )
                .map_err(db)?
            else {
                return Ok(RefreshLookup::Unknown);
            };
            let (family_id, current, revoked, expires_at, body): (
                String,
                Vec<u8>,
                bool,
                i64,
                String,
            ) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            let row = FamilyRow {
                family_id,
                current,
                revoked,
                expires_at,
                body,
            };
            classify_refresh(row, token, now)
        })
    }

    fn rotate_refresh(
        &self,
        family_id: &str,
        old: &TokenHash,
        new: TokenHash,
        scope: &ScopeSet,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let exp = ns(expires_at)?;
        self.write(|tx| {
            // Lock order grant → family, as revoke does: whichever commits second sees the
            // other's effect, and the two never deadlock.
            let grant_state = tx.query_opt(
                "SELECT g.state FROM grants g JOIN families f ON f.grant_id = g.id
                 WHERE f.family_id = $1 FOR SHARE OF g",
                &[&family_id],
            )?;
            let Some(row) = tx.query_opt(
                "SELECT current, revoked, body FROM families WHERE family_id = $1 FOR UPDATE",
                &[&family_id],
            )?
            else {
                return Ok(false);
            };
            let (current, revoked, body): (Vec<u8>, bool, String) =
                (row.get(0), row.get(1), row.get(2));
            let grant_closed = grant_state.is_some_and(|r| r.get::<_, &str>(0) != "active");
            if revoked || grant_closed || current.as_slice() != old.0.as_slice() {
                return Ok(false);
            }
            let inserted = tx.execute(
                "INSERT INTO refresh_tokens (hash, family_id) VALUES ($1, $2)
                 ON CONFLICT (hash) DO NOTHING",
                &[&&new.0[..], &family_id],
            )?;
            if inserted == 0 {
                return Err(other(StoreError::Duplicate));
            }
            let mut family = family_from_body(&body).map_err(other)?;
            family.context.scope = scope.clone();
            family.expires_at = expires_at;
            tx.execute(
                "UPDATE families SET current = $2, expires_at = $3, body = $4 WHERE family_id = $1",
                &[
                    &family_id,
                    &&new.0[..],
                    &exp,
                    &family_body(&family).map_err(other)?,
                ],
            )?;
            Ok(true)
        })
    }

    fn revoke_family(&self, family_id: &str) -> Result<(), StoreError> {
        let channel = self.channel();
        self.write(|tx| {
            tx.execute(
                &format!(
                    "INSERT INTO revoked_families (family_id, changed_at) VALUES ($1, {DB_NOW})
                     ON CONFLICT (family_id) DO NOTHING"
                ),
                &[&family_id],
            )?;
            tx.execute(
                "UPDATE families SET revoked = TRUE WHERE family_id = $1",
                &[&family_id],
            )?;
            notify::<StoreError>(tx, &channel, &format!("f:{family_id}"))
        })?;
        self.caches.revoked.add_family(family_id);
        Ok(())
    }

    fn record_jti(
        &self,
        client: &ClientId,
        jti: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (exp, now_ns) = (ns(expires_at)?, ns(now)?);
        self.write(|tx| {
            // One statement decides: insert, or take over an expired entry; a live one wins.
            let n = tx.execute(
                "INSERT INTO jtis (client_id, jti, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (client_id, jti) DO UPDATE SET expires_at = excluded.expires_at
                 WHERE jtis.expires_at <= $4",
                &[&client.as_str(), &jti, &exp, &now_ns],
            )?;
            Ok::<_, TxError<StoreError>>(n == 1)
        })
    }

    fn revoke_access_token(&self, jti: &str, expires_at: OffsetDateTime) -> Result<(), StoreError> {
        let exp = ns(expires_at)?;
        let channel = self.channel();
        self.write(|tx| {
            tx.execute(
                &format!(
                    "INSERT INTO revoked_jtis (jti, expires_at, changed_at) VALUES ($1, $2, {DB_NOW})
                     ON CONFLICT (jti) DO UPDATE SET expires_at = greatest(revoked_jtis.expires_at, excluded.expires_at),
                         changed_at = excluded.changed_at"
                ),
                &[&jti, &exp],
            )?;
            notify::<StoreError>(tx, &channel, &format!("j:{jti}"))
        })?;
        self.caches.revoked.add_jti(jti, expires_at);
        Ok(())
    }
}

impl crate::abuse::RateLimitStore for PostgresStore {
    /// Every node shares each bucket: one upsert per take, decided under the row's lock, so
    /// the nodes together admit what one node would.
    fn take(
        &self,
        bucket: &str,
        limit: &crate::abuse::Limit,
        cost: u32,
        now: OffsetDateTime,
    ) -> Result<crate::abuse::BucketOutcome, crate::abuse::RateLimitStoreError> {
        let unavailable =
            |e: StoreError| crate::abuse::RateLimitStoreError::Unavailable(Box::new(e));
        let now_ns = ns(now).map_err(unavailable)?;
        let (tokens, allowed) = self
            .pool
            .with(|c| {
                let row = c
                    .query_one(
                        TAKE_BUCKET,
                        &[
                            &bucket,
                            &limit.capacity(),
                            &limit.refill_per_second(),
                            &f64::from(cost),
                            &now_ns,
                        ],
                    )
                    .map_err(db)?;
                Ok::<_, StoreError>((row.get::<_, f64>(0), row.get::<_, bool>(1)))
            })
            .map_err(unavailable)?;
        Ok(crate::abuse::TokenBucket::outcome(
            limit, cost, tokens, allowed,
        ))
    }
}
