//! A small in-memory FHIR R4 store for the demo EHR, the walkthrough and the tests: the part of
//! an EHR that fhirguard does *not* provide (the host's own FHIR engine), kept just capable
//! enough to serve the two US Core fixture patients the way a real server would.
//!
//! It loads transaction Bundles (resolving `urn:uuid:` references to `Type/id`), and answers
//! read, vread, type searches with the US Core search parameters (token, reference, date and
//! string matching, the `:missing`, `:not`, `:text`, `:exact`, `:contains` and `:[type]`
//! modifiers, `_id`, `_lastUpdated`, `_sort` on `_id` and dates, `_include`, `_revinclude`,
//! `_count`, paging with `_offset`, `_summary=count`, `_total`), Patient-compartment searches
//! and `Patient/$everything` with `_type` and `_since` (the guard refuses `_summary` other than
//! `false` and `_elements` before a request gets here). Whatever else a request asks for is
//! refused with [`StoreError::UnsupportedParameter`], never ignored: a Bundle's `self` link
//! echoes the request's parameters, and FHIR R4 (search.html) says those must be the ones used.
//! It knows nothing about scopes or consent: fhirguard's middleware narrows the request before
//! it gets here and filters what comes back.

#![allow(dead_code)]

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use fhirguard::{FhirRequest, Interaction, SearchParam};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

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
    /// Per patient, the resources outside every compartment (practitioners, organizations,
    /// locations, medications…) her own resources name, directly or through one another.
    named: BTreeMap<String, BTreeSet<(String, String)>>,
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
        self.named = self.index_named();
        Ok(count)
    }

    /// [`FhirStore::named`], recomputed: every compartment-free resource a patient's own
    /// resources reference, then what those reference (a PractitionerRole's practitioner and
    /// organization), until nothing is added.
    fn index_named(&self) -> BTreeMap<String, BTreeSet<(String, String)>> {
        let mut named: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
        let free = |reference: &str| -> Option<(String, String)> {
            let (ty, id) = reference.split_once('/')?;
            let key = (ty.to_owned(), id.to_owned());
            let target = self.resources.get(&key)?;
            Self::patient_of(target).is_none().then_some(key)
        };
        for resource in self.resources.values() {
            let Some(patient) = Self::patient_of(resource) else {
                continue;
            };
            let set = named.entry(patient).or_default();
            collect_references(resource, &mut |r| set.extend(free(r)));
        }
        for set in named.values_mut() {
            let mut frontier: Vec<(String, String)> = set.iter().cloned().collect();
            while let Some(key) = frontier.pop() {
                if let Some(resource) = self.resources.get(&key) {
                    collect_references(resource, &mut |r| {
                        if let Some(next) = free(r) {
                            if set.insert(next.clone()) {
                                frontier.push(next);
                            }
                        }
                    });
                }
            }
        }
        named
    }

    /// Whether `resource` is hers to see as part of her record: a resource of her compartment
    /// is (enforcement decides the rest); one outside every compartment only if her record
    /// names it. A patient-facing API serves her record, not the EHR's directory: the
    /// practitioner, clinic or drug only another patient's record names would tell about
    /// that patient.
    pub fn in_record_of(&self, patient: &str, resource: &Value) -> bool {
        if Self::patient_of(resource).is_some() {
            return true;
        }
        let (Some(ty), Some(id)) = (resource["resourceType"].as_str(), resource["id"].as_str())
        else {
            return false;
        };
        self.named
            .get(patient)
            .is_some_and(|set| set.contains(&(ty.to_owned(), id.to_owned())))
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
        self.answer_visible(request, base, &|_| true)
    }

    /// [`FhirStore::answer`], with a search's matches limited to those `visible` accepts
    /// before they are counted and paged (the guard's `Visibility`): where the guard could
    /// not narrow a search, a page then holds and skips visible matches only, so its offsets
    /// and `next` link say nothing of hidden ones.
    pub fn answer_visible(
        &self,
        request: &FhirRequest,
        base: &str,
        visible: &dyn Fn(&Value) -> bool,
    ) -> Result<Value, StoreError> {
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
                self.search_visible(ty, &request.params, base, None, visible)
            }
            (Interaction::SearchCompartment, Some(ty), None) => {
                let Some((compartment, id)) = &request.compartment else {
                    return Err(StoreError::UnsupportedInteraction);
                };
                if compartment.as_str() != "Patient" {
                    return Err(StoreError::UnsupportedInteraction);
                }
                self.search_visible(ty, &request.params, base, Some(id), visible)
            }
            (Interaction::Operation(op), Some("Patient"), Some(id)) if op == "everything" => {
                self.everything(id, &request.params, base)
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
        self.search_visible(ty, params, base, compartment, &|_| true)
    }

    /// [`FhirStore::search`] over the matches `visible` accepts only.
    pub fn search_visible(
        &self,
        ty: &str,
        params: &[SearchParam],
        base: &str,
        compartment: Option<&str>,
        visible: &dyn Fn(&Value) -> bool,
    ) -> Result<Value, StoreError> {
        let mut filters = Vec::new();
        let mut includes = Vec::new();
        let mut revincludes = Vec::new();
        let mut count = DEFAULT_PAGE;
        let mut offset = 0usize;
        let mut summary_count = false;
        let mut sort: Option<Vec<SortKey>> = None;
        for param in params {
            match param.name.as_str() {
                // `_count=0` asks for no entries: a page may hold fewer than asked, never
                // more (R4 search.html, paging).
                "_count" => count = parse_usize(param)?.min(MAX_PAGE),
                "_offset" => offset = parse_usize(param)?,
                // One level only: `:iterate` would also follow the included resources.
                "_include" => {
                    no_modifier(param)?;
                    includes.extend(param.values.iter().cloned());
                }
                "_revinclude" => {
                    no_modifier(param)?;
                    revincludes.extend(param.values.iter().cloned());
                }
                "_summary" => {
                    no_modifier(param)?;
                    for value in &param.values {
                        match value.as_str() {
                            "count" => summary_count = true,
                            "false" => {}
                            _ => return Err(StoreError::UnsupportedParameter("_summary".into())),
                        }
                    }
                }
                // Every searchset this store builds carries the exact `total`, which answers
                // `accurate`, and `none` and `estimate` only allow less.
                "_total" => {
                    no_modifier(param)?;
                    if param
                        .values
                        .iter()
                        .any(|v| !matches!(v.as_str(), "none" | "estimate" | "accurate"))
                    {
                        return Err(StoreError::BadValue("_total".into()));
                    }
                }
                "_sort" => {
                    no_modifier(param)?;
                    // Two `_sort`s do not say which one leads.
                    if sort.is_some() {
                        return Err(StoreError::BadValue("_sort".into()));
                    }
                    sort = Some(sort_keys(ty, param)?);
                }
                name => {
                    let (kind, paths) = param_def(ty, name)
                        .ok_or_else(|| StoreError::UnsupportedParameter(name.to_owned()))?;
                    let mode = mode_of(param, kind)?;
                    check_values(param, kind, mode)?;
                    filters.push(Filter {
                        param,
                        base,
                        kind,
                        paths,
                        mode,
                    });
                }
            }
        }
        let compartment_paths = patient_params(ty);
        let mut matches: Vec<&Arc<Value>> = self
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
            .filter(|r| filters.iter().all(|filter| filter.matches(r)))
            .filter(|r| visible(r))
            .collect();
        // Before paging, so that every page is a slice of one order; the sort is stable, so
        // ties keep the store's (type, id) order and a page boundary never moves between two
        // requests.
        if let Some(keys) = &sort {
            matches.sort_by(|a, b| compare(a, b, keys));
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
        // Saturating: an `_offset` near `usize::MAX` must not wrap round to the first page.
        if offset.saturating_add(count) < total {
            links.push(json!({
                "relation": "next",
                "url": page_url(base, ty, params, offset.saturating_add(count), count, compartment),
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
        // R4 defines `patient` as its path's references to a Patient only
        // (`Provenance.target.where(resolve() is Patient)`).
        let target_type = parts.next().or((param == "patient").then_some("Patient"));
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
        let targets: BTreeSet<String> = page
            .iter()
            .filter(|r| param != "patient" || r["resourceType"] == "Patient")
            .map(|r| key_of(r))
            .collect();
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
    /// plus the resources those reference (practitioners, organizations, locations…), narrowed
    /// by `_type` (only the listed types: the Patient herself only when `Patient` is listed)
    /// and `_since` (`meta.lastUpdated` at or after the instant).
    pub fn everything(
        &self,
        patient: &str,
        params: &[SearchParam],
        base: &str,
    ) -> Result<Value, StoreError> {
        let mut types: Option<BTreeSet<&str>> = None;
        let mut since: Option<i128> = None;
        for param in params {
            no_modifier(param)?;
            match param.name.as_str() {
                // 0..* in the OperationDefinition: every occurrence adds types.
                "_type" => {
                    let types = types.get_or_insert_with(BTreeSet::new);
                    for value in &param.values {
                        if !is_type_name(value) {
                            return Err(StoreError::BadValue("_type".into()));
                        }
                        types.insert(value);
                    }
                }
                "_since" => {
                    let instant = match param.values.as_slice() {
                        [value] if since.is_none() => parse_instant(value),
                        _ => None,
                    };
                    since = Some(instant.ok_or_else(|| StoreError::BadValue("_since".into()))?);
                }
                // R4 answers `$everything` in one Bundle unless the client pages with
                // `_count`; the guard lets no `_offset` through on this operation, so a first
                // page would have no `next` link that works. Care dates (`start`, `end`) are a
                // different element per type and none for the Patient or the resources she
                // references: refused rather than guessed.
                name => return Err(StoreError::UnsupportedParameter(name.to_owned())),
            }
        }
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
        // Narrowed after the whole set is gathered: `_type=Practitioner` is the practitioners
        // of the patient's record, whichever of her resources names them.
        members.retain(|r| {
            let type_ok = types.as_ref().is_none_or(|types| {
                r["resourceType"]
                    .as_str()
                    .is_some_and(|t| types.contains(t))
            });
            let since_ok = since.is_none_or(|since| {
                r["meta"]["lastUpdated"]
                    .as_str()
                    .and_then(parse_instant)
                    .is_some_and(|updated| updated >= since)
            });
            type_ok && since_ok
        });
        let mut self_url = format!("{base}/Patient/{patient}/$everything");
        let query = encode_params(params, &[]);
        if !query.is_empty() {
            self_url = format!("{self_url}?{query}");
        }
        Ok(json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": members.len(),
            "link": [{"relation": "self", "url": self_url}],
            "entry": members.iter().map(|r| entry(base, r, "match")).collect::<Vec<_>>(),
        }))
    }
}

/// A search parameter the store evaluates, with its checked modifier.
struct Filter<'p> {
    param: &'p SearchParam,
    /// This server's FHIR base URL: a reference value under it names a local resource.
    base: &'p str,
    kind: Kind,
    paths: &'static [&'static str],
    mode: Mode<'p>,
}

/// What a filter's modifier asks of the matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode<'p> {
    Plain,
    /// `:missing=true|false`, any kind.
    Missing,
    /// Token `:not`: also the resources without a value (R4 search.html, token).
    Not,
    /// Token `:text`: the text of a CodeableConcept, the displays of its codings, the type of
    /// an Identifier.
    Text,
    /// String `:exact`.
    Exact,
    /// String `:contains`.
    Contains,
    /// Reference `:[type]`: the value is an id of that type.
    Typed(&'p str),
}

/// The modifier of `param` on a parameter of `kind`, or why the store cannot apply it.
/// `:in`, `:not-in`, `:above` and `:below` need a terminology server (value-set expansion,
/// code-system subsumption), `:of-type` and `:identifier` identifier matching the store does
/// not index: refused, since matching them as plain codes would answer a different question.
fn mode_of(param: &SearchParam, kind: Kind) -> Result<Mode<'_>, StoreError> {
    match (kind, param.modifier.as_deref()) {
        (_, None) => Ok(Mode::Plain),
        (_, Some("missing")) => Ok(Mode::Missing),
        (Kind::Token, Some("not")) => Ok(Mode::Not),
        (Kind::Token, Some("text")) => Ok(Mode::Text),
        (Kind::String, Some("exact")) => Ok(Mode::Exact),
        (Kind::String, Some("contains")) => Ok(Mode::Contains),
        (Kind::Reference, Some(ty)) if is_type_name(ty) => Ok(Mode::Typed(ty)),
        (_, Some(modifier)) => Err(StoreError::UnsupportedParameter(format!(
            "{}:{modifier}",
            param.name
        ))),
    }
}

