use serde_json::json;

use super::*;
use crate::enforce::{Permissions, ResourceGrant, ScopeContext};
use crate::ids::CategoryId;

fn id(s: &str) -> CategoryId {
    CategoryId::new(s).unwrap()
}

fn ids(c: &Classification) -> Vec<&str> {
    c.categories().iter().map(CategoryId::as_str).collect()
}

fn obs(category: (&str, &str), code: (&str, &str)) -> serde_json::Value {
    json!({
        "resourceType": "Observation",
        "category": [{"coding": [{"system": category.0, "code": category.1}]}],
        "code": {"coding": [{"system": code.0, "code": code.1}]}
    })
}

#[test]
fn shipped_registry_is_valid() {
    let reg = CategoryRegistry::from_json(CategoryRegistry::default_json()).unwrap();
    assert_eq!(reg.version(), "2026.12.1");
    for required in [
        "demographics",
        "smoking-status",
        "problems",
        "health-concerns",
        "encounter-diagnoses",
        "medications",
        "allergies",
        "laboratory",
        "vital-signs",
        "procedures",
        "care-team",
        "immunizations",
        "implantable-devices",
        "assessment-and-plan",
        "goals",
        "clinical-notes",
        "social-history",
        "encounters",
        "provenance",
        "care-providers",
        "specimens",
        "orders",
        "related-people",
        "insurance",
    ] {
        let c = reg
            .get(&id(required))
            .unwrap_or_else(|| panic!("{required} missing"));
        assert!(
            !c.label.is_empty() && c.description.len() > 20,
            "{required} needs plain words"
        );
        assert!(!c.scopes.is_empty(), "{required} needs scopes");
    }
}

#[test]
fn smoking_status_by_code_even_without_category() {
    let reg = CategoryRegistry::default_registry();
    let r4 = obs(
        (
            "http://terminology.hl7.org/CodeSystem/observation-category",
            "social-history",
        ),
        ("http://loinc.org", "72166-2"),
    );
    assert_eq!(
        ids(&reg.classify(&r4).unwrap()),
        ["smoking-status", "social-history"]
    );
    // Old Synthea: smoking coded under `survey`; US Core 7 codes.
    for (system, code) in [
        ("http://loinc.org", "72166-2"),
        ("http://loinc.org", "11367-0"),
        ("http://snomed.info/sct", "401201003"),
        ("http://snomed.info/sct", "782516008"),
    ] {
        let r = obs(
            (
                "http://terminology.hl7.org/CodeSystem/observation-category",
                "survey",
            ),
            (system, code),
        );
        assert_eq!(ids(&reg.classify(&r).unwrap()), ["smoking-status"]);
    }
}

#[test]
fn dstu2_systems_and_known_typos_are_recognised() {
    let reg = CategoryRegistry::default_registry();
    let loinc = ("http://loinc.org", "8867-4");
    for system in [
        "http://terminology.hl7.org/CodeSystem/observation-category",
        "http://hl7.org/fhir/observation-category",
        "http://terminology.hl7.org//CodeSystem-observation-category",
        "http://terminology.hl7.org/3.1.0/CodeSystem-observation-category.html",
        " http://terminology.hl7.org/CodeSystem/observation-category/ ",
    ] {
        let r = obs((system, "vital-signs"), loinc);
        assert_eq!(ids(&reg.classify(&r).unwrap()), ["vital-signs"], "{system}");
    }
    let dr = json!({"resourceType": "DiagnosticReport",
        "category": {"coding": [{"system": "http://hl7.org/fhir/v2/0074", "code": "LAB"}]}});
    assert_eq!(ids(&reg.classify(&dr).unwrap()), ["laboratory"]);
    let careteam = json!({"resourceType": "CarePlan",
        "category": [{"coding": [{"system": "http://argonaut.hl7.org", "code": "careteam"}]}]});
    assert_eq!(ids(&reg.classify(&careteam).unwrap()), ["care-team"]);
    let concern = json!({"resourceType": "Condition",
        "category": {"coding": [{"system": "http://argonaut.hl7.org", "code": "additional-concern"}]}});
    assert_eq!(ids(&reg.classify(&concern).unwrap()), ["health-concerns"]);
}

