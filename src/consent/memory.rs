//! The in-memory [`ConsentStore`]: tests, examples, single-process deployments.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use time::{Duration, OffsetDateTime};

use super::cache::GrantCache;
use super::error::ConsentError;
use super::record::{Approver, Grant, RightOfAccessRequest};
use super::status::{GrantStatus, GrantStatusSource};
use super::store::{ConsentStore, new_grant_id, purge_due, sort_newest_first};
use crate::ids::{CategoryId, GrantId, PatientId};

#[derive(Debug, Default)]
struct Inner {
    grants: HashMap<GrantId, Grant>,
    by_patient: HashMap<PatientId, Vec<GrantId>>,
}

/// Grants in a map, with the same status cache the SQL stores keep.
#[derive(Debug, Default)]
pub struct MemoryConsentStore {
    inner: Mutex<Inner>,
    cache: GrantCache,
}

impl MemoryConsentStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(
        &self,
        id: &GrantId,
        change: impl FnOnce(&mut Grant) -> Result<(), ConsentError>,
    ) -> Result<Grant, ConsentError> {
        let mut inner = self.lock();
        let grant = inner
            .grants
            .get_mut(id)
            .ok_or_else(|| ConsentError::UnknownGrant(id.clone()))?;
        let mut changed = grant.clone();
        change(&mut changed)?;
        *grant = changed.clone();
        self.cache.put(&changed);
        Ok(changed)
    }
}

impl GrantStatusSource for MemoryConsentStore {
    fn grant_status(&self, grant: &GrantId, now: OffsetDateTime) -> GrantStatus {
        self.cache.grant_status(grant, now)
    }
}

impl ConsentStore for MemoryConsentStore {
    fn approve(
        &self,
        request: RightOfAccessRequest,
        now: OffsetDateTime,
    ) -> Result<Grant, ConsentError> {
        let ends_at = request.validate(now)?;
        let mut inner = self.lock();
        let mut id = new_grant_id()?;
        while inner.grants.contains_key(&id) {
            id = new_grant_id()?;
        }
        let grant = Grant::new(id.clone(), request, ends_at);
        inner
            .by_patient
            .entry(grant.request.patient.clone())
            .or_default()
            .push(id.clone());
        inner.grants.insert(id, grant.clone());
        self.cache.put(&grant);
        Ok(grant)
    }

    fn grant(&self, id: &GrantId) -> Result<Option<Grant>, ConsentError> {
        Ok(self.lock().grants.get(id).cloned())
    }

    fn connected_apps(
        &self,
        patient: &PatientId,
        now: OffsetDateTime,
    ) -> Result<Vec<Grant>, ConsentError> {
        let mut all = self.grants_of(patient)?;
        all.retain(|g| g.is_active_at(now));
        Ok(all)
    }

    fn grants_of(&self, patient: &PatientId) -> Result<Vec<Grant>, ConsentError> {
        let inner = self.lock();
        let mut out: Vec<Grant> = inner
            .by_patient
            .get(patient)
            .into_iter()
            .flatten()
            .filter_map(|id| inner.grants.get(id).cloned())
            .collect();
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
        self.update(id, |g| g.apply_revoke(by, reason, now))
    }

    fn narrow(
        &self,
        id: &GrantId,
        remove: &BTreeSet<CategoryId>,
        now: OffsetDateTime,
    ) -> Result<Grant, ConsentError> {
        self.update(id, |g| g.apply_narrow(remove, now))
    }

    fn expire_due(&self, now: OffsetDateTime) -> Result<usize, ConsentError> {
        let mut inner = self.lock();
        let mut count = 0;
        for grant in inner.grants.values_mut() {
            if grant.apply_expire(now).is_ok() {
                self.cache.put(grant);
                count += 1;
            }
        }
        Ok(count)
    }

    fn purge(&self, now: OffsetDateTime, retention: Duration) -> Result<usize, ConsentError> {
        let mut inner = self.lock();
        let due: Vec<GrantId> = inner
            .grants
            .values()
            .filter(|g| purge_due(g, now, retention))
            .map(|g| g.id.clone())
            .collect();
        for id in &due {
            if let Some(grant) = inner.grants.remove(id) {
                if let Some(list) = inner.by_patient.get_mut(&grant.request.patient) {
                    list.retain(|g| g != id);
                    if list.is_empty() {
                        inner.by_patient.remove(&grant.request.patient);
                    }
                }
            }
            self.cache.remove(id);
        }
        Ok(due.len())
    }
}
