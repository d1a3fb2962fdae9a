//! Failed-login throttling per account and per source address: exponential back-off with a
//! cap, forgetting after a quiet period, never a permanent lock-out.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::Clock;

/// Back-off for one kind of key (accounts or source addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Failures allowed with no delay (typos happen).
    pub free_failures: u32,
    /// The delay after the first failure past the free ones; it doubles with each further one.
    pub base_delay: Duration,
    /// The most a delay can grow to. There is no permanent lock-out: after this long the next
    /// attempt is always allowed.
    pub max_delay: Duration,
    /// A key with no failure for this long starts afresh.
    pub forget_after: Duration,
}

impl Backoff {
    /// The delay imposed after `failures` consecutive failures.
    pub fn delay_after(&self, failures: u32) -> Duration {
        let Some(past_free) = failures.checked_sub(self.free_failures) else {
            return Duration::ZERO;
        };
        if past_free == 0 {
            return Duration::ZERO;
        }
        // base * 2^(past_free - 1), saturating well before overflow, then capped.
        let doublings = (past_free - 1).min(40);
        let factor = 1i64 << doublings;
        let base = i64::try_from(self.base_delay.whole_milliseconds()).unwrap_or(i64::MAX);
        let millis = base.saturating_mul(factor);
        Duration::milliseconds(millis).min(self.max_delay)
    }
}

/// Throttling configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Per account (login name). Default: 5 free failures, then 1 s doubling up to 15 min.
    pub account: Backoff,
    /// Per source address (IPv6 grouped by /64). Default: 20 free failures, then 1 s doubling
    /// up to 10 min — a lower cap than accounts, since a clinic's NAT puts many honest users
    /// behind one address.
    pub source: Backoff,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            account: Backoff {
                free_failures: 5,
                base_delay: Duration::seconds(1),
                max_delay: Duration::minutes(15),
                forget_after: Duration::hours(24),
            },
            source: Backoff {
                free_failures: 20,
                base_delay: Duration::seconds(1),
                max_delay: Duration::minutes(10),
                forget_after: Duration::hours(24),
            },
        }
    }
}

/// What a throttle counts failures against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ThrottleKey {
    /// A login name, as the host normalises it (case-folded e-mail, say).
    Account(String),
    /// A source address; IPv6 addresses are reduced to their /64 network, since one host
    /// usually controls a whole /64.
    Source(IpAddr),
}

impl ThrottleKey {
    /// The key for a source address (IPv6 reduced to its /64).
    pub fn source(addr: IpAddr) -> Self {
        Self::Source(source_network(addr))
    }
}

fn source_network(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
    }
}

/// The failure history of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// Consecutive failures.
    pub failures: u32,
    /// When the last one happened.
    #[serde(with = "time::serde::rfc3339")]
    pub last_failure: OffsetDateTime,
}

/// Where throttling state lives. Implement it over a shared store (Redis, a table) when
/// several nodes serve logins; [`MemoryThrottleStore`] serves one process.
pub trait ThrottleStore: Send + Sync {
    /// The current record of `key`.
    fn get(&self, key: &ThrottleKey) -> Option<FailureRecord>;
    /// Atomically replaces `key`'s record with `update(current)` (`None` removes it) and
    /// returns the new record.
    fn update(
        &self,
        key: &ThrottleKey,
        update: &mut dyn FnMut(Option<FailureRecord>) -> Option<FailureRecord>,
    ) -> Option<FailureRecord>;
}

/// An in-memory [`ThrottleStore`] holding at most `capacity` keys; when full, the key with the
/// oldest failure is dropped, so an attacker spraying addresses cannot exhaust memory.
pub struct MemoryThrottleStore {
    capacity: usize,
    map: Mutex<HashMap<ThrottleKey, FailureRecord>>,
}

impl fmt::Debug for MemoryThrottleStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryThrottleStore")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl MemoryThrottleStore {
    /// A store for up to `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ThrottleKey, FailureRecord>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for MemoryThrottleStore {
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl ThrottleStore for MemoryThrottleStore {
    fn get(&self, key: &ThrottleKey) -> Option<FailureRecord> {
        self.lock().get(key).copied()
    }

    fn update(
        &self,
        key: &ThrottleKey,
        update: &mut dyn FnMut(Option<FailureRecord>) -> Option<FailureRecord>,
    ) -> Option<FailureRecord> {
        let mut map = self.lock();
        let next = update(map.get(key).copied());
        match next {
            Some(record) => {
                if !map.contains_key(key) && map.len() >= self.capacity {
                    let oldest = map
                        .iter()
                        .min_by_key(|(_, r)| r.last_failure)
                        .map(|(k, _)| k.clone());
                    if let Some(oldest) = oldest {
                        map.remove(&oldest);
                    }
                }
                map.insert(key.clone(), record);
            }
            None => {
                map.remove(key);
            }
        }
        next
    }
}

