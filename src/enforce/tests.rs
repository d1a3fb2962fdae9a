use serde_json::json;

use super::*;
use crate::category::CategoryRegistry;
use crate::fhir::{FhirRequest, Interaction, ResourceType, SearchParam};
use crate::ids::{CategoryId, PatientId};

fn t(s: &str) -> ResourceType {
    ResourceType::new(s).unwrap()
}

fn cats(list: &[&str]) -> Vec<CategoryId> {
    list.iter().map(|c| CategoryId::new(*c).unwrap()).collect()
}

fn patient_all() -> Vec<ResourceGrant> {
    vec![ResourceGrant::wildcard(
        ScopeContext::Patient,
        Permissions::READ_SEARCH,
    )]
}

fn search(ty: &str, params: &[(&str, Option<&str>, &str)]) -> FhirRequest {
    let mut r = FhirRequest::new(Interaction::SearchType);
    r.resource_type = Some(t(ty));
    r.params = params
        .iter()
        .map(|(n, m, v)| SearchParam {
            name: (*n).to_owned(),
            modifier: m.map(str::to_owned),
            values: v.split(',').map(str::to_owned).collect(),
        })
        .collect();
    r
}

fn vital(subject: &str) -> serde_json::Value {
    json!({"resourceType": "Observation", "id": "v1",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "subject": {"reference": subject}})
}

#[test]
fn read_checks_compartment_through_references() {
    let reg = CategoryRegistry::default_registry();
    let e = Enforcer::new(
        &reg,
        patient_all(),
        PatientId::new("355").ok(),
        cats(&["vital-signs"]),
        EnforceConfig::default(),
    );
    assert!(e.check_resource(&vital("Patient/355")).is_ok());
    assert!(
        e.check_resource(&vital("https://ehr.example/fhir/Patient/355/_history/2"))
            .is_ok()
    );
    assert_eq!(
        e.check_resource(&vital("Patient/85")),
        Err(DenyReason::OutsideCompartment)
    );
    assert_eq!(
        e.check_resource(&vital("Patient/3555")),
        Err(DenyReason::OutsideCompartment)
    );
    assert_eq!(
        e.check_resource(&json!({"resourceType": "Observation", "id": "x"})),
        Err(DenyReason::OutsideCompartment)
    );
    let wire = e.wire_outcome(&DenyReason::OutsideCompartment);
    assert_eq!(wire, e.missing_outcome());
    assert_eq!(wire.status, http::StatusCode::NOT_FOUND);
}

#[test]
fn a_confined_enforcer_treats_user_and_system_scopes_as_the_patients() {
    let reg = CategoryRegistry::default_registry();
    for context in [ScopeContext::User, ScopeContext::System] {
        let grants = vec![ResourceGrant::wildcard(context, Permissions::READ_SEARCH)];
        let open = Enforcer::new(
            &reg,
            grants.clone(),
            PatientId::new("355").ok(),
            cats(&["vital-signs"]),
            EnforceConfig::default(),
        );
        // Unconfined, `user/` and `system/` leave the compartment to the host's own policy.
        assert!(open.check_resource(&vital("Patient/85")).is_ok());
        let confined = open.confined_to_patient();
        assert!(confined.check_resource(&vital("Patient/355")).is_ok());
        assert_eq!(
            confined.check_resource(&vital("Patient/85")),
            Err(DenyReason::OutsideCompartment)
        );
        match confined.decide(&search("Observation", &[])) {
            Decision::Narrow { add, .. } => {
                assert!(add.iter().any(|p| p.name == "patient"), "{add:?}")
            }
            other => panic!("{other:?}"),
        }
        // Confined without a patient in context, nothing compartment-bound is readable.
        let nobody = Enforcer::new(
            &reg,
            grants,
            None,
            cats(&["vital-signs"]),
            EnforceConfig::default(),
        )
        .confined_to_patient();
        assert_eq!(
            nobody.decide(&search("Observation", &[])),
            Decision::Deny(DenyReason::NoPatientContext)
        );
    }
}

