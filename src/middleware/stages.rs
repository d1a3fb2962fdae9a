//! The replaceable stages of the guard: each is a small trait with the crate's own component
//! as the ready-made implementation, so a host can swap one stage without touching the rest.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::HeaderMap;
use time::OffsetDateTime;

use crate::abuse::{
    EndpointClass, LimitKey, RateLimitDecision, RateLimitStore, RateLimitStoreError, RateLimiter,
};
use crate::audit::{AuditError, AuditLog, AuditRecord, AuditSink, Receipt};
use crate::consent::GrantStatusSource;
use crate::token::{AccessTokenValidator, AuthorizationServer, TokenRejection, ValidatedToken};

/// Validates the access token of a request (stage 2 of the pipeline).
///
/// Implemented by [`AccessTokenValidator`] and [`AuthorizationServer`] (which uses its own
/// [`AuthorizationServer::validator`]), and by `Arc`s of either.
pub trait TokenValidation: Send + Sync {
    /// Validates the `Authorization` header(s) of a request at `now`.
    fn validate_headers(
        &self,
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Result<ValidatedToken, TokenRejection>;

    /// The grant source whose answer [`ValidatedToken::grant`] carries, if the validator asks
    /// one. When it is the guard's own configured source (the same `Arc`), the guard takes the
    /// validator's answer instead of asking the same source a second time for the same
    /// instant; otherwise (the default) it asks its own source again.
    fn grant_source(&self) -> Option<&Arc<dyn GrantStatusSource>> {
        None
    }
}

impl TokenValidation for AccessTokenValidator {
    fn validate_headers(
        &self,
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Result<ValidatedToken, TokenRejection> {
        AccessTokenValidator::validate_headers(self, headers, now)
    }

    fn grant_source(&self) -> Option<&Arc<dyn GrantStatusSource>> {
        Some(self.grants())
    }
}

impl TokenValidation for AuthorizationServer {
    fn validate_headers(
        &self,
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Result<ValidatedToken, TokenRejection> {
        self.validator().validate_headers(headers, now)
    }

    fn grant_source(&self) -> Option<&Arc<dyn GrantStatusSource>> {
        Some(self.validator().grants())
    }
}

impl<T: TokenValidation + ?Sized> TokenValidation for Arc<T> {
    fn validate_headers(
        &self,
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Result<ValidatedToken, TokenRejection> {
        (**self).validate_headers(headers, now)
    }

    fn grant_source(&self) -> Option<&Arc<dyn GrantStatusSource>> {
        (**self).grant_source()
    }
}

/// Keeps the guard's audit records (one per request, plus security events).
///
/// Implemented by the crate's [`AuditLog`] over any [`AuditSink`]. An error means the record
/// was not kept: the guard then fails the request (no request is served unaudited).
pub trait AuditRecorder: Send + Sync {
    /// Keeps one record.
    fn record(&self, record: AuditRecord) -> Result<(), AuditError>;
}

impl<S: AuditSink> AuditRecorder for AuditLog<S> {
    fn record(&self, record: AuditRecord) -> Result<(), AuditError> {
        // `Receipt::Lost` only happens under the fail-open policy the host chose by name.
        AuditLog::record(self, record).map(|_: Receipt| ())
    }
}

impl<T: AuditRecorder + ?Sized> AuditRecorder for Arc<T> {
    fn record(&self, record: AuditRecord) -> Result<(), AuditError> {
        (**self).record(record)
    }
}

/// Rate limits requests by endpoint class and identity keys.
///
/// Implemented by the crate's [`RateLimiter`] over any [`RateLimitStore`].
pub trait RateLimit: Send + Sync {
    /// Checks one request of `class` carrying `keys` at `now`.
    fn check(
        &self,
        class: EndpointClass,
        keys: &[LimitKey],
        now: OffsetDateTime,
    ) -> Result<RateLimitDecision, RateLimitStoreError>;
}

impl<S: RateLimitStore> RateLimit for RateLimiter<S> {
    fn check(
        &self,
        class: EndpointClass,
        keys: &[LimitKey],
        now: OffsetDateTime,
    ) -> Result<RateLimitDecision, RateLimitStoreError> {
        RateLimiter::check(self, class, keys, now)
    }
}

impl<T: RateLimit + ?Sized> RateLimit for Arc<T> {
    fn check(
        &self,
        class: EndpointClass,
        keys: &[LimitKey],
        now: OffsetDateTime,
    ) -> Result<RateLimitDecision, RateLimitStoreError> {
        (**self).check(class, keys, now)
    }
}

/// The network address of the peer, as a request extension the host's server inserts (for
/// example from hyper's accepted `TcpStream`); with the `axum` feature the guard also reads
/// axum's `ConnectInfo<SocketAddr>`.
///
/// Only the direct peer is trusted: `X-Forwarded-For` is attacker-controlled unless a proxy the
/// host runs sets it, so reading it is the host's decision (insert a `PeerAddr` yourself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub IpAddr);

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        PeerAddr(addr.ip())
    }
}

/// The peer address of a request, from [`PeerAddr`] or (feature `axum`) `ConnectInfo`.
pub(crate) fn peer_addr(extensions: &http::Extensions) -> Option<IpAddr> {
    if let Some(PeerAddr(ip)) = extensions.get::<PeerAddr>() {
        return Some(*ip);
    }
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<::axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    None
}