/// Refuses a value the store would otherwise match as nothing (or as everything).
fn check_values(param: &SearchParam, kind: Kind, mode: Mode<'_>) -> Result<(), StoreError> {
    let bad = || StoreError::BadValue(param.name.clone());
    for value in &param.values {
        let ok = match (kind, mode) {
            (_, Mode::Missing) => matches!(value.as_str(), "true" | "false"),
            (Kind::Date, _) => parse_date_param(value).is_some(),
            (Kind::Reference, Mode::Typed(ty)) => {
                value.split_once('/').is_none_or(|(prefix, _)| prefix == ty)
            }
            _ => true,
        };
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

impl Filter<'_> {
    fn matches(&self, resource: &Value) -> bool {
        let values: Vec<&Value> = self
            .paths
            .iter()
            .flat_map(|p| values_at(resource, p))
            .collect();
        let wanted = &self.param.values;
        match self.mode {
            Mode::Missing => wanted.iter().any(|w| (w == "true") == values.is_empty()),
            Mode::Not => !wanted
                .iter()
                .any(|w| values.iter().any(|v| token_matches(v, w))),
            Mode::Text => wanted
                .iter()
                .any(|w| values.iter().any(|v| token_text_matches(v, w))),
            Mode::Typed(ty) => wanted.iter().any(|w| {
                let w = local_reference(self.base, w);
                let reference = if w.contains('/') {
                    w.to_owned()
                } else {
                    format!("{ty}/{w}")
                };
                values.iter().any(|v| reference_matches(v, &reference))
            }),
            Mode::Plain | Mode::Exact | Mode::Contains => wanted.iter().any(|w| {
                values.iter().any(|v| match self.kind {
                    Kind::Token => token_matches(v, w),
                    Kind::Reference => reference_matches(v, local_reference(self.base, w)),
                    Kind::Date => date_matches(v, w),
                    Kind::String => string_matches(v, w, self.mode),
                })
            }),
        }
    }
}

/// One `_sort` key.
#[derive(Clone, Copy, Debug)]
struct SortKey {
    by: SortBy,
    descending: bool,
}

#[derive(Clone, Copy, Debug)]
enum SortBy {
    Id,
    /// A date parameter's paths (`_lastUpdated` included).
    Date(&'static [&'static str]),
}