#[test]
fn read_of_another_patient_is_refused_before_execution() {
    let reg = CategoryRegistry::default_registry();
    let e = Enforcer::new(
        &reg,
        patient_all(),
        PatientId::new("355").ok(),
        cats(&["demographics"]),
        EnforceConfig::default(),
    );
    let mut r = FhirRequest::new(Interaction::Read);
    r.resource_type = Some(t("Patient"));
    r.id = Some("85".into());
    assert_eq!(e.decide(&r), Decision::Deny(DenyReason::OtherPatientRecord));
    // Shown as missing, whatever exists: the same answer as an id no patient has.
    assert!(DenyReason::OtherPatientRecord.depends_on_data());
    r.id = Some("355".into());
    assert_eq!(
        e.decide(&r),
        Decision::Allow {
            response: ResponseCheck::Resource
        }
    );
}

#[test]
fn search_is_narrowed_to_patient_and_exact_categories() {
    let reg = CategoryRegistry::default_registry();
    let e = Enforcer::new(
        &reg,
        patient_all(),
        PatientId::new("355").ok(),
        cats(&["vital-signs", "laboratory"]),
        EnforceConfig::default(),
    );
    let Decision::Narrow { add, .. } = e.decide(&search("Observation", &[])) else {
        panic!("expected narrowing")
    };
    assert_eq!(add[0].name, "patient");
    assert_eq!(add[0].values, ["Patient/355"]);
    assert_eq!(add[1].name, "category");
    assert!(add[1].values.contains(
        &"http://terminology.hl7.org/CodeSystem/observation-category|vital-signs".to_owned()
    ));
    assert!(add[1].values.contains(
        &"http://terminology.hl7.org//CodeSystem-observation-category|laboratory".to_owned()
    ));
    assert!(!add[1].values.iter().any(|v| v.ends_with("social-history")));

    // Smoking is by code, labs by category: no single parameter, so only the patient.
    let e2 = Enforcer::new(
        &reg,
        patient_all(),
        PatientId::new("355").ok(),
        cats(&["smoking-status", "laboratory"]),
        EnforceConfig::default(),
    );
    let Decision::Narrow { add, .. } = e2.decide(&search("Observation", &[])) else {
        panic!()
    };
    assert_eq!(add.len(), 1);
    // No Condition category granted: the search runs (only the compartment added) and the
    // filter empties it; includes visible on their own still come back.
    let Decision::Narrow { add, .. } = e2.decide(&search("Condition", &[])) else {
        panic!()
    };
    assert_eq!(add.len(), 1);
    assert_eq!(add[0].name, "patient");
}

#[test]
fn probing_parameters_are_refused() {
    let reg = CategoryRegistry::default_registry();
    let e = Enforcer::new(
        &reg,
        patient_all(),
        PatientId::new("355").ok(),
        cats(&["vital-signs", "demographics"]),
        EnforceConfig::default(),
    );
    let deny = |r: &FhirRequest| e.decide(r).deny_reason().cloned();
    assert_eq!(
        deny(&search("Observation", &[("patient", None, "85")])),
        Some(DenyReason::OtherPatient)
    );
    assert_eq!(
        deny(&search("Observation", &[("subject", None, "Patient/85")])),
        Some(DenyReason::OtherPatient)
    );
    assert_eq!(
        deny(&search("Patient", &[("_id", None, "355,85")])),
        Some(DenyReason::OtherPatient)
    );
    assert!(matches!(
        deny(&search(
            "Patient",
            &[("_has:Observation:patient:code", None, "72166-2")]
        )),
        Some(DenyReason::ReverseChain { .. })
    ));
    assert!(
        deny(&search(
            "Observation",
            &[("subject:Patient.name", None, "Smith")]
        ))
        .is_none()
    );
    assert!(matches!(
        deny(&search("Observation", &[("subject.name", None, "Smith")])),
        Some(DenyReason::Chain { .. })
    ));
    assert!(matches!(
        deny(&search(
            "Observation",
            &[("patient.general-practitioner.name", None, "x")]
        )),
        Some(DenyReason::Chain { .. })
    ));
    assert!(matches!(
        deny(&search("Observation", &[("_elements", None, "id")])),
        Some(DenyReason::UnsupportedParameter { .. })
    ));
    assert!(matches!(
        deny(&search("Observation", &[("_summary", None, "count")])),
        Some(DenyReason::UnsupportedParameter { .. })
    ));
    assert!(
        deny(&search(
            "Observation",
            &[("_summary", None, "false"), ("_id", None, "a,b")]
        ))
        .is_none()
    );
    // Reads too: a subset of the resource could not be classified by the response check.
    let read = |params: &[(&str, Option<&str>, &str)]| {
        let mut r = search("Observation", params);
        r.interaction = Interaction::Read;
        r.id = Some("v1".into());
        deny(&r)
    };
    assert!(matches!(
        read(&[("_summary", None, "true")]),
        Some(DenyReason::UnsupportedParameter { .. })
    ));
    assert!(matches!(
        read(&[("_elements", None, "code")]),
        Some(DenyReason::UnsupportedParameter { .. })
    ));
    assert!(read(&[("_summary", None, "false")]).is_none());
    assert!(read(&[]).is_none());
    // Shown as FHIR's strict handling of an unsupported parameter, as the guard shows it.
    let wire = e.wire_outcome(&DenyReason::UnsupportedParameter {
        name: "_elements".into(),
    });
    assert_eq!(wire.status, http::StatusCode::BAD_REQUEST);
    assert_eq!(wire.body["issue"][0]["code"], "not-supported");
    // Without demographics, a chain into Patient is refused.
    let e2 = Enforcer::new(
        &reg,
        patient_all(),
        PatientId::new("355").ok(),
        cats(&["vital-signs"]),
        EnforceConfig::default(),
    );
    assert!(matches!(
        e2.decide(&search(
            "Observation",
            &[("patient:Patient.name", None, "x")]
        )),
        Decision::Deny(DenyReason::Chain { .. })
    ));
}

