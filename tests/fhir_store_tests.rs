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
    // 7 vital-sign dateTimes in or after 2003 (the one period, of 1994, ends in 1994: the
    // committed fixture corrects the source's misspelt `stop` to `end`).
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
    assert_eq!(recent["total"], 7);
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
    // A time without a zone is the server's (UTC), one without seconds a whole minute (R4
    // search.html, date): the same matches as the zoned spelling.
    let total = |value: &str| {
        store
            .search(
                "Observation",
                &[param("patient", "355"), param("date", value)],
                BASE,
                None,
            )
            .unwrap()["total"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        total("ge2003-01-01T00:00:00"),
        total("ge2003-01-01T00:00:00Z")
    );
    assert_eq!(total("ge2003-01-01T00:00"), total("ge2003-01-01T00:00:00Z"));
    assert_eq!(
        total("lt2003-01-01T05:00"),
        total("lt2003-01-01T00:00-05:00")
    );
    assert!(total("ge2003-01-01T00:00") > 0);
    // The last representable days end past what a date type holds: still a range, no panic.
    for edge in [
        "9999",
        "9999-12",
        "9999-12-31",
        "lt9999-12-31",
        "ge0001-01-01",
        "0000",
    ] {
        assert!(total(edge) <= total("ge0000"), "{edge}");
    }
    assert_eq!(total("lt9999-12-31"), total("ge0000"));
    assert_eq!(total("9999-12-31"), 0);
    for bad in ["9999-13", "9999-02-30", "2003-00-01"] {
        assert_eq!(
            store.search("Observation", &[param("date", bad)], BASE, None),
            Err(StoreError::BadValue("date".into())),
            "{bad}"
        );
    }
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

/// `patient` is a path's references to a Patient only (R4: `Provenance.target.where(resolve()
/// is Patient)`): including through it brings the patient, not every target.
#[test]
fn including_through_patient_brings_only_patients() {
    let store = store();
    let bundle = store
        .search(
            "Provenance",
            &[
                param("patient", "355"),
                param("_include", "Provenance:patient"),
            ],
            BASE,
            None,
        )
        .unwrap();
    assert!(!ids(&bundle, "match").is_empty());
    assert_eq!(ids(&bundle, "include"), vec!["Patient/355".to_string()]);
    let targets = store
        .search(
            "Provenance",
            &[
                param("patient", "355"),
                param("_include", "Provenance:target"),
            ],
            BASE,
            None,
        )
        .unwrap();
    assert!(ids(&targets, "include").len() > 10);
    // Paging far past the end does not wrap round to the first page.
    let far = store
        .search(
            "Provenance",
            &[
                param("_offset", &u64::MAX.to_string()),
                param("_count", "10"),
            ],
            BASE,
            None,
        )
        .unwrap();
    assert!(ids(&far, "match").is_empty());
    let links = far["link"].as_array().unwrap();
    assert!(links.iter().all(|l| l["relation"] != "next"), "{links:?}");
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

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .and_then(|l| l["url"].as_str())
        .map(str::to_owned)
}

fn search(store: &FhirStore, ty: &str, query: &[(&str, &str)]) -> Result<Value, StoreError> {
    let params: Vec<_> = query.iter().map(|(k, v)| param(k, v)).collect();
    store.search(ty, &params, BASE, None)
}

/// The instants an Observation's `effective[x]` spans, read straight from the JSON.
fn effective(resource: &Value) -> Option<(i128, i128)> {
    let instant = |v: &Value| {
        time::OffsetDateTime::parse(v.as_str()?, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(|t| t.unix_timestamp_nanos())
    };
    if let Some(at) = instant(&resource["effectiveDateTime"]) {
        return Some((at, at + 1_000_000_000));
    }
    let period = resource.get("effectivePeriod")?;
    Some((
        instant(&period["start"]).unwrap_or(i128::MIN),
        instant(&period["end"]).unwrap_or(i128::MAX),
    ))
}

fn matched(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| &e["resource"])
        .collect()
}

#[test]
fn sort_by_date_orders_before_paging_and_keeps_ties_stable() {
    let store = store();
    let q = |sort: &'static str| [("patient", "355"), ("_sort", sort), ("_count", "200")];

    // Ascending: earliest start first; the one Observation without `effective[x]` last.
    let up = search(&store, "Observation", &q("date")).unwrap();
    let up_entries = matched(&up);
    assert_eq!(up_entries.len(), 140);
    assert!(effective(up_entries[139]).is_none());
    let starts: Vec<i128> = up_entries[..139]
        .iter()
        .map(|r| effective(r).unwrap().0)
        .collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{starts:?}");
    assert!(link(&up, "self").unwrap().contains("_sort=date"));

    // Descending: latest end first; still the one without a date last.
    let down = search(&store, "Observation", &q("-date")).unwrap();
    let down_entries = matched(&down);
    assert!(effective(down_entries[139]).is_none());
    let ends: Vec<i128> = down_entries[..139]
        .iter()
        .map(|r| effective(r).unwrap().1)
        .collect();
    assert!(ends.windows(2).all(|w| w[0] >= w[1]));
    let self_link = link(&down, "self").unwrap();
    assert!(self_link.contains("_sort=-date"), "{self_link}");

    // Ties keep the store's id order: the same as naming `_id` as the second key.
    let with_id = search(&store, "Observation", &q("-date,_id")).unwrap();
    assert_eq!(ids(&down, "match"), ids(&with_id, "match"));
    let mut tie_seen = false;
    for pair in matched(&with_id).windows(2) {
        if effective(pair[0]).map(|r| r.1) == effective(pair[1]).map(|r| r.1) {
            tie_seen = true;
            assert!(pair[0]["id"].as_str() < pair[1]["id"].as_str());
        }
    }
    assert!(tie_seen, "the fixture has same-time observations");

    // `_id` either way, and `_lastUpdated` (all equal in the fixture: store order).
    let by_id = ids(&search(&store, "Observation", &q("_id")).unwrap(), "match");
    let mut sorted = by_id.clone();
    sorted.sort();
    assert_eq!(by_id, sorted);
    let mut by_id_down = ids(&search(&store, "Observation", &q("-_id")).unwrap(), "match");
    by_id_down.reverse();
    assert_eq!(by_id, by_id_down);
    let plain = ids(
        &search(
            &store,
            "Observation",
            &[("patient", "355"), ("_count", "200")],
        )
        .unwrap(),
        "match",
    );
    let by_updated = ids(
        &search(&store, "Observation", &q("-_lastUpdated")).unwrap(),
        "match",
    );
    assert_eq!(plain, by_updated);
}

#[test]
fn sorted_pages_walk_the_sorted_order() {
    let store = store();
    let whole = ids(
        &search(
            &store,
            "Observation",
            &[("patient", "355"), ("_sort", "-date"), ("_count", "200")],
        )
        .unwrap(),
        "match",
    );
    let mut walked = Vec::new();
    let mut params = vec![
        param("patient", "355"),
        param("_sort", "-date"),
        param("_count", "15"),
    ];
    loop {
        let page = store.search("Observation", &params, BASE, None).unwrap();
        walked.extend(ids(&page, "match"));
        let Some(next) = link(&page, "next") else {
            break;
        };
        assert!(next.contains("_sort=-date"), "{next}");
        let query = next.split_once('?').unwrap().1;
        params = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| param(&k, &v))
            .collect();
    }
    assert_eq!(walked, whole);
}

