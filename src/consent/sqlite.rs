//! The SQLite store (feature `sqlite`): the embedded default for one API node.
//!
//! * WAL journal with `synchronous=FULL`: a write is acknowledged only after its commit record
//!   is on disk, so `kill -9` (or power loss on honest hardware) loses no acknowledged write.
//! * One `BEGIN IMMEDIATE` transaction per operation; schema migrations embedded and applied on
//!   open (`PRAGMA user_version`); opening an existing file keeps all data.
//! * Implements [`ConsentStore`], [`GrantStatusSource`] (a warm in-memory [`GrantCache`] updated
//!   after every commit), and the token component's [`TokenStore`] + [`RevocationList`], so
//!   codes, refresh families, the `jti` cache and revoked access tokens persist in the same file.
//!   Revoking or expiring a grant revokes its refresh families and deletes its unused codes in
//!   the same transaction.
//!
//! One process should own the file: the caches are per process. Several nodes share a
//! PostgreSQL database instead (see `PostgresStore`).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
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

/// The embedded migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: grants and the token tables.
    "CREATE TABLE grants (
        id TEXT PRIMARY KEY,
        patient TEXT NOT NULL,
        client_id TEXT NOT NULL,
        state TEXT NOT NULL,
        approved_at INTEGER NOT NULL,
        ends_at INTEGER NOT NULL,
        closed_at INTEGER,
        body TEXT NOT NULL
    );
    CREATE INDEX grants_patient ON grants(patient);
    CREATE INDEX grants_state_ends ON grants(state, ends_at);
    CREATE TABLE codes (
        hash BLOB PRIMARY KEY,
        grant_id TEXT NOT NULL,
        used INTEGER NOT NULL,
        family_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        body TEXT
    );
    CREATE INDEX codes_grant ON codes(grant_id);
    CREATE TABLE families (
        family_id TEXT PRIMARY KEY,
        grant_id TEXT NOT NULL,
        current BLOB NOT NULL,
        revoked INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX families_grant ON families(grant_id);
    CREATE TABLE refresh_tokens (hash BLOB PRIMARY KEY, family_id TEXT NOT NULL);
    CREATE TABLE revoked_families (family_id TEXT PRIMARY KEY);
    CREATE TABLE jtis (
        client_id TEXT NOT NULL,
        jti TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (client_id, jti)
    );
    CREATE TABLE revoked_jtis (jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);",
];

fn db(e: rusqlite::Error) -> StoreError {
    backend("sqlite", e)
}

fn cdb(e: rusqlite::Error) -> ConsentError {
    ConsentError::Store(db(e))
}