/// One login attempt, as the host describes it.
#[derive(Debug, Clone, Copy)]
pub struct LoginAttempt<'a> {
    /// The login name typed (normalised by the host), whether or not such an account exists.
    pub account: &'a str,
    /// The client's address.
    pub source: IpAddr,
    /// The browser presents a valid device cookie from an earlier successful login to this
    /// account. Such attempts skip the account back-off (the source back-off still applies),
    /// so an attacker hammering a patient's account cannot lock the patient out of her own
    /// devices (OWASP "device cookies").
    pub known_device: bool,
}

/// Which counter refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ThrottleScope {
    /// The account's back-off.
    Account,
    /// The source address's back-off.
    Source,
}

/// Why an authentication step failed, as the host reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FailureKind {
    /// No such account (the host still ran [`PasswordHasher::verify_unknown_user`]).
    ///
    /// [`PasswordHasher::verify_unknown_user`]: super::PasswordHasher::verify_unknown_user
    UnknownAccount,
    /// Wrong password.
    WrongPassword,
    /// Wrong TOTP code.
    WrongSecondFactor,
    /// A TOTP code already used (a replay: possibly a phished or shoulder-surfed code).
    ReplayedSecondFactor,
    /// Wrong or already-used recovery code.
    WrongRecoveryCode,
    /// The account is disabled by the host.
    AccountDisabled,
}

/// What happened, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SecurityEventKind {
    /// An authentication step failed.
    AuthenticationFailed(FailureKind),
    /// An attempt was refused without being checked, because a back-off was running.
    AttemptThrottled(ThrottleScope),
    /// A login succeeded after earlier failures (the counters were reset).
    SucceededAfterFailures,
}

/// A security event for the host's audit trail (map it to the audit record type you use).
///
/// `account` is the login name as typed: treat it as personal data in the audit store. No
/// password, code or other secret is ever part of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityEvent {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What.
    pub kind: SecurityEventKind,
    /// The login name as typed.
    pub account: String,
    /// The client's address (as given, not reduced to a network).
    pub source: IpAddr,
    /// Consecutive failures now counted against the account.
    pub account_failures: u32,
    /// Consecutive failures now counted against the source.
    pub source_failures: u32,
    /// How long the client must wait before the next attempt is checked (zero if not at all).
    pub retry_after: Duration,
}

/// An attempt refused by a running back-off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too many failed attempts; retry in {} s", retry_after.whole_seconds().max(1))]
pub struct Throttled {
    /// Which counter refused.
    pub scope: ThrottleScope,
    /// How long until an attempt will be checked (send as `Retry-After`).
    pub retry_after: Duration,
    /// The event to audit.
    pub event: SecurityEvent,
}

/// Failed-login throttling: ask [`check`](Self::check) before verifying a credential, then
/// report the outcome with [`record_failure`](Self::record_failure) or
/// [`record_success`](Self::record_success).
pub struct LoginThrottle<C: Clock, S: ThrottleStore = MemoryThrottleStore> {
    config: ThrottleConfig,
    clock: C,
    store: S,
}

impl<C: Clock, S: ThrottleStore> fmt::Debug for LoginThrottle<C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> LoginThrottle<C, MemoryThrottleStore> {
    /// A throttle with the default configuration and an in-memory store.
    pub fn in_memory(clock: C) -> Self {
        Self::new(
            ThrottleConfig::default(),
            clock,
            MemoryThrottleStore::default(),
        )
    }
}