#[test]
fn writes_need_letters_and_read_only_refuses() {
    let reg = CategoryRegistry::default_registry();
    let grants = vec![ResourceGrant::new(
        ScopeContext::Patient,
        t("Observation"),
        Permissions {
            create: true,
            ..Permissions::READ_SEARCH
        },
    )];
    let e = Enforcer::new(
        &reg,
        grants.clone(),
        PatientId::new("355").ok(),
        cats(&["vital-signs"]),
        EnforceConfig::default(),
    );
    let mut create = FhirRequest::new(Interaction::Create);
    create.resource_type = Some(t("Observation"));
    assert!(e.decide(&create).is_allowed());
    assert!(e.check_write(&create, &vital("Patient/355")).is_ok());
    assert_eq!(
        e.check_write(&create, &vital("Patient/85")),
        Err(DenyReason::OutsideCompartment)
    );
    let mut delete = FhirRequest::new(Interaction::Delete);
    delete.resource_type = Some(t("Observation"));
    delete.id = Some("v1".into());
    assert!(matches!(
        e.decide(&delete),
        Decision::Deny(DenyReason::NoCoveringScope { letters: "d", .. })
    ));
    let ro = Enforcer::new(
        &reg,
        grants,
        PatientId::new("355").ok(),
        cats(&["vital-signs"]),
        EnforceConfig {
            read_only: true,
            ..EnforceConfig::default()
        },
    );
    assert_eq!(
        ro.decide(&create),
        Decision::Deny(DenyReason::ReadOnlyDeployment)
    );
    assert_eq!(
        ro.check_write(&create, &vital("Patient/355")),
        Err(DenyReason::ReadOnlyDeployment)
    );
}

#[test]
fn bundle_filter_hides_totals_links_and_outcomes() {
    let reg = CategoryRegistry::default_registry();
    let e = Enforcer::new(
        &reg,
        patient_all(),
        PatientId::new("355").ok(),
        cats(&["vital-signs", "care-providers"]),
        EnforceConfig::default(),
    );
    let lab = json!({"resourceType": "Observation", "id": "l1",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "subject": {"reference": "Patient/355"}});
    let mut with_performer = vital("Patient/355");
    with_performer["performer"] = json!([{"reference": "Practitioner/p"}]);
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": 3,
    "link": [{"relation": "self", "url": "x"}, {"relation": "last", "url": "y"}],
    "entry": [
        {"resource": with_performer, "search": {"mode": "match"}},
        {"resource": lab, "search": {"mode": "match"}},
        {"resource": vital("Patient/85"), "search": {"mode": "match"}},
        {"resource": {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "Observation l9 hidden"}]}, "search": {"mode": "outcome"}},
        {"resource": {"resourceType": "Practitioner", "id": "p"}, "search": {"mode": "include"}}
    ]});
    let report = e.filter_bundle(&mut bundle);
    assert_eq!((report.kept, report.dropped), (2, 3));
    assert_eq!(bundle["total"], 1);
    assert_eq!(bundle["link"].as_array().unwrap().len(), 1);
    bundle["link"] = json!([{"relation": "next", "url": "z"}]);
    e.filter_bundle(&mut bundle);
    assert!(bundle.get("total").is_none());
}