#[test]
fn sort_keys_the_store_cannot_order_are_refused() {
    let store = store();
    for (sort, error) in [
        (
            "code",
            StoreError::UnsupportedParameter("_sort=code".into()),
        ),
        (
            "-status",
            StoreError::UnsupportedParameter("_sort=status".into()),
        ),
        (
            "bogus",
            StoreError::UnsupportedParameter("_sort=bogus".into()),
        ),
        ("date,-", StoreError::BadValue("_sort".into())),
    ] {
        assert_eq!(
            search(&store, "Observation", &[("_sort", sort)]),
            Err(error),
            "{sort}"
        );
    }
    assert_eq!(
        search(
            &store,
            "Observation",
            &[("_sort", "date"), ("_sort", "_id")]
        ),
        Err(StoreError::BadValue("_sort".into()))
    );
    assert_eq!(
        search(&store, "Observation", &[("_sort:x", "date")]),
        Err(StoreError::UnsupportedParameter("_sort:x".into()))
    );
}

#[test]
fn missing_modifier_applies_to_every_parameter_kind() {
    let store = store();
    let total =
        |ty: &str, query: &[(&str, &str)]| search(&store, ty, query).unwrap()["total"].clone();
    // Token: every Observation has a category.
    assert_eq!(
        total(
            "Observation",
            &[("patient", "355"), ("category:missing", "false")]
        ),
        140
    );
    assert_eq!(
        total(
            "Observation",
            &[("patient", "355"), ("category:missing", "true")]
        ),
        0
    );
    // Date: one Condition without an onset, eight without an abatement.
    assert_eq!(
        total(
            "Condition",
            &[("patient", "355"), ("onset-date:missing", "true")]
        ),
        1
    );
    assert_eq!(
        total(
            "Condition",
            &[("patient", "355"), ("onset-date:missing", "false")]
        ),
        30
    );
    assert_eq!(
        total(
            "Condition",
            &[("patient", "355"), ("abatement-date:missing", "true")]
        ),
        8
    );
    // Reference: two Conditions name no encounter.
    assert_eq!(
        total(
            "Condition",
            &[("patient", "355"), ("encounter:missing", "true")]
        ),
        2
    );
    assert_eq!(
        total(
            "Condition",
            &[("patient", "355"), ("encounter:missing", "false")]
        ),
        29
    );
    // String.
    assert_eq!(total("Patient", &[("name:missing", "false")]), 2);
    assert_eq!(total("Patient", &[("name:missing", "true")]), 0);
    // Both values are an OR: everything.
    assert_eq!(
        total(
            "Condition",
            &[("patient", "355"), ("onset-date:missing", "true,false")]
        ),
        31
    );

    let bundle = search(
        &store,
        "Observation",
        &[("patient", "355"), ("category:missing", "false")],
    )
    .unwrap();
    assert!(
        link(&bundle, "self")
            .unwrap()
            .contains("category:missing=false")
    );
    assert_eq!(
        search(&store, "Observation", &[("category:missing", "maybe")]),
        Err(StoreError::BadValue("category".into()))
    );
    assert_eq!(
        search(&store, "Observation", &[("date:missing", "2020")]),
        Err(StoreError::BadValue("date".into()))
    );
}

