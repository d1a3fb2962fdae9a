#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use ring::digest::{SHA256, digest};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::category::CategoryRegistry;
use crate::ids::{CategoryId, ClientId, GrantId, PatientId};

const T0: OffsetDateTime = datetime!(2026-03-01 10:00 UTC);

fn cats(ids: &[&str]) -> BTreeSet<CategoryId> {
    ids.iter().map(|c| CategoryId::new(*c).unwrap()).collect()
}

fn disclosure() -> Disclosure {
    Disclosure::render(
        "Springfield Clinic",
        "Research App",
        &ClientId::new("research-app").unwrap(),
        &[("Vital signs", "Blood pressure, weight, height.")],
    )
}

fn request(categories: &[&str]) -> RightOfAccessRequest {
    RightOfAccessRequest::new(
        PatientId::new("355").unwrap(),
        Approver::Patient,
        ClientId::new("research-app").unwrap(),
        "Research App",
        cats(categories),
        disclosure().reference(),
        T0,
    )
}

#[test]
fn one_year_is_a_calendar_year_and_leap_day_clamps() {
    assert_eq!(one_year_after(T0), datetime!(2027-03-01 10:00 UTC));
    assert_eq!(
        one_year_after(datetime!(2028-02-29 23:59:59 UTC)),
        datetime!(2029-02-28 23:59:59 UTC)
    );
}

#[test]
fn end_date_rules() {
    // No end chosen: one year.
    assert_eq!(
        request(&["vital-signs"]).validate(T0).unwrap(),
        datetime!(2027-03-01 10:00 UTC)
    );
    // Exactly one year is allowed.
    let exact = request(&["vital-signs"]).with_chosen_end(datetime!(2027-03-01 10:00 UTC));
    assert_eq!(exact.validate(T0).unwrap(), datetime!(2027-03-01 10:00 UTC));
    // Earlier end wins.
    let early = request(&["vital-signs"]).with_chosen_end(datetime!(2026-06-30 23:59:59 UTC));
    assert_eq!(
        early.validate(T0).unwrap(),
        datetime!(2026-06-30 23:59:59 UTC)
    );
    // One second beyond a year is refused, never shortened.
    let late = request(&["vital-signs"]).with_chosen_end(datetime!(2027-03-01 10:00:01 UTC));
    assert_eq!(
        late.validate(T0),
        Err(ConsentError::EndDateBeyondOneYear {
            chosen: datetime!(2027-03-01 10:00:01 UTC),
            latest: datetime!(2027-03-01 10:00 UTC),
        })
    );
    // An end at or before the approval is refused.
    let past = request(&["vital-signs"]).with_chosen_end(T0);
    assert_eq!(
        past.validate(T0),
        Err(ConsentError::EndDateInPast { chosen: T0 })
    );
    // Approval in the future (beyond clock skew) is refused.
    assert!(matches!(
        request(&["vital-signs"]).validate(T0 - Duration::hours(1)),
        Err(ConsentError::ApprovalInFuture { .. })
    ));
    assert_eq!(request(&[]).validate(T0), Err(ConsentError::NoCategories));
}

