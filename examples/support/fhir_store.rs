//! A small in-memory FHIR R4 store for the demo EHR, the walkthrough and the tests: the part of
//! an EHR that fhirguard does *not* provide (the host's own FHIR engine), kept just capable
//! enough to serve the two US Core fixture patients the way a real server would.
//!
//! It loads transaction Bundles (resolving `urn:uuid:` references to `Type/id`), and answers
//! read, vread, type searches with the US Core search parameters (token, reference, date and
//! string matching, `_id`, `_lastUpdated`, `_include`, `_revinclude`, `_count`, paging with
//! `_offset`, `_summary=count`), Patient-compartment searches and `Patient/$everything` (the
//! guard refuses `_summary` other than `false` before a request gets here). It knows nothing
//! about scopes or consent: fhirguard's middleware narrows the request before it gets here and
//! filters what comes back.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use fhirguard::{FhirRequest, Interaction, SearchParam};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Why the store could not answer. The demo maps each to a generic OperationOutcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The bundle could not be loaded.
    BadBundle(String),
    /// The resource does not exist.
    NotFound,
    /// A search parameter this store does not implement.
    UnsupportedParameter(String),
    /// A parameter value this store cannot interpret.
    BadValue(String),
    /// An interaction this store does not implement.
    UnsupportedInteraction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Token,
    Reference,
    Date,
    String,
}

