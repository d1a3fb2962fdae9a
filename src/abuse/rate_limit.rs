//! Token-bucket rate limits keyed by client, grant, patient and source address.
//!
//! # Design
//!
//! The source documents fear the "fire hose instead of one sip": an app that was granted a year
//! of access to a few categories and then pulls everything it can, as fast as it can. A limit
//! is therefore set per *endpoint class* (the token endpoint, FHIR reads, the portal login…) and
//! per *key kind* (who is asking: the client, the grant, the patient whose data is read, the
//! source address), and a request must fit every bucket that applies to it.
//!
//! The arithmetic ([`TokenBucket`]) is a pure function of the stored state and `now`, so the
//! same code serves the per-node [`MemoryRateLimitStore`] and a shared database store. A denied
//! request does not consume tokens, and `Retry-After` is the time until enough tokens are back.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

use crate::ids::{ClientId, GrantId, PatientId};

/// The class of endpoint a request is for; each class has its own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EndpointClass {
    /// The OAuth token endpoint (code exchange, refresh, client credentials).
    Token,
    /// The OAuth authorize endpoint.
    Authorize,
    /// Reads of the FHIR API (read, search, history, operations).
    FhirRead,
    /// The portal login form.
    Login,
    /// Introspection and revocation.
    TokenManagement,
}

impl EndpointClass {
    fn as_str(self) -> &'static str {
        match self {
            EndpointClass::Token => "token",
            EndpointClass::Authorize => "authorize",
            EndpointClass::FhirRead => "fhir-read",
            EndpointClass::Login => "login",
            EndpointClass::TokenManagement => "token-management",
        }
    }
}

/// Who a bucket counts: one of the identities attached to a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LimitKey {
    /// The OAuth client making the request.
    Client(ClientId),
    /// The consent grant the request's token belongs to.
    Grant(GrantId),
    /// The patient whose data is read.
    Patient(PatientId),
    /// The network address the request came from.
    Address(IpAddr),
}

impl LimitKey {
    /// The kind of this key.
    pub fn kind(&self) -> KeyKind {
        match self {
            LimitKey::Client(_) => KeyKind::Client,
            LimitKey::Grant(_) => KeyKind::Grant,
            LimitKey::Patient(_) => KeyKind::Patient,
            LimitKey::Address(_) => KeyKind::Address,
        }
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::Client(id) => write!(f, "client:{id}"),
            LimitKey::Grant(id) => write!(f, "grant:{id}"),
            LimitKey::Patient(id) => write!(f, "patient:{id}"),
            LimitKey::Address(ip) => write!(f, "address:{ip}"),
        }
    }
}

/// The kind of a [`LimitKey`], without its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum KeyKind {
    /// [`LimitKey::Client`].
    Client,
    /// [`LimitKey::Grant`].
    Grant,
    /// [`LimitKey::Patient`].
    Patient,
    /// [`LimitKey::Address`].
    Address,
}

/// A token-bucket limit: bursts up to `capacity`, sustained `refill_per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    capacity: f64,
    refill_per_second: f64,
}

/// Why a [`Limit`] or policy was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitConfigError {
    /// The capacity was zero or not finite.
    #[error("a rate limit needs a capacity of at least one request")]
    ZeroCapacity,
    /// The refill rate was zero, negative or not finite: the bucket would never recover.
    #[error("a rate limit needs a positive, finite refill rate")]
    BadRefillRate,
}

impl Limit {
    /// A bucket of `capacity` requests that refills at `refill_per_second`.
    pub fn new(capacity: u32, refill_per_second: f64) -> Result<Self, RateLimitConfigError> {
        if capacity == 0 {
            return Err(RateLimitConfigError::ZeroCapacity);
        }
        if !(refill_per_second.is_finite() && refill_per_second > 0.0) {
            return Err(RateLimitConfigError::BadRefillRate);
        }
        Ok(Self {
            capacity: f64::from(capacity),
            refill_per_second,
        })
    }