#[test]
fn text_fields_are_bounded() {
    let mut r = request(&["vital-signs"]);
    r.client_name = "x\u{7}".into();
    assert!(matches!(
        r.validate(T0),
        Err(ConsentError::InvalidText {
            field: "client_name",
            ..
        })
    ));
    let mut r = request(&["vital-signs"]);
    r.approver = Approver::Representative {
        name: "n".repeat(MAX_NAME_LEN + 1),
        relationship: "parent".into(),
    };
    assert!(matches!(
        r.validate(T0),
        Err(ConsentError::InvalidText {
            field: "approver.name",
            ..
        })
    ));
    let ua = "Mozilla/5.0\r\n".repeat(100);
    let r = request(&["vital-signs"]).with_user_agent(&ua);
    let kept = r.user_agent.as_deref().unwrap();
    assert!(kept.len() <= MAX_USER_AGENT_LEN && !kept.contains('\n'));
    assert!(r.validate(T0).is_ok());
    let many: Vec<String> = (0..=MAX_CATEGORIES).map(|i| format!("c{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        request(&many).validate(T0),
        Err(ConsentError::TooManyCategories {
            max: MAX_CATEGORIES
        })
    );
}

#[test]
fn unknown_categories_are_reported() {
    let registry = CategoryRegistry::default_registry();
    let first = registry.ids().next().unwrap().clone();
    let mut r = request(&["no-such-category-at-all"]);
    assert_eq!(
        r.check_categories(&registry),
        Err(ConsentError::UnknownCategory(
            CategoryId::new("no-such-category-at-all").unwrap()
        ))
    );
    r.categories = [first].into_iter().collect();
    assert!(r.check_categories(&registry).is_ok());
}

#[test]
fn disclosure_names_what_whom_and_the_legal_position() {
    let d = Disclosure::render(
        "Springfield Clinic",
        "Research\nApp: ignore the above",
        &ClientId::new("research-app").unwrap(),
        &[
            ("Vital signs", "Blood pressure, weight, height."),
            ("Smoking status", "Whether you smoke."),
        ],
    );
    assert_eq!(d.version, DISCLOSURE_VERSION);
    let t = &d.text;
    assert!(t.contains("Springfield Clinic"));
    assert!(t.contains("\"Research App: ignore the above\""), "{t}");
    assert!(t.contains("research-app"));
    assert!(t.contains("- Vital signs: Blood pressure, weight, height.\n"));
    assert!(t.contains("- Smoking status: Whether you smoke.\n"));
    assert!(t.contains("right of access"));
    assert!(t.contains("45 CFR 164.524"));
    assert!(t.contains("NOT a HIPAA authorization"));
    assert!(t.contains("Springfield Clinic is not responsible for it"));
    assert!(t.contains("never more than one year"));
    assert_eq!(d.sha256.as_slice(), digest(&SHA256, t.as_bytes()).as_ref());
    let reference = d.reference();
    assert!(d.matches(&reference));
    assert_eq!(reference.sha256_hex().len(), 64);
    // Same inputs, same text; different categories, different digest.
    assert_eq!(disclosure(), disclosure());
    assert_ne!(disclosure().sha256, d.sha256);
}

#[test]
fn disclosure_from_registry_uses_patient_labels() {
    let registry = CategoryRegistry::default_registry();
    let id = registry.ids().next().unwrap().clone();
    let (label, _) = registry.describe(&id).unwrap();
    let d = Disclosure::for_categories(
        "Clinic",
        "App",
        &ClientId::new("app").unwrap(),
        &registry,
        [&id],
    );
    assert!(d.text.contains(&format!("- {label}: ")));
}

#[test]
fn debug_output_redacts_phi() {
    let r = request(&["vital-signs"])
        .with_user_agent("SecretBrowser/1.0")
        .with_address(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
    let mut r = r;
    r.approver = Approver::Representative {
        name: "Jane Roe".into(),
        relationship: "parent".into(),
    };
    let shown = format!("{r:?}");
    assert!(!shown.contains("Jane Roe"));
    assert!(!shown.contains("SecretBrowser"));
    assert!(!shown.contains("192.0.2.7"));
    assert!(shown.contains("parent"));
}

#[test]
fn state_machine_every_transition() {
    let id = GrantId::new("g1").unwrap();
    let r = request(&["vital-signs", "smoking-status"]);
    let ends = r.validate(T0).unwrap();
    let fresh = Grant::new(id, r, ends);
    let later = T0 + Duration::days(10);

    // active → narrowed (still active)
    let mut g = fresh.clone();
    g.apply_narrow(&cats(&["smoking-status"]), later).unwrap();
    assert_eq!(g.categories, cats(&["vital-signs"]));
    assert_eq!(g.narrowings.len(), 1);
    assert_eq!(g.status_at(later), GrantState::Active);
    // narrowing the last category or one not granted is refused
    assert_eq!(
        g.apply_narrow(&cats(&["vital-signs"]), later),
        Err(ConsentError::NoCategories)
    );
    assert_eq!(
        g.apply_narrow(&cats(&["smoking-status"]), later),
        Err(ConsentError::CategoryNotGranted(
            CategoryId::new("smoking-status").unwrap()
        ))
    );
    assert_eq!(
        g.apply_narrow(&BTreeSet::new(), later),
        Err(ConsentError::NoCategories)
    );

    // active → revoked; revoked is final
    let mut g = fresh.clone();
    g.apply_revoke(Approver::Patient, "changed my mind", later)
        .unwrap();
    assert_eq!(g.status_at(later).kind(), GrantStateKind::Revoked);
    assert_eq!(g.closed_at(later), Some(later));
    for (result, to) in [
        (
            g.clone().apply_revoke(Approver::Patient, "again", later),
            Transition::Revoke,
        ),
        (
            g.clone().apply_narrow(&cats(&["vital-signs"]), later),
            Transition::Narrow,
        ),
        (g.clone().apply_expire(ends), Transition::Expire),
    ] {
        assert_eq!(
            result,
            Err(ConsentError::IllegalTransition {
                from: GrantStateKind::Revoked,
                to
            })
        );
    }

    // active → expired only once the end is reached; expired is final
    let mut g = fresh.clone();
    assert_eq!(
        g.apply_expire(ends - Duration::seconds(1)),
        Err(ConsentError::IllegalTransition {
            from: GrantStateKind::Active,
            to: Transition::Expire
        })
    );
    assert!(g.is_active_at(ends - Duration::nanoseconds(1)));
    assert!(!g.is_active_at(ends));
    assert_eq!(g.status_at(ends), GrantState::Expired);
    // A grant past its end is effectively expired even before it is marked.
    assert_eq!(
        g.clone().apply_revoke(Approver::Patient, "late", ends),
        Err(ConsentError::IllegalTransition {
            from: GrantStateKind::Expired,
            to: Transition::Revoke
        })
    );
    g.apply_expire(ends).unwrap();
    assert_eq!(g.state, GrantState::Expired);
    assert_eq!(
        g.clone().apply_expire(ends),
        Err(ConsentError::IllegalTransition {
            from: GrantStateKind::Expired,
            to: Transition::Expire
        })
    );
    assert_eq!(
        g.clone().apply_narrow(&cats(&["vital-signs"]), ends),
        Err(ConsentError::IllegalTransition {
            from: GrantStateKind::Expired,
            to: Transition::Narrow
        })
    );

    // revocation reason is bounded
    assert!(matches!(
        fresh
            .clone()
            .apply_revoke(Approver::Patient, &"r".repeat(MAX_REASON_LEN + 1), later),
        Err(ConsentError::InvalidText {
            field: "reason",
            ..
        })
    ));
}

#[test]
fn memory_store_lifecycle() {
    let store = MemoryConsentStore::new();
    let patient = PatientId::new("355").unwrap();
    let g1 = store.approve(request(&["vital-signs"]), T0).unwrap();
    assert_eq!(g1.ends_at, datetime!(2027-03-01 10:00 UTC));
    assert_eq!(g1.id.as_str().len(), 32);
    assert!(matches!(
        store.grant_status(&g1.id, T0),
        GrantStatus::Active(ref a) if a.categories == cats(&["vital-signs"])
    ));

    // Re-approval: a new grant, the old one kept.
    let mut again = request(&["vital-signs", "smoking-status"]);
    again.approved_at = T0 + Duration::days(1);
    let g2 = store.approve(again, T0 + Duration::days(1)).unwrap();
    assert_ne!(g1.id, g2.id);
    let all = store.grants_of(&patient).unwrap();
    assert_eq!(
        all.iter().map(|g| &g.id).collect::<Vec<_>>(),
        [&g2.id, &g1.id]
    );

    let now = T0 + Duration::days(2);
    let revoked = store
        .revoke(&g1.id, Approver::Patient, "replaced", now)
        .unwrap();
    assert_eq!(revoked.state.kind(), GrantStateKind::Revoked);
    assert_eq!(store.grant_status(&g1.id, now), GrantStatus::Revoked);
    assert_eq!(
        store.connected_apps(&patient, now).unwrap(),
        vec![store.grant(&g2.id).unwrap().unwrap()]
    );

    let narrowed = store
        .narrow(&g2.id, &cats(&["smoking-status"]), now)
        .unwrap();
    assert_eq!(narrowed.categories, cats(&["vital-signs"]));
    assert_eq!(
        store.grant_status(&g2.id, now).active().unwrap().categories,
        cats(&["vital-signs"])
    );

    assert!(matches!(
        store.revoke(&g1.id, Approver::Patient, "again", now),
        Err(ConsentError::IllegalTransition { .. })
    ));
    let ghost = GrantId::new("nope").unwrap();
    assert_eq!(
        store.revoke(&ghost, Approver::Patient, "x", now),
        Err(ConsentError::UnknownGrant(ghost.clone()))
    );
    assert_eq!(store.grant_status(&ghost, now), GrantStatus::Unknown);
    assert_eq!(store.grant(&ghost).unwrap(), None);

    // Expiry: reported at the end even before expire_due, then recorded.
    let end = g2.ends_at;
    assert_eq!(store.grant_status(&g2.id, end), GrantStatus::Expired);
    assert!(store.connected_apps(&patient, end).unwrap().is_empty());
    assert_eq!(store.expire_due(end - Duration::seconds(1)).unwrap(), 0);
    assert_eq!(store.expire_due(end).unwrap(), 1);
    assert_eq!(store.expire_due(end).unwrap(), 0);
    assert_eq!(
        store.grant(&g2.id).unwrap().unwrap().state,
        GrantState::Expired
    );

    // Retention: g1 closed at `now`, g2 at `end`.
    let keep = Duration::days(365 * 6);
    assert_eq!(
        store
            .purge(now + keep - Duration::seconds(1), keep)
            .unwrap(),
        0
    );
    assert_eq!(store.purge(now + keep, keep).unwrap(), 1);
    assert_eq!(store.grant(&g1.id).unwrap(), None);
    assert_eq!(store.grant_status(&g1.id, now + keep), GrantStatus::Unknown);
    assert_eq!(store.purge(end + keep, keep).unwrap(), 1);
    assert!(store.grants_of(&patient).unwrap().is_empty());
}

#[test]
fn refused_approvals_store_nothing() {
    let store = MemoryConsentStore::new();
    let late = request(&["vital-signs"]).with_chosen_end(T0 + Duration::days(400));
    assert!(matches!(
        store.approve(late, T0),
        Err(ConsentError::EndDateBeyondOneYear { .. })
    ));
    assert!(
        store
            .grants_of(&PatientId::new("355").unwrap())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn grant_serde_round_trip() {
    let store = MemoryConsentStore::new();
    let mut r = request(&["vital-signs"]).with_address(IpAddr::V4(Ipv4Addr::LOCALHOST));
    r.approver = Approver::Representative {
        name: "Jane Roe".into(),
        relationship: "parent".into(),
    };
    let g = store.approve(r, T0).unwrap();
    let g = store
        .revoke(&g.id, Approver::Patient, "done", T0 + Duration::days(1))
        .unwrap();
    let json = serde_json::to_string(&g).unwrap();
    let back: Grant = serde_json::from_str(&json).unwrap();
    assert_eq!(back, g);
}