/// (resource type, parameter) → how to evaluate it. `*` rows apply to every type.
const PARAMS: &[(&str, &str, Kind, &[&str])] = &[
    ("*", "_id", Kind::Token, &["id"]),
    ("*", "_lastUpdated", Kind::Date, &["meta.lastUpdated"]),
    (
        "AllergyIntolerance",
        "patient",
        Kind::Reference,
        &["patient"],
    ),
    (
        "AllergyIntolerance",
        "clinical-status",
        Kind::Token,
        &["clinicalStatus"],
    ),
    ("CarePlan", "patient", Kind::Reference, &["subject"]),
    ("CarePlan", "category", Kind::Token, &["category"]),
    ("CarePlan", "status", Kind::Token, &["status"]),
    ("CarePlan", "date", Kind::Date, &["period"]),
    ("CareTeam", "patient", Kind::Reference, &["subject"]),
    ("CareTeam", "status", Kind::Token, &["status"]),
    ("CareTeam", "role", Kind::Token, &["participant.role"]),
    ("Condition", "patient", Kind::Reference, &["subject"]),
    ("Condition", "category", Kind::Token, &["category"]),
    (
        "Condition",
        "clinical-status",
        Kind::Token,
        &["clinicalStatus"],
    ),
    ("Condition", "code", Kind::Token, &["code"]),
    ("Condition", "encounter", Kind::Reference, &["encounter"]),
    (
        "Condition",
        "onset-date",
        Kind::Date,
        &["onsetDateTime", "onsetPeriod"],
    ),
    (
        "Condition",
        "abatement-date",
        Kind::Date,
        &["abatementDateTime", "abatementPeriod"],
    ),
    ("Condition", "recorded-date", Kind::Date, &["recordedDate"]),
    ("Coverage", "patient", Kind::Reference, &["beneficiary"]),
    ("Device", "patient", Kind::Reference, &["patient"]),
    ("Device", "type", Kind::Token, &["type"]),
    ("Device", "status", Kind::Token, &["status"]),
    ("DiagnosticReport", "patient", Kind::Reference, &["subject"]),
    ("DiagnosticReport", "category", Kind::Token, &["category"]),
    ("DiagnosticReport", "code", Kind::Token, &["code"]),
    ("DiagnosticReport", "status", Kind::Token, &["status"]),
    (
        "DiagnosticReport",
        "date",
        Kind::Date,
        &["effectiveDateTime", "effectivePeriod"],
    ),
    (
        "DiagnosticReport",
        "encounter",
        Kind::Reference,
        &["encounter"],
    ),
    (
        "DocumentReference",
        "patient",
        Kind::Reference,
        &["subject"],
    ),
    ("DocumentReference", "category", Kind::Token, &["category"]),
    ("DocumentReference", "type", Kind::Token, &["type"]),
    ("DocumentReference", "status", Kind::Token, &["status"]),
    ("DocumentReference", "date", Kind::Date, &["date"]),
    (
        "DocumentReference",
        "period",
        Kind::Date,
        &["context.period"],
    ),
    (
        "DocumentReference",
        "encounter",
        Kind::Reference,
        &["context.encounter"],
    ),
    ("Encounter", "patient", Kind::Reference, &["subject"]),
    ("Encounter", "class", Kind::Token, &["class"]),
    ("Encounter", "type", Kind::Token, &["type"]),
    ("Encounter", "status", Kind::Token, &["status"]),
    ("Encounter", "date", Kind::Date, &["period"]),
    ("Encounter", "identifier", Kind::Token, &["identifier"]),
    (
        "Encounter",
        "location",
        Kind::Reference,
        &["location.location"],
    ),
    (
        "Encounter",
        "discharge-disposition",
        Kind::Token,
        &["hospitalization.dischargeDisposition"],
    ),
    ("Goal", "patient", Kind::Reference, &["subject"]),
    (
        "Goal",
        "lifecycle-status",
        Kind::Token,
        &["lifecycleStatus"],
    ),
    ("Goal", "target-date", Kind::Date, &["target.dueDate"]),
    ("Goal", "description", Kind::Token, &["description"]),
    ("Immunization", "patient", Kind::Reference, &["patient"]),
    ("Immunization", "status", Kind::Token, &["status"]),
    ("Immunization", "date", Kind::Date, &["occurrenceDateTime"]),
    ("Location", "name", Kind::String, &["name", "alias"]),
    ("Location", "address", Kind::String, &["address"]),
    ("Location", "address-city", Kind::String, &["address.city"]),
    (
        "Location",
        "address-state",
        Kind::String,
        &["address.state"],
    ),
    (
        "Location",
        "address-postalcode",
        Kind::String,
        &["address.postalCode"],
    ),
    ("Media", "patient", Kind::Reference, &["subject"]),
    (
        "MedicationDispense",
        "patient",
        Kind::Reference,
        &["subject"],
    ),
    ("MedicationDispense", "status", Kind::Token, &["status"]),
    ("MedicationDispense", "type", Kind::Token, &["type"]),
    (
        "MedicationRequest",
        "patient",
        Kind::Reference,
        &["subject"],
    ),
    ("MedicationRequest", "status", Kind::Token, &["status"]),
    ("MedicationRequest", "intent", Kind::Token, &["intent"]),
    (
        "MedicationRequest",
        "authoredon",
        Kind::Date,
        &["authoredOn"],
    ),
    (
        "MedicationRequest",
        "encounter",
        Kind::Reference,
        &["encounter"],
    ),
    (
        "MedicationRequest",
        "medication",
        Kind::Reference,
        &["medicationReference"],
    ),
    ("Observation", "patient", Kind::Reference, &["subject"]),
    ("Observation", "category", Kind::Token, &["category"]),
    ("Observation", "code", Kind::Token, &["code"]),
    ("Observation", "status", Kind::Token, &["status"]),
    (
        "Observation",
        "date",
        Kind::Date,
        &["effectiveDateTime", "effectivePeriod", "effectiveInstant"],
    ),
    ("Observation", "encounter", Kind::Reference, &["encounter"]),
    ("Organization", "name", Kind::String, &["name", "alias"]),
    ("Organization", "address", Kind::String, &["address"]),
    ("Patient", "identifier", Kind::Token, &["identifier"]),
    ("Patient", "name", Kind::String, &["name"]),
    ("Patient", "family", Kind::String, &["name.family"]),
    ("Patient", "given", Kind::String, &["name.given"]),
    ("Patient", "birthdate", Kind::Date, &["birthDate"]),
    ("Patient", "gender", Kind::Token, &["gender"]),
    ("Patient", "death-date", Kind::Date, &["deceasedDateTime"]),
    ("Practitioner", "name", Kind::String, &["name"]),
    ("Practitioner", "identifier", Kind::Token, &["identifier"]),
    (
        "PractitionerRole",
        "practitioner",
        Kind::Reference,
        &["practitioner"],
    ),
    ("PractitionerRole", "specialty", Kind::Token, &["specialty"]),
    ("Procedure", "patient", Kind::Reference, &["subject"]),
    ("Procedure", "code", Kind::Token, &["code"]),
    ("Procedure", "status", Kind::Token, &["status"]),
    (
        "Procedure",
        "date",
        Kind::Date,
        &["performedDateTime", "performedPeriod"],
    ),
    ("Provenance", "patient", Kind::Reference, &["target"]),
    ("Provenance", "target", Kind::Reference, &["target"]),
    ("RelatedPerson", "patient", Kind::Reference, &["patient"]),
    ("ServiceRequest", "patient", Kind::Reference, &["subject"]),
    ("ServiceRequest", "category", Kind::Token, &["category"]),
    ("ServiceRequest", "code", Kind::Token, &["code"]),
    ("ServiceRequest", "status", Kind::Token, &["status"]),
    ("ServiceRequest", "authored", Kind::Date, &["authoredOn"]),
    ("Specimen", "patient", Kind::Reference, &["subject"]),
    ("Specimen", "type", Kind::Token, &["type"]),
];