/// The SQLite [`ConsentStore`] and [`TokenStore`].
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    grants: GrantCache,
    revoked: RevocationCache,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, applies pending migrations and loads the
    /// caches. Existing data is kept.
    ///
    /// A database file this call creates is readable by the service's user only (mode 0600
    /// on Unix, whatever the umask; SQLite gives its `-wal` and `-shm` files the same mode):
    /// it holds who shared what with which app.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ConsentError> {
        let path = path.as_ref();
        create_private_file(path).map_err(|e| StoreError::Backend(format!("create {e}")))?;
        Self::from_connection(Connection::open(path).map_err(cdb)?)
    }

    /// A private in-memory database (tests).
    pub fn open_in_memory() -> Result<Self, ConsentError> {
        Self::from_connection(Connection::open_in_memory().map_err(cdb)?)
    }

    fn from_connection(mut conn: Connection) -> Result<Self, ConsentError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(cdb)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(cdb)?;
        if mode != "wal" && mode != "memory" {
            return Err(StoreError::Backend(format!("sqlite refused WAL (mode {mode})")).into());
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(cdb)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(cdb)?;
        migrate(&mut conn)?;
        let store = Self {
            conn: Mutex::new(conn),
            grants: GrantCache::new(),
            revoked: RevocationCache::default(),
        };
        store.reload_caches()?;
        Ok(store)
    }

    /// The number of migrations applied.
    pub fn schema_version(&self) -> Result<usize, ConsentError> {
        let v: i64 = self
            .lock()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(cdb)?;
        usize::try_from(v).map_err(|_| StoreError::Backend("negative user_version".into()).into())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reload_caches(&self) -> Result<(), ConsentError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT body FROM grants").map_err(cdb)?;
        let bodies = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(cdb)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(cdb)?;
        let grants = bodies
            .iter()
            .map(|b| grant_from_body(b))
            .collect::<Result<Vec<_>, _>>()?;
        self.grants.replace_all(&grants);
        let mut stmt = conn
            .prepare("SELECT family_id FROM revoked_families")
            .map_err(cdb)?;
        for f in stmt.query_map([], |r| r.get::<_, String>(0)).map_err(cdb)? {
            self.revoked.add_family(&f.map_err(cdb)?);
        }
        let mut stmt = conn
            .prepare("SELECT jti, expires_at FROM revoked_jtis")
            .map_err(cdb)?;
        for row in stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(cdb)?
        {
            let (jti, exp) = row.map_err(cdb)?;
            self.revoked.add_jti(&jti, from_ns(exp)?);
        }
        Ok(())
    }

    /// Runs `f` in one immediate transaction and commits.
    fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let out = f(&tx)?;
        tx.commit().map_err(db)?;
        Ok(out)
    }

    fn update_grant(
        &self,
        id: &GrantId,
        change: impl FnOnce(&mut Grant) -> Result<(), ConsentError>,
    ) -> Result<Grant, ConsentError> {
        let (grant, families) = self.write(|tx| {
            let mut grant =
                load_grant(tx, id)?.ok_or_else(|| ConsentError::UnknownGrant(id.clone()))?;
            change(&mut grant)?;
            store_grant(tx, &grant)?;
            let families = if matches!(grant.state, GrantState::Active) {
                Vec::new()
            } else {
                close_tokens(tx, &grant.id)?
            };
            Ok::<_, ConsentError>((grant, families))
        })?;
        self.after_commit(&grant, &families);
        Ok(grant)
    }

    fn after_commit(&self, grant: &Grant, families: &[String]) {
        for f in families {
            self.revoked.add_family(f);
        }
        self.grants.put(grant);
    }

    /// Forgets token records that can no longer matter at `now` (used codes an hour past
    /// expiry, expired `jti`s and revoked access tokens); returns how many rows went.
    pub fn prune_tokens(&self, now: OffsetDateTime) -> Result<usize, ConsentError> {
        let now_ns = ns(now)?;
        let hour = ns(now - Duration::hours(1))?;
        let n = self.write(|tx| {
            let mut n = tx
                .execute(
                    "DELETE FROM codes WHERE (used = 0 AND expires_at <= ?1) OR (used = 1 AND expires_at <= ?2)",
                    params![now_ns, hour],
                )
                .map_err(db)?;
            n += tx
                .execute("DELETE FROM jtis WHERE expires_at <= ?1", params![now_ns])
                .map_err(db)?;
            n += tx
                .execute("DELETE FROM revoked_jtis WHERE expires_at <= ?1", params![now_ns])
                .map_err(db)?;
            Ok::<_, ConsentError>(n)
        })?;
        self.revoked.prune(now);
        Ok(n)
    }
}

fn migrate(conn: &mut Connection) -> Result<(), ConsentError> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(cdb)?;
    let current = usize::try_from(current).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "database schema version {current} is newer than this library ({})",
            MIGRATIONS.len()
        ))
        .into());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .map_err(cdb)?;
        tx.execute_batch(sql).map_err(cdb)?;
        tx.pragma_update(None, "user_version", i + 1).map_err(cdb)?;
        tx.commit().map_err(cdb)?;
    }
    Ok(())
}

fn load_grant(tx: &Transaction<'_>, id: &GrantId) -> Result<Option<Grant>, ConsentError> {
    let body: Option<String> = tx
        .query_row(
            "SELECT body FROM grants WHERE id = ?1",
            [id.as_str()],
            |r| r.get(0),
        )
        .optional()
        .map_err(cdb)?;
    body.map(|b| grant_from_body(&b)).transpose()
}