    /// `count` requests per `period`, all of which may come in one burst.
    pub fn per(count: u32, period: std::time::Duration) -> Result<Self, RateLimitConfigError> {
        let seconds = period.as_secs_f64();
        if seconds <= 0.0 {
            return Err(RateLimitConfigError::BadRefillRate);
        }
        Self::new(count, f64::from(count) / seconds)
    }

    /// The burst size.
    pub fn capacity(&self) -> f64 {
        self.capacity
    }

    /// The sustained rate.
    pub fn refill_per_second(&self) -> f64 {
        self.refill_per_second
    }
}

/// The stored state of one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    /// Tokens available at `updated_at`.
    pub tokens: f64,
    /// When `tokens` was computed.
    pub updated_at: OffsetDateTime,
}

/// What taking from a bucket decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BucketOutcome {
    /// The request fits; `remaining` whole requests are left in the bucket.
    Allowed {
        /// Requests left before the bucket is empty.
        remaining: u32,
    },
    /// The request does not fit; try again after `retry_after`.
    Limited {
        /// Time until enough tokens have refilled.
        retry_after: Duration,
    },
}

impl TokenBucket {
    /// A full bucket for `limit` at `now`.
    pub fn full(limit: &Limit, now: OffsetDateTime) -> Self {
        Self {
            tokens: limit.capacity,
            updated_at: now,
        }
    }

    /// Refills to `now`, then takes `cost` tokens if they are there.
    ///
    /// Returns the new state and the outcome. A limited request leaves the (refilled) state
    /// unchanged apart from the refill, so hammering a full bucket does not push recovery
    /// further away. A clock that went backwards refills nothing.
    pub fn take(self, limit: &Limit, cost: u32, now: OffsetDateTime) -> (Self, BucketOutcome) {
        let elapsed = (now - self.updated_at).as_seconds_f64().max(0.0);
        let tokens = (self.tokens + elapsed * limit.refill_per_second).min(limit.capacity);
        let updated_at = if now > self.updated_at {
            now
        } else {
            self.updated_at
        };
        let allowed = tokens >= f64::from(cost);
        let tokens = if allowed {
            tokens - f64::from(cost)
        } else {
            tokens
        };
        (
            Self { tokens, updated_at },
            Self::outcome(limit, cost, tokens, allowed),
        )
    }

    /// The outcome, given the tokens left after a take and whether it was allowed: shared with
    /// stores that run the take itself inside their database.
    pub(crate) fn outcome(
        limit: &Limit,
        cost: u32,
        tokens_after: f64,
        allowed: bool,
    ) -> BucketOutcome {
        if allowed {
            // Within [0, capacity], and capacity came from a u32.
            let remaining = tokens_after.max(0.0).floor() as u32;
            BucketOutcome::Allowed { remaining }
        } else {
            let missing = f64::from(cost) - tokens_after;
            let wait = (missing / limit.refill_per_second).max(0.001);
            BucketOutcome::Limited {
                retry_after: Duration::seconds_f64(wait),
            }
        }
    }
}

/// Why a shared rate-limit store could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitStoreError {
    /// The backing database failed; the caller decides whether to fail open or closed.
    #[error("the rate-limit store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where bucket state lives: in this process, or shared by several API nodes.
pub trait RateLimitStore: Send + Sync {
    /// Atomically refills and takes `cost` tokens from the bucket `bucket` under `limit`.
    fn take(
        &self,
        bucket: &str,
        limit: &Limit,
        cost: u32,
        now: OffsetDateTime,
    ) -> Result<BucketOutcome, RateLimitStoreError>;
}

