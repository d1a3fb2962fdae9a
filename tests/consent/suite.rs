//! The behavioural suite every [`ConsentStore`] (and every consent store that is also a
//! [`TokenStore`]) must pass.

use std::collections::BTreeSet;

use fhirguard::consent::{
    Approver, ConsentError, ConsentStore, Disclosure, GrantState, GrantStateKind, GrantStatus,
    RightOfAccessRequest, Transition,
};
use fhirguard::{CategoryId, ClientId, GrantId, PatientId};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

pub const T0: OffsetDateTime = datetime!(2026-03-01 10:00 UTC);

pub fn cats(ids: &[&str]) -> BTreeSet<CategoryId> {
    ids.iter().map(|c| CategoryId::new(*c).unwrap()).collect()
}

pub fn request(patient: &str, client: &str, at: OffsetDateTime) -> RightOfAccessRequest {
    let client_id = ClientId::new(client).unwrap();
    let disclosure = Disclosure::render(
        "Springfield Clinic",
        "Research App",
        &client_id,
        &[("Vital signs", "Blood pressure."), ("Labs", "Results.")],
    );
    RightOfAccessRequest::new(
        PatientId::new(patient).unwrap(),
        Approver::Patient,
        client_id,
        "Research App",
        cats(&["vital-signs", "laboratory"]),
        disclosure.reference(),
        at,
    )
}