#[test]
fn token_text_and_reference_type_modifiers() {
    let store = store();
    let total =
        |query: &[(&str, &str)]| search(&store, "Observation", query).unwrap()["total"].clone();
    // The categories carry no `text`, only coding displays ("Vital Signs").
    assert_eq!(total(&[("patient", "355"), ("category:text", "vital")]), 27);
    assert_eq!(
        total(&[("patient", "355"), ("category:text", "VITAL SIGNS")]),
        27
    );
    assert_eq!(total(&[("patient", "355"), ("category:text", "signs")]), 0);
    assert_eq!(
        total(&[("patient", "355"), ("category:not", "vital-signs")]),
        113
    );

    assert_eq!(total(&[("patient:Patient", "355")]), 140);
    assert_eq!(total(&[("patient:Group", "355")]), 0);
    assert_eq!(
        search(&store, "Observation", &[("patient:Patient", "Group/355")]),
        Err(StoreError::BadValue("patient".into()))
    );
}

#[test]
fn modifiers_and_controls_the_store_does_not_apply_are_refused() {
    let store = store();
    for (ty, name, value) in [
        ("Observation", "code:in", "http://x"),
        ("Observation", "code:not-in", "http://x"),
        ("Observation", "code:above", "http://loinc.org|8867-4"),
        ("Observation", "code:below", "http://loinc.org|8867-4"),
        ("Patient", "identifier:of-type", "http://x|MR|1"),
        ("Observation", "patient:identifier", "http://x|1"),
        ("Patient", "name:text", "dus"),
        ("Observation", "date:not", "2020"),
        ("Observation", "patient:not", "355"),
        ("Condition", "_include:iterate", "Condition:patient"),
        ("Condition", "_revinclude:iterate", "Provenance:target"),
        ("Observation", "_count:x", "5"),
    ] {
        assert_eq!(
            search(&store, ty, &[(name, value)]),
            Err(StoreError::UnsupportedParameter(name.into())),
            "{name}"
        );
    }
    // The guard refuses these before the store; the store does not ignore them either.
    assert_eq!(
        search(&store, "Patient", &[("_elements", "id")]),
        Err(StoreError::UnsupportedParameter("_elements".into()))
    );
    assert_eq!(
        search(&store, "Patient", &[("_summary", "true")]),
        Err(StoreError::UnsupportedParameter("_summary".into()))
    );
    assert_eq!(
        search(&store, "Patient", &[("_count", "5,6")]),
        Err(StoreError::BadValue("_count".into()))
    );
    assert_eq!(
        search(&store, "Patient", &[("_total", "exact")]),
        Err(StoreError::BadValue("_total".into()))
    );
    // `_total` is answered: every searchset has its exact total, count-only included.
    for query in [
        &[("_total", "accurate")][..],
        &[("_total", "none"), ("_count", "1")],
        &[("_total", "estimate"), ("_summary", "count")],
    ] {
        assert_eq!(
            search(&store, "Patient", query).unwrap()["total"],
            2,
            "{query:?}"
        );
    }
}