#[test]
fn uncategorised_buckets_and_supporting_types() {
    let reg = CategoryRegistry::default_registry();
    let cond = json!({"resourceType": "Condition"});
    assert_eq!(ids(&reg.classify(&cond).unwrap()), ["other-condition"]);
    let media = json!({"resourceType": "Media"});
    assert_eq!(ids(&reg.classify(&media).unwrap()), ["other-media"]);
    let (label, _) = reg.describe(&id("other-media")).unwrap();
    assert_eq!(label, "Other records (media)");
    for (ty, category) in [
        ("Coverage", "insurance"),
        ("ServiceRequest", "orders"),
        ("Specimen", "specimens"),
        ("RelatedPerson", "related-people"),
        ("Encounter", "encounters"),
        ("Provenance", "provenance"),
    ] {
        let r = json!({ "resourceType": ty });
        assert_eq!(ids(&reg.classify(&r).unwrap()), [category], "{ty}");
    }
    for ty in [
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "Location",
    ] {
        let c = reg.classify(&json!({ "resourceType": ty })).unwrap();
        assert!(
            matches!(c.membership, Membership::Supporting(ref s) if s.with == ["care-providers"] && !s.compartment),
            "{ty}"
        );
    }
    // No supporting type is granted with just any category any more.
    let (supporting, _) = reg.supporting();
    assert!(supporting.iter().all(|s| !s.with.iter().any(|w| w == "*")));
    let med = reg
        .classify(&json!({"resourceType": "Medication"}))
        .unwrap();
    assert!(matches!(med.membership, Membership::Supporting(ref s) if s.with == ["medications"]));
}

#[test]
fn bytes_and_value_agree() {
    let reg = CategoryRegistry::default_registry();
    let r = obs(
        (
            "http://terminology.hl7.org/CodeSystem/observation-category",
            "laboratory",
        ),
        ("http://loinc.org", "2339-0"),
    );
    let bytes = serde_json::to_vec(&r).unwrap();
    assert_eq!(
        reg.classify_bytes(&bytes).unwrap(),
        reg.classify(&r).unwrap()
    );
    assert_eq!(reg.classify_bytes(b"[1]"), Err(ClassifyError::NotJson));
    assert_eq!(
        reg.classify_bytes(b"{\"a\":1}"),
        Err(ClassifyError::NoResourceType)
    );
    assert_eq!(
        reg.classify_bytes(b"{\"resourceType\":\"Goal\"} x"),
        Err(ClassifyError::NotJson)
    );
    // A document naming its type (or a coded element the rules read) twice is refused: a
    // reader of the whole document could believe either copy.
    assert_eq!(
        reg.classify_bytes(b"{\"resourceType\":\"Goal\",\"resourceType\":\"Observation\"}"),
        Err(ClassifyError::NotJson)
    );
    let twice = br#"{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"2339-0"}]},"code":{}}"#;
    assert_eq!(reg.classify_bytes(twice), Err(ClassifyError::NotJson));
}