fn store_grant(tx: &Transaction<'_>, g: &Grant) -> Result<(), ConsentError> {
    let closed = match g.closed_at(g.ends_at) {
        Some(at) if !matches!(g.state, GrantState::Active) => Some(ns(at)?),
        _ => None,
    };
    tx.execute(
        "INSERT INTO grants (id, patient, client_id, state, approved_at, ends_at, closed_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, closed_at = excluded.closed_at,
             body = excluded.body",
        params![
            g.id.as_str(),
            g.request.patient.as_str(),
            g.request.client_id.as_str(),
            g.state.kind().as_str(),
            ns(g.request.approved_at)?,
            ns(g.ends_at)?,
            closed,
            grant_body(g)?,
        ],
    )
    .map_err(cdb)?;
    Ok(())
}

/// A closed grant takes its tokens with it: families revoked, unused codes deleted.
fn close_tokens(tx: &Transaction<'_>, grant: &GrantId) -> Result<Vec<String>, ConsentError> {
    let mut stmt = tx
        .prepare("SELECT family_id FROM families WHERE grant_id = ?1 UNION SELECT family_id FROM codes WHERE grant_id = ?1")
        .map_err(cdb)?;
    let families = stmt
        .query_map([grant.as_str()], |r| r.get::<_, String>(0))
        .map_err(cdb)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(cdb)?;
    for f in &families {
        tx.execute(
            "INSERT OR IGNORE INTO revoked_families (family_id) VALUES (?1)",
            [f],
        )
        .map_err(cdb)?;
    }
    tx.execute(
        "UPDATE families SET revoked = 1 WHERE grant_id = ?1",
        [grant.as_str()],
    )
    .map_err(cdb)?;
    tx.execute(
        "DELETE FROM codes WHERE grant_id = ?1 AND used = 0",
        [grant.as_str()],
    )
    .map_err(cdb)?;
    Ok(families)
}

fn grants_where(conn: &Connection, sql: &str, arg: &str) -> Result<Vec<Grant>, ConsentError> {
    let mut stmt = conn.prepare(sql).map_err(cdb)?;
    let bodies = stmt
        .query_map([arg], |r| r.get::<_, String>(0))
        .map_err(cdb)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(cdb)?;
    bodies.iter().map(|b| grant_from_body(b)).collect()
}

impl GrantStatusSource for SqliteStore {
    fn grant_status(&self, grant: &GrantId, now: OffsetDateTime) -> GrantStatus {
        self.grants.grant_status(grant, now)
    }
}

impl ConsentStore for SqliteStore {
    fn approve(
        &self,
        request: RightOfAccessRequest,
        now: OffsetDateTime,
    ) -> Result<Grant, ConsentError> {
        let ends_at = request.validate(now)?;
        let grant = Grant::new(new_grant_id()?, request, ends_at);
        self.write(|tx| {
            if load_grant(tx, &grant.id)?.is_some() {
                return Err(ConsentError::Store(StoreError::Duplicate));
            }
            store_grant(tx, &grant)
        })?;
        self.grants.put(&grant);
        Ok(grant)
    }