fn everything(
    store: &FhirStore,
    patient: &str,
    query: &[(&str, &str)],
) -> Result<Value, StoreError> {
    let mut request = FhirRequest::new(Interaction::Operation("everything".into()));
    request.resource_type = ResourceType::new("Patient");
    request.id = Some(patient.into());
    request.params = query.iter().map(|(k, v)| param(k, v)).collect();
    store.answer(&request, BASE)
}

fn types_of(bundle: &Value) -> std::collections::BTreeSet<String> {
    ids(bundle, "match")
        .iter()
        .map(|i| i.split_once('/').unwrap().0.to_owned())
        .collect()
}

#[test]
fn everything_applies_type_and_reflects_it_in_the_self_link() {
    let store = store();
    let all = everything(&store, "355", &[]).unwrap();
    assert_eq!(all["total"], 473);
    assert_eq!(
        link(&all, "self").unwrap(),
        format!("{BASE}/Patient/355/$everything")
    );

    let observations = everything(&store, "355", &[("_type", "Observation")]).unwrap();
    assert_eq!(observations["total"], 140);
    assert_eq!(ids(&observations, "match").len(), 140);
    assert_eq!(types_of(&observations), ["Observation".to_owned()].into());
    assert_eq!(
        link(&observations, "self").unwrap(),
        format!("{BASE}/Patient/355/$everything?_type=Observation")
    );

    // The Patient herself only when listed.
    let with_patient = everything(&store, "355", &[("_type", "Patient,Observation")]).unwrap();
    assert_eq!(with_patient["total"], 141);
    assert!(ids(&with_patient, "match").contains(&"Patient/355".to_owned()));

    // Referenced resources outside the compartment are types like any other; two `_type`
    // parameters add up.
    let supporting = everything(
        &store,
        "355",
        &[("_type", "Practitioner"), ("_type", "Organization")],
    )
    .unwrap();
    let expected: Vec<String> = ids(&all, "match")
        .into_iter()
        .filter(|i| i.starts_with("Practitioner/") || i.starts_with("Organization/"))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(ids(&supporting, "match"), expected);
    assert_eq!(
        link(&supporting, "self").unwrap(),
        format!("{BASE}/Patient/355/$everything?_type=Practitioner&_type=Organization")
    );
}

#[test]
fn everything_applies_since_to_last_updated() {
    let mut store = FhirStore::new();
    let bundle = serde_json::json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1",
                "meta": {"lastUpdated": "2026-03-01T00:00:00Z"}}},
            {"resource": {"resourceType": "Observation", "id": "old",
                "subject": {"reference": "Patient/p1"},
                "meta": {"lastUpdated": "2026-01-15T00:00:00Z"}}},
            {"resource": {"resourceType": "Observation", "id": "new",
                "subject": {"reference": "Patient/p1"},
                "meta": {"lastUpdated": "2026-02-01T00:00:00+00:00"}}},
        ],
    });
    store.load_transaction(&bundle).unwrap();
    // At or after the instant, offsets compared as instants.
    let since = everything(&store, "p1", &[("_since", "2026-02-01T01:00:00+01:00")]).unwrap();
    assert_eq!(ids(&since, "match"), ["Patient/p1", "Observation/new"]);
    let both = everything(
        &store,
        "p1",
        &[("_since", "2026-02-01T00:00:00Z"), ("_type", "Observation")],
    )
    .unwrap();
    assert_eq!(ids(&both, "match"), ["Observation/new"]);
    let self_link = link(&both, "self").unwrap();
    assert!(self_link.starts_with(&format!("{BASE}/Patient/p1/$everything?")));
    assert!(
        self_link.contains("_since=2026-02-01T00%3A00%3A00Z"),
        "{self_link}"
    );
    assert!(self_link.contains("_type=Observation"), "{self_link}");
    assert_eq!(
        everything(&store, "p1", &[("_since", "2026-03-01T00:00:01Z")]).unwrap()["total"],
        0
    );
}

