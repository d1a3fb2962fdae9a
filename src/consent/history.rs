//! A grant's access history, built on the audit component's history queries (it is not kept
//! twice): the accesses recorded under the grant's id, for its patient, newest first.

use super::record::Grant;
use crate::audit::{AccessEntry, AccessHistory, AccessQuery, AppAccessSummary, summarize};

impl Grant {
    /// The accesses made under this grant — when, which categories, which interaction —
    /// newest first, as `history` (an [`crate::audit::AccessIndex`], a `MemorySink`, or the
    /// host's own audit store) records them.
    pub fn access_history(&self, history: &dyn AccessHistory) -> Vec<AccessEntry> {
        history.access_history(&self.access_query())
    }

    /// Like [`Grant::access_history`], also listing refused attempts made under the grant.
    pub fn access_history_with_denials(&self, history: &dyn AccessHistory) -> Vec<AccessEntry> {
        let mut query = self.access_query();
        query.include_denied = true;
        history.access_history(&query)
    }

    /// The grant's accesses summarised (first, last, count, categories disclosed), or `None`
    /// when the app never used it.
    pub fn access_summary(&self, history: &dyn AccessHistory) -> Option<AppAccessSummary> {
        summarize(&self.access_history(history)).into_iter().next()
    }

    /// The audit query selecting this grant's accesses.
    pub fn access_query(&self) -> AccessQuery {
        AccessQuery::for_grant(self.request.patient.clone(), self.id.clone())
    }
}
