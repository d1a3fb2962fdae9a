//! The [`ConsentStore`] trait every store implements.

use std::collections::BTreeSet;

use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};

use super::error::ConsentError;
use super::record::{Approver, Grant, RightOfAccessRequest};
use super::status::GrantStatusSource;
use crate::ids::{CategoryId, GrantId, PatientId};
use crate::token::StoreError;

/// Where grants live. Synchronous, `Send + Sync`; every method is one transaction in the SQL
/// stores. The [`GrantStatusSource`] supertrait answers from the store's warm in-memory cache.
pub trait ConsentStore: GrantStatusSource {
    /// Validates `request` at `now` and stores a new active grant for it. Every approval creates
    /// a new grant, even for an app that already has one: history is never overwritten.
    fn approve(
        &self,
        request: RightOfAccessRequest,
        now: OffsetDateTime,
    ) -> Result<Grant, ConsentError>;

    /// One grant, in any state (until purged).
    fn grant(&self, id: &GrantId) -> Result<Option<Grant>, ConsentError>;

    /// The patient's connected apps: her grants active at `now`, most recent approval first.
    fn connected_apps(
        &self,
        patient: &PatientId,
        now: OffsetDateTime,
    ) -> Result<Vec<Grant>, ConsentError>;

    /// Every grant of the patient still kept (active, expired, revoked), most recent first.
    fn grants_of(&self, patient: &PatientId) -> Result<Vec<Grant>, ConsentError>;

    /// Revokes a grant active at `now`; its tokens stop working at the next request.
    fn revoke(
        &self,
        id: &GrantId,
        by: Approver,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<Grant, ConsentError>;

    /// Removes categories from a grant active at `now` (takes effect like a revocation of
    /// those categories).
    fn narrow(
        &self,
        id: &GrantId,
        remove: &BTreeSet<CategoryId>,
        now: OffsetDateTime,
    ) -> Result<Grant, ConsentError>;

    /// Marks every active grant whose end is at or before `now` expired; returns how many.
    /// (Status checks already treat them as expired; this records it.)
    fn expire_due(&self, now: OffsetDateTime) -> Result<usize, ConsentError>;

    /// Deletes expired and revoked grants closed for at least `retention` before `now`;
    /// returns how many.
    fn purge(&self, now: OffsetDateTime, retention: Duration) -> Result<usize, ConsentError>;
}

/// A fresh random grant id: 128 bits from the system generator, as 32 hex characters.
pub fn new_grant_id() -> Result<GrantId, ConsentError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| StoreError::Backend("system random generator failed".into()))?;
    GrantId::new(super::record::hex(&bytes))
        .map_err(|_| ConsentError::Store(StoreError::Backend("grant id encoding".into())))
}

/// Newest approval first, then by id, so every store lists in the same order.
pub(crate) fn sort_newest_first(grants: &mut [Grant]) {
    grants.sort_by(|a, b| {
        b.request
            .approved_at
            .cmp(&a.request.approved_at)
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// Whether a closed grant is due for purging.
pub(crate) fn purge_due(grant: &Grant, now: OffsetDateTime, retention: Duration) -> bool {
    grant
        .closed_at(now)
        .is_some_and(|closed| closed + retention <= now)
}
