//! What a grant reaches: a patient's choice of categories decides every type an app can read —
//! nothing rides along with an unrelated category (visits, record history, people and places),
//! and ticking everything makes every type the CapabilityStatement lists readable.

use base64::Engine as _;
use serde_json::Value;

use super::flows::{Launch, bearer, entries, launch, launch_scoped};
use super::{Demo, demo, run};

/// The types a lab-results-only grant must not reach (black-box finding F8).
const NOT_WITH_LABS: [&str; 6] = [
    "Encounter",
    "Provenance",
    "Location",
    "Practitioner",
    "PractitionerRole",
    "Organization",
];

fn every_category(d: &Demo) -> Vec<String> {
    d.json["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

fn scope_names_type(scope: &str, ty: &str) -> bool {
    scope.split(' ').any(|s| {
        s.strip_prefix("patient/")
            .is_some_and(|rest| rest.starts_with(&format!("{ty}.")) || rest.starts_with("*."))
    })
}

/// The first search an app (and Inferno's g10 kit) makes for `ty`.
fn first_search(resource: &Value, patient: &str) -> String {
    let ty = resource["type"].as_str().unwrap();
    let declares = |name: &str| {
        resource["searchParam"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == name)
    };
    if ty == "Patient" {
        format!("Patient?_id={patient}")
    } else if declares("patient") {
        format!("{ty}?patient={patient}")
    } else if declares("target") {
        format!("{ty}?target=Patient/{patient}")
    } else {
        format!("{ty}?_count=5")
    }
}

#[test]
fn full_consent_reads_every_type_the_capability_statement_lists() {
    let d = demo();
    run(async {
        let user = d.user(false);
        let patient = user["patient_id"].as_str().unwrap();
        let all = every_category(d);
        let chosen: Vec<&str> = all.iter().map(String::as_str).collect();
        let Launch { token, mut browser } = launch(d, "research-app", user, &chosen, None)
            .await
            .unwrap();
        let scope = token["scope"].as_str().unwrap().to_owned();
        let fhir = d.fhir();
        let metadata = browser.get(&format!("{fhir}/metadata")).await;
        assert_eq!(metadata.status, 200);
        let metadata = metadata.json();
        let resources = metadata["rest"][0]["resource"].as_array().unwrap().clone();
        assert!(resources.len() >= 20, "{resources:?}");
        let auth = bearer(&token);
        let h = [("authorization", auth.as_str())];
        let mut failures = Vec::new();
        for resource in &resources {
            let ty = resource["type"].as_str().unwrap();
            if !scope_names_type(&scope, ty) {
                failures.push(format!("{ty}: no scope granted ({scope})"));
                continue;
            }
            let url = first_search(resource, patient);
            let reply = browser.get_with(&format!("{fhir}/{url}"), &h).await;
            if reply.status != 200 {
                failures.push(format!("{url} -> {}", reply.status));
                continue;
            }
            assert_eq!(reply.json()["resourceType"], "Bundle", "{url}");
        }
        assert!(failures.is_empty(), "{failures:#?}");
        // R4 search.html#reference: `[id]`, `[type]/[id]` and `[url]` name the same patient.
        let mut totals: Vec<Vec<Value>> = Vec::new();
        for value in [
            patient.to_owned(),
            format!("Patient/{patient}"),
            format!("{fhir}/Patient/{patient}"),
        ] {
            let url = format!(
                "{fhir}/Observation?{}",
                super::client::form(&[("patient", &value)])
            );
            let reply = browser.get_with(&url, &h).await;
            assert_eq!(reply.status, 200, "{url}: {}", reply.text());
            let ids: Vec<Value> = entries(&reply.json())
                .iter()
                .map(|r| r["id"].clone())
                .collect();
            totals.push(ids);
        }
        assert!(!totals[0].is_empty(), "{totals:?}");
        assert!(totals.iter().all(|t| *t == totals[0]), "{totals:?}");
    });
}

/// One id of each of `types` the full-consent token can see.
async fn ids_of(d: &Demo, types: &[&str]) -> Vec<(String, String)> {
    let user = d.user(false);
    let patient = user["patient_id"].as_str().unwrap();
    let all = every_category(d);
    let chosen: Vec<&str> = all.iter().map(String::as_str).collect();
    let Launch { token, mut browser } = launch(d, "research-app", user, &chosen, None)
        .await
        .unwrap();
    let auth = bearer(&token);
    let h = [("authorization", auth.as_str())];
    let fhir = d.fhir();
    let mut out = Vec::new();
    for ty in types {
        let url = match *ty {
            "Encounter" => format!("{fhir}/Encounter?patient={patient}&_count=1"),
            "Provenance" => format!("{fhir}/Provenance?target=Patient/{patient}"),
            other => format!("{fhir}/{other}?_count=1"),
        };
        let reply = browser.get_with(&url, &h).await;
        assert_eq!(reply.status, 200, "{url}: {}", reply.text());
        let found = entries(&reply.json());
        let first = found
            .iter()
            .find(|r| r["resourceType"] == *ty)
            .unwrap_or_else(|| panic!("no {ty} for patient {patient}"));
        out.push(((*ty).to_owned(), first["id"].as_str().unwrap().to_owned()));
    }
    out
}

#[test]
fn lab_results_alone_share_no_visits_history_people_or_places() {
    let d = demo();
    run(async {
        let known = ids_of(d, &NOT_WITH_LABS).await;
        let user = d.user(false);
        let patient = user["patient_id"].as_str().unwrap();
        let Launch { token, mut browser } = launch(d, "research-app", user, &["laboratory"], None)
            .await
            .unwrap();
        let scope = token["scope"].as_str().unwrap();
        for ty in NOT_WITH_LABS {
            assert!(!scope_names_type(scope, ty), "{ty} granted: {scope}");
        }
        let fhir = d.fhir();
        let auth = bearer(&token);
        let h = [("authorization", auth.as_str())];
        for (ty, id) in &known {
            let read = browser.get_with(&format!("{fhir}/{ty}/{id}"), &h).await;
            assert!(
                read.status == 403 || read.status == 404,
                "{ty}/{id} -> {}: {}",
                read.status,
                read.text()
            );
            assert_eq!(read.json()["resourceType"], "OperationOutcome");
        }
        let visits = browser
            .get_with(&format!("{fhir}/Encounter?patient={patient}"), &h)
            .await;
        assert_eq!(visits.status, 403, "{}", visits.text());
        // Lab results still come back, without the record history riding along.
        let labs = browser
            .get_with(
                &format!(
                    "{fhir}/Observation?patient={patient}&category=laboratory&_revinclude=Provenance:target"
                ),
                &h,
            )
            .await;
        assert_eq!(labs.status, 200, "{}", labs.text());
        let got = entries(&labs.json());
        assert!(got.iter().any(|r| r["resourceType"] == "Observation"));
        assert!(
            got.iter().all(|r| r["resourceType"] == "Observation"),
            "only lab observations: {:?}",
            got.iter().map(|r| &r["resourceType"]).collect::<Vec<_>>()
        );
    });
}

fn grant_id(token: &Value) -> String {
    let payload = token["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["grant_id"].as_str().unwrap().to_owned()
}

/// The "Shares: …" line of one grant's card on the connected-apps page.
fn shares_of(apps_html: &str, grant: &str) -> String {
    let at = apps_html
        .find(&format!("id=\"grant-{grant}\""))
        .unwrap_or_else(|| panic!("no card for {grant}: {apps_html}"));
    let rest = &apps_html[at..];
    let start = rest.find("<p>Shares: ").unwrap() + "<p>Shares: ".len();
    rest[start..start + rest[start..].find("</p>").unwrap()].to_owned()
}

const OBSERVATIONS_ONLY: &str = "launch/patient openid fhirUser patient/Observation.rs";

#[test]
fn the_approval_page_offers_only_what_the_app_asked_for() {
    let d = demo();
    run(async {
        let user = d.user(false);
        // A category the request cannot reach is refused, not recorded as shared.
        let refused = launch_scoped(
            d,
            "research-app",
            user,
            &["laboratory", "medications"],
            None,
            OBSERVATIONS_ONLY,
        )
        .await
        .err()
        .expect("medications cannot be approved for an Observation-only request");
        assert_eq!(refused.status, 400, "{}", refused.text());
        let page = refused.text();
        assert!(page.contains("not offered for this app"), "{page}");
        // The page it shows again offers the Observation categories only, and the disclosure
        // names no other category.
        for offered in [
            "vital-signs",
            "laboratory",
            "smoking-status",
            "social-history",
        ] {
            assert!(
                page.contains(&format!("name=\"category\" value=\"{offered}\"")),
                "{offered} offered"
            );
        }
        for hidden in [
            "medications",
            "allergies",
            "demographics",
            "encounters",
            "insurance",
        ] {
            assert!(
                !page.contains(&format!("name=\"category\" value=\"{hidden}\"")),
                "{hidden} offered to an Observation-only app"
            );
        }
        for label in ["Medications", "Allergies", "Visits", "Health insurance"] {
            assert!(!page.contains(label), "{label} named on the page: {page}");
        }

        // Approving an offered category: the stored grant and the apps page say exactly that.
        let Launch { token, mut browser } = launch_scoped(
            d,
            "research-app",
            user,
            &["laboratory"],
            None,
            OBSERVATIONS_ONLY,
        )
        .await
        .unwrap();
        let scope = token["scope"].as_str().unwrap();
        assert!(
            scope.contains(
                "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
            ),
            "{scope}"
        );
        let grant = grant_id(&token);
        let apps = browser.get("/portal/apps").await;
        assert_eq!(apps.status, 200);
        assert_eq!(shares_of(&apps.text(), &grant), "Lab results");
    });
}

/// A simple value for a declared search parameter of `ty` (`None`: the test cannot make one).
fn sample_value(ty: &str, name: &str, kind: &str, patient: &str) -> Option<String> {
    Some(match (kind, name) {
        (_, "_id") if ty == "Patient" => patient.to_owned(),
        (_, "_id") => "x-no-such-id".to_owned(),
        ("reference", "patient") => patient.to_owned(),
        ("reference", "subject" | "target") => format!("Patient/{patient}"),
        ("reference", "encounter") => "Encounter/x-no-such-id".to_owned(),
        ("reference", "location") => "Location/x-no-such-id".to_owned(),
        ("reference", "practitioner") => "Practitioner/x-no-such-id".to_owned(),
        ("reference", "medication") => "Medication/x-no-such-id".to_owned(),
        ("reference", _) => return None,
        ("token", _) => "http://example.org/fhir/no-such-system|x".to_owned(),
        ("date", _) => "ge2000-01-01".to_owned(),
        ("string", _) => "a".to_owned(),
        _ => return None,
    })
}

#[test]
fn every_declared_search_parameter_include_and_revinclude_answers_200() {
    let d = demo();
    run(async {
        let user = d.user(false);
        let patient = user["patient_id"].as_str().unwrap();
        let all = every_category(d);
        let chosen: Vec<&str> = all.iter().map(String::as_str).collect();
        let Launch { token, mut browser } = launch(d, "research-app", user, &chosen, None)
            .await
            .unwrap();
        let fhir = d.fhir();
        let metadata = browser.get(&format!("{fhir}/metadata")).await.json();
        assert_eq!(
            metadata["instantiates"][0],
            "http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server"
        );
        let resources = metadata["rest"][0]["resource"].as_array().unwrap().clone();
        let patient_resource = resources.iter().find(|r| r["type"] == "Patient").unwrap();
        assert!(
            patient_resource["supportedProfile"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"),
            "{patient_resource}"
        );
        let auth = bearer(&token);
        let h = [("authorization", auth.as_str())];
        let mut failures = Vec::new();
        let mut tried = 0usize;
        for resource in &resources {
            let ty = resource["type"].as_str().unwrap();
            assert!(
                resource["supportedProfile"]
                    .as_array()
                    .is_some_and(|p| !p.is_empty()),
                "{ty} declares no profile"
            );
            let declares_patient = resource["searchParam"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "patient");
            let context = if declares_patient {
                format!("patient={patient}&")
            } else {
                String::new()
            };
            let mut queries: Vec<String> = Vec::new();
            for p in resource["searchParam"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                let kind = p["type"].as_str().unwrap();
                let Some(value) = sample_value(ty, name, kind, patient) else {
                    failures.push(format!("{ty}.{name} ({kind}): no sample value"));
                    continue;
                };
                let value = super::client::form(&[(name, value.as_str())]);
                if name == "patient" {
                    queries.push(value);
                } else {
                    queries.push(format!("{context}{value}"));
                }
            }
            for (key, list) in [
                ("_include", &resource["searchInclude"]),
                ("_revinclude", &resource["searchRevInclude"]),
            ] {
                for include in list.as_array().into_iter().flatten() {
                    let q = super::client::form(&[(key, include.as_str().unwrap())]);
                    queries.push(if ty == "Patient" {
                        format!("_id={patient}&{q}")
                    } else {
                        format!("{context}{q}")
                    });
                }
            }
            for q in queries {
                tried += 1;
                let reply = browser.get_with(&format!("{fhir}/{ty}?{q}"), &h).await;
                if reply.status != 200 {
                    failures.push(format!("{ty}?{q} -> {}", reply.status));
                }
            }
        }
        assert!(tried > 100, "{tried} searches");
        assert!(failures.is_empty(), "{failures:#?}");
    });
}

/// The family names of every practitioner in the demo's fixture data.
fn practitioner_names() -> Vec<String> {
    let mut names = Vec::new();
    for file in [
        "uscore_bundle_patient_355.json",
        "uscore_bundle_patient_85.json",
    ] {
        let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
        let bundle: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        for entry in bundle["entry"].as_array().unwrap() {
            let r = &entry["resource"];
            if r["resourceType"] == "Practitioner" {
                for n in r["name"].as_array().into_iter().flatten() {
                    if let Some(f) = n["family"].as_str() {
                        names.push(f.to_owned());
                    }
                }
            }
        }
    }
    assert!(!names.is_empty());
    names
}

#[test]
fn shared_records_name_no_one_the_grant_hides() {
    let d = demo();
    run(async {
        let user = d.user(false);
        let patient = user["patient_id"].as_str().unwrap();
        let Launch { token, mut browser } = launch(
            d,
            "research-app",
            user,
            &["laboratory", "demographics"],
            None,
        )
        .await
        .unwrap();
        let fhir = d.fhir();
        let auth = bearer(&token);
        let h = [("authorization", auth.as_str())];
        let names = practitioner_names();

        // Lab reports still name their performers' ids, never who they are.
        let reports = browser
            .get_with(&format!("{fhir}/DiagnosticReport?patient={patient}"), &h)
            .await;
        assert_eq!(reports.status, 200, "{}", reports.text());
        let text = reports.text();
        for name in &names {
            assert!(!text.contains(name.as_str()), "{name} named in {text}");
        }
        let got = entries(&reports.json());
        assert!(!got.is_empty());
        for r in &got {
            for element in ["performer", "resultsInterpreter"] {
                for reference in r[element].as_array().into_iter().flatten() {
                    assert!(reference.get("display").is_none(), "{reference}");
                    assert!(reference["reference"].is_string(), "{reference}");
                }
            }
        }
        assert!(got.iter().any(|r| {
            r["meta"]["security"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|l| l["code"] == "REDACTED")
        }));

        // Demographics: name and birth date, no Social Security or driver's licence number.
        let me = browser
            .get_with(&format!("{fhir}/Patient/{patient}"), &h)
            .await;
        assert_eq!(me.status, 200, "{}", me.text());
        let me = me.json();
        assert!(me["name"].is_array() && me["birthDate"].is_string());
        for id in me["identifier"].as_array().into_iter().flatten() {
            assert_ne!(id["system"], "http://hl7.org/fhir/sid/us-ssn", "{id}");
            let codes: Vec<&Value> = id["type"]["coding"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| &c["code"])
                .collect();
            assert!(!codes.iter().any(|c| *c == "SS" || *c == "DL"), "{id}");
        }
        assert!(me.get("contact").is_none());

        // Links show the search as asked, and the next page can be followed.
        let page = browser
            .get_with(
                &format!("{fhir}/Observation?patient={patient}&category=laboratory&_count=2"),
                &h,
            )
            .await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        let links = page["link"].as_array().unwrap();
        let url_of = |rel: &str| {
            links
                .iter()
                .find(|l| l["relation"] == rel)
                .and_then(|l| l["url"].as_str())
                .map(str::to_owned)
        };
        let own = url_of("self").unwrap();
        assert!(!own.contains("observation-category"), "{own}");
        assert!(own.len() < 200, "{own}");
        let next = url_of("next").expect("more than two lab results");
        assert!(!next.contains("observation-category"), "{next}");
        let second = browser.get_with(&next, &h).await;
        assert_eq!(second.status, 200, "{}", second.text());
        assert!(!entries(&second.json()).is_empty());
    });
}

/// Vital signs (by `category`) with smoking status (by `code`): two elements of Observation,
/// so no one parameter narrows the search to the grant, and the demo store pages over the
/// matches the guard's `Visibility` accepts. Every page before the last is full, and the pages
/// together hold exactly what one large page holds: where a page starts says nothing of the
/// lab results and other observations the grant hides.
#[test]
fn searches_the_guard_cannot_narrow_page_over_visible_matches_only() {
    let d = demo();
    run(async {
        let user = d.user(false);
        let patient = user["patient_id"].as_str().unwrap();
        let fhir = d.fhir();
        let ids = |bundle: &Value| -> Vec<String> {
            bundle["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["search"]["mode"] == "match")
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        };
        let all_observations = format!("{fhir}/Observation?patient={patient}&_count=500");
        // The fixture holds other observations too (lab results among them): without paging
        // over visible matches, pages would come back short or empty.
        let every = every_category(d);
        let chosen: Vec<&str> = every.iter().map(String::as_str).collect();
        let full = launch(d, "research-app", user, &chosen, None)
            .await
            .unwrap();
        let full_auth = bearer(&full.token);
        let mut full_browser = full.browser;
        let everything = full_browser
            .get_with(&all_observations, &[("authorization", full_auth.as_str())])
            .await
            .json();

        let Launch { token, mut browser } = launch(
            d,
            "research-app",
            user,
            &["vital-signs", "smoking-status"],
            None,
        )
        .await
        .unwrap();
        let auth = bearer(&token);
        let h = [("authorization", auth.as_str())];
        let whole = browser.get_with(&all_observations, &h).await;
        assert_eq!(whole.status, 200, "{}", whole.text());
        let whole = whole.json();
        let visible = ids(&whole);
        assert!(visible.len() >= 3, "{whole}");
        assert!(ids(&everything).len() > visible.len(), "{everything}");

        let mut url = format!("{fhir}/Observation?patient={patient}&_count=2");
        let mut paged = Vec::new();
        for _ in 0..200 {
            let page = browser.get_with(&url, &h).await;
            assert_eq!(page.status, 200, "{url}: {}", page.text());
            let page = page.json();
            let on_page = ids(&page);
            let next = page["link"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["relation"] == "next")
                .and_then(|l| l["url"].as_str())
                .map(str::to_owned);
            if next.is_some() {
                assert_eq!(on_page.len(), 2, "a page before the last is full: {page}");
            } else {
                assert!(!on_page.is_empty(), "no empty last page: {page}");
            }
            paged.extend(on_page);
            match next {
                Some(next) => url = next,
                None => break,
            }
        }
        assert_eq!(paged, visible);
    });
}

/// A care team's or an order's reason names a diagnosis (black-box finding: "Overlapping
/// malignant neoplasm of colon" under *Care team* alone): it goes unless a diagnosis category
/// is granted too, and comes back with one.
#[test]
fn care_team_reasons_need_a_diagnosis_category() {
    let d = demo();
    run(async {
        let user = d.user(false);
        let patient = user["patient_id"].as_str().unwrap();
        let fhir = d.fhir();
        let teams = format!("{fhir}/CareTeam?patient={patient}&_count=100");
        let mut with_reasons = Vec::new();
        for categories in [&["care-team"][..], &["care-team", "problems"][..]] {
            let Launch { token, mut browser } = launch(d, "research-app", user, categories, None)
                .await
                .unwrap();
            let auth = bearer(&token);
            let reply = browser
                .get_with(&teams, &[("authorization", auth.as_str())])
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            let got = entries(&reply.json());
            assert!(!got.is_empty(), "{categories:?}");
            with_reasons.push(
                got.iter()
                    .filter(|r| r.get("reasonCode").is_some() || r.get("reasonReference").is_some())
                    .count(),
            );
            if categories.len() == 1 {
                let text = reply.text();
                assert!(!text.contains("(disorder)"), "{text}");
                assert!(got.iter().all(|r| {
                    r["meta"]["security"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|l| l["code"] == "REDACTED")
                        || r.get("reasonCode").is_none()
                }));
            }
        }
        assert_eq!(with_reasons[0], 0, "{with_reasons:?}");
        assert!(with_reasons[1] > 0, "{with_reasons:?}");
    });
}

/// A modifier written as form encoders write it (`code%3Anot`) is the same parameter as
/// `code:not`, and the `next` link the server writes for it works when followed.
#[test]
fn modifier_searches_page_with_working_links() {
    let d = demo();
    run(async {
        let user = d.user(false);
        let patient = user["patient_id"].as_str().unwrap();
        let fhir = d.fhir();
        let Launch { token, mut browser } = launch(d, "research-app", user, &["vital-signs"], None)
            .await
            .unwrap();
        let auth = bearer(&token);
        let h = [("authorization", auth.as_str())];
        let plain = browser
            .get_with(
                &format!("{fhir}/Observation?patient={patient}&code:not=8310-5&_count=500"),
                &h,
            )
            .await;
        assert_eq!(plain.status, 200, "{}", plain.text());
        let encoded = browser
            .get_with(
                &format!("{fhir}/Observation?patient={patient}&code%3Anot=8310-5&_count=500"),
                &h,
            )
            .await;
        assert_eq!(encoded.status, 200, "{}", encoded.text());
        let ids =
            |b: &Value| -> Vec<Value> { entries(b).iter().map(|r| r["id"].clone()).collect() };
        assert_eq!(ids(&plain.json()), ids(&encoded.json()));
        assert!(ids(&plain.json()).len() > 3);

        let first = browser
            .get_with(
                &format!("{fhir}/Observation?patient={patient}&code%3Anot=8310-5&_count=2"),
                &h,
            )
            .await
            .json();
        let next = first["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .expect("a next page")
            .to_owned();
        assert!(next.contains("code:not=8310-5"), "{next}");
        let second = browser.get_with(&next, &h).await;
        assert_eq!(second.status, 200, "{next}: {}", second.text());
        assert_eq!(entries(&second.json()).len(), 2);
    });
}

/// With *Care providers and places* granted, an app sees the practitioners, organizations and
/// places her record names, not the EHR's whole directory: one only another patient's record
/// names would tell where that patient gets care (black-box finding).
#[test]
fn care_providers_are_the_ones_her_record_names() {
    let d = demo();
    run(async {
        let user = d.user(false);
        let patient = user["patient_id"].as_str().unwrap().to_owned();
        let store = crate::fhir_store::FhirStore::with_fixtures().unwrap();
        let Launch { token, mut browser } = launch(
            d,
            "research-app",
            user,
            &["care-providers", "medications"],
            None,
        )
        .await
        .unwrap();
        let auth = bearer(&token);
        let h = [("authorization", auth.as_str())];
        let fhir = d.fhir();
        for ty in [
            "Practitioner",
            "Organization",
            "Location",
            "PractitionerRole",
        ] {
            let reply = browser
                .get_with(&format!("{fhir}/{ty}?_count=100"), &h)
                .await;
            assert_eq!(reply.status, 200, "{ty}: {}", reply.text());
            let got = entries(&reply.json());
            let hers = store
                .all()
                .filter(|r| r["resourceType"] == ty && store.in_record_of(&patient, r))
                .count();
            assert_eq!(got.len(), hers, "{ty}");
            for r in &got {
                assert!(store.in_record_of(&patient, r), "{ty}/{}", r["id"]);
            }
            for other in store
                .all()
                .filter(|r| r["resourceType"] == ty && !store.in_record_of(&patient, r))
            {
                let id = other["id"].as_str().unwrap();
                let read = browser.get_with(&format!("{fhir}/{ty}/{id}"), &h).await;
                assert_eq!(read.status, 404, "{ty}/{id}");
            }
        }
    });
}

/// A report that files itself as a note by its type (the Inferno data's History and physical
/// note: category LOINC 34117-2) is a clinical note: shared with *Clinical notes*, not with
/// *Other reports* (black-box finding: the reverse).
#[test]
fn a_note_report_is_a_clinical_note_not_another_report() {
    let d = demo();
    run(async {
        let user = d.user(false);
        let fhir = d.fhir();
        let note = format!("{fhir}/DiagnosticReport/8a3fced1-0997-5424-00dc-af9f143cb4f8");
        for (category, status) in [("clinical-notes", 200), ("other-diagnosticreport", 404)] {
            let Launch { token, mut browser } = launch(d, "research-app", user, &[category], None)
                .await
                .unwrap();
            let auth = bearer(&token);
            let reply = browser
                .get_with(&note, &[("authorization", auth.as_str())])
                .await;
            assert_eq!(reply.status, status, "{category}: {}", reply.text());
        }
    });
}