#[test]
fn host_registries_are_validated() {
    let base: serde_json::Value = serde_json::from_str(CategoryRegistry::default_json()).unwrap();
    let mut typo = base.clone();
    typo["categories"][0]["rulez"] = json!([]);
    assert!(matches!(
        CategoryRegistry::from_json(&typo.to_string()),
        Err(RegistryError::Parse(_))
    ));
    let mut dup = base.clone();
    dup["categories"][1]["id"] = json!("demographics");
    assert!(matches!(
        CategoryRegistry::from_json(&dup.to_string()),
        Err(RegistryError::DuplicateCategory { .. })
    ));
    let mut bad = base.clone();
    bad["format"] = json!("v0");
    assert!(matches!(
        CategoryRegistry::from_json(&bad.to_string()),
        Err(RegistryError::UnsupportedFormat { .. })
    ));
    let mut unknown = base.clone();
    unknown["withheld"]["elements"][0]["with"] = json!(["no-such-category"]);
    assert!(matches!(
        CategoryRegistry::from_json(&unknown.to_string()),
        Err(RegistryError::UnknownCategory { .. })
    ));
    let mut no_element = base.clone();
    no_element["withheld"]["elements"][0]["element"] = json!("");
    assert!(matches!(
        CategoryRegistry::from_json(&no_element.to_string()),
        Err(RegistryError::BadWithheld { .. })
    ));
    let mut no_code = base.clone();
    no_code["withheld"]["elements"][1]["identifierTypes"] = json!(["http://x|"]);
    assert!(matches!(
        CategoryRegistry::from_json(&no_code.to_string()),
        Err(RegistryError::BadWithheld { .. })
    ));
    // The section is optional: a host registry without it withholds nothing.
    let mut without = base.clone();
    without.as_object_mut().unwrap().remove("withheld");
    assert!(
        CategoryRegistry::from_json(&without.to_string())
            .unwrap()
            .withheld()
            .is_empty()
    );
    assert_eq!(CategoryRegistry::default_registry().withheld().len(), 11);
    let mut conflict = base;
    conflict["supporting"]["types"][0]["resourceType"] = json!("Observation");
    assert!(matches!(
        CategoryRegistry::from_json(&conflict.to_string()),
        Err(RegistryError::SupportingConflict { .. })
    ));
}

#[test]
fn categories_to_scopes_and_back() {
    let reg = CategoryRegistry::default_registry();
    let chosen = [id("vital-signs"), id("laboratory")];
    let scopes = reg.scopes_for(&chosen, ScopeContext::Patient);
    let text: Vec<String> = scopes.iter().map(ToString::to_string).collect();
    assert!(text.contains(&"patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs".to_owned()));
    assert!(text.contains(&"patient/DiagnosticReport.rs?category=http://terminology.hl7.org/CodeSystem/v2-0074|LAB".to_owned()));
    assert!(!text.iter().any(|s| s.starts_with("patient/Medication.")));
    // Labs and vitals alone reach no visit, record history, person or place (F8).
    for ty in [
        "Encounter",
        "Provenance",
        "Location",
        "Practitioner",
        "PractitionerRole",
        "Organization",
    ] {
        assert!(
            !scopes.iter().any(|g| g.names_type(ty)),
            "{ty} granted with labs: {text:?}"
        );
    }
    let back = reg.categories_for(&scopes);
    assert_eq!(
        back.into_iter().collect::<Vec<_>>(),
        chosen.iter().rev().cloned().collect::<Vec<_>>()
    );

    // A whole-type scope expresses every category and bucket of that type.
    let obs_all = ResourceGrant::new(
        ScopeContext::Patient,
        crate::fhir::ResourceType::new("Observation").unwrap(),
        Permissions::READ_SEARCH,
    );
    let all = reg.categories_for(&[obs_all]);
    for c in [
        "vital-signs",
        "smoking-status",
        "social-history",
        "other-observation",
    ] {
        assert!(all.contains(&id(c)), "{c}");
    }
    // Lab results also need the DiagnosticReport scope.
    assert!(!all.contains(&id("laboratory")));
    assert!(!all.contains(&id("clinical-notes")));

    // The typo'd social-history system in a granted scope still maps back.
    let typo = ResourceGrant::new(
        ScopeContext::Patient,
        crate::fhir::ResourceType::new("Observation").unwrap(),
        Permissions::READ_SEARCH,
    )
    .with_constraint(
        "category",
        "http://terminology.hl7.org//CodeSystem-observation-category|social-history",
    );
    assert_eq!(
        reg.categories_for(&[typo]).into_iter().collect::<Vec<_>>(),
        [id("social-history")]
    );
}

