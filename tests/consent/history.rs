use std::collections::BTreeSet;

use fhirguard::audit::{
    AccessHistory, AccessIndex, AuditInteraction, AuditRecord, AuditTime, DenyReason, EventKind,
    Outcome,
};
use fhirguard::consent::{ConsentStore, MemoryConsentStore};
use fhirguard::{CategoryId, ClientId, PatientId};
use time::Duration;

use super::suite::{T0, request};

fn access(
    grant: &fhirguard::GrantId,
    minutes: i64,
    category: &str,
    outcome: Outcome,
) -> AuditRecord {
    let event = match outcome {
        Outcome::Success => EventKind::RestAccess,
        _ => EventKind::RequestDenied,
    };
    let mut r = AuditRecord::new(
        AuditTime::new(T0 + Duration::minutes(minutes)).unwrap(),
        event,
        outcome,
    );
    r.patient = Some(PatientId::new("355").unwrap());
    r.client = Some(ClientId::new("app-a").unwrap());
    r.grant = Some(grant.clone());
    r.interaction = Some(AuditInteraction::Read);
    r.categories = BTreeSet::from([CategoryId::new(category).unwrap()]);
    r
}

#[test]
fn a_grants_access_history_comes_from_the_audit_records() {
    let store = MemoryConsentStore::new();
    let g = store.approve(request("355", "app-a", T0), T0).unwrap();
    let other = store.approve(request("355", "app-a", T0), T0).unwrap();
    let index = AccessIndex::new();
    index.insert(&access(&g.id, 1, "vital-signs", Outcome::Success));
    index.insert(&access(&g.id, 2, "laboratory", Outcome::Success));
    index.insert(&access(&other.id, 3, "vital-signs", Outcome::Success));
    index.insert(&access(
        &g.id,
        4,
        "vital-signs",
        Outcome::Denied(DenyReason::GrantRevoked),
    ));
    let history = g.access_history(&index);
    assert_eq!(history.len(), 2);
    assert_eq!(
        history[0].time.get(),
        T0 + Duration::minutes(2),
        "newest first"
    );
    assert!(history.iter().all(|e| e.grant.as_ref() == Some(&g.id)));
    assert_eq!(history[0].interaction, Some(AuditInteraction::Read));
    assert_eq!(g.access_history_with_denials(&index).len(), 3);
    let summary = g.access_summary(&index).unwrap();
    assert_eq!(summary.accesses, 2);
    assert_eq!(summary.categories.len(), 2);
    let unused = store.approve(request("355", "app-b", T0), T0).unwrap();
    assert_eq!(unused.access_summary(&index), None);
    assert_eq!(index.access_history(&g.access_query()).len(), 2);
}
