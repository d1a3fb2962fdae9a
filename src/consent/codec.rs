//! Encodings shared by the SQL stores: instants as integer nanoseconds, grants and token
//! records as JSON bodies next to the indexed columns.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::ConsentError;
use super::record::Grant;
use crate::ids::{ClientId, GrantId, PatientId};
use crate::scope::ScopeSet;
use crate::token::{CodeRecord, GrantContext, RefreshFamily, RefreshLookup, StoreError, TokenHash};

pub(crate) fn backend(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("{what}: {e}"))
}

/// Unix nanoseconds (years 1677–2262).
pub(crate) fn ns(t: OffsetDateTime) -> Result<i64, StoreError> {
    i64::try_from(t.unix_timestamp_nanos())
        .map_err(|_| StoreError::Backend("instant outside the storable range".into()))
}

pub(crate) fn from_ns(v: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v))
        .map_err(|e| backend("stored instant", e))
}

pub(crate) fn grant_body(grant: &Grant) -> Result<String, ConsentError> {
    Ok(serde_json::to_string(grant).map_err(|e| backend("encode grant", e))?)
}

pub(crate) fn grant_from_body(body: &str) -> Result<Grant, ConsentError> {
    Ok(serde_json::from_str(body).map_err(|e| backend("decode grant", e))?)
}

#[derive(Serialize, Deserialize)]
struct ContextBody {
    grant_id: GrantId,
    scope: ScopeSet,
    subject: String,
    patient: Option<PatientId>,
    encounter: Option<String>,
    fhir_user: Option<String>,
    fhir_context: Vec<serde_json::Value>,
    need_patient_banner: Option<bool>,
    smart_style_url: Option<String>,
    intent: Option<String>,
    tenant: Option<String>,
}

impl ContextBody {
    fn from(c: &GrantContext) -> Self {
        Self {
            grant_id: c.grant_id.clone(),
            scope: c.scope.clone(),
            subject: c.subject.clone(),
            patient: c.patient.clone(),
            encounter: c.encounter.clone(),
            fhir_user: c.fhir_user.clone(),
            fhir_context: c.fhir_context.clone(),
            need_patient_banner: c.need_patient_banner,
            smart_style_url: c.smart_style_url.clone(),
            intent: c.intent.clone(),
            tenant: c.tenant.clone(),
        }
    }

    fn into_context(self) -> GrantContext {
        GrantContext {
            grant_id: self.grant_id,
            scope: self.scope,
            subject: self.subject,
            patient: self.patient,
            encounter: self.encounter,
            fhir_user: self.fhir_user,
            fhir_context: self.fhir_context,
            need_patient_banner: self.need_patient_banner,
            smart_style_url: self.smart_style_url,
            intent: self.intent,
            tenant: self.tenant,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct CodeBody {
    client_id: ClientId,
    redirect_uri: String,
    code_challenge: String,
    family_id: String,
    context: ContextBody,
    nonce: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    auth_time: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

pub(crate) fn code_body(r: &CodeRecord) -> Result<String, StoreError> {
    serde_json::to_string(&CodeBody {
        client_id: r.client_id.clone(),
        redirect_uri: r.redirect_uri.clone(),
        code_challenge: r.code_challenge.clone(),
        family_id: r.family_id.clone(),
        context: ContextBody::from(&r.context),
        nonce: r.nonce.clone(),
        auth_time: r.auth_time,
        expires_at: r.expires_at,
    })
    .map_err(|e| backend("encode code", e))
}

pub(crate) fn code_from_body(body: &str) -> Result<CodeRecord, StoreError> {
    let b: CodeBody = serde_json::from_str(body).map_err(|e| backend("decode code", e))?;
    Ok(CodeRecord {
        client_id: b.client_id,
        redirect_uri: b.redirect_uri,
        code_challenge: b.code_challenge,
        family_id: b.family_id,
        context: b.context.into_context(),
        nonce: b.nonce,
        auth_time: b.auth_time,
        expires_at: b.expires_at,
    })
}

#[derive(Serialize, Deserialize)]
struct FamilyBody {
    family_id: String,
    client_id: ClientId,
    context: ContextBody,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

pub(crate) fn family_body(f: &RefreshFamily) -> Result<String, StoreError> {
    serde_json::to_string(&FamilyBody {
        family_id: f.family_id.clone(),
        client_id: f.client_id.clone(),
        context: ContextBody::from(&f.context),
        expires_at: f.expires_at,
    })
    .map_err(|e| backend("encode refresh family", e))
}

pub(crate) fn family_from_body(body: &str) -> Result<RefreshFamily, StoreError> {
    let b: FamilyBody =
        serde_json::from_str(body).map_err(|e| backend("decode refresh family", e))?;
    Ok(RefreshFamily {
        family_id: b.family_id,
        client_id: b.client_id,
        context: b.context.into_context(),
        expires_at: b.expires_at,
    })
}

/// A refresh-token family row as both SQL stores select it for a presented token.
pub(crate) struct FamilyRow {
    pub(crate) family_id: String,
    pub(crate) current: Vec<u8>,
    pub(crate) revoked: bool,
    pub(crate) expires_at: i64,
    pub(crate) body: String,
}

/// What a presented refresh token is, given its family's row: the one decision both SQL
/// stores make the same way (revoked, then rotated out, then expired, else current).
pub(crate) fn classify_refresh(
    row: FamilyRow,
    presented: &TokenHash,
    now: OffsetDateTime,
) -> Result<RefreshLookup, StoreError> {
    if row.revoked {
        return Ok(RefreshLookup::Revoked);
    }
    let family = family_from_body(&row.body)?;
    if row.current.as_slice() != presented.0.as_slice() {
        return Ok(RefreshLookup::RotatedOut {
            family_id: row.family_id,
            client_id: family.client_id,
        });
    }
    if from_ns(row.expires_at)? <= now {
        return Ok(RefreshLookup::Expired);
    }
    Ok(RefreshLookup::Current(Box::new(family)))
}

/// Revoked refresh families and access-token `jti`s, in memory: the validator's revocation
/// check runs on every request and must not wait for a database.
#[derive(Debug, Default)]
pub(crate) struct RevocationCache {
    inner: RwLock<RevokedSets>,
}

#[derive(Debug, Default)]
struct RevokedSets {
    families: HashSet<String>,
    jtis: HashMap<String, OffsetDateTime>,
}

impl RevocationCache {
    pub(crate) fn add_family(&self, family: &str) {
        let mut w = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if !w.families.contains(family) {
            w.families.insert(family.to_owned());
        }
    }

    pub(crate) fn add_jti(&self, jti: &str, expires_at: OffsetDateTime) {
        let mut w = self.inner.write().unwrap_or_else(|p| p.into_inner());
        w.jtis.insert(jti.to_owned(), expires_at);
    }

    pub(crate) fn prune(&self, now: OffsetDateTime) {
        let mut w = self.inner.write().unwrap_or_else(|p| p.into_inner());
        w.jtis.retain(|_, exp| *exp > now);
    }

    pub(crate) fn is_revoked(&self, jti: &str, family: Option<&str>, now: OffsetDateTime) -> bool {
        let r = self.inner.read().unwrap_or_else(|p| p.into_inner());
        family.is_some_and(|f| r.families.contains(f))
            || r.jtis.get(jti).is_some_and(|exp| *exp > now)
    }
}