#[test]
fn everything_refuses_what_it_does_not_apply() {
    let store = store();
    for (name, value, error) in [
        (
            "_count",
            "10",
            StoreError::UnsupportedParameter("_count".into()),
        ),
        (
            "start",
            "2020-01-01",
            StoreError::UnsupportedParameter("start".into()),
        ),
        (
            "end",
            "2020-01-01",
            StoreError::UnsupportedParameter("end".into()),
        ),
        (
            "_since",
            "2026-01-01",
            StoreError::BadValue("_since".into()),
        ),
        ("_type", "observation", StoreError::BadValue("_type".into())),
        (
            "_type:x",
            "Observation",
            StoreError::UnsupportedParameter("_type:x".into()),
        ),
    ] {
        assert_eq!(
            everything(&store, "355", &[(name, value)]),
            Err(error),
            "{name}"
        );
    }
    assert_eq!(
        everything(
            &store,
            "355",
            &[
                ("_since", "2026-01-01T00:00:00Z"),
                ("_since", "2026-01-02T00:00:00Z")
            ]
        ),
        Err(StoreError::BadValue("_since".into()))
    );
}

/// A patient's record names some practitioners, organizations, locations and medications;
/// the others belong to other patients' records and are not hers to see.
#[test]
fn compartment_free_resources_are_in_a_record_only_when_it_names_them() {
    let store = store();
    let of_type =
        |ty: &str| -> Vec<&Value> { store.all().filter(|r| r["resourceType"] == ty).collect() };
    for ty in ["Practitioner", "Organization", "Location", "Medication"] {
        let all = of_type(ty);
        let hers: Vec<_> = all
            .iter()
            .filter(|r| store.in_record_of("355", r))
            .collect();
        let theirs: Vec<_> = all.iter().filter(|r| store.in_record_of("85", r)).collect();
        assert!(
            hers.len() + theirs.len() >= all.len(),
            "{ty}: every one is someone's"
        );
        if ty != "Medication" {
            assert!(!hers.is_empty(), "{ty}");
        }
        // Named by 355's record: some resource of hers references it, or one of those does.
        for r in &hers {
            let key = format!("{ty}/{}", r["id"].as_str().unwrap());
            let text = serde_json::to_string(&store.all().collect::<Vec<_>>()).unwrap();
            assert!(text.contains(&format!("\"reference\":\"{key}\"")), "{key}");
        }
    }
    // Compartment resources are decided by enforcement, not here.
    let patient = store.read("Patient", "85").unwrap();
    assert!(store.in_record_of("355", &patient));
    // Some practitioner is another patient's only.
    let only_theirs = of_type("Practitioner")
        .into_iter()
        .any(|r| !store.in_record_of("355", r) && store.in_record_of("85", r));
    assert!(only_theirs);
}

/// R4 string search: case and accents are normalised away on both sides; `:exact` keeps them.
#[test]
fn string_search_ignores_case_and_accents() {
    let store = store();
    let total = |params: &[(&str, &str)]| {
        let params: Vec<_> = params.iter().map(|(n, v)| param(n, v)).collect();
        store.search("Patient", &params, BASE, None).unwrap()["total"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(total(&[("name", "Ritchie586")]), 1);
    assert_eq!(total(&[("name", "Ritchíe586")]), 1);
    assert_eq!(total(&[("name", "RITCHIÉ")]), 1);
    assert_eq!(total(&[("family:contains", "tchíe")]), 1);
    assert_eq!(total(&[("family:exact", "Ritchíe586")]), 0);
    assert_eq!(total(&[("family:exact", "Ritchie586")]), 1);
}