fn param_def(resource_type: &str, name: &str) -> Option<(Kind, &'static [&'static str])> {
    PARAMS
        .iter()
        .find(|(t, n, _, _)| (*t == resource_type || *t == "*") && *n == name)
        .map(|(_, _, kind, paths)| (*kind, *paths))
}

/// Every search parameter the store evaluates, as (resource type or `*`, name, FHIR search
/// parameter type): what the demo's CapabilityStatement advertises.
pub fn search_params() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    PARAMS.iter().map(|(t, n, kind, _)| {
        let ty = match kind {
            Kind::Token => "token",
            Kind::Reference => "reference",
            Kind::Date => "date",
            Kind::String => "string",
        };
        (*t, *n, ty)
    })
}

/// The reference parameters that place a resource type in the Patient compartment.
fn patient_params(resource_type: &str) -> Vec<&'static [&'static str]> {
    PARAMS
        .iter()
        .filter(|(t, n, _, _)| *t == resource_type && *n == "patient")
        .map(|(_, _, _, paths)| *paths)
        .collect()
}

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 200;

/// The resources of the demo EHR.
#[derive(Debug, Default, Clone)]
pub struct FhirStore {
    resources: BTreeMap<(String, String), Arc<Value>>,
}

impl FhirStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads the two committed fixture patients.
    pub fn with_fixtures() -> Result<Self, StoreError> {
        let mut store = Self::new();
        for patient in ["355", "85"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(format!("uscore_bundle_patient_{patient}.json"));
            let text = std::fs::read_to_string(&path)
                .map_err(|e| StoreError::BadBundle(format!("{}: {e}", path.display())))?;
            let bundle: Value =
                serde_json::from_str(&text).map_err(|e| StoreError::BadBundle(e.to_string()))?;
            store.load_transaction(&bundle)?;
        }
        Ok(store)
    }

    /// Loads every resource of a transaction (or collection) Bundle, rewriting `urn:uuid:`
    /// references between its entries to `Type/id`. Returns how many resources were stored.
    pub fn load_transaction(&mut self, bundle: &Value) -> Result<usize, StoreError> {
        let entries = bundle["entry"]
            .as_array()
            .ok_or_else(|| StoreError::BadBundle("no entries".into()))?;
        let mut full_urls = HashMap::new();
        for entry in entries {
            let resource = &entry["resource"];
            let (Some(ty), Some(id)) = (resource["resourceType"].as_str(), resource["id"].as_str())
            else {
                return Err(StoreError::BadBundle("entry without type or id".into()));
            };
            if let Some(full_url) = entry["fullUrl"].as_str() {
                full_urls.insert(full_url.to_owned(), format!("{ty}/{id}"));
            }
        }
        let mut count = 0;
        for entry in entries {
            let mut resource = entry["resource"].clone();
            rewrite_references(&mut resource, &full_urls);
            let ty = resource["resourceType"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let id = resource["id"].as_str().unwrap_or_default().to_owned();
            let meta = resource
                .as_object_mut()
                .map(|o| o.entry("meta").or_insert_with(|| json!({})));
            if let Some(Value::Object(meta)) = meta {
                meta.entry("versionId").or_insert_with(|| json!("1"));
                meta.entry("lastUpdated")
                    .or_insert_with(|| json!("2026-01-01T00:00:00Z"));
            }
            self.resources.insert((ty, id), Arc::new(resource));
            count += 1;
        }
        Ok(count)
    }

    /// Every stored resource, in (type, id) order.
    pub fn all(&self) -> impl Iterator<Item = &Value> {
        self.resources.values().map(|r| r.as_ref())
    }

    /// `GET [type]/[id]`.
    pub fn read(&self, resource_type: &str, id: &str) -> Result<Value, StoreError> {
        self.resources
            .get(&(resource_type.to_owned(), id.to_owned()))
            .map(|r| (**r).clone())
            .ok_or(StoreError::NotFound)
    }

    /// The patient a resource belongs to (`Patient/355` → `355`), through its compartment
    /// references; `None` for resources outside every patient's compartment.
    pub fn patient_of(resource: &Value) -> Option<String> {
        let ty = resource["resourceType"].as_str()?;
        if ty == "Patient" {
            return resource["id"].as_str().map(str::to_owned);
        }
        for paths in patient_params(ty) {
            for path in paths {
                for value in values_at(resource, path) {
                    if let Some(id) = value["reference"]
                        .as_str()
                        .and_then(|r| r.strip_prefix("Patient/"))
                    {
                        return Some(id.to_owned());
                    }
                }
            }
        }
        None
    }

    /// Answers a typed FHIR request with a resource or a Bundle. `base` is the FHIR base URL
    /// used in `fullUrl` and links.
    pub fn answer(&self, request: &FhirRequest, base: &str) -> Result<Value, StoreError> {
        let ty = request.resource_type.as_ref().map(|t| t.as_str());
        match (&request.interaction, ty, request.id.as_deref()) {
            (Interaction::Read, Some(ty), Some(id)) => self.read(ty, id),
            (Interaction::Vread, Some(ty), Some(id)) => {
                let resource = self.read(ty, id)?;
                if request.version_id.as_deref() == resource["meta"]["versionId"].as_str() {
                    Ok(resource)
                } else {
                    Err(StoreError::NotFound)
                }
            }
            (Interaction::SearchType, Some(ty), None) => {
                self.search(ty, &request.params, base, None)
            }
            (Interaction::SearchCompartment, Some(ty), None) => {
                let Some((compartment, id)) = &request.compartment else {
                    return Err(StoreError::UnsupportedInteraction);
                };
                if compartment.as_str() != "Patient" {
                    return Err(StoreError::UnsupportedInteraction);
                }
                self.search(ty, &request.params, base, Some(id))
            }
            (Interaction::Operation(op), Some("Patient"), Some(id)) if op == "everything" => {
                self.everything(id, base)
            }
            _ => Err(StoreError::UnsupportedInteraction),
        }
    }

    /// `GET [type]?params` (or a Patient-compartment search when `compartment` is set).
    pub fn search(
        &self,
        ty: &str,
        params: &[SearchParam],
        base: &str,
        compartment: Option<&str>,
    ) -> Result<Value, StoreError> {
        let mut filters = Vec::new();
        let mut includes = Vec::new();
        let mut revincludes = Vec::new();
        let mut count = DEFAULT_PAGE;
        let mut offset = 0usize;
        let mut summary_count = false;
        for param in params {
            match param.name.as_str() {
                // `_count=0` asks for no entries: a page may hold fewer than asked, never
                // more (R4 search.html, paging).
                "_count" => count = parse_usize(param)?.min(MAX_PAGE),
                "_offset" => offset = parse_usize(param)?,
                "_include" => includes.extend(param.values.iter().cloned()),
                "_revinclude" => revincludes.extend(param.values.iter().cloned()),
                "_summary" => summary_count = param.values.iter().any(|v| v == "count"),
                "_total" | "_sort" | "_elements" => {}
                name => {
                    let (kind, paths) = param_def(ty, name)
                        .ok_or_else(|| StoreError::UnsupportedParameter(name.to_owned()))?;
                    filters.push((param, kind, paths));
                }
            }
        }
        let compartment_paths = patient_params(ty);
        let matches: Vec<&Arc<Value>> = self
            .resources
            .range((ty.to_owned(), String::new())..)
            .take_while(|((t, _), _)| t == ty)
            .map(|(_, r)| r)
            .filter(|r| {
                compartment.is_none_or(|patient| {
                    (ty == "Patient" && r["id"].as_str() == Some(patient))
                        || compartment_paths.iter().any(|paths| {
                            paths.iter().any(|p| {
                                values_at(r, p)
                                    .iter()
                                    .any(|v| reference_matches(v, &format!("Patient/{patient}")))
                            })
                        })
                })
            })
            .filter(|r| {
                filters
                    .iter()
                    .all(|(param, kind, paths)| matches_param(r, param, *kind, paths))
            })
            .collect();
        for (param, _, _) in &filters {
            for value in &param.values {
                if matches!(param_def(ty, &param.name), Some((Kind::Date, _)))
                    && parse_date_param(value).is_none()
                {
                    return Err(StoreError::BadValue(param.name.clone()));
                }
            }
        }

        let total = matches.len();
        let mut bundle = json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": total,
        });
        let self_url = page_url(base, ty, params, offset, count, compartment);
        let mut links = vec![json!({"relation": "self", "url": self_url})];
        if summary_count || count == 0 {
            bundle["link"] = Value::Array(links);
            return Ok(bundle);
        }
        let page: Vec<&Arc<Value>> = matches.iter().skip(offset).take(count).copied().collect();
        if offset + count < total {
            links.push(json!({
                "relation": "next",
                "url": page_url(base, ty, params, offset + count, count, compartment),
            }));
        }
        if offset > 0 {
            links.push(json!({
                "relation": "previous",
                "url": page_url(base, ty, params, offset.saturating_sub(count), count, compartment),
            }));
        }
        bundle["link"] = Value::Array(links);

        let mut entries: Vec<Value> = page.iter().map(|r| entry(base, r, "match")).collect();
        let mut seen: BTreeSet<String> = page.iter().map(|r| key_of(r)).collect();
        for include in &includes {
            for target in self.follow_include(include, &page)? {
                if seen.insert(key_of(&target)) {
                    entries.push(entry(base, &target, "include"));
                }
            }
        }
        for revinclude in &revincludes {
            for source in self.follow_revinclude(revinclude, &page)? {
                if seen.insert(key_of(&source)) {
                    entries.push(entry(base, &source, "include"));
                }
            }
        }
        bundle["entry"] = Value::Array(entries);
        Ok(bundle)
    }

    fn follow_include(
        &self,
        include: &str,
        page: &[&Arc<Value>],
    ) -> Result<Vec<Arc<Value>>, StoreError> {
        let mut parts = include.split(':');
        let (Some(source), Some(param)) = (parts.next(), parts.next()) else {
            return Err(StoreError::BadValue("_include".into()));
        };
        let target_type = parts.next();
        let (kind, paths) = param_def(source, param)
            .ok_or_else(|| StoreError::UnsupportedParameter(format!("_include={include}")))?;
        if kind != Kind::Reference {
            return Err(StoreError::BadValue("_include".into()));
        }
        let mut found = Vec::new();
        for resource in page {
            if resource["resourceType"].as_str() != Some(source) {
                continue;
            }
            for path in paths {
                for value in values_at(resource, path) {
                    let Some(reference) = value["reference"].as_str() else {
                        continue;
                    };
                    let Some((ty, id)) = reference.split_once('/') else {
                        continue;
                    };
                    if target_type.is_some_and(|t| t != ty) {
                        continue;
                    }
                    if let Some(target) = self.resources.get(&(ty.to_owned(), id.to_owned())) {
                        found.push(target.clone());
                    }
                }
            }
        }
        Ok(found)
    }

    fn follow_revinclude(
        &self,
        revinclude: &str,
        page: &[&Arc<Value>],
    ) -> Result<Vec<Arc<Value>>, StoreError> {
        let mut parts = revinclude.split(':');
        let (Some(source), Some(param)) = (parts.next(), parts.next()) else {
            return Err(StoreError::BadValue("_revinclude".into()));
        };
        let (kind, paths) = param_def(source, param)
            .ok_or_else(|| StoreError::UnsupportedParameter(format!("_revinclude={revinclude}")))?;
        if kind != Kind::Reference {
            return Err(StoreError::BadValue("_revinclude".into()));
        }
        let targets: BTreeSet<String> = page.iter().map(|r| key_of(r)).collect();
        Ok(self
            .resources
            .range((source.to_owned(), String::new())..)
            .take_while(|((t, _), _)| t == source)
            .map(|(_, r)| r)
            .filter(|r| {
                paths.iter().any(|p| {
                    values_at(r, p).iter().any(|v| {
                        v["reference"]
                            .as_str()
                            .is_some_and(|reference| targets.contains(reference))
                    })
                })
            })
            .cloned()
            .collect())
    }

    /// `GET Patient/[id]/$everything`: the patient and every resource in her compartment,
    /// plus the resources those reference (practitioners, organizations, locations…).
    pub fn everything(&self, patient: &str, base: &str) -> Result<Value, StoreError> {
        let patient_resource = self
            .resources
            .get(&("Patient".to_owned(), patient.to_owned()))
            .ok_or(StoreError::NotFound)?;
        let mut members: Vec<Arc<Value>> = vec![patient_resource.clone()];
        let mut seen = BTreeSet::from([key_of(patient_resource)]);
        for resource in self.resources.values() {
            if resource["resourceType"] != "Patient"
                && Self::patient_of(resource).as_deref() == Some(patient)
                && seen.insert(key_of(resource))
            {
                members.push(resource.clone());
            }
        }
        let mut referenced = Vec::new();
        for resource in &members {
            collect_references(resource, &mut |reference| {
                if let Some((ty, id)) = reference.split_once('/') {
                    if let Some(target) = self.resources.get(&(ty.to_owned(), id.to_owned())) {
                        if Self::patient_of(target).is_none() && !seen.contains(reference) {
                            referenced.push(target.clone());
                        }
                    }
                }
            });
        }
        for target in referenced {
            if seen.insert(key_of(&target)) {
                members.push(target);
            }
        }
        Ok(json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": members.len(),
            "link": [{"relation": "self", "url": format!("{base}/Patient/{patient}/$everything")}],
            "entry": members.iter().map(|r| entry(base, r, "match")).collect::<Vec<_>>(),
        }))
    }
}