#[test]
fn includes_brought_in_only_by_a_hidden_match_are_dropped_with_it() {
    let reg = CategoryRegistry::default_registry();
    let e = Enforcer::new(
        &reg,
        patient_all(),
        PatientId::new("355").ok(),
        cats(&["vital-signs", "demographics", "encounters"]),
        EnforceConfig::default(),
    );
    let lab = json!({"resourceType": "Observation", "id": "l1",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "subject": {"reference": "Patient/355"},
        "encounter": {"reference": "https://ehr.example/fhir/Encounter/e-lab/_history/2"}});
    let mut seen = vital("Patient/355");
    seen["encounter"] = json!({"reference": "Encounter/e-vital"});
    let encounter = |id: &str| {
        json!({"resourceType": "Encounter", "id": id, "status": "finished",
        "subject": {"reference": "Patient/355"}})
    };
    let patient = json!({"resourceType": "Patient", "id": "355"});
    let provenance = |target: &str| {
        json!({"resourceType": "Provenance", "id": format!("p-{target}"),
        "target": [{"reference": format!("Observation/{target}")}]})
    };
    let entries = |matches: Vec<serde_json::Value>| {
        let mut all: Vec<serde_json::Value> = matches
            .into_iter()
            .map(|r| json!({"resource": r, "search": {"mode": "match"}}))
            .collect();
        for r in [
            encounter("e-lab"),
            encounter("e-vital"),
            patient.clone(),
            provenance("l1"),
            provenance("v1"),
        ] {
            all.push(json!({"resource": r, "search": {"mode": "include"}}));
        }
        json!({"resourceType": "Bundle", "type": "searchset", "entry": all})
    };
    let ids = |bundle: &serde_json::Value| -> Vec<String> {
        bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}/{}",
                    e["resource"]["resourceType"].as_str().unwrap(),
                    e["resource"]["id"].as_str().unwrap()
                )
            })
            .collect()
    };
    // The hidden lab's visit and record history go with it; what the visible vital sign
    // refers to, or what refers to it, stays.
    let mut bundle = entries(vec![seen.clone(), lab.clone()]);
    e.filter_bundle(&mut bundle);
    assert_eq!(
        ids(&bundle),
        ["Observation/v1", "Encounter/e-vital", "Patient/355"]
    );
    // Only the hidden lab matched: not even the patient is included.
    let mut bundle = entries(vec![lab]);
    let report = e.filter_bundle(&mut bundle);
    assert_eq!(ids(&bundle), Vec::<String>::new());
    assert_eq!(bundle["total"], 0);
    assert_eq!(report.kept, 0);
    // Nothing hidden among the matches: the includes are left as the server chose them
    // (minus what is hidden on its own).
    let mut bundle = entries(vec![seen]);
    e.filter_bundle(&mut bundle);
    assert_eq!(
        ids(&bundle),
        [
            "Observation/v1",
            "Encounter/e-lab",
            "Encounter/e-vital",
            "Patient/355"
        ]
    );
}

