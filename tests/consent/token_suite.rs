//! The token-store half of the suite, for the consent stores that are also token stores (the
//! SQL stores): codes, refresh families, the jti cache, revoked access tokens, and a grant's
//! closing taking its tokens with it.

use fhirguard::consent::{Approver, ConsentStore};
use fhirguard::scope::ScopeSet;
use fhirguard::token::{
    CodeRecord, CodeRedemption, GrantContext, RefreshFamily, RefreshLookup, TokenHash, TokenStore,
};
use fhirguard::{ClientId, GrantId, PatientId};
use time::{Duration, OffsetDateTime};

use super::suite::{T0, request};

pub fn context(grant: &GrantId) -> GrantContext {
    GrantContext {
        grant_id: grant.clone(),
        scope: "launch/patient patient/*.rs offline_access"
            .parse::<ScopeSet>()
            .unwrap(),
        subject: "user-355".into(),
        patient: Some(PatientId::new("355").unwrap()),
        encounter: None,
        fhir_user: Some("Patient/355".into()),
        fhir_context: vec![serde_json::json!({"reference": "Patient/355"})],
        need_patient_banner: Some(true),
        smart_style_url: None,
        intent: None,
        tenant: None,
    }
}

pub fn code(grant: &GrantId, family: &str, expires_at: OffsetDateTime) -> CodeRecord {
    CodeRecord {
        client_id: ClientId::new("app-a").unwrap(),
        redirect_uri: "https://app.example.org/cb".into(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        family_id: family.into(),
        context: context(grant),
        nonce: Some("n-1".into()),
        auth_time: T0,
        expires_at,
    }
}

pub fn family(grant: &GrantId, family: &str, expires_at: OffsetDateTime) -> RefreshFamily {
    RefreshFamily {
        family_id: family.into(),
        client_id: ClientId::new("app-a").unwrap(),
        context: context(grant),
        expires_at,
    }
}

/// The token-store half, and how a grant's closing takes its tokens with it.
pub fn token_suite<S: ConsentStore + TokenStore>(store: &S) {
    let now = T0;
    let grant = store.approve(request("355", "app-a", now), now).unwrap();
    let g = &grant.id;

    // Codes: single use, reuse reported with the family, expiry.
    let c1 = TokenHash::of("code-1");
    store
        .put_code(c1, code(g, "fam-1", now + Duration::seconds(60)))
        .unwrap();
    assert!(
        store
            .put_code(c1, code(g, "fam-1", now + Duration::seconds(60)))
            .is_err()
    );
    match store.redeem_code(&c1, now).unwrap() {
        CodeRedemption::Fresh(r) => assert_eq!(*r, code(g, "fam-1", now + Duration::seconds(60))),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.redeem_code(&c1, now).unwrap(),
        CodeRedemption::Reused {
            family_id: "fam-1".into()
        }
    );
    let c2 = TokenHash::of("code-2");
    store
        .put_code(c2, code(g, "fam-2", now + Duration::seconds(60)))
        .unwrap();
    assert_eq!(
        store.redeem_code(&c2, now + Duration::seconds(60)).unwrap(),
        CodeRedemption::Expired
    );
    assert_eq!(
        store.redeem_code(&TokenHash::of("nope"), now).unwrap(),
        CodeRedemption::Unknown
    );

    // Refresh families: rotation, replay, revocation.
    let r1 = TokenHash::of("refresh-1");
    let fam = family(g, "fam-1", now + Duration::days(90));
    store.put_refresh(r1, fam.clone()).unwrap();
    assert_eq!(
        store.lookup_refresh(&r1, now).unwrap(),
        RefreshLookup::Current(Box::new(fam.clone()))
    );
    let r2 = TokenHash::of("refresh-2");
    let narrower: ScopeSet = "launch/patient patient/Observation.rs offline_access"
        .parse()
        .unwrap();
    assert!(
        store
            .rotate_refresh("fam-1", &r1, r2, &narrower, now + Duration::days(91))
            .unwrap()
    );
    assert!(
        !store
            .rotate_refresh("fam-1", &r1, TokenHash::of("refresh-x"), &narrower, now)
            .unwrap(),
        "a rotated-out token cannot rotate again"
    );
    assert!(matches!(
        store.lookup_refresh(&r1, now).unwrap(),
        RefreshLookup::RotatedOut { ref family_id, .. } if family_id == "fam-1"
    ));
    match store.lookup_refresh(&r2, now).unwrap() {
        RefreshLookup::Current(f) => {
            assert_eq!(f.context.scope, narrower);
            assert_eq!(f.expires_at, now + Duration::days(91));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.lookup_refresh(&r2, now + Duration::days(91)).unwrap(),
        RefreshLookup::Expired
    );
    assert_eq!(
        store.lookup_refresh(&TokenHash::of("nope"), now).unwrap(),
        RefreshLookup::Unknown
    );
    assert!(!store.is_revoked("jti-0", Some("fam-1"), now));
    store.revoke_family("fam-1").unwrap();
    assert_eq!(
        store.lookup_refresh(&r2, now).unwrap(),
        RefreshLookup::Revoked
    );
    assert!(store.is_revoked("jti-0", Some("fam-1"), now));
    // A family revoked before it existed (code reuse) starts revoked.
    store.revoke_family("fam-early").unwrap();
    let r3 = TokenHash::of("refresh-3");
    store
        .put_refresh(r3, family(g, "fam-early", now + Duration::days(90)))
        .unwrap();
    assert_eq!(
        store.lookup_refresh(&r3, now).unwrap(),
        RefreshLookup::Revoked
    );

    // jti replay cache and revoked access tokens.
    let client = ClientId::new("app-a").unwrap();
    assert!(
        store
            .record_jti(&client, "j-1", now + Duration::minutes(5), now)
            .unwrap()
    );
    assert!(
        !store
            .record_jti(&client, "j-1", now + Duration::minutes(5), now)
            .unwrap()
    );
    let other = ClientId::new("app-b").unwrap();
    assert!(
        store
            .record_jti(&other, "j-1", now + Duration::minutes(5), now)
            .unwrap()
    );
    assert!(
        store
            .record_jti(
                &client,
                "j-1",
                now + Duration::minutes(15),
                now + Duration::minutes(5)
            )
            .unwrap()
    );
    store
        .revoke_access_token("at-1", now + Duration::minutes(10))
        .unwrap();
    assert!(store.is_revoked("at-1", None, now));
    assert!(!store.is_revoked("at-1", None, now + Duration::minutes(10)));
    assert!(!store.is_revoked("at-2", None, now));

    // Revoking the grant kills its live family and its unused codes.
    let live = store.approve(request("355", "app-a", now), now).unwrap();
    let r4 = TokenHash::of("refresh-4");
    store
        .put_refresh(r4, family(&live.id, "fam-live", now + Duration::days(90)))
        .unwrap();
    let c3 = TokenHash::of("code-3");
    store
        .put_code(
            c3,
            code(&live.id, "fam-pending", now + Duration::seconds(60)),
        )
        .unwrap();
    assert!(matches!(
        store.lookup_refresh(&r4, now).unwrap(),
        RefreshLookup::Current(_)
    ));
    store
        .revoke(&live.id, Approver::Patient, "stop", now)
        .unwrap();
    assert_eq!(
        store.lookup_refresh(&r4, now).unwrap(),
        RefreshLookup::Revoked
    );
    assert!(store.is_revoked("any-jti", Some("fam-live"), now));
    assert!(store.is_revoked("any-jti", Some("fam-pending"), now));
    assert!(!matches!(
        store.redeem_code(&c3, now).unwrap(),
        CodeRedemption::Fresh(_)
    ));
    assert!(
        !store
            .rotate_refresh("fam-live", &r4, TokenHash::of("refresh-5"), &narrower, now)
            .unwrap()
    );
}
