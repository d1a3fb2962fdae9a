//! The demo EHR's in-memory FHIR store (examples/support/fhir_store.rs) answers like a FHIR
//! server over the fixture patients. Expected counts were computed from the fixture files
//! independently (by a script over the raw JSON), not by this store.

use fhirguard::{FhirRequest, Interaction, ResourceType};
use serde_json::Value;

use crate::fhir_store::{FhirStore, StoreError, param};

const BASE: &str = "https://ehr.example/fhir";

fn store() -> FhirStore {
    FhirStore::with_fixtures().unwrap()
}

fn ids(bundle: &Value, mode: &str) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["search"]["mode"] == mode)
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["resource"]["resourceType"].as_str().unwrap(),
                        e["resource"]["id"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn loads_both_patients_and_resolves_bundle_references() {
    let store = store();
    assert_eq!(store.all().count(), 473 + 267);
    let patient = store.read("Patient", "355").unwrap();
    assert_eq!(patient["birthDate"], "1940-09-05");
    // urn:uuid: references were rewritten to Type/id.
    let text = serde_json::to_string(&store.all().collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("\"reference\":\"urn:uuid:"));
    assert_eq!(store.read("Patient", "nope"), Err(StoreError::NotFound));
}

#[test]
fn token_reference_and_or_search() {
    let store = store();
    let vitals = store
        .search(
            "Observation",
            &[param("patient", "355"), param("category", "vital-signs")],
            BASE,
            None,
        )
        .unwrap();
    assert_eq!(vitals["total"], 27);
    let system = store
        .search(
            "Observation",
            &[
                param("patient", "Patient/355"),
                param(
                    "category",
                    "http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
                ),
            ],
            BASE,
            None,
        )
        .unwrap();
    assert_eq!(system["total"], 10);
    let either = store
        .search(
            "Observation",
            &[
                param("patient", "355"),
                param("category", "vital-signs,laboratory"),
            ],
            BASE,
            None,
        )
        .unwrap();
    assert_eq!(either["total"], 37);
    let wrong_system = store
        .search(
            "Observation",
            &[
                param("patient", "355"),
                param("category", "http://example.org|laboratory"),
            ],
            BASE,
            None,
        )
        .unwrap();
    assert_eq!(wrong_system["total"], 0);
    let conditions = store
        .search(
            "Condition",
            &[
                param("patient", "355"),
                param("category", "problem-list-item"),
            ],
            BASE,
            None,
        )
        .unwrap();
    assert_eq!(conditions["total"], 1);
}

#[test]
fn date_prefixes_follow_fhir_range_semantics() {
    let store = store();
    // 7 vital-sign dateTimes in or after 2003, plus periods ending after 2003-01-01 — one of
    // them open-ended (the fixture misspells `end` as `stop`), which FHIR treats as ongoing.
    let recent = store
        .search(
            "Observation",
            &[
                param("patient", "355"),
                param("category", "vital-signs"),
                param("date", "ge2003"),
            ],
            BASE,
            None,
        )
        .unwrap();
    assert_eq!(recent["total"], 8);
    let in_1940 = store
        .search(
            "Observation",
            &[
                param("patient", "355"),
                param("category", "vital-signs"),
                param("date", "1940"),
            ],
            BASE,
            None,
        )
        .unwrap();
    assert_eq!(in_1940["total"], 5);
    assert_eq!(
        store.search("Observation", &[param("date", "ge20x3")], BASE, None),
        Err(StoreError::BadValue("date".into()))
    );
}

#[test]
fn paging_links_walk_every_match_once() {
    let store = store();
    let mut seen = Vec::new();
    let mut params = vec![
        param("patient", "355"),
        param("category", "social-history"),
        param("_count", "20"),
    ];
    loop {
        let page = store.search("Observation", &params, BASE, None).unwrap();
        assert_eq!(page["total"], 99);
        seen.extend(ids(&page, "match"));
        let Some(next) = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        else {
            break;
        };
        let url = next["url"].as_str().unwrap();
        let query = url.split_once('?').unwrap().1;
        params = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| param(&k, &v))
            .collect();
    }
    let unique: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(seen.len(), 99);
    assert_eq!(unique.len(), 99);
}

#[test]
fn include_and_revinclude() {
    let store = store();
    let with_patient = store
        .search(
            "Condition",
            &[
                param("patient", "355"),
                param("category", "problem-list-item"),
                param("_include", "Condition:patient"),
                param("_revinclude", "Provenance:target"),
            ],
            BASE,
            None,
        )
        .unwrap();
    assert_eq!(ids(&with_patient, "match").len(), 1);
    let included = ids(&with_patient, "include");
    assert!(
        included.contains(&"Patient/355".to_string()),
        "{included:?}"
    );
    assert!(
        included.iter().any(|i| i.starts_with("Provenance/")),
        "{included:?}"
    );
}

#[test]
fn compartment_search_everything_and_vread() {
    let store = store();
    let mut request = FhirRequest::new(Interaction::SearchCompartment);
    request.resource_type = ResourceType::new("Observation");
    request.compartment = Some((ResourceType::new("Patient").unwrap(), "85".into()));
    request.params = vec![param("category", "vital-signs")];
    let bundle = store.answer(&request, BASE).unwrap();
    assert_eq!(bundle["total"], 5);

    let mut everything = FhirRequest::new(Interaction::Operation("everything".into()));
    everything.resource_type = ResourceType::new("Patient");
    everything.id = Some("85".into());
    let bundle = store.answer(&everything, BASE).unwrap();
    let members = ids(&bundle, "match");
    assert!(members.contains(&"Patient/85".to_string()));
    assert!(!members.contains(&"Patient/355".to_string()));
    // Nothing from the other patient's compartment.
    for entry in bundle["entry"].as_array().unwrap() {
        if let Some(owner) = FhirStore::patient_of(&entry["resource"]) {
            assert_eq!(owner, "85");
        }
    }

    let mut vread = FhirRequest::new(Interaction::Vread);
    vread.resource_type = ResourceType::new("Patient");
    vread.id = Some("355".into());
    vread.version_id = Some("1".into());
    assert!(store.answer(&vread, BASE).is_ok());
    vread.version_id = Some("2".into());
    assert_eq!(store.answer(&vread, BASE), Err(StoreError::NotFound));
}

#[test]
fn unknown_parameters_are_refused_not_ignored() {
    let store = store();
    assert_eq!(
        store.search("Observation", &[param("bogus", "1")], BASE, None),
        Err(StoreError::UnsupportedParameter("bogus".into()))
    );
}