/// The keys of `_sort=a,-b`. Only `_id` and the date parameters sort: a token or a string
/// has no single order a client could rely on (which coding, which name part), so those are
/// refused rather than sorted somehow.
fn sort_keys(ty: &str, param: &SearchParam) -> Result<Vec<SortKey>, StoreError> {
    param
        .values
        .iter()
        .map(|raw| {
            let (descending, name) = match raw.strip_prefix('-') {
                Some(name) => (true, name),
                None => (false, raw.as_str()),
            };
            if name.is_empty() {
                return Err(StoreError::BadValue("_sort".into()));
            }
            let by = match (name, param_def(ty, name)) {
                ("_id", _) => SortBy::Id,
                (_, Some((Kind::Date, paths))) => SortBy::Date(paths),
                _ => return Err(StoreError::UnsupportedParameter(format!("_sort={name}"))),
            };
            Ok(SortKey { by, descending })
        })
        .collect()
}

/// R4 search.html (`_sort`): of a resource's several values, the one that comes first in the
/// requested order counts: the earliest start ascending, the latest end descending (an
/// ongoing period is the latest). Later keys break ties.
fn compare(a: &Value, b: &Value, keys: &[SortKey]) -> Ordering {
    for key in keys {
        let order = match key.by {
            SortBy::Id => ordered(a["id"].as_str(), b["id"].as_str(), key.descending),
            SortBy::Date(paths) => ordered(
                date_sort_value(a, paths, key.descending),
                date_sort_value(b, paths, key.descending),
                key.descending,
            ),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

/// A resource without a value sorts after those with one, in either direction: the values a
/// client asked to see in order come first.
fn ordered<T: Ord>(a: Option<T>, b: Option<T>, descending: bool) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) if descending => b.cmp(&a),
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn date_sort_value(resource: &Value, paths: &[&str], descending: bool) -> Option<i128> {
    let ranges = paths
        .iter()
        .flat_map(|p| values_at(resource, p))
        .filter_map(value_range);
    if descending {
        ranges.map(|(_, end)| end).max()
    } else {
        ranges.map(|(start, _)| start).min()
    }
}

/// Control parameters take no modifier the store knows what to do with.
fn no_modifier(param: &SearchParam) -> Result<(), StoreError> {
    match &param.modifier {
        Some(modifier) => Err(StoreError::UnsupportedParameter(format!(
            "{}:{modifier}",
            param.name
        ))),
        None => Ok(()),
    }
}

fn is_type_name(name: &str) -> bool {
    name.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
        && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// An instant (`_since`, `meta.lastUpdated`) as unix nanoseconds.
fn parse_instant(text: &str) -> Option<i128> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp_nanos)
}

fn parse_usize(param: &SearchParam) -> Result<usize, StoreError> {
    no_modifier(param)?;
    match param.values.as_slice() {
        [value] => value.parse().ok(),
        _ => None,
    }
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
    let mut query = encode_params(params, &["_offset", "_count"]);
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str(&format!("_count={count}"));
    if offset > 0 {
        query.push_str(&format!("&_offset={offset}"));
    }
    let path = match compartment {
        Some(patient) => format!("{base}/Patient/{patient}/{ty}"),
        None => format!("{base}/{ty}"),
    };
    format!("{path}?{query}")
}

/// `params` (but those named in `skip`) as a query string, each value re-escaped: the request
/// as the store applied it, for a Bundle's links.
fn encode_params(params: &[SearchParam], skip: &[&str]) -> String {
    let mut query = String::new();
    for param in params {
        if skip.contains(&param.name.as_str()) {
            continue;
        }
        let value = param
            .values
            .iter()
            .map(|v| v.replace('\\', "\\\\").replace(',', "\\,"))
            .collect::<Vec<_>>()
            .join(",");
        if !query.is_empty() {
            query.push('&');
        }
        // The name as FHIR writes it: `code:not`, not `code%3Anot` (`:` is a query character,
        // RFC 3986 §3.4; the sanitizer has checked the name's characters).
        query.extend(form_urlencoded::byte_serialize(param.name.as_bytes()));
        if let Some(modifier) = &param.modifier {
            query.push(':');
            query.extend(form_urlencoded::byte_serialize(modifier.as_bytes()));
        }
        query.push('=');
        query.extend(form_urlencoded::byte_serialize(value.as_bytes()));
    }
    query
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

fn token_matches(value: &Value, wanted: &str) -> bool {
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

/// Token `:text` (R4 search.html): string matching (case-insensitive, starts with) on the text
/// that goes with the code: a CodeableConcept's `text` and its codings' `display`, a Coding's
/// `display`, an Identifier's `type`. A bare code has no text and never matches.
fn token_text_matches(value: &Value, wanted: &str) -> bool {
    let concept = match value {
        Value::Object(map) if map.contains_key("value") && !map.contains_key("code") => {
            &value["type"]
        }
        _ => value,
    };
    let mut texts: Vec<&str> = concept["text"].as_str().into_iter().collect();
    texts.extend(concept["display"].as_str());
    if let Some(codings) = concept["coding"].as_array() {
        texts.extend(codings.iter().filter_map(|c| c["display"].as_str()));
    }
    let wanted = wanted.to_lowercase();
    texts
        .iter()
        .any(|text| text.to_lowercase().starts_with(&wanted))
}

/// A reference search value as the stored references write it: `[base]/Patient/355` on this
/// server's own base is `Patient/355` (R4 search.html#reference: the `[url]` form names the
/// same resource as the relative one).
fn local_reference<'w>(base: &str, wanted: &'w str) -> &'w str {
    wanted
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(wanted)
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

fn string_matches(value: &Value, wanted: &str, mode: Mode<'_>) -> bool {
    let mut texts = Vec::new();
    collect_strings(value, &mut texts);
    let wanted_folded = fold(wanted);
    texts.iter().any(|text| match mode {
        Mode::Exact => *text == wanted,
        Mode::Contains => fold(text).contains(&wanted_folded),
        _ => fold(text).starts_with(&wanted_folded),
    })
}

/// R4 search.html (string): "after both have been normalized by case and accent".
fn fold(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    text.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
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
    // The range is the start and a length in days, not the next date: after 9999-12-31
    // comes 10000-01-01, past what the date type holds.
    const DAY: i128 = 86_400_000_000_000;
    let span = |month: u8, day: u8, days: u16| -> Option<(i128, i128)> {
        let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
        let start = i128::from(date.to_julian_day() - UNIX_EPOCH_JULIAN_DAY) * DAY;
        Some((start, start + i128::from(days) * DAY))
    };
    match text.len() {
        4 => span(
            1,
            1,
            if time::util::is_leap_year(year) {
                366
            } else {
                365
            },
        ),
        7 => {
            let month: u8 = text.get(5..7)?.parse().ok()?;
            span(month, 1, Month::try_from(month).ok()?.length(year).into())
        }
        10 => {
            let month: u8 = text.get(5..7)?.parse().ok()?;
            let day: u8 = text.get(8..10)?.parse().ok()?;
            span(month, day, 1)
        }
        _ => {
            // R4 search.html (date): a value without a zone is in the server's zone, UTC
            // here; a time without seconds is a minute.
            let (clock, zoned) = match text.get(11..) {
                Some(time) if time.ends_with('Z') || time.contains(['+', '-']) => (time, true),
                Some(time) => (time, false),
                None => return None,
            };
            let minute = clock.len() == 5 || (zoned && clock.find(['Z', '+', '-']) == Some(5));
            let mut full = text.to_owned();
            if minute {
                full.insert_str(16, ":00");
            }
            if !zoned {
                full.push('Z');
            }
            let instant = OffsetDateTime::parse(&full, &Rfc3339).ok()?;
            let start = instant.unix_timestamp_nanos();
            let step = if minute {
                60_000_000_000
            } else if text.contains('.') {
                1_000_000
            } else {
                1_000_000_000
            };
            Some((start, start + step))
        }
    }
}

/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

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