/// A store shared between limiters (e.g. the FHIR guard's and the token endpoint's, or the
/// consent store that also keeps the buckets).
impl<T: RateLimitStore + ?Sized> RateLimitStore for std::sync::Arc<T> {
    fn take(
        &self,
        bucket: &str,
        limit: &Limit,
        cost: u32,
        now: OffsetDateTime,
    ) -> Result<BucketOutcome, RateLimitStoreError> {
        (**self).take(bucket, limit, cost, now)
    }
}

/// Per-node bucket state in memory, sharded to keep lock contention low.
pub struct MemoryRateLimitStore {
    shards: Vec<Mutex<HashMap<String, TokenBucket>>>,
    max_buckets_per_shard: usize,
}

impl fmt::Debug for MemoryRateLimitStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRateLimitStore")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryRateLimitStore {
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl MemoryRateLimitStore {
    const SHARDS: usize = 16;

    /// A store that keeps at most about `max_buckets` buckets; beyond that, buckets that have
    /// refilled completely are forgotten first (they carry no information).
    pub fn new(max_buckets: usize) -> Self {
        Self {
            shards: (0..Self::SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            max_buckets_per_shard: (max_buckets / Self::SHARDS).max(16),
        }
    }

    fn shard(&self, bucket: &str) -> &Mutex<HashMap<String, TokenBucket>> {
        // FNV-1a: cheap and good enough to spread keys over 16 shards.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in bucket.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        &self.shards[(hash % Self::SHARDS as u64) as usize]
    }
}

impl RateLimitStore for MemoryRateLimitStore {
    fn take(
        &self,
        bucket: &str,
        limit: &Limit,
        cost: u32,
        now: OffsetDateTime,
    ) -> Result<BucketOutcome, RateLimitStoreError> {
        let mut shard = self
            .shard(bucket)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !shard.contains_key(bucket) && shard.len() >= self.max_buckets_per_shard {
            // Forget buckets that would be full by now; if none, the oldest-updated one.
            shard.retain(|_, state| {
                let elapsed = (now - state.updated_at).as_seconds_f64();
                state.tokens + elapsed * limit.refill_per_second < limit.capacity
            });
            if shard.len() >= self.max_buckets_per_shard {
                if let Some(oldest) = shard
                    .iter()
                    .min_by_key(|(_, state)| state.updated_at)
                    .map(|(key, _)| key.clone())
                {
                    shard.remove(&oldest);
                }
            }
        }
        let state = shard
            .get(bucket)
            .copied()
            .unwrap_or_else(|| TokenBucket::full(limit, now));
        let (state, outcome) = state.take(limit, cost, now);
        shard.insert(bucket.to_owned(), state);
        Ok(outcome)
    }
}

/// The limits of every (endpoint class, key kind) pair that has one.
#[derive(Debug, Clone, Default)]
pub struct RateLimitPolicy {
    limits: HashMap<(EndpointClass, KeyKind), Limit>,
}

impl RateLimitPolicy {
    /// A policy with no limits.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Limits suited to a patient-access API: generous for an app reading its grant a page at a
    /// time, tight for the token endpoint and the login form.
    ///
    /// | class | per client | per grant | per patient | per address |
    /// |---|---|---|---|---|
    /// | token | 60/min | 30/min | — | 120/min |
    /// | authorize | — | — | — | 60/min |
    /// | FHIR read | 1200/min | 600/min | 1200/min | 2400/min |
    /// | login | — | — | — | 30/min |
    /// | introspect/revoke | 600/min | — | — | 600/min |
    pub fn recommended() -> Self {
        let minute = std::time::Duration::from_secs(60);
        let mut policy = Self::empty();
        let entries = [
            (EndpointClass::Token, KeyKind::Client, 60),
            (EndpointClass::Token, KeyKind::Grant, 30),
            (EndpointClass::Token, KeyKind::Address, 120),
            (EndpointClass::Authorize, KeyKind::Address, 60),
            (EndpointClass::FhirRead, KeyKind::Client, 1200),
            (EndpointClass::FhirRead, KeyKind::Grant, 600),
            (EndpointClass::FhirRead, KeyKind::Patient, 1200),
            (EndpointClass::FhirRead, KeyKind::Address, 2400),
            (EndpointClass::Login, KeyKind::Address, 30),
            (EndpointClass::TokenManagement, KeyKind::Client, 600),
            (EndpointClass::TokenManagement, KeyKind::Address, 600),
        ];
        for (class, kind, count) in entries {
            if let Ok(limit) = Limit::per(count, minute) {
                policy.limits.insert((class, kind), limit);
            }
        }
        policy
    }

    /// Sets (or replaces) the limit for `kind` keys on `class` endpoints.
    pub fn with_limit(mut self, class: EndpointClass, kind: KeyKind, limit: Limit) -> Self {
        self.limits.insert((class, kind), limit);
        self
    }

    /// Removes the limit for `kind` keys on `class` endpoints.
    pub fn without_limit(mut self, class: EndpointClass, kind: KeyKind) -> Self {
        self.limits.remove(&(class, kind));
        self
    }

    /// The limit for `kind` keys on `class` endpoints, if any.
    pub fn limit(&self, class: EndpointClass, kind: KeyKind) -> Option<&Limit> {
        self.limits.get(&(class, kind))
    }
}

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RateLimitDecision {
    /// Every applicable bucket had room.
    Allowed,
    /// A bucket was empty: answer 429 with `Retry-After`, and audit the hit.
    Limited {
        /// The key whose bucket was empty (for the audit record; not for the wire).
        key: LimitKey,
        /// The endpoint class.
        class: EndpointClass,
        /// How long until the request would fit.
        retry_after: Duration,
    },
}

impl RateLimitDecision {
    /// The `Retry-After` header value in whole seconds (at least 1), if limited.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            RateLimitDecision::Allowed => None,
            RateLimitDecision::Limited { retry_after, .. } => {
                Some(retry_after.as_seconds_f64().ceil().max(1.0) as u64)
            }
        }
    }
}