    fn grant(&self, id: &GrantId) -> Result<Option<Grant>, ConsentError> {
        let conn = self.lock();
        let body: Option<String> = conn
            .query_row(
                "SELECT body FROM grants WHERE id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(cdb)?;
        body.map(|b| grant_from_body(&b)).transpose()
    }

    fn connected_apps(
        &self,
        patient: &PatientId,
        now: OffsetDateTime,
    ) -> Result<Vec<Grant>, ConsentError> {
        let conn = self.lock();
        let mut out = grants_where(
            &conn,
            "SELECT body FROM grants WHERE patient = ?1 AND state = 'active'",
            patient.as_str(),
        )?;
        out.retain(|g| g.is_active_at(now));
        sort_newest_first(&mut out);
        Ok(out)
    }

    fn grants_of(&self, patient: &PatientId) -> Result<Vec<Grant>, ConsentError> {
        let conn = self.lock();
        let mut out = grants_where(
            &conn,
            "SELECT body FROM grants WHERE patient = ?1",
            patient.as_str(),
        )?;
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
        self.update_grant(id, |g| g.apply_revoke(by, reason, now))
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
        let closed = self.write(|tx| {
            let mut stmt = tx
                .prepare("SELECT body FROM grants WHERE state = 'active' AND ends_at <= ?1")
                .map_err(cdb)?;
            let bodies = stmt
                .query_map([now_ns], |r| r.get::<_, String>(0))
                .map_err(cdb)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(cdb)?;
            let mut closed = Vec::new();
            for body in bodies {
                let mut grant = grant_from_body(&body)?;
                if grant.apply_expire(now).is_ok() {
                    store_grant(tx, &grant)?;
                    let families = close_tokens(tx, &grant.id)?;
                    closed.push((grant, families));
                }
            }
            Ok::<_, ConsentError>(closed)
        })?;
        for (grant, families) in &closed {
            self.after_commit(grant, families);
        }
        Ok(closed.len())
    }

    fn purge(&self, now: OffsetDateTime, retention: Duration) -> Result<usize, ConsentError> {
        let cutoff = ns(now - retention)?;
        let purged = self.write(|tx| {
            let mut stmt = tx
                .prepare(
                    "SELECT body FROM grants WHERE (state <> 'active' AND closed_at <= ?1)
                     OR (state = 'active' AND ends_at <= ?1)",
                )
                .map_err(cdb)?;
            let bodies = stmt
                .query_map([cutoff], |r| r.get::<_, String>(0))
                .map_err(cdb)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(cdb)?;
            let mut purged = Vec::new();
            for body in bodies {
                let grant = grant_from_body(&body)?;
                if purge_due(&grant, now, retention) {
                    let id = grant.id.as_str();
                    close_tokens(tx, &grant.id)?;
                    tx.execute("DELETE FROM grants WHERE id = ?1", [id]).map_err(cdb)?;
                    tx.execute(
                        "DELETE FROM refresh_tokens WHERE family_id IN (SELECT family_id FROM families WHERE grant_id = ?1)",
                        [id],
                    )
                    .map_err(cdb)?;
                    tx.execute("DELETE FROM families WHERE grant_id = ?1", [id]).map_err(cdb)?;
                    tx.execute("DELETE FROM codes WHERE grant_id = ?1", [id]).map_err(cdb)?;
                    purged.push(grant.id);
                }
            }
            Ok::<_, ConsentError>(purged)
        })?;
        for id in &purged {
            self.grants.remove(id);
        }
        Ok(purged.len())
    }
}

impl RevocationList for SqliteStore {
    fn is_revoked(&self, jti: &str, family: Option<&str>, now: OffsetDateTime) -> bool {
        self.revoked.is_revoked(jti, family, now)
    }
}

impl TokenStore for SqliteStore {
    fn put_code(&self, code: TokenHash, record: CodeRecord) -> Result<(), StoreError> {
        let body = code_body(&record)?;
        let exp = ns(record.expires_at)?;
        self.write(|tx| {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO codes (hash, grant_id, used, family_id, expires_at, body)
                     VALUES (?1, ?2, 0, ?3, ?4, ?5)",
                    params![
                        &code.0[..],
                        record.context.grant_id.as_str(),
                        record.family_id,
                        exp,
                        body
                    ],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::Duplicate);
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
            let row: Option<(i64, String, i64, Option<String>)> = tx
                .query_row(
                    "SELECT used, family_id, expires_at, body FROM codes WHERE hash = ?1",
                    [&code.0[..]],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(db)?;
            let Some((used, family_id, expires_at, body)) = row else {
                return Ok(CodeRedemption::Unknown);
            };
            if used != 0 {
                return Ok(CodeRedemption::Reused { family_id });
            }
            tx.execute(
                "UPDATE codes SET used = 1, body = NULL WHERE hash = ?1",
                [&code.0[..]],
            )
            .map_err(db)?;
            if from_ns(expires_at)? <= now {
                return Ok(CodeRedemption::Expired);
            }
            let body =
                body.ok_or_else(|| StoreError::Backend("unused code without body".into()))?;
            Ok(CodeRedemption::Fresh(Box::new(code_from_body(&body)?)))
        })
    }

