use std::net::{IpAddr, Ipv6Addr};

use fhirguard::CategoryRegistry;
use fhirguard::consent::{Approver, ConsentStore, FhirConsentError, Grant, MemoryConsentStore};
use serde_json::{Value, json};
use time::Duration;

use super::suite::{T0, cats, request};

fn grants() -> Vec<Grant> {
    let store = MemoryConsentStore::new();
    let active = store.approve(request("355", "app-a", T0), T0).unwrap();
    let mut r = request("355", "app-b", T0)
        .with_chosen_end(T0 + Duration::days(90))
        .with_user_agent("Mozilla/5.0 (X11)")
        .with_address(IpAddr::V6(Ipv6Addr::LOCALHOST));
    r.approver = Approver::Representative {
        name: "Jane Roe".into(),
        relationship: "parent".into(),
    };
    let narrowed = store.approve(r, T0).unwrap();
    let narrowed = store
        .narrow(&narrowed.id, &cats(&["laboratory"]), T0 + Duration::days(1))
        .unwrap();
    let revoked = store.approve(request("355", "app-c", T0), T0).unwrap();
    let revoked = store
        .revoke(
            &revoked.id,
            Approver::Patient,
            "I no longer use it.\nThanks",
            T0 + Duration::days(2),
        )
        .unwrap();
    let expired = store.approve(request("355", "app-d", T0), T0).unwrap();
    store.expire_due(expired.ends_at).unwrap();
    let expired = store.grant(&expired.id).unwrap().unwrap();
    vec![active, narrowed, revoked, expired]
}

#[test]
fn consent_round_trips_exactly() {
    let registry = CategoryRegistry::default_registry();
    for grant in grants() {
        let json = grant.to_fhir_consent(&registry);
        assert_eq!(json["resourceType"], "Consent");
        assert_eq!(json["patient"]["reference"], "Patient/355");
        assert_eq!(json["provision"]["type"], "permit");
        assert_eq!(
            json["policy"][0]["uri"],
            "https://www.ecfr.gov/current/title-45/section-164.524"
        );
        let expected_status = if grant.is_active_at(T0) {
            "active"
        } else {
            "inactive"
        };
        assert_eq!(json["status"], expected_status);
        let back = Grant::from_fhir_consent(&json).unwrap();
        assert_eq!(back, grant);
        // Through text, too.
        let text = serde_json::to_string(&json).unwrap();
        let reparsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(Grant::from_fhir_consent(&reparsed).unwrap(), grant);
    }
}

#[test]
fn consent_import_refuses_bad_input_with_typed_errors() {
    let registry = CategoryRegistry::default_registry();
    let good = grants()[0].to_fhir_consent(&registry);
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        Grant::from_fhir_consent(&v)
    };
    assert_eq!(
        Grant::from_fhir_consent(&json!({"resourceType": "Patient"})),
        Err(FhirConsentError::NotConsent)
    );
    assert_eq!(
        Grant::from_fhir_consent(&json!([])),
        Err(FhirConsentError::NotConsent)
    );
    assert_eq!(
        edit(&|v| v["id"] = json!("bad id/..")),
        Err(FhirConsentError::Invalid("id"))
    );
    assert_eq!(
        edit(&|v| v["patient"] = json!({"reference": "Group/1"})),
        Err(FhirConsentError::Invalid("patient.reference"))
    );
    // A period longer than one year is refused, as on approval.
    assert_eq!(
        edit(&|v| v["provision"]["period"]["end"] = json!("2027-03-01T10:00:01Z")),
        Err(FhirConsentError::Invalid("provision.period.end"))
    );
    assert_eq!(
        edit(&|v| v["dateTime"] = json!("yesterday")),
        Err(FhirConsentError::Invalid("dateTime"))
    );
    assert_eq!(
        edit(&|v| v["provision"]["code"] = json!([])),
        Err(FhirConsentError::Invalid("provision.code"))
    );
    let many: Vec<Value> = (0..300)
        .map(|i| json!({"coding": [{"system": fhirguard::consent::CATEGORY_SYSTEM, "code": format!("c{i}")}]}))
        .collect();
    assert_eq!(
        edit(&|v| v["provision"]["code"] = json!(many)),
        Err(FhirConsentError::TooMany("provision.code"))
    );
    // A category that was never requested.
    assert_eq!(
        edit(&|v| v["provision"]["code"][0]["coding"][0]["code"] = json!("smoking-status")),
        Err(FhirConsentError::Invalid("provision.code"))
    );
    assert_eq!(
        edit(&|v| v["status"] = json!("inactive")),
        Err(FhirConsentError::Invalid("status"))
    );
    assert!(matches!(
        edit(&|v| v
            .as_object_mut()
            .unwrap()
            .remove("extension")
            .map(drop)
            .unwrap()),
        Err(FhirConsentError::Missing(_))
    ));
    assert!(matches!(
        edit(&|v| v["provision"]["actor"][0]["reference"]["display"] = json!("x".repeat(5000))),
        Err(FhirConsentError::Invalid(_))
    ));
}