fn parse_usize(param: &SearchParam) -> Result<usize, StoreError> {
    param
        .values
        .first()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::BadValue(param.name.clone()))
}

fn key_of(resource: &Value) -> String {
    format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap_or_default(),
        resource["id"].as_str().unwrap_or_default()
    )
}

fn entry(base: &str, resource: &Value, mode: &str) -> Value {
    json!({
        "fullUrl": format!("{base}/{}", key_of(resource)),
        "resource": resource,
        "search": {"mode": mode},
    })
}

fn page_url(
    base: &str,
    ty: &str,
    params: &[SearchParam],
    offset: usize,
    count: usize,
    compartment: Option<&str>,
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for param in params {
        if param.name == "_offset" || param.name == "_count" {
            continue;
        }
        let name = match &param.modifier {
            Some(modifier) => format!("{}:{modifier}", param.name),
            None => param.name.clone(),
        };
        let value = param
            .values
            .iter()
            .map(|v| v.replace('\\', "\\\\").replace(',', "\\,"))
            .collect::<Vec<_>>()
            .join(",");
        query.append_pair(&name, &value);
    }
    query.append_pair("_count", &count.to_string());
    if offset > 0 {
        query.append_pair("_offset", &offset.to_string());
    }
    let path = match compartment {
        Some(patient) => format!("{base}/Patient/{patient}/{ty}"),
        None => format!("{base}/{ty}"),
    };
    format!("{path}?{}", query.finish())
}