    fn put_refresh(&self, token: TokenHash, family: RefreshFamily) -> Result<(), StoreError> {
        let body = family_body(&family)?;
        let exp = ns(family.expires_at)?;
        self.write(|tx| {
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM refresh_tokens WHERE hash = ?1 UNION ALL SELECT 1 FROM families WHERE family_id = ?2",
                    params![&token.0[..], family.family_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            if exists.is_some() {
                return Err(StoreError::Duplicate);
            }
            let revoked: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM revoked_families WHERE family_id = ?1",
                    [&family.family_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            tx.execute(
                "INSERT INTO families (family_id, grant_id, current, revoked, expires_at, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    family.family_id,
                    family.context.grant_id.as_str(),
                    &token.0[..],
                    i64::from(revoked.is_some()),
                    exp,
                    body
                ],
            )
            .map_err(db)?;
            tx.execute(
                "INSERT INTO refresh_tokens (hash, family_id) VALUES (?1, ?2)",
                params![&token.0[..], family.family_id],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn lookup_refresh(
        &self,
        token: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<RefreshLookup, StoreError> {
        let conn = self.lock();
        let row: Option<(String, Vec<u8>, i64, i64, String)> = conn
            .query_row(
                "SELECT f.family_id, f.current, f.revoked, f.expires_at, f.body
                 FROM refresh_tokens t JOIN families f ON f.family_id = t.family_id
                 WHERE t.hash = ?1",
                [&token.0[..]],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(db)?;
        let Some((family_id, current, revoked, expires_at, body)) = row else {
            return Ok(RefreshLookup::Unknown);
        };
        let row = FamilyRow {
            family_id,
            current,
            revoked: revoked != 0,
            expires_at,
            body,
        };
        classify_refresh(row, token, now)
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
            let taken: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM refresh_tokens WHERE hash = ?1",
                    [&new.0[..]],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            if taken.is_some() {
                return Err(StoreError::Duplicate);
            }
            // The grant is checked in the same transaction: a revoke that committed first wins.
            let row: Option<(Vec<u8>, i64, String, Option<String>)> = tx
                .query_row(
                    "SELECT f.current, f.revoked, f.body, g.state FROM families f
                     LEFT JOIN grants g ON g.id = f.grant_id WHERE f.family_id = ?1",
                    [family_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(db)?;
            let Some((current, revoked, body, state)) = row else {
                return Ok(false);
            };
            if revoked != 0
                || current.as_slice() != old.0.as_slice()
                || state.is_some_and(|s| s != "active")
            {
                return Ok(false);
            }
            let mut family = family_from_body(&body)?;
            family.context.scope = scope.clone();
            family.expires_at = expires_at;
            tx.execute(
                "UPDATE families SET current = ?2, expires_at = ?3, body = ?4 WHERE family_id = ?1",
                params![family_id, &new.0[..], exp, family_body(&family)?],
            )
            .map_err(db)?;
            tx.execute(
                "INSERT INTO refresh_tokens (hash, family_id) VALUES (?1, ?2)",
                params![&new.0[..], family_id],
            )
            .map_err(db)?;
            Ok(true)
        })
    }

    fn revoke_family(&self, family_id: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO revoked_families (family_id) VALUES (?1)",
                [family_id],
            )
            .map_err(db)?;
            tx.execute(
                "UPDATE families SET revoked = 1 WHERE family_id = ?1",
                [family_id],
            )
            .map_err(db)?;
            Ok::<_, StoreError>(())
        })?;
        self.revoked.add_family(family_id);
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
            let live: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM jtis WHERE client_id = ?1 AND jti = ?2 AND expires_at > ?3",
                    params![client.as_str(), jti, now_ns],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            if live.is_some() {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO jtis (client_id, jti, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (client_id, jti) DO UPDATE SET expires_at = excluded.expires_at",
                params![client.as_str(), jti, exp],
            )
            .map_err(db)?;
            Ok(true)
        })
    }

    fn revoke_access_token(&self, jti: &str, expires_at: OffsetDateTime) -> Result<(), StoreError> {
        let exp = ns(expires_at)?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO revoked_jtis (jti, expires_at) VALUES (?1, ?2)
                 ON CONFLICT (jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
                params![jti, exp],
            )
            .map_err(db)?;
            Ok::<_, StoreError>(())
        })?;
        self.revoked.add_jti(jti, expires_at);
        Ok(())
    }
}

/// Creates `path` empty with mode 0600 if it does not exist (SQLite would create it with the
/// umask's mode). Special names (`:memory:`, `file:` URIs, the empty temporary name) are left
/// to SQLite.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let name = path.as_os_str();
    if name.is_empty() || name == ":memory:" || name.as_encoded_bytes().starts_with(b"file:") {
        return Ok(());
    }
    #[allow(unused_mut)]
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}