#[test]
fn transactions_are_all_or_nothing() {
    let reg = CategoryRegistry::default_registry();
    let e = Enforcer::new(
        &reg,
        patient_all(),
        PatientId::new("355").ok(),
        cats(&["vital-signs"]),
        EnforceConfig::default(),
    );
    let mut read = FhirRequest::new(Interaction::Read);
    read.resource_type = Some(t("Observation"));
    read.id = Some("v1".into());
    let mut other = read.clone();
    other.resource_type = Some(t("Patient"));
    other.id = Some("85".into());
    let batch = e.decide_batch(&[read.clone(), other.clone()], false);
    assert!(batch[0].is_allowed() && !batch[1].is_allowed());
    let tx = e.decide_batch(&[read.clone(), other.clone()], true);
    assert!(
        tx.iter()
            .all(|d| *d == Decision::Deny(DenyReason::TransactionEntryDenied { index: 1 }))
    );
    let mut response = json!({"resourceType": "Bundle", "type": "batch-response", "entry": [
        {"resource": vital("Patient/85"), "response": {"status": "200"}},
        {"response": {"status": "404"}}
    ]});
    let r = e.filter_batch_response(&mut response, &[read, other], &batch);
    assert_eq!(r.dropped, 2);
    assert_eq!(response["entry"][0]["response"]["status"], "404");
    // Another patient's record is shown as missing, like one that does not exist.
    assert_eq!(response["entry"][1]["response"]["status"], "404");
    assert!(response["entry"][0].get("resource").is_none());
}

#[test]
fn narrowing_is_idempotent_so_next_links_do_not_grow() {
    let reg = CategoryRegistry::default_registry();
    let e = Enforcer::new(
        &reg,
        patient_all(),
        PatientId::new("355").ok(),
        cats(&["laboratory"]),
        EnforceConfig::default(),
    );
    let first = search("Observation", &[("_count", None, "1")]);
    let Decision::Narrow { add, .. } = e.decide(&first) else {
        panic!("a lab-only search is narrowed");
    };
    assert!(add.len() >= 2, "patient and category: {add:?}");
    // The next page's link carries the narrowed query; deciding it again adds nothing.
    let mut next = first.clone();
    next.params.extend(add.iter().cloned());
    assert_eq!(
        e.decide(&next),
        Decision::Allow {
            response: ResponseCheck::Bundle
        }
    );
    // A restriction only partly present is still added (the missing part).
    let mut partial = first;
    partial.params.push(add[0].clone());
    let Decision::Narrow { add: again, .. } = e.decide(&partial) else {
        panic!("still narrowed");
    };
    assert_eq!(again, add[1..].to_vec());
}

#[test]
fn a_search_cannot_confirm_a_withheld_identifier() {
    let reg = CategoryRegistry::default_registry();
    let e = Enforcer::new(
        &reg,
        patient_all(),
        PatientId::new("355").ok(),
        cats(&["demographics"]),
        EnforceConfig::default(),
    );
    let patient = json!({"resourceType": "Patient", "id": "355", "identifier": [
        {"system": "https://ehr.example/mrn", "value": "M-1"},
        {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-61-9797"},
        {"system": "urn:oid:2.16.840.1.113883.4.3.25", "value": "S99940283",
         "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "DL"}]}}
    ]});
    let found = |value: &str| {
        let request = search("Patient", &[("identifier", None, value)]);
        assert!(e.decide(&request).is_allowed(), "{value}");
        let mut bundle = json!({"resourceType": "Bundle", "type": "searchset",
            "entry": [{"resource": patient.clone(), "search": {"mode": "match"}}]});
        e.filter_search_bundle(&request, &mut bundle);
        bundle["total"].as_u64().unwrap()
    };
    // The number the grant shows finds the patient, by system and value or by value alone.
    assert_eq!(found("https://ehr.example/mrn|M-1"), 1);
    assert_eq!(found("M-1"), 1);
    assert_eq!(found("https://ehr.example/mrn|"), 1);
    // A withheld number (by its system, by its type under another system, by value alone)
    // finds nothing, exactly as a wrong number does.
    for value in [
        "http://hl7.org/fhir/sid/us-ssn|999-61-9797",
        "999-61-9797",
        "urn:oid:2.16.840.1.113883.4.3.25|S99940283",
        "S99940283",
        "http://hl7.org/fhir/sid/us-ssn|",
        "https://ehr.example/mrn|wrong",
    ] {
        assert_eq!(found(value), 0, "{value}");
    }
    // Modifiers the check could not replay are refused.
    for modifier in ["text", "of-type", "not", "missing"] {
        let request = search("Patient", &[("identifier", Some(modifier), "x")]);
        assert!(matches!(
            e.decide(&request),
            Decision::Deny(DenyReason::UnsupportedParameter { .. })
        ));
    }
}