fn rewrite_references(value: &mut Value, full_urls: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get_mut("reference") {
                if let Some(local) = full_urls.get(reference.as_str()) {
                    *reference = local.clone();
                }
            }
            for child in map.values_mut() {
                rewrite_references(child, full_urls);
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_references(item, full_urls);
            }
        }
        _ => {}
    }
}

fn collect_references(value: &Value, found: &mut dyn FnMut(&str)) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("reference") {
                found(reference);
            }
            for child in map.values() {
                collect_references(child, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_references(i, found)),
        _ => {}
    }
}

/// Every value at a dotted path, arrays flattened at each step.
fn values_at<'a>(resource: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![resource];
    for step in path.split('.') {
        let mut next = Vec::new();
        for value in current {
            match &value[step] {
                Value::Array(items) => next.extend(items.iter()),
                Value::Null => {}
                other => next.push(other),
            }
        }
        current = next;
    }
    current
}

fn matches_param(resource: &Value, param: &SearchParam, kind: Kind, paths: &[&str]) -> bool {
    let negate = param.modifier.as_deref() == Some("not");
    let values: Vec<&Value> = paths.iter().flat_map(|p| values_at(resource, p)).collect();
    let any = param.values.iter().any(|wanted| {
        values.iter().any(|value| match kind {
            Kind::Token => token_matches(value, wanted, param.modifier.as_deref()),
            Kind::Reference => reference_matches(value, wanted),
            Kind::Date => date_matches(value, wanted),
            Kind::String => string_matches(value, wanted, param.modifier.as_deref()),
        })
    });
    if negate { !any } else { any }
}

