//! The patient-facing access history: which app, under which grant, read which categories of
//! her record, when, and how — the data behind a portal's "who accessed my record" page and a
//! grant's access history.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::RwLock;

use time::OffsetDateTime;

use super::chain::SealedRecord;
use super::record::{ActorRole, AuditInteraction, AuditRecord, AuditTime, EventKind, Outcome};
use super::sink::{AuditSink, SinkError};
use crate::fhir::ResourceType;
use crate::ids::{CategoryId, ClientId, GrantId, PatientId};

/// One access to a patient's data, as the patient sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// When.
    pub time: AuditTime,
    /// Which app.
    pub client: Option<ClientId>,
    /// Under which grant.
    pub grant: Option<GrantId>,
    /// Which categories were disclosed (or, for a denial, asked for).
    pub categories: BTreeSet<CategoryId>,
    /// How (read, search…).
    pub interaction: Option<AuditInteraction>,
    /// Which resource type.
    pub resource_type: Option<ResourceType>,
    /// In which capacity the person behind the app acted (the patient, a representative…).
    pub actor_role: Option<ActorRole>,
    /// How it ended.
    pub outcome: Outcome,
}

impl AccessEntry {
    fn from_record(record: &AuditRecord) -> Self {
        Self {
            time: record.time,
            client: record.client.clone(),
            grant: record.grant.clone(),
            categories: record.categories.clone(),
            interaction: record.interaction.clone(),
            resource_type: record
                .endpoint
                .as_ref()
                .and_then(|e| e.resource_type.clone()),
            actor_role: record.actor.as_ref().map(|a| a.role),
            outcome: record.outcome,
        }
    }
}

/// Which accesses to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessQuery {
    /// Whose record.
    pub patient: PatientId,
    /// Only this app.
    pub client: Option<ClientId>,
    /// Only this grant (a grant's access history).
    pub grant: Option<GrantId>,
    /// Only at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// Only before this instant.
    pub until: Option<OffsetDateTime>,
    /// Also list refused attempts (default: only accesses that disclosed data).
    pub include_denied: bool,
}

impl AccessQuery {
    /// Every successful access to `patient`'s data.
    pub fn for_patient(patient: PatientId) -> Self {
        Self {
            patient,
            client: None,
            grant: None,
            since: None,
            until: None,
            include_denied: false,
        }
    }

    /// Every successful access under `grant` to `patient`'s data.
    pub fn for_grant(patient: PatientId, grant: GrantId) -> Self {
        Self {
            grant: Some(grant),
            ..Self::for_patient(patient)
        }
    }

    /// Whether `record` is an access this query lists.
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let access = matches!(
            record.event,
            EventKind::RestAccess | EventKind::RequestDenied
        );
        let outcome_ok = match record.outcome {
            Outcome::Success => true,
            Outcome::Denied(_) => self.include_denied,
            Outcome::Error(_) => false,
        };
        access
            && outcome_ok
            && record.patient.as_ref() == Some(&self.patient)
            && self
                .client
                .as_ref()
                .is_none_or(|c| record.client.as_ref() == Some(c))
            && self
                .grant
                .as_ref()
                .is_none_or(|g| record.grant.as_ref() == Some(g))
            && self.since.is_none_or(|t| record.time.get() >= t)
            && self.until.is_none_or(|t| record.time.get() < t)
    }
}

/// The accesses `query` selects from `records`, newest first.
pub fn access_history<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
    query: &AccessQuery,
) -> Vec<AccessEntry> {
    let mut out: Vec<AccessEntry> = records
        .into_iter()
        .filter(|r| query.matches(r))
        .map(AccessEntry::from_record)
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.time));
    out
}

/// One app's accesses under one grant, summarised for a history page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAccessSummary {
    /// The app.
    pub client: Option<ClientId>,
    /// The grant.
    pub grant: Option<GrantId>,
    /// First access.
    pub first: AuditTime,
    /// Most recent access.
    pub last: AuditTime,
    /// Number of accesses.
    pub accesses: u64,
    /// Every category disclosed.
    pub categories: BTreeSet<CategoryId>,
}

/// Groups `entries` by (app, grant), most recently active first.
pub fn summarize(entries: &[AccessEntry]) -> Vec<AppAccessSummary> {
    let mut groups: BTreeMap<(Option<ClientId>, Option<GrantId>), AppAccessSummary> =
        BTreeMap::new();
    for e in entries {
        let key = (e.client.clone(), e.grant.clone());
        let summary = groups.entry(key).or_insert_with(|| AppAccessSummary {
            client: e.client.clone(),
            grant: e.grant.clone(),
            first: e.time,
            last: e.time,
            accesses: 0,
            categories: BTreeSet::new(),
        });
        summary.first = summary.first.min(e.time);
        summary.last = summary.last.max(e.time);
        summary.accesses += 1;
        summary.categories.extend(e.categories.iter().cloned());
    }
    let mut out: Vec<AppAccessSummary> = groups.into_values().collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.last));
    out
}

/// Answers access-history queries. Implemented by [`AccessIndex`]; a host with its own audit
/// store implements it over that store.
pub trait AccessHistory: Send + Sync {
    /// The accesses `query` selects, newest first.
    fn access_history(&self, query: &AccessQuery) -> Vec<AccessEntry>;
}

/// An in-memory index of accesses by patient, kept current as a sink (join it to the durable
/// sink with [`super::Tee`]) and rebuilt on start from the file log with
/// [`AccessIndex::from_records`]. A query costs O(accesses to that patient).
#[derive(Debug, Default)]
pub struct AccessIndex {
    by_patient: RwLock<HashMap<PatientId, Vec<AuditRecord>>>,
}

impl AccessIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// An index of `records` (for example [`super::read_log_dir`]'s output).
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a SealedRecord>) -> Self {
        let index = Self::new();
        for r in records {
            index.insert(r.record());
        }
        index
    }

    /// Adds one record (ignored unless it touched a patient's data).
    pub fn insert(&self, record: &AuditRecord) {
        if !matches!(
            record.event,
            EventKind::RestAccess | EventKind::RequestDenied
        ) {
            return;
        }
        if let Some(patient) = &record.patient {
            let mut map = self
                .by_patient
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            map.entry(patient.clone()).or_default().push(record.clone());
        }
    }
}

impl AuditSink for AccessIndex {
    fn append(&self, record: &SealedRecord) -> Result<(), SinkError> {
        self.insert(record.record());
        Ok(())
    }
}

impl AccessHistory for AccessIndex {
    fn access_history(&self, query: &AccessQuery) -> Vec<AccessEntry> {
        let map = self
            .by_patient
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match map.get(&query.patient) {
            Some(records) => access_history(records.iter(), query),
            None => Vec::new(),
        }
    }
}

impl AccessHistory for super::sink::MemorySink {
    fn access_history(&self, query: &AccessQuery) -> Vec<AccessEntry> {
        self.with_records(|records| access_history(records.iter().map(|r| r.record()), query))
    }
}