/// Lifecycle, listing, state machine, expiry, retention.
pub fn consent_suite(store: &dyn ConsentStore) {
    let patient = PatientId::new("355").unwrap();

    // Refused end date: nothing stored.
    let late = request("355", "app-a", T0).with_chosen_end(T0 + Duration::days(366));
    assert!(matches!(
        store.approve(late, T0),
        Err(ConsentError::EndDateBeyondOneYear { .. })
    ));
    assert!(matches!(
        store.approve(
            request("355", "app-a", T0).with_chosen_end(T0 - Duration::days(1)),
            T0
        ),
        Err(ConsentError::EndDateInPast { .. })
    ));
    assert!(store.grants_of(&patient).unwrap().is_empty());

    // A: one year. B: a chosen end in 30 days. C: re-approval of app-a a day later.
    let a = store.approve(request("355", "app-a", T0), T0).unwrap();
    assert_eq!(a.ends_at, datetime!(2027-03-01 10:00 UTC));
    assert_eq!(store.grant(&a.id).unwrap().as_ref(), Some(&a));
    let b_end = T0 + Duration::days(30);
    let b = store
        .approve(
            request("355", "app-b", T0 + Duration::seconds(1)).with_chosen_end(b_end),
            T0 + Duration::seconds(1),
        )
        .unwrap();
    assert_eq!(b.ends_at, b_end);
    let t1 = T0 + Duration::days(1);
    let c = store.approve(request("355", "app-a", t1), t1).unwrap();
    assert_ne!(a.id, c.id, "a re-approval is a new grant");
    let ids = |v: Vec<fhirguard::consent::Grant>| v.into_iter().map(|g| g.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.grants_of(&patient).unwrap()),
        [c.id.clone(), b.id.clone(), a.id.clone()]
    );
    assert_eq!(ids(store.connected_apps(&patient, t1).unwrap()).len(), 3);
    // Another patient's grants are not listed.
    store.approve(request("85", "app-a", t1), t1).unwrap();
    assert_eq!(store.grants_of(&patient).unwrap().len(), 3);

    // Narrowing B takes effect on the status at once.
    let t2 = T0 + Duration::days(2);
    let nb = store.narrow(&b.id, &cats(&["laboratory"]), t2).unwrap();
    assert_eq!(nb.categories, cats(&["vital-signs"]));
    assert_eq!(nb.request.categories, cats(&["vital-signs", "laboratory"]));
    match store.grant_status(&b.id, t2) {
        GrantStatus::Active(g) => assert_eq!(g.categories, cats(&["vital-signs"])),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.narrow(&b.id, &cats(&["vital-signs"]), t2),
        Err(ConsentError::NoCategories)
    );

    // Revoking A: final.
    let ra = store
        .revoke(&a.id, Approver::Patient, "replaced by a new approval", t2)
        .unwrap();
    assert!(matches!(ra.state, GrantState::Revoked { at, .. } if at == t2));
    assert_eq!(store.grant_status(&a.id, t2), GrantStatus::Revoked);
    assert_eq!(store.grant(&a.id).unwrap().unwrap(), ra);
    assert_eq!(
        store.revoke(&a.id, Approver::Patient, "again", t2),
        Err(ConsentError::IllegalTransition {
            from: GrantStateKind::Revoked,
            to: Transition::Revoke
        })
    );
    assert_eq!(
        store.narrow(&a.id, &cats(&["laboratory"]), t2),
        Err(ConsentError::IllegalTransition {
            from: GrantStateKind::Revoked,
            to: Transition::Narrow
        })
    );
    assert_eq!(
        ids(store.connected_apps(&patient, t2).unwrap()),
        [c.id.clone(), b.id.clone()]
    );
    // A representative may revoke.
    let rep = Approver::Representative {
        name: "Jane Roe".into(),
        relationship: "parent".into(),
    };
    let d = store.approve(request("355", "app-d", t2), t2).unwrap();
    let rd = store.revoke(&d.id, rep.clone(), "", t2).unwrap();
    assert!(matches!(rd.state, GrantState::Revoked { ref by, .. } if *by == rep));

    // B expires at its end, before any job ran.
    assert!(matches!(
        store.grant_status(&b.id, b_end - Duration::nanoseconds(1)),
        GrantStatus::Active(_)
    ));
    assert_eq!(store.grant_status(&b.id, b_end), GrantStatus::Expired);
    assert_eq!(
        store.revoke(&b.id, Approver::Patient, "late", b_end),
        Err(ConsentError::IllegalTransition {
            from: GrantStateKind::Expired,
            to: Transition::Revoke
        })
    );
    assert_eq!(store.expire_due(b_end).unwrap(), 1);
    assert_eq!(store.expire_due(b_end).unwrap(), 0);
    assert_eq!(
        store.grant(&b.id).unwrap().unwrap().state,
        GrantState::Expired
    );
    assert_eq!(store.grant_status(&b.id, b_end), GrantStatus::Expired);

    // C expires exactly one year after its approval.
    let c_end = datetime!(2027-03-02 10:00 UTC);
    assert!(
        store
            .grant_status(&c.id, c_end - Duration::nanoseconds(1))
            .active()
            .is_some()
    );
    assert_eq!(store.grant_status(&c.id, c_end), GrantStatus::Expired);
    assert!(store.connected_apps(&patient, c_end).unwrap().is_empty());

    // Unknown grants.
    let ghost = GrantId::new("ghost").unwrap();
    assert_eq!(store.grant_status(&ghost, t2), GrantStatus::Unknown);
    assert_eq!(store.grant(&ghost).unwrap(), None);
    assert_eq!(
        store.revoke(&ghost, Approver::Patient, "x", t2),
        Err(ConsentError::UnknownGrant(ghost.clone()))
    );

    // Retention: six years after closing, counted from revocation or end.
    let keep = Duration::days(6 * 365);
    assert_eq!(
        store.purge(t2 + keep - Duration::seconds(1), keep).unwrap(),
        0
    );
    assert_eq!(store.purge(t2 + keep, keep).unwrap(), 2, "A and D");
    assert_eq!(store.grant(&a.id).unwrap(), None);
    assert_eq!(store.grant_status(&a.id, t2 + keep), GrantStatus::Unknown);
    assert_eq!(store.purge(b_end + keep, keep).unwrap(), 1, "B");
    assert_eq!(
        store.purge(c_end + keep, keep).unwrap(),
        2,
        "C and patient 85's"
    );
    assert!(store.grants_of(&patient).unwrap().is_empty());
}
