//! The in-memory grant-status cache every store keeps warm, so that the request path's check
//! is a hash lookup under a read lock, with no I/O.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use super::record::{Grant, GrantState};
use super::status::{ActiveGrant, GrantStatus, GrantStatusSource};
use crate::ids::GrantId;

#[derive(Debug, Clone)]
enum Entry {
    Active(Arc<ActiveGrant>),
    Expired,
    Revoked,
}

/// Grant id → status, answered in O(1) from memory. Stores update it after every committed
/// write (and, for the PostgreSQL store, on every notification from another node). A host
/// writing its own [`ConsentStore`](super::ConsentStore) can reuse it.
#[derive(Debug, Default)]
pub struct GrantCache {
    map: RwLock<HashMap<GrantId, Entry>>,
}

impl GrantCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(grant: &Grant) -> Entry {
        match &grant.state {
            GrantState::Active => Entry::Active(Arc::new(grant.to_active())),
            GrantState::Expired => Entry::Expired,
            GrantState::Revoked { .. } => Entry::Revoked,
        }
    }

    /// Records `grant`'s current state.
    pub fn put(&self, grant: &Grant) {
        let entry = Self::entry(grant);
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.insert(grant.id.clone(), entry);
    }

    /// Forgets a grant (purged).
    pub fn remove(&self, id: &GrantId) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.remove(id);
    }

    /// Replaces the whole content by `grants` (a store's start-up load or resynchronisation).
    pub fn replace_all<'a>(&self, grants: impl IntoIterator<Item = &'a Grant>) {
        let fresh: HashMap<GrantId, Entry> = grants
            .into_iter()
            .map(|g| (g.id.clone(), Self::entry(g)))
            .collect();
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        *map = fresh;
    }

    /// Number of grants cached.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl GrantStatusSource for GrantCache {
    fn grant_status(&self, grant: &GrantId, now: OffsetDateTime) -> GrantStatus {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        match map.get(grant) {
            None => GrantStatus::Unknown,
            Some(Entry::Revoked) => GrantStatus::Revoked,
            Some(Entry::Expired) => GrantStatus::Expired,
            Some(Entry::Active(g)) if g.ends_at <= now => GrantStatus::Expired,
            Some(Entry::Active(g)) => GrantStatus::Active(Arc::clone(g)),
        }
    }
}
