//! The one question the request path asks of a consent grant: may it still be used?
//!
//! The authorization server and the resource server both depend on this small trait, not on a
//! store: a JWT access token carries its grant id, and validation asks a [`GrantStatusSource`]
//! (typically an in-memory cache kept current by the consent store) whether that grant is still
//! active. The check must be O(1) and must not block on I/O, because it runs on every request.

use std::collections::BTreeSet;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::ids::{CategoryId, ClientId, GrantId, PatientId};

/// What the request path needs to know about a grant that is still in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveGrant {
    /// The grant's identifier.
    pub grant_id: GrantId,
    /// The patient whose data the grant discloses.
    pub patient: PatientId,
    /// The designated third party (the app).
    pub client_id: ClientId,
    /// The data categories the patient approved, after any later narrowing.
    pub categories: BTreeSet<CategoryId>,
    /// The instant the grant stops being usable: min(approval + 1 year, chosen end date).
    pub ends_at: OffsetDateTime,
}

/// The state of a grant as seen at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrantStatus {
    /// The grant may be used.
    Active(Arc<ActiveGrant>),
    /// The grant reached its end date.
    Expired,
    /// The patient (or her representative) revoked the grant.
    Revoked,
    /// No grant with this id is known.
    Unknown,
}

impl GrantStatus {
    /// The active grant, if the status is [`GrantStatus::Active`].
    pub fn active(&self) -> Option<&ActiveGrant> {
        match self {
            GrantStatus::Active(grant) => Some(grant),
            _ => None,
        }
    }
}

/// Answers whether a grant is usable at `now`.
///
/// Implementations must answer from memory (the consent stores keep a cache that revocations on
/// any node update) and must treat a grant whose `ends_at` is at or before `now` as
/// [`GrantStatus::Expired`] even if no background job has marked it so yet.
pub trait GrantStatusSource: Send + Sync {
    /// The status of `grant` at `now`.
    fn grant_status(&self, grant: &GrantId, now: OffsetDateTime) -> GrantStatus;
}

impl<S: GrantStatusSource + ?Sized> GrantStatusSource for Arc<S> {
    fn grant_status(&self, grant: &GrantId, now: OffsetDateTime) -> GrantStatus {
        (**self).grant_status(grant, now)
    }
}