#[test]
fn care_providers_unlock_people_and_places_only() {
    let reg = CategoryRegistry::default_registry();
    let scopes = reg.scopes_for(&[id("care-providers")], ScopeContext::Patient);
    let text: Vec<String> = scopes.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "patient/Practitioner.rs",
            "patient/PractitionerRole.rs",
            "patient/Organization.rs",
            "patient/Location.rs"
        ]
    );
    assert_eq!(
        reg.categories_for(&scopes).into_iter().collect::<Vec<_>>(),
        [id("care-providers")]
    );
    let visits = reg.scopes_for(&[id("encounters")], ScopeContext::Patient);
    let text: Vec<String> = visits.iter().map(ToString::to_string).collect();
    assert_eq!(text, ["patient/Encounter.rs"]);
}

#[test]
fn a_category_without_rules_must_unlock_a_supporting_type() {
    let base: serde_json::Value = serde_json::from_str(CategoryRegistry::default_json()).unwrap();
    let mut orphan = base.clone();
    orphan["categories"][0]["rules"] = json!([]);
    assert!(matches!(
        CategoryRegistry::from_json(&orphan.to_string()),
        Err(RegistryError::NoRules { ref id }) if id == "demographics"
    ));
    // care-providers has no rules but the supporting types name it; without them it is refused.
    let mut unused = base;
    unused["supporting"]["types"] = json!([]);
    assert!(matches!(
        CategoryRegistry::from_json(&unused.to_string()),
        Err(RegistryError::NoRules { ref id }) if id == "care-providers"
    ));
}

#[test]
fn reachable_categories_follow_the_requested_scopes() {
    let reg = CategoryRegistry::default_registry();
    let t = |n: &str| crate::fhir::ResourceType::new(n).unwrap();
    // Only Observation: every Observation category is reachable, nothing else.
    let obs = ResourceGrant::new(
        ScopeContext::Patient,
        t("Observation"),
        Permissions::READ_SEARCH,
    );
    let reach = reg.reachable_categories(std::slice::from_ref(&obs));
    for c in [
        "vital-signs",
        "laboratory",
        "smoking-status",
        "social-history",
        "other-observation",
    ] {
        assert!(reach.contains(&id(c)), "{c}");
    }
    for c in [
        "medications",
        "allergies",
        "encounters",
        "care-providers",
        "clinical-notes",
    ] {
        assert!(!reach.contains(&id(c)), "{c}");
    }
    // Lab results are reachable but not fully expressed by Observation alone.
    assert!(!reg.categories_for(&[obs]).contains(&id("laboratory")));
    // A granular request reaches its category only; a bucket needs the whole type.
    let labs = ResourceGrant::new(
        ScopeContext::Patient,
        t("Observation"),
        Permissions::READ_SEARCH,
    )
    .with_constraint(
        "category",
        "http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
    );
    assert_eq!(
        reg.reachable_categories(&[labs])
            .into_iter()
            .collect::<Vec<_>>(),
        [id("laboratory")]
    );
    // Read without search still discloses by id; search alone reaches nothing; the wildcard
    // reaches everything.
    let search_only = ResourceGrant::new(
        ScopeContext::Patient,
        t("Observation"),
        Permissions {
            search: true,
            ..Permissions::default()
        },
    );
    assert!(reg.reachable_categories(&[search_only]).is_empty());
    let read_only = ResourceGrant::new(
        ScopeContext::Patient,
        t("Observation"),
        Permissions {
            read: true,
            ..Permissions::default()
        },
    );
    assert!(
        reg.reachable_categories(&[read_only])
            .contains(&id("vital-signs"))
    );
    let all = ResourceGrant::wildcard(ScopeContext::Patient, Permissions::READ_SEARCH);
    assert_eq!(
        reg.reachable_categories(&[all]).len(),
        reg.categories().len()
    );
}