fn token_matches(value: &Value, wanted: &str, modifier: Option<&str>) -> bool {
    if modifier == Some("text") {
        let text = value["text"].as_str().unwrap_or_default().to_lowercase();
        return text.starts_with(&wanted.to_lowercase());
    }
    let (system, code) = match wanted.split_once('|') {
        Some((system, code)) => (Some(system), code),
        None => (None, wanted),
    };
    let coding_matches = |coding: &Value, code_key: &str| {
        let system_ok = match system {
            None => true,
            Some("") => coding["system"].is_null(),
            Some(s) => coding["system"].as_str() == Some(s),
        };
        let code_ok = code.is_empty() || coding[code_key].as_str() == Some(code);
        system_ok && code_ok
    };
    match value {
        Value::String(s) => system.is_none_or(str::is_empty) && s == code,
        Value::Bool(b) => system.is_none() && code == b.to_string(),
        Value::Object(map) if map.contains_key("coding") => value["coding"]
            .as_array()
            .is_some_and(|codings| codings.iter().any(|c| coding_matches(c, "code"))),
        Value::Object(map) if map.contains_key("value") && !map.contains_key("code") => {
            coding_matches(value, "value")
        }
        Value::Object(_) => coding_matches(value, "code"),
        _ => false,
    }
}

