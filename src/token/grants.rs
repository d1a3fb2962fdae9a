//! A small in-memory [`GrantStatusSource`] for tests, examples and single-node demos.
//!
//! The consent component supplies the real implementation (kept current by its stores); this
//! one exists so the token component and its users can be exercised without it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use crate::consent::{ActiveGrant, GrantStatus, GrantStatusSource};
use crate::ids::GrantId;

#[derive(Debug)]
enum Entry {
    Granted(Arc<ActiveGrant>),
    Revoked,
}

/// Grants held in a map; `revoke` marks one revoked, `ends_at` expires it.
#[derive(Debug, Default)]
pub struct MemoryGrantStatus {
    grants: RwLock<HashMap<GrantId, Entry>>,
}

impl MemoryGrantStatus {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an active grant.
    pub fn insert(&self, grant: ActiveGrant) {
        let mut map = self.grants.write().unwrap_or_else(|p| p.into_inner());
        map.insert(grant.grant_id.clone(), Entry::Granted(Arc::new(grant)));
    }

    /// Marks a grant revoked.
    pub fn revoke(&self, grant: &GrantId) {
        let mut map = self.grants.write().unwrap_or_else(|p| p.into_inner());
        map.insert(grant.clone(), Entry::Revoked);
    }
}

impl GrantStatusSource for MemoryGrantStatus {
    fn grant_status(&self, grant: &GrantId, now: OffsetDateTime) -> GrantStatus {
        let map = self.grants.read().unwrap_or_else(|p| p.into_inner());
        match map.get(grant) {
            None => GrantStatus::Unknown,
            Some(Entry::Revoked) => GrantStatus::Revoked,
            Some(Entry::Granted(g)) if g.ends_at <= now => GrantStatus::Expired,
            Some(Entry::Granted(g)) => GrantStatus::Active(Arc::clone(g)),
        }
    }
}
