//! Category registry and enforcement over the two fixture patients.
//!
//! The expected visible set is computed here, independently of the registry file, from the
//! rules of `ccds-fhir-mapping.md` (§1 table, §2.2 smoking codes, §3 systems, §4.4 scopes), and
//! compared with what a tiny in-memory FHIR server returns through the enforcer.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use fhirguard::category::CategoryRegistry;
use fhirguard::enforce::{
    Decision, DenyReason, EnforceConfig, Enforcer, Permissions, ResourceGrant, ResponseCheck,
    ScopeContext,
};
use fhirguard::{CategoryId, FhirRequest, Interaction, PatientId, ResourceType, SearchParam};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::common::fixture_bundle;

// ---------------------------------------------------------------------------------------------
// A tiny FHIR server holding both fixture patients
// ---------------------------------------------------------------------------------------------

/// Resources by (type, id), with transaction `urn:uuid:` references resolved to `Type/id`, as
/// a server would store them.
pub struct Store {
    pub resources: BTreeMap<(String, String), Value>,
}

fn resolve_refs(value: &mut Value, map: &HashMap<String, String>) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj.iter_mut() {
                if k == "reference" {
                    if let Some(target) = v.as_str().and_then(|s| map.get(s)) {
                        *v = Value::String(target.clone());
                    }
                } else {
                    resolve_refs(v, map);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| resolve_refs(i, map)),
        _ => {}
    }
}

impl Store {
    pub fn load() -> Self {
        let mut resources = BTreeMap::new();
        for patient in ["355", "85"] {
            let bundle = fixture_bundle(patient);
            let entries = bundle["entry"].as_array().unwrap();
            let map: HashMap<String, String> = entries
                .iter()
                .map(|e| {
                    let r = &e["resource"];
                    (
                        e["fullUrl"].as_str().unwrap().to_owned(),
                        format!(
                            "{}/{}",
                            r["resourceType"].as_str().unwrap(),
                            r["id"].as_str().unwrap()
                        ),
                    )
                })
                .collect();
            for e in entries {
                let mut r = e["resource"].clone();
                resolve_refs(&mut r, &map);
                let key = (
                    r["resourceType"].as_str().unwrap().to_owned(),
                    r["id"].as_str().unwrap().to_owned(),
                );
                resources.insert(key, r);
            }
        }
        Self { resources }
    }

    pub fn get(&self, ty: &str, id: &str) -> Option<&Value> {
        self.resources.get(&(ty.to_owned(), id.to_owned()))
    }