/// Applies a [`RateLimitPolicy`] over a [`RateLimitStore`].
#[derive(Debug)]
pub struct RateLimiter<S> {
    policy: RateLimitPolicy,
    store: S,
}

impl<S: RateLimitStore> RateLimiter<S> {
    /// A limiter enforcing `policy` with bucket state in `store`.
    pub fn new(policy: RateLimitPolicy, store: S) -> Self {
        Self { policy, store }
    }

    /// The policy in force.
    pub fn policy(&self) -> &RateLimitPolicy {
        &self.policy
    }

    /// Checks one request of `class` carrying `keys` against every applicable limit.
    ///
    /// All buckets are consulted even after one refuses, so that a client hammering the API
    /// drains its own buckets rather than only the first; the first refusal (in `keys` order)
    /// is the one reported.
    pub fn check(
        &self,
        class: EndpointClass,
        keys: &[LimitKey],
        now: OffsetDateTime,
    ) -> Result<RateLimitDecision, RateLimitStoreError> {
        let mut decision = RateLimitDecision::Allowed;
        for key in keys {
            let Some(limit) = self.policy.limit(class, key.kind()) else {
                continue;
            };
            let bucket = format!("{}|{key}", class.as_str());
            if let BucketOutcome::Limited { retry_after } =
                self.store.take(&bucket, limit, 1, now)?
            {
                if decision == RateLimitDecision::Allowed {
                    decision = RateLimitDecision::Limited {
                        key: key.clone(),
                        class,
                        retry_after,
                    };
                }
            }
        }
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-24 12:00 UTC);

    #[test]
    fn limits_refuse_nonsense() {
        assert_eq!(Limit::new(0, 1.0), Err(RateLimitConfigError::ZeroCapacity));
        assert_eq!(Limit::new(5, 0.0), Err(RateLimitConfigError::BadRefillRate));
        assert_eq!(
            Limit::new(5, f64::NAN),
            Err(RateLimitConfigError::BadRefillRate)
        );
        assert_eq!(
            Limit::per(5, std::time::Duration::ZERO),
            Err(RateLimitConfigError::BadRefillRate)
        );
    }