fn reference_matches(value: &Value, wanted: &str) -> bool {
    let Some(reference) = value["reference"].as_str() else {
        return false;
    };
    if wanted.contains('/') {
        reference == wanted || reference.ends_with(&format!("/{wanted}"))
    } else {
        reference.rsplit('/').next() == Some(wanted)
    }
}

fn string_matches(value: &Value, wanted: &str, modifier: Option<&str>) -> bool {
    let mut texts = Vec::new();
    collect_strings(value, &mut texts);
    let wanted_lower = wanted.to_lowercase();
    texts.iter().any(|text| match modifier {
        Some("exact") => *text == wanted,
        Some("contains") => text.to_lowercase().contains(&wanted_lower),
        _ => text.to_lowercase().starts_with(&wanted_lower),
    })
}

fn collect_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| k.as_str() != "extension" && k.as_str() != "period")
            .for_each(|(_, v)| collect_strings(v, out)),
        _ => {}
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

fn parse_date_param(raw: &str) -> Option<(Prefix, (i128, i128))> {
    let prefixes = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
    let (prefix, rest) = prefixes
        .iter()
        .find_map(|(p, prefix)| raw.strip_prefix(p).map(|rest| (*prefix, rest)))
        .unwrap_or((Prefix::Eq, raw));
    Some((prefix, date_range(rest)?))
}