    fn of_type<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.resources
            .iter()
            .filter(move |((t, _), _)| t == ty)
            .map(|(_, r)| r)
    }

    /// Executes a type search; returns the matches and the included resources.
    pub fn search(&self, ty: &str, params: &[SearchParam]) -> (Vec<Value>, Vec<Value>) {
        let mut matches: Vec<Value> = self
            .of_type(ty)
            .filter(|r| params.iter().all(|p| param_matches(r, p)))
            .cloned()
            .collect();
        matches.sort_by_key(|r| r["id"].as_str().unwrap().to_owned());
        let mut includes = Vec::new();
        for p in params {
            for v in &p.values {
                match (p.name.as_str(), v.as_str()) {
                    ("_include", "MedicationRequest:medication") => {
                        for m in &matches {
                            if let Some(r) = m["medicationReference"]["reference"].as_str() {
                                let (t, id) = r.split_once('/').unwrap();
                                includes.extend(self.get(t, id).cloned());
                            }
                        }
                    }
                    ("_revinclude", "Provenance:target") => {
                        for prov in self.of_type("Provenance") {
                            let targets = prov["target"].as_array().unwrap();
                            let hit = matches.iter().any(|m| {
                                let key = format!(
                                    "{}/{}",
                                    m["resourceType"].as_str().unwrap(),
                                    m["id"].as_str().unwrap()
                                );
                                targets.iter().any(|t| t["reference"] == key.as_str())
                            });
                            if hit {
                                includes.push(prov.clone());
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        (matches, includes)
    }

    /// A searchset page (`page` from 0) of `count` matches, with includes on the first page and
    /// the links and total a server would send.
    pub fn search_page(
        &self,
        ty: &str,
        params: &[SearchParam],
        page: usize,
        count: usize,
    ) -> Value {
        let (matches, includes) = self.search(ty, params);
        let total = matches.len();
        let mut entries: Vec<Value> = matches
            .into_iter()
            .skip(page * count)
            .take(count)
            .map(|r| json!({"resource": r, "search": {"mode": "match"}}))
            .collect();
        if page == 0 {
            entries.extend(
                includes
                    .into_iter()
                    .map(|r| json!({"resource": r, "search": {"mode": "include"}})),
            );
        }
        let mut links = vec![json!({"relation": "self", "url": format!("{ty}?page={page}")})];
        if (page + 1) * count < total {
            links.push(json!({"relation": "next", "url": format!("{ty}?page={}", page + 1)}));
        }
        links.push(
            json!({"relation": "last", "url": format!("{ty}?page={}", total / count.max(1))}),
        );
        json!({"resourceType": "Bundle", "type": "searchset", "total": total, "link": links, "entry": entries})
    }
}

fn codings(v: Option<&Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut push_cc = |cc: &Value| {
        if let Some(cs) = cc["coding"].as_array() {
            for c in cs {
                out.push((
                    c["system"].as_str().unwrap_or("").to_owned(),
                    c["code"].as_str().unwrap_or("").to_owned(),
                ));
            }
        } else if let Some(s) = cc.as_str() {
            out.push((String::new(), s.to_owned()));
        }
    };
    match v {
        Some(Value::Array(items)) => items.iter().for_each(&mut push_cc),
        Some(other) => push_cc(other),
        None => {}
    }
    out
}

fn token_match(resource_codes: &[(String, String)], token: &str) -> bool {
    match token.split_once('|') {
        Some((s, c)) => resource_codes.iter().any(|(rs, rc)| rs == s && rc == c),
        None => resource_codes.iter().any(|(_, rc)| rc == token),
    }
}

fn ref_is(r: &Value, value: &str) -> bool {
    let want = if value.contains('/') {
        value.to_owned()
    } else {
        format!("Patient/{value}")
    };
    let check = |x: &Value| x["reference"].as_str() == Some(want.as_str());
    match r {
        Value::Array(items) => items.iter().any(check),
        other => check(other),
    }
}

fn param_matches(r: &Value, p: &SearchParam) -> bool {
    let any = |f: &dyn Fn(&str) -> bool| p.values.iter().any(|v| f(v));
    match p.name.as_str() {
        "patient" | "subject" => any(&|v| {
            ["subject", "patient", "beneficiary"]
                .iter()
                .any(|e| r.get(*e).is_some_and(|x| ref_is(x, v)))
                || (r["resourceType"] == "Provenance" && ref_is(&r["target"], v))
        }),
        "_id" => any(&|v| r["id"] == v),
        "category" | "code" | "type" => {
            let codes = codings(r.get(p.name.as_str()));
            any(&|v| token_match(&codes, v))
        }
        "status" | "intent" => any(&|v| r[p.name.as_str()] == v),
        "clinical-status" => any(&|v| token_match(&codings(r.get("clinicalStatus")), v)),
        "_include" | "_revinclude" | "_count" | "_summary" => true,
        other => panic!("test store does not implement {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The expected categories, written from the mapping document (not from the registry file)
// ---------------------------------------------------------------------------------------------

const OBS_R4: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const OBS_D2: &str = "http://hl7.org/fhir/observation-category";

fn obs_cat(codes: &[(String, String)], code: &str) -> bool {
    codes.iter().any(|(s, c)| {
        (s == OBS_R4
            || s == OBS_D2
            || s == "http://terminology.hl7.org//CodeSystem-observation-category")
            && c == code
    })
}

/// What a resource is, per the mapping document: clinical categories, or `support:<with>`.
pub fn expected_categories(r: &Value) -> Vec<String> {
    let ty = r["resourceType"].as_str().unwrap();
    let cat = codings(r.get("category"));
    let code = codings(r.get("code"));
    let has =
        |list: &[(String, String)], s: &str, c: &str| list.iter().any(|(x, y)| x == s && y == c);
    let mut out: Vec<&str> = Vec::new();
    match ty {
        "Patient" => out.push("demographics"),
        "Observation" => {
            let smoking = has(&code, "http://loinc.org", "72166-2")
                || has(&code, "http://loinc.org", "11367-0")
                || has(&code, "http://snomed.info/sct", "401201003")
                || has(&code, "http://snomed.info/sct", "782516008");
            if smoking {
                out.push("smoking-status");
            }
            if obs_cat(&cat, "laboratory") {
                out.push("laboratory");
            }
            if obs_cat(&cat, "vital-signs") {
                out.push("vital-signs");
            }
            if obs_cat(&cat, "social-history") {
                out.push("social-history");
            }
        }
        "Condition" => {
            if has(
                &cat,
                "http://terminology.hl7.org/CodeSystem/condition-category",
                "problem-list-item",
            ) {
                out.push("problems");
            }
            if has(
                &cat,
                "http://hl7.org/fhir/us/core/CodeSystem/condition-category",
                "health-concern",
            ) {
                out.push("health-concerns");
            }
            if has(
                &cat,
                "http://terminology.hl7.org/CodeSystem/condition-category",
                "encounter-diagnosis",
            ) {
                out.push("encounter-diagnoses");
            }
        }
        "DiagnosticReport" => {
            if has(&cat, "http://terminology.hl7.org/CodeSystem/v2-0074", "LAB") {
                out.push("laboratory");
            }
            // US Core's note categories, or a note type as the category (the Inferno data's
            // History and physical note).
            if [
                "LP29684-5",
                "LP29708-2",
                "LP7839-6",
                "18842-5",
                "11488-4",
                "34117-2",
                "11506-3",
                "28570-0",
                "18748-4",
                "11502-2",
                "11526-1",
                "11504-8",
                "34111-5",
                "51847-2",
            ]
            .iter()
            .any(|c| has(&cat, "http://loinc.org", c))
            {
                out.push("clinical-notes");
            }
        }
        "DocumentReference" => {
            let note_types = [
                "18842-5", "11488-4", "34117-2", "11506-3", "28570-0", "18748-4", "11502-2",
                "11526-1", "11504-8", "34111-5",
            ];
            let types = codings(r.get("type"));
            if has(
                &cat,
                "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                "clinical-note",
            ) || note_types
                .iter()
                .any(|c| has(&types, "http://loinc.org", c))
            {
                out.push("clinical-notes");
            }
        }
        "CarePlan"
            if has(
                &cat,
                "http://hl7.org/fhir/us/core/CodeSystem/careplan-category",
                "assess-plan",
            ) =>
        {
            out.push("assessment-and-plan");
        }
        "MedicationRequest" | "MedicationDispense" => out.push("medications"),
        "AllergyIntolerance" => out.push("allergies"),
        "Procedure" => out.push("procedures"),
        "CareTeam" => out.push("care-team"),
        "Immunization" => out.push("immunizations"),
        "Device" => out.push("implantable-devices"),
        "Goal" => out.push("goals"),
        // USCDI Encounter Information and Provenance are data classes of their own: an
        // encounter's reason names diagnoses, a Provenance lists the records it covers.
        "Encounter" => out.push("encounters"),
        "Provenance" => out.push("provenance"),
        "Coverage" => out.push("insurance"),
        "ServiceRequest" => out.push("orders"),
        "Specimen" => out.push("specimens"),
        "RelatedPerson" => out.push("related-people"),
        // Who and where: not patient data, shared only with the care-providers category.
        "Practitioner" | "PractitionerRole" | "Organization" | "Location" => {
            return vec!["support:care-providers".to_owned()];
        }
        "Medication" => return vec!["support:medications".to_owned()],
        _ => {}
    }
    if out.is_empty() {
        return vec![format!("other-{}", ty.to_ascii_lowercase())];
    }
    out.into_iter().map(str::to_owned).collect()
}

fn belongs_to(r: &Value, patient: &str) -> bool {
    let ty = r["resourceType"].as_str().unwrap();
    if matches!(
        ty,
        "Practitioner" | "PractitionerRole" | "Organization" | "Location" | "Medication"
    ) {
        return true;
    }
    if ty == "Patient" {
        return r["id"] == patient;
    }
    let want = format!("Patient/{patient}");
    ["subject", "patient", "beneficiary", "target"]
        .iter()
        .any(|e| match r.get(*e) {
            Some(Value::Array(items)) => items.iter().any(|x| x["reference"] == want.as_str()),
            Some(x) => x["reference"] == want.as_str(),
            None => false,
        })
}

/// Whether `r` must be visible to an app holding `granted` for `patient`.
pub fn expected_visible(r: &Value, patient: &str, granted: &BTreeSet<String>) -> bool {
    if !belongs_to(r, patient) {
        return false;
    }
    expected_categories(r)
        .iter()
        .any(|c| match c.strip_prefix("support:") {
            Some("*") => !granted.is_empty(),
            Some(with) => granted.contains(with),
            None => granted.contains(c),
        })
}

// ---------------------------------------------------------------------------------------------
// Subsets and searches
// ---------------------------------------------------------------------------------------------

fn all_categories(store: &Store, registry: &CategoryRegistry) -> BTreeSet<String> {
    let mut all: BTreeSet<String> = registry.ids().map(|c| c.as_str().to_owned()).collect();
    for r in store.resources.values() {
        for c in expected_categories(r) {
            if !c.starts_with("support:") {
                all.insert(c);
            }
        }
    }
    all
}

fn subsets(store: &Store, registry: &CategoryRegistry) -> Vec<(&'static str, BTreeSet<String>)> {
    let set = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
    let all = all_categories(store, registry);
    let mut no_concerns = all.clone();
    no_concerns.remove("health-concerns");
    vec![
        ("all", all),
        ("none", BTreeSet::new()),
        ("vital signs + labs", set(&["vital-signs", "laboratory"])),
        ("smoking only", set(&["smoking-status"])),
        ("problems without health concerns", set(&["problems"])),
        ("everything but health concerns", no_concerns),
        (
            "notes, medications, devices",
            set(&[
                "clinical-notes",
                "medications",
                "implantable-devices",
                "insurance",
            ]),
        ),
        ("labs only", set(&["laboratory"])),
        (
            "visits, people and places, record history",
            set(&["encounters", "care-providers", "provenance", "orders"]),
        ),
    ]
}

fn p(name: &str, value: &str) -> SearchParam {
    SearchParam {
        name: name.to_owned(),
        modifier: None,
        values: value.split(',').map(str::to_owned).collect(),
    }
}

/// The US Core searches an app makes (mapping document §1 last column), for `patient`.
fn us_core_searches(patient: &str) -> Vec<(&'static str, Vec<SearchParam>)> {
    let pt = || p("patient", patient);
    vec![
        ("Patient", vec![p("_id", patient)]),
        (
            "Patient",
            vec![p("_id", patient), p("_revinclude", "Provenance:target")],
        ),
        ("Observation", vec![pt(), p("category", "vital-signs")]),
        ("Observation", vec![pt(), p("category", "laboratory")]),
        ("Observation", vec![pt(), p("category", "social-history")]),
        ("Observation", vec![pt(), p("category", "survey")]),
        (
            "Observation",
            vec![pt(), p("code", "http://loinc.org|72166-2")],
        ),
        ("Observation", vec![pt()]),
        ("Condition", vec![pt()]),
        ("Condition", vec![pt(), p("category", "problem-list-item")]),
        ("Condition", vec![pt(), p("category", "health-concern")]),
        (
            "Condition",
            vec![pt(), p("category", "encounter-diagnosis")],
        ),
        ("DiagnosticReport", vec![pt(), p("category", "LAB")]),
        ("DiagnosticReport", vec![pt()]),
        ("DocumentReference", vec![pt()]),
        (
            "CarePlan",
            vec![
                pt(),
                p(
                    "category",
                    "http://hl7.org/fhir/us/core/CodeSystem/careplan-category|assess-plan",
                ),
            ],
        ),
        ("CareTeam", vec![pt(), p("status", "active")]),
        (
            "MedicationRequest",
            vec![
                pt(),
                p("intent", "order"),
                p("_include", "MedicationRequest:medication"),
            ],
        ),
        ("MedicationDispense", vec![pt()]),
        ("AllergyIntolerance", vec![pt()]),
        ("Procedure", vec![pt()]),
        ("Immunization", vec![pt()]),
        ("Goal", vec![pt()]),
        ("Device", vec![pt()]),
        ("Encounter", vec![pt()]),
        ("Coverage", vec![pt()]),
        ("Specimen", vec![pt()]),
    ]
}

fn grants_for(
    registry: &CategoryRegistry,
    granted: &BTreeSet<String>,
    granular: bool,
) -> Vec<ResourceGrant> {
    if granular {
        let ids: Vec<CategoryId> = granted
            .iter()
            .map(|c| CategoryId::new(c.clone()).unwrap())
            .collect();
        let mut grants = registry.scopes_for(&ids, ScopeContext::Patient);
        // Implicit buckets of types the registry has never heard of need their whole-type scope.
        for c in granted {
            if let Some(rest) = c.strip_prefix("other-") {
                let ty = match rest {
                    "coverage" => "Coverage",
                    "specimen" => "Specimen",
                    "servicerequest" => "ServiceRequest",
                    "relatedperson" => "RelatedPerson",
                    "media" => "Media",
                    "endpoint" => "Endpoint",
                    _ => continue,
                };
                grants.push(ResourceGrant::new(
                    ScopeContext::Patient,
                    ResourceType::new(ty).unwrap(),
                    Permissions::READ_SEARCH,
                ));
            }
        }
        grants
    } else {
        vec![ResourceGrant::wildcard(
            ScopeContext::Patient,
            Permissions::READ_SEARCH,
        )]
    }
}

fn enforcer<'r>(
    registry: &'r CategoryRegistry,
    patient: &str,
    granted: &BTreeSet<String>,
    granular: bool,
) -> Enforcer<'r> {
    Enforcer::new(
        registry,
        grants_for(registry, granted, granular),
        Some(PatientId::new(patient).unwrap()),
        granted.iter().map(|c| CategoryId::new(c.clone()).unwrap()),
        EnforceConfig {
            read_only: true,
            ..EnforceConfig::default()
        },
    )
}

fn search_request(ty: &str, params: &[SearchParam]) -> FhirRequest {
    let mut r = FhirRequest::new(Interaction::SearchType);
    r.resource_type = ResourceType::new(ty);
    r.params = params.to_vec();
    r
}

/// Whether `a` refers to `b` or `b` to `a` (a literal reference ending in the other's
/// `Type/id`).
fn linked(a: &Value, b: &Value) -> bool {
    fn refers(from: &Value, to: &str) -> bool {
        match from {
            Value::Object(map) => map.iter().any(|(k, v)| match (k.as_str(), v) {
                ("reference", Value::String(r)) => {
                    let r = r.split("/_history").next().unwrap_or(r);
                    r == to || r.ends_with(&format!("/{to}"))
                }
                _ => refers(v, to),
            }),
            Value::Array(items) => items.iter().any(|v| refers(v, to)),
            _ => false,
        }
    }
    refers(a, &key(b)) || refers(b, &key(a))
}

fn key(r: &Value) -> String {
    format!(
        "{}/{}",
        r["resourceType"].as_str().unwrap(),
        r["id"].as_str().unwrap()
    )
}

/// Runs a search through the enforcer with paging; returns every key returned, or the denial.
fn run_search(
    store: &Store,
    e: &Enforcer<'_>,
    ty: &str,
    params: &[SearchParam],
    count: usize,
) -> Result<BTreeSet<String>, DenyReason> {
    let request = search_request(ty, params);
    let mut executed: Vec<SearchParam> = params.to_vec();
    match e.decide(&request) {
        Decision::Deny(reason) => return Err(reason),
        Decision::Narrow { add, response } => {
            assert_eq!(response, ResponseCheck::Bundle);
            executed.extend(add);
        }
        Decision::Allow { response } => assert_eq!(response, ResponseCheck::Bundle),
        other => panic!("unexpected decision {other:?}"),
    }
    let mut seen = BTreeSet::new();
    let mut page = 0;
    loop {
        let mut bundle = store.search_page(ty, &executed, page, count);
        let report = e.filter_bundle(&mut bundle);
        let entries = bundle["entry"].as_array().unwrap();
        assert_eq!(entries.len(), report.kept);
        let has_next = bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "next");
        assert!(
            bundle["link"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["relation"] != "last"),
            "last link reveals the page count"
        );
        if has_next {
            assert!(
                bundle.get("total").is_none(),
                "total must not leak while paging"
            );
        } else if page == 0 {
            let matches = entries
                .iter()
                .filter(|x| x["search"]["mode"] == "match")
                .count();
            assert_eq!(
                bundle["total"], matches,
                "total counts only visible matches"
            );
        }
        for entry in entries {
            seen.insert(key(&entry["resource"]));
        }
        if !has_next {
            break;
        }
        page += 1;
    }
    Ok(seen)
}

#[test]
fn fixture_categories_match_the_independent_mapping() {
    let store = Store::load();
    let registry = CategoryRegistry::default_registry();
    for r in store.resources.values() {
        let class = registry.classify(r).unwrap();
        let expected = expected_categories(r);
        if expected[0].starts_with("support:") {
            assert!(class.categories().is_empty(), "{}", key(r));
            continue;
        }
        let got: Vec<String> = class
            .categories()
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        let mut want = expected.clone();
        want.sort();
        assert_eq!(got, want, "{}", key(r));
        // Raw bytes agree with the Value path.
        let bytes = serde_json::to_vec(r).unwrap();
        assert_eq!(registry.classify_bytes(&bytes).unwrap(), class);
    }
}

#[test]
fn every_us_core_search_returns_exactly_the_approved_subset() {
    let store = Store::load();
    let registry = CategoryRegistry::default_registry();
    for (label, granted) in subsets(&store, &registry) {
        let mut returned = 0usize;
        for granular in [false, true] {
            for patient in ["355", "85"] {
                let e = enforcer(&registry, patient, &granted, granular);
                for (ty, params) in us_core_searches(patient) {
                    let (matches, includes) = store.search(ty, &params);
                    let shown: Vec<&Value> = matches
                        .iter()
                        .filter(|r| expected_visible(r, patient, &granted))
                        .collect();
                    // An include comes back only with a match it belongs to (one that refers
                    // to it or that it refers to): one brought in by a hidden match alone would
                    // tell that the match exists.
                    let expected: BTreeSet<String> = shown
                        .iter()
                        .copied()
                        .chain(includes.iter().filter(|r| {
                            expected_visible(r, patient, &granted)
                                && shown.iter().any(|m| linked(m, r))
                        }))
                        .map(key)
                        .collect();
                    for count in [1000, 7] {
                        match run_search(&store, &e, ty, &params, count) {
                            Ok(got) => {
                                assert_eq!(
                                    got, expected,
                                    "{label} granular={granular} patient {patient} {ty} {params:?} count {count}"
                                );
                                returned += got.len();
                            }
                            Err(DenyReason::NoCoveringScope { .. }) => {
                                // The app holds no scope on the searched type at all (granular
                                // scopes of other categories): refused before execution.
                                let grants = grants_for(&registry, &granted, granular);
                                assert!(!grants.iter().any(|g| g.names_type(ty)), "{label} {ty}");
                            }
                            Err(reason) => panic!(
                                "{label} granular={granular} patient {patient}: {ty} denied ({reason})"
                            ),
                        }
                    }
                }
            }
        }
        // Not vacuous: every non-empty subset shows something, the empty one nothing.
        assert_eq!(
            returned == 0,
            granted.is_empty(),
            "{label}: {returned} returned"
        );
    }
}

#[test]
fn every_read_returns_exactly_the_approved_subset_and_hides_existence() {
    let store = Store::load();
    let registry = CategoryRegistry::default_registry();
    for (label, granted) in subsets(&store, &registry) {
        for granular in [false, true] {
            for patient in ["355", "85"] {
                let e = enforcer(&registry, patient, &granted, granular);
                for ((ty, id), r) in &store.resources {
                    let mut read = FhirRequest::new(Interaction::Read);
                    read.resource_type = ResourceType::new(ty);
                    read.id = Some(id.clone());
                    let want = expected_visible(r, patient, &granted);
                    let got = match e.decide(&read) {
                        Decision::Allow {
                            response: ResponseCheck::Resource,
                        } => match e.check_read(&read, r) {
                            Ok(()) => true,
                            Err(reason) => {
                                // Denied after fetch: on the wire exactly like a missing resource.
                                assert_eq!(e.wire_outcome(&reason), e.missing_outcome());
                                false
                            }
                        },
                        Decision::Deny(DenyReason::OtherPatientRecord) => {
                            // Refused before the read, on the wire like a missing resource.
                            let reason = DenyReason::OtherPatientRecord;
                            assert_eq!(e.wire_outcome(&reason), e.missing_outcome());
                            false
                        }
                        Decision::Deny(DenyReason::NoCoveringScope { .. }) => false,
                        other => panic!("unexpected {other:?}"),
                    };
                    assert_eq!(
                        got, want,
                        "{label} granular={granular} patient {patient} read {ty}/{id}"
                    );
                }
            }
        }
    }
}

#[test]
fn another_patients_ids_are_refused_before_execution() {
    let store = Store::load();
    let registry = CategoryRegistry::default_registry();
    let all = all_categories(&store, &registry);
    let e = enforcer(&registry, "355", &all, false);
    for params in [
        vec![p("patient", "85")],
        vec![p("subject", "Patient/85")],
        vec![p("patient", "355,85")],
    ] {
        assert_eq!(
            run_search(&store, &e, "Observation", &params, 50),
            Err(DenyReason::OtherPatient)
        );
    }
    assert_eq!(
        run_search(&store, &e, "Patient", &[p("_id", "85")], 50),
        Err(DenyReason::OtherPatient)
    );
    // `_id` lists of another patient's resources come back empty, total 0, same status.
    let theirs: Vec<String> = store
        .resources
        .iter()
        .filter(|((t, _), r)| t == "Observation" && belongs_to(r, "85"))
        .map(|((_, id), _)| id.clone())
        .take(20)
        .collect();
    let got = run_search(
        &store,
        &e,
        "Observation",
        &[p("_id", &theirs.join(","))],
        50,
    )
    .unwrap();
    assert!(got.is_empty());
    let mut everything = FhirRequest::new(Interaction::Operation("everything".into()));
    everything.resource_type = ResourceType::new("Patient");
    everything.id = Some("85".into());
    assert_eq!(
        e.decide(&everything),
        Decision::Deny(DenyReason::OtherPatientRecord)
    );
}

#[test]
fn everything_and_history_are_filtered_like_searches() {
    let store = Store::load();
    let registry = CategoryRegistry::default_registry();
    let granted: BTreeSet<String> = ["vital-signs", "laboratory"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let e = enforcer(&registry, "355", &granted, true);
    let mut everything = FhirRequest::new(Interaction::Operation("everything".into()));
    everything.resource_type = ResourceType::new("Patient");
    everything.id = Some("355".into());
    // Granular scopes carry no Patient scope: $everything needs one.
    assert!(matches!(
        e.decide(&everything),
        Decision::Deny(DenyReason::NoCoveringScope { .. })
    ));
    let e = enforcer(&registry, "355", &granted, false);
    assert_eq!(
        e.decide(&everything),
        Decision::Allow {
            response: ResponseCheck::Bundle
        }
    );
    // The server's $everything (both patients' data, to prove the filter): only the subset.
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset",
        "entry": store.resources.values().map(|r| json!({"resource": r})).collect::<Vec<_>>()});
    e.filter_bundle(&mut bundle);
    let got: BTreeSet<String> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| key(&x["resource"]))
        .collect();
    let want: BTreeSet<String> = store
        .resources
        .values()
        .filter(|r| expected_visible(r, "355", &granted))
        .map(key)
        .collect();
    assert_eq!(got, want);
    assert_eq!(bundle["total"], want.len());

    // Type history: versions of every patient, deleted entries without a resource.
    let mut history = FhirRequest::new(Interaction::HistoryType);
    history.resource_type = ResourceType::new("Observation");
    assert!(e.decide(&history).is_allowed());
    let mut entries: Vec<Value> = store
        .of_type("Observation")
        .map(|r| json!({"resource": r, "request": {"method": "PUT"}}))
        .collect();
    entries.push(json!({"request": {"method": "DELETE", "url": "Observation/gone"}}));
    let mut bundle = json!({"resourceType": "Bundle", "type": "history", "entry": entries});
    e.filter_bundle(&mut bundle);
    for x in bundle["entry"].as_array().unwrap() {
        assert!(expected_visible(&x["resource"], "355", &granted));
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

fn pool() -> &'static (Store, Vec<String>) {
    static POOL: std::sync::OnceLock<(Store, Vec<String>)> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let store = Store::load();
        let registry = CategoryRegistry::default_registry();
        let all: Vec<String> = all_categories(&store, &registry).into_iter().collect();
        (store, all)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Filtering never adds a resource, and granting more never shows less.
    #[test]
    fn filtering_is_monotone(
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 1..80),
        small in proptest::collection::vec(any::<bool>(), 40),
        extra in proptest::collection::vec(any::<bool>(), 40),
        patient in prop::sample::select(vec!["355", "85"]),
        granular in any::<bool>(),
    ) {
        let (store, all) = pool();
        let registry = CategoryRegistry::default_registry();
        let resources: Vec<&Value> = store.resources.values().collect();
        let entries: Vec<Value> = picks.iter().map(|i| json!({"resource": *i.get(&resources)})).collect();
        let bundle = json!({"resourceType": "Bundle", "type": "searchset", "entry": entries});
        let input: BTreeSet<String> = picks.iter().map(|i| { let r: &&Value = i.get(&resources); key(r) }).collect();

        let a: BTreeSet<String> = all.iter().zip(small.iter().cycle()).filter(|(_, b)| **b).map(|(c, _)| c.clone()).collect();
        let b: BTreeSet<String> = all.iter().zip(small.iter().cycle().zip(extra.iter().cycle())).filter(|(_, (x, y))| **x || **y).map(|(c, _)| c.clone()).collect();

        let shown = |granted: &BTreeSet<String>| {
            let e = enforcer(&registry, patient, granted, granular);
            let mut out = bundle.clone();
            e.filter_bundle(&mut out);
            out["entry"].as_array().unwrap().iter().map(|x| key(&x["resource"])).collect::<BTreeSet<String>>()
        };
        let shown_a = shown(&a);
        let shown_b = shown(&b);
        prop_assert!(shown_a.is_subset(&input));
        prop_assert!(shown_b.is_subset(&input));
        prop_assert!(shown_a.is_subset(&shown_b));
    }
}
