//! Abuse prevention: rate limits per client, grant, patient and source address, and anomaly
//! signals for a grant whose activity jumps — the "fire hose instead of one sip" the source
//! documents fear.
//!
//! Both are policy with no I/O of their own: the [`RateLimiter`] keeps bucket state behind a
//! [`RateLimitStore`] (in memory per node, or shared), and the [`AnomalyDetector`] keeps a small
//! per-grant baseline in memory. The middleware turns a [`RateLimitDecision::Limited`] into a
//! `429 Too Many Requests` with `Retry-After` and an audit record.

mod anomaly;
mod rate_limit;

pub use anomaly::{AnomalyConfig, AnomalyDetector, AnomalyHook, AnomalyKind, AnomalySignal};
pub use rate_limit::{
    BucketOutcome, EndpointClass, KeyKind, Limit, LimitKey, MemoryRateLimitStore,
    RateLimitConfigError, RateLimitDecision, RateLimitPolicy, RateLimitStore, RateLimitStoreError,
    RateLimiter, TokenBucket,
};