    #[test]
    fn bucket_bursts_then_refuses_then_recovers() {
        let limit = Limit::new(3, 1.0).unwrap();
        let mut bucket = TokenBucket::full(&limit, T0);
        for expected in [2, 1, 0] {
            let (next, outcome) = bucket.take(&limit, 1, T0);
            assert_eq!(
                outcome,
                BucketOutcome::Allowed {
                    remaining: expected
                }
            );
            bucket = next;
        }
        let (next, outcome) = bucket.take(&limit, 1, T0);
        let BucketOutcome::Limited { retry_after } = outcome else {
            panic!("expected a refusal")
        };
        assert!((retry_after.as_seconds_f64() - 1.0).abs() < 1e-9);
        // A refusal does not consume: after the advertised wait the request fits.
        let (_, outcome) = next.take(&limit, 1, T0 + retry_after);
        assert!(matches!(outcome, BucketOutcome::Allowed { .. }));
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let limit = Limit::new(1, 1.0).unwrap();
        let (bucket, _) = TokenBucket::full(&limit, T0).take(&limit, 1, T0);
        let (_, outcome) = bucket.take(&limit, 1, T0 - Duration::hours(1));
        assert!(matches!(outcome, BucketOutcome::Limited { .. }));
    }

    #[test]
    fn limiter_checks_every_key_and_reports_the_first_refusal() {
        let limit = Limit::new(2, 0.5).unwrap();
        let policy = RateLimitPolicy::empty()
            .with_limit(EndpointClass::FhirRead, KeyKind::Grant, limit)
            .with_limit(
                EndpointClass::FhirRead,
                KeyKind::Client,
                Limit::new(100, 10.0).unwrap(),
            );
        let limiter = RateLimiter::new(policy, MemoryRateLimitStore::default());
        let keys = [
            LimitKey::Client(ClientId::new("app").unwrap()),
            LimitKey::Grant(GrantId::new("g1").unwrap()),
            LimitKey::Patient(PatientId::new("355").unwrap()),
        ];
        assert_eq!(
            limiter.check(EndpointClass::FhirRead, &keys, T0).unwrap(),
            RateLimitDecision::Allowed
        );
        assert_eq!(
            limiter.check(EndpointClass::FhirRead, &keys, T0).unwrap(),
            RateLimitDecision::Allowed
        );
        let limited = limiter.check(EndpointClass::FhirRead, &keys, T0).unwrap();
        assert!(matches!(
            &limited,
            RateLimitDecision::Limited {
                key: LimitKey::Grant(_),
                ..
            }
        ));
        assert_eq!(limited.retry_after_seconds(), Some(2));
        // Another grant of the same client is not affected.
        let other = [LimitKey::Grant(GrantId::new("g2").unwrap())];
        assert_eq!(
            limiter.check(EndpointClass::FhirRead, &other, T0).unwrap(),
            RateLimitDecision::Allowed
        );
        // Nor is another endpoint class.
        assert_eq!(
            limiter.check(EndpointClass::Token, &keys, T0).unwrap(),
            RateLimitDecision::Allowed
        );
        // Recovery after Retry-After.
        assert_eq!(
            limiter
                .check(EndpointClass::FhirRead, &keys, T0 + Duration::seconds(2))
                .unwrap(),
            RateLimitDecision::Allowed
        );
    }

    #[test]
    fn memory_store_stays_bounded() {
        let store = MemoryRateLimitStore::new(16 * 16);
        let limit = Limit::new(5, 1.0).unwrap();
        for i in 0..10_000 {
            store.take(&format!("k{i}"), &limit, 1, T0).unwrap();
        }
        let total: usize = store.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= 16 * 16, "{total} buckets kept");
    }
}