impl<C: Clock, S: ThrottleStore> LoginThrottle<C, S> {
    /// A throttle over `store`, taking time from `clock`.
    pub fn new(config: ThrottleConfig, clock: C, store: S) -> Self {
        Self {
            config,
            clock,
            store,
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    fn live(&self, key: &ThrottleKey, backoff: &Backoff, now: OffsetDateTime) -> u32 {
        match self.store.get(key) {
            Some(r) if now - r.last_failure <= backoff.forget_after => r.failures,
            _ => 0,
        }
    }

    fn wait(&self, key: &ThrottleKey, backoff: &Backoff, now: OffsetDateTime) -> Duration {
        match self.store.get(key) {
            Some(r) if now - r.last_failure <= backoff.forget_after => {
                let until = r.last_failure + backoff.delay_after(r.failures);
                (until - now).max(Duration::ZERO)
            }
            _ => Duration::ZERO,
        }
    }

    /// Whether an attempt may be checked now. A refusal carries the event to audit; the
    /// refused attempt is not counted as a failure (so waiting always ends the back-off).
    pub fn check(&self, attempt: &LoginAttempt<'_>) -> Result<(), Throttled> {
        let now = self.clock.now();
        let account_key = ThrottleKey::Account(attempt.account.to_owned());
        let source_key = ThrottleKey::source(attempt.source);
        let account_wait = if attempt.known_device {
            Duration::ZERO
        } else {
            self.wait(&account_key, &self.config.account, now)
        };
        let source_wait = self.wait(&source_key, &self.config.source, now);
        if account_wait <= Duration::ZERO && source_wait <= Duration::ZERO {
            return Ok(());
        }
        let (scope, retry_after) = if account_wait >= source_wait {
            (ThrottleScope::Account, account_wait)
        } else {
            (ThrottleScope::Source, source_wait)
        };
        Err(Throttled {
            scope,
            retry_after,
            event: SecurityEvent {
                at: now,
                kind: SecurityEventKind::AttemptThrottled(scope),
                account: attempt.account.to_owned(),
                source: attempt.source,
                account_failures: self.live(&account_key, &self.config.account, now),
                source_failures: self.live(&source_key, &self.config.source, now),
                retry_after,
            },
        })
    }

    fn bump(&self, key: &ThrottleKey, backoff: &Backoff, now: OffsetDateTime) -> FailureRecord {
        let forget_after = backoff.forget_after;
        let mut update = |current: Option<FailureRecord>| {
            let failures = match current {
                Some(r) if now - r.last_failure <= forget_after => r.failures.saturating_add(1),
                _ => 1,
            };
            Some(FailureRecord {
                failures,
                last_failure: now,
            })
        };
        self.store
            .update(key, &mut update)
            .unwrap_or(FailureRecord {
                failures: 1,
                last_failure: now,
            })
    }

    /// Records a failed authentication step against the account and the source, and returns
    /// the event to audit (with the delay now imposed).
    pub fn record_failure(&self, attempt: &LoginAttempt<'_>, kind: FailureKind) -> SecurityEvent {
        let now = self.clock.now();
        let account = self.bump(
            &ThrottleKey::Account(attempt.account.to_owned()),
            &self.config.account,
            now,
        );
        let source = self.bump(
            &ThrottleKey::source(attempt.source),
            &self.config.source,
            now,
        );
        let account_delay = if attempt.known_device {
            Duration::ZERO
        } else {
            self.config.account.delay_after(account.failures)
        };
        let retry_after = account_delay.max(self.config.source.delay_after(source.failures));
        SecurityEvent {
            at: now,
            kind: SecurityEventKind::AuthenticationFailed(kind),
            account: attempt.account.to_owned(),
            source: attempt.source,
            account_failures: account.failures,
            source_failures: source.failures,
            retry_after,
        }
    }

    /// Records a successful login: the account's counter is cleared. The source's counter is
    /// left to decay (one valid account must not wash an attacking address clean). Returns an
    /// event when earlier failures were cleared, so the audit trail shows the success that
    /// followed them.
    pub fn record_success(&self, attempt: &LoginAttempt<'_>) -> Option<SecurityEvent> {
        let now = self.clock.now();
        let key = ThrottleKey::Account(attempt.account.to_owned());
        let failures = self.live(&key, &self.config.account, now);
        self.store.update(&key, &mut |_| None);
        (failures > 0).then(|| SecurityEvent {
            at: now,
            kind: SecurityEventKind::SucceededAfterFailures,
            account: attempt.account.to_owned(),
            source: attempt.source,
            account_failures: failures,
            source_failures: self.live(
                &ThrottleKey::source(attempt.source),
                &self.config.source,
                now,
            ),
            retry_after: Duration::ZERO,
        })
    }
}
