//! Interim grant book of the demo until the consent component lands: the right-of-access
//! requests the patients approved (app, categories, end date, status) in memory, and the
//! [`MemoryGrantStatus`] the token validator and the authorization server ask on every request.
//! Revocation marks both at once, so the next FHIR call and the next refresh are refused.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use fhirguard::consent::ActiveGrant;
use fhirguard::token::MemoryGrantStatus;
use fhirguard::{CategoryId, ClientId, GrantId, PatientId};

/// One approved right-of-access request and its grant.
#[derive(Debug, Clone)]
pub(crate) struct GrantRecord {
    pub grant_id: GrantId,
    pub patient: PatientId,
    pub client_id: ClientId,
    pub categories: BTreeSet<CategoryId>,
    pub approved_at: OffsetDateTime,
    pub ends_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// Where grants live.
#[derive(Debug, Default)]
pub(crate) struct GrantBook {
    records: RwLock<Vec<GrantRecord>>,
    status: Arc<MemoryGrantStatus>,
}

impl GrantBook {
    pub(crate) fn status(&self) -> Arc<MemoryGrantStatus> {
        Arc::clone(&self.status)
    }

    /// Stores an approved grant and makes it usable at once.
    pub(crate) fn approve(&self, record: GrantRecord) {
        self.status.insert(ActiveGrant {
            grant_id: record.grant_id.clone(),
            patient: record.patient.clone(),
            client_id: record.client_id.clone(),
            categories: record.categories.clone(),
            ends_at: record.ends_at,
        });
        self.records
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }

    /// Revokes `grant` if it belongs to `patient`; `false` when there is no such grant.
    pub(crate) fn revoke(
        &self,
        patient: &PatientId,
        grant: &GrantId,
        now: OffsetDateTime,
    ) -> Option<GrantRecord> {
        let mut records = self.records.write().unwrap_or_else(|p| p.into_inner());
        let record = records
            .iter_mut()
            .find(|r| &r.grant_id == grant && &r.patient == patient)?;
        if record.revoked_at.is_none() {
            record.revoked_at = Some(now);
        }
        self.status.revoke(grant);
        Some(record.clone())
    }

    /// The patient's grants, newest first.
    pub(crate) fn for_patient(&self, patient: &PatientId) -> Vec<GrantRecord> {
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<GrantRecord> = records
            .iter()
            .filter(|r| &r.patient == patient)
            .cloned()
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.approved_at));
        out
    }
}