/// The half-open range of instants (unix nanoseconds) a FHIR date/dateTime/instant denotes at
/// its own precision: `2020` is the whole year, `2020-03-01T10:00:00Z` one second.
fn date_range(text: &str) -> Option<(i128, i128)> {
    let year: i32 = text.get(0..4)?.parse().ok()?;
    let utc = UtcOffset::UTC;
    let start_of = |date: Date| PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_offset(utc);
    match text.len() {
        4 => {
            let start = start_of(Date::from_calendar_date(year, Month::January, 1).ok()?);
            let end = start_of(Date::from_calendar_date(year + 1, Month::January, 1).ok()?);
            Some((start.unix_timestamp_nanos(), end.unix_timestamp_nanos()))
        }
        7 => {
            let month: u8 = text.get(5..7)?.parse().ok()?;
            let month = Month::try_from(month).ok()?;
            let start = start_of(Date::from_calendar_date(year, month, 1).ok()?);
            let (next_year, next_month) = if month == Month::December {
                (year + 1, Month::January)
            } else {
                (year, month.next())
            };
            let end = start_of(Date::from_calendar_date(next_year, next_month, 1).ok()?);
            Some((start.unix_timestamp_nanos(), end.unix_timestamp_nanos()))
        }
        10 => {
            let month = Month::try_from(text.get(5..7)?.parse::<u8>().ok()?).ok()?;
            let day: u8 = text.get(8..10)?.parse().ok()?;
            let start = start_of(Date::from_calendar_date(year, month, day).ok()?);
            let end = start + time::Duration::days(1);
            Some((start.unix_timestamp_nanos(), end.unix_timestamp_nanos()))
        }
        _ => {
            let instant = OffsetDateTime::parse(text, &Rfc3339).ok()?;
            let start = instant.unix_timestamp_nanos();
            let step = if text.contains('.') {
                1_000_000
            } else {
                1_000_000_000
            };
            Some((start, start + step))
        }
    }
}

fn value_range(value: &Value) -> Option<(i128, i128)> {
    match value {
        Value::String(s) => date_range(s),
        Value::Object(map) => {
            let start = map
                .get("start")
                .and_then(Value::as_str)
                .and_then(date_range)
                .map(|r| r.0)
                .unwrap_or(i128::MIN);
            let end = map
                .get("end")
                .and_then(Value::as_str)
                .and_then(date_range)
                .map(|r| r.1)
                .unwrap_or(i128::MAX);
            Some((start, end))
        }
        _ => None,
    }
}

/// FHIR R4 §3.1.1.4.1 date comparison between the resource's range and the parameter's.
fn date_matches(value: &Value, wanted: &str) -> bool {
    let (Some((prefix, (lo, hi))), Some((vlo, vhi))) =
        (parse_date_param(wanted), value_range(value))
    else {
        return false;
    };
    match prefix {
        Prefix::Eq => vlo >= lo && vhi <= hi,
        Prefix::Ne => !(vlo >= lo && vhi <= hi),
        Prefix::Gt => vhi > hi,
        Prefix::Lt => vlo < lo,
        Prefix::Ge => vhi > lo,
        Prefix::Le => vlo < hi,
        Prefix::Sa => vlo >= hi,
        Prefix::Eb => vhi <= lo,
        Prefix::Ap => vlo < hi && vhi > lo,
    }
}

/// Helpers to build `SearchParam`s in tests and examples.
pub fn param(name: &str, value: &str) -> SearchParam {
    let (name, modifier) = match name.split_once(':') {
        Some((name, modifier)) => (name.to_owned(), Some(modifier.to_owned())),
        None => (name.to_owned(), None),
    };
    SearchParam {
        name,
        modifier,
        values: value.split(',').map(str::to_owned).collect(),
    }
}
