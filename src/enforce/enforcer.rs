//! The enforcer: request decisions, resource checks, bundle filtering.

use std::borrow::Cow;
use std::collections::BTreeSet;

use http::StatusCode;
use serde_json::Value;

use super::decision::{Concealment, Decision, DenyReason, ResponseCheck, WireOutcome, outcome};
use super::grant::{Need, ResourceGrant, ScopeContext};
use crate::category::{CategoryRegistry, Class, Classification, for_each_coding};
use crate::fhir::{FhirRequest, Interaction, SearchParam};
use crate::ids::{CategoryId, PatientId};
use crate::json::JsonView;

/// Deployment settings of enforcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EnforceConfig {
    /// Refuse every write (`c`, `u`, `d`) whatever the scopes say: an S4S right-of-access API.
    pub read_only: bool,
    /// How denied reads of existing resources, and reads of missing ones, are shown.
    pub concealment: Concealment,
}

/// Summary of one bundle filtering, for the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilterReport {
    /// Entries kept.
    pub kept: usize,
    /// Entries dropped (outside the grant, OperationOutcomes, deleted history entries).
    pub dropped: usize,
    /// Parts removed from kept entries by [`Enforcer::redact`].
    pub redacted: usize,
}

/// Resource types that are never in a patient's compartment and carry no patient data of their
/// own; under a `patient/` scope they need no compartment check (the registry's supporting
/// rule still applies).
fn compartment_free(registry: &CategoryRegistry, resource_type: &str) -> bool {
    registry
        .supporting_rule_for(resource_type)
        .is_some_and(|s| !s.compartment)
}

/// Reference elements through which a resource is tied to its patient.
const PATIENT_REFERENCE_ELEMENTS: &[&str] = &["subject", "patient", "beneficiary", "target"];

/// Parameters naming the patient of a search.
const PATIENT_PARAMS: &[&str] = &["patient", "subject", "beneficiary"];

/// Control parameters enforcement cannot make safe.
const UNSUPPORTED_PARAMS: &[&str] = &[
    "_filter",
    "_query",
    "_list",
    "_elements",
    "_contained",
    "_containedType",
];

/// Refuses a control parameter enforcement cannot make safe: [`UNSUPPORTED_PARAMS`], and
/// `_summary` other than `false` (which asks for the whole resource).
fn check_supported(p: &SearchParam) -> Result<(), DenyReason> {
    let name = p.name.as_str();
    if UNSUPPORTED_PARAMS.contains(&name)
        || (name == "_summary" && p.values.iter().any(|v| v != "false"))
    {
        return Err(DenyReason::UnsupportedParameter {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Reference search parameters whose chain target type is unambiguous.
const CHAIN_TARGETS: &[(&str, &str)] = &[
    ("patient", "Patient"),
    ("encounter", "Encounter"),
    ("medication", "Medication"),
    ("result", "Observation"),
    ("has-member", "Observation"),
    ("derived-from", "Observation"),
    ("specimen", "Specimen"),
    ("device", "Device"),
    ("location", "Location"),
    ("organization", "Organization"),
    ("practitioner", "Practitioner"),
    ("beneficiary", "Patient"),
];

/// Search parameter → element evaluated for granular scope constraints on a returned resource.
const CONSTRAINT_ELEMENTS: &[(&str, &str)] = &[
    ("category", "category"),
    ("code", "code"),
    ("type", "type"),
    ("status", "status"),
    ("intent", "intent"),
    ("clinical-status", "clinicalStatus"),
    ("verification-status", "verificationStatus"),
];

/// Which of the registry's categories are granted, by registry index: a word on the stack for
/// registries of up to 128 categories (every realistic one), so that building an enforcer per
/// request does not allocate for it; a vector beyond.
#[derive(Debug, Clone)]
enum GrantedIndices {
    /// The bits, and how many of them the registry uses.
    Inline(u128, usize),
    Heap(Vec<bool>),
}

impl GrantedIndices {
    fn new(len: usize) -> Self {
        if len <= 128 {
            GrantedIndices::Inline(0, len)
        } else {
            GrantedIndices::Heap(vec![false; len])
        }
    }

    fn insert(&mut self, i: usize) {
        match self {
            GrantedIndices::Inline(bits, len) => {
                if i < *len {
                    *bits |= 1u128 << i;
                }
            }
            GrantedIndices::Heap(slots) => {
                if let Some(slot) = slots.get_mut(i) {
                    *slot = true;
                }
            }
        }
    }

    fn contains(&self, i: usize) -> bool {
        match self {
            GrantedIndices::Inline(bits, len) => i < *len && bits & (1u128 << i) != 0,
            GrantedIndices::Heap(slots) => slots.get(i).copied().unwrap_or(false),
        }
    }
}

/// Pure access decisions for one caller: granted scopes × patient in context × granted
/// categories. Build one per request (cheap); it holds no I/O, no clock and no global state.
#[derive(Debug, Clone)]
pub struct Enforcer<'r> {
    registry: &'r CategoryRegistry,
    grants: Cow<'r, [ResourceGrant]>,
    patient: Option<PatientId>,
    granted: GrantedIndices,
    granted_ids: Cow<'r, BTreeSet<CategoryId>>,
    config: EnforceConfig,
    confined: bool,
}

impl<'r> Enforcer<'r> {
    /// An enforcer for a caller holding `grants` (its scopes, typed), with `patient` in context
    /// (if any) and `categories` approved by the patient. `grants` may be owned or borrowed
    /// (a host that caches each token's typed scopes lends them, per request, without a copy).
    pub fn new(
        registry: &'r CategoryRegistry,
        grants: impl Into<Cow<'r, [ResourceGrant]>>,
        patient: Option<PatientId>,
        categories: impl IntoIterator<Item = CategoryId>,
        config: EnforceConfig,
    ) -> Self {
        let granted_ids: BTreeSet<CategoryId> = categories.into_iter().collect();
        Self::with_granted(registry, grants, patient, Cow::Owned(granted_ids), config)
    }

    /// [`Enforcer::new`] with the approved categories as a set, which may be borrowed (the
    /// guard lends the grant's own set, per request, without a copy).
    pub fn with_granted(
        registry: &'r CategoryRegistry,
        grants: impl Into<Cow<'r, [ResourceGrant]>>,
        patient: Option<PatientId>,
        granted_ids: Cow<'r, BTreeSet<CategoryId>>,
        config: EnforceConfig,
    ) -> Self {
        // One lookup per granted category (a grant names few), not one per declared one.
        let mut granted = GrantedIndices::new(registry.categories().len());
        for id in granted_ids.iter() {
            if let Some(i) = registry.index_of(id) {
                granted.insert(i);
            }
        }
        Self {
            registry,
            grants: grants.into(),
            patient,
            granted,
            granted_ids,
            config,
            confined: false,
        }
    }

    /// Confines every scope to the patient in context, whatever its context letter: a `user/`
    /// or `system/` scope then reads only that patient's compartment, as a `patient/` scope
    /// does. The guard confines every token bound to a consent grant, because the grant is
    /// one patient's request and can disclose nothing of anyone else, whatever scopes the
    /// host's approval minted. Without a patient in context, a confined enforcer refuses
    /// compartment-bound reads ([`DenyReason::NoPatientContext`]).
    #[must_use]
    pub fn confined_to_patient(mut self) -> Self {
        self.confined = true;
        self
    }

    /// Whether `grant` reads only the patient's compartment.
    fn in_patient_context(&self, grant: &ResourceGrant) -> bool {
        self.confined || grant.context == ScopeContext::Patient
    }

    /// The registry in use.
    pub fn registry(&self) -> &CategoryRegistry {
        self.registry
    }

    /// The granted categories.
    pub fn granted_categories(&self) -> &BTreeSet<CategoryId> {
        &self.granted_ids
    }

    /// Whether the category at registry index `i` is granted.
    pub(super) fn granted_index(&self, i: usize) -> bool {
        self.granted.contains(i)
    }

    // -----------------------------------------------------------------------------------------
    // Wire outcomes
    // -----------------------------------------------------------------------------------------

    /// The generic outcome for a refusal: data-dependent refusals look exactly like
    /// [`Enforcer::missing_outcome`]; a parameter enforcement cannot make safe is `400`
    /// `not-supported` (FHIR's strict handling, as the guard answers it); other request-level
    /// refusals are `403` with a fixed text.
    pub fn wire_outcome(&self, reason: &DenyReason) -> WireOutcome {
        if reason.depends_on_data() {
            self.missing_outcome()
        } else if matches!(reason, DenyReason::UnsupportedParameter { .. }) {
            outcome(StatusCode::BAD_REQUEST)
        } else {
            outcome(StatusCode::FORBIDDEN)
        }
    }

    /// What the host must answer for a resource that does not exist, so that "exists but
    /// denied" and "does not exist" are indistinguishable.
    pub fn missing_outcome(&self) -> WireOutcome {
        match self.config.concealment {
            Concealment::NotFound => outcome(StatusCode::NOT_FOUND),
            Concealment::Forbidden => outcome(StatusCode::FORBIDDEN),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Grants
    // -----------------------------------------------------------------------------------------

    fn grants_for<'a>(
        &'a self,
        resource_type: &'a str,
        need: Need,
    ) -> impl Iterator<Item = &'a ResourceGrant> + 'a {
        self.grants
            .iter()
            .filter(move |g| g.names_type(resource_type) && g.permissions.allows(need))
    }

    /// Checks that some scope names the type with the permission; returns whether every such
    /// scope is `patient/` (then the compartment applies).
    fn scope_check(&self, resource_type: &str, need: Need) -> Result<bool, DenyReason> {
        let mut any = false;
        let mut all_patient = true;
        for g in self.grants_for(resource_type, need) {
            any = true;
            all_patient &= self.in_patient_context(g);
        }
        if !any {
            return Err(DenyReason::NoCoveringScope {
                resource_type: resource_type.to_owned(),
                letters: need.letters(),
            });
        }
        if all_patient && self.patient.is_none() {
            return Err(DenyReason::NoPatientContext);
        }
        Ok(all_patient)
    }

    /// Whether `grant`'s granular constraints hold for `resource`. Unknown constraint
    /// parameters never hold (fail closed).
    fn constraints_hold<V: JsonView>(&self, grant: &ResourceGrant, resource: &V) -> bool {
        grant.constraints.iter().all(|(param, value)| {
            let Some(element) = CONSTRAINT_ELEMENTS
                .iter()
                .find(|(p, _)| p == param)
                .map(|(_, e)| *e)
            else {
                return false;
            };
            let Some(field) = resource.get(element) else {
                return false;
            };
            let mut hit = false;
            for_each_coding(field, 0, &mut |system, code| {
                if hit {
                    return;
                }
                hit = value
                    .split(',')
                    .any(|alt| self.token_matches(alt, system, code));
            });
            hit
        })
    }

    /// FHIR token semantics: `system|code`, `|code` (no system), `code` (any system),
    /// `system|` (any code of the system).
    fn token_matches(&self, token: &str, system: &str, code: &str) -> bool {
        match token.split_once('|') {
            None => token == code,
            Some(("", c)) => system.is_empty() && c == code,
            Some((s, "")) => {
                self.registry.canonical_system(s) == self.registry.canonical_system(system)
            }
            Some((s, c)) => {
                c == code
                    && self.registry.canonical_system(s) == self.registry.canonical_system(system)
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Resource checks
    // -----------------------------------------------------------------------------------------

    fn category_granted(&self, resource_type: &str, class: &Class) -> bool {
        match class {
            Class::Indices(idx) => idx.iter().any(|&i| self.granted.contains(usize::from(i))),
            Class::Implicit => self
                .registry
                .uncategorised_id(resource_type)
                .is_some_and(|id| self.granted_ids.contains(&id)),
            Class::Supporting(_) => self.supporting_granted(resource_type),
        }
    }

    fn supporting_granted(&self, resource_type: &str) -> bool {
        self.registry
            .supporting_rule_for(resource_type)
            .is_some_and(|s| {
                s.with.iter().any(|w| {
                    if w == "*" {
                        !self.granted_ids.is_empty()
                    } else {
                        self.granted_ids.iter().any(|g| g.as_str() == w)
                    }
                })
            })
    }

    fn in_compartment<V: JsonView>(&self, resource_type: &str, resource: &V) -> bool {
        let Some(patient) = &self.patient else {
            return false;
        };
        if resource_type == "Patient" {
            return resource.get("id").and_then(JsonView::as_str) == Some(patient.as_str());
        }
        PATIENT_REFERENCE_ELEMENTS
            .iter()
            .any(|element| match resource.get(element) {
                Some(r) => match r.as_array() {
                    Some(items) => items.iter().any(|r| refers_to(r, patient)),
                    None => refers_to(r, patient),
                },
                None => false,
            })
    }

    /// The full visibility check of one resource for a permission.
    pub fn visible(&self, resource: &Value, need: Need) -> Result<(), DenyReason> {
        self.visible_as(resource, need).map(|_| ())
    }

    /// [`Enforcer::visible`], also returning the resource's type and class (computed for the
    /// category check, so a caller that records the categories need not classify again).
    fn visible_as<'v, V: JsonView>(
        &self,
        resource: &'v V,
        need: Need,
    ) -> Result<(&'v str, Class), DenyReason> {
        let resource_type = resource
            .get("resourceType")
            .and_then(JsonView::as_str)
            .ok_or(DenyReason::Unclassifiable)?;
        // Scopes: any grant on the type with the letter whose constraints hold.
        let mut named = false;
        let mut open_context = false;
        let mut patient_context = false;
        for g in self.grants_for(resource_type, need) {
            named = true;
            if self.constraints_hold(g, resource) {
                if self.in_patient_context(g) {
                    patient_context = true;
                } else {
                    open_context = true;
                }
            }
        }
        if !named {
            return Err(DenyReason::NoCoveringScope {
                resource_type: resource_type.to_owned(),
                letters: need.letters(),
            });
        }
        if !open_context && !patient_context {
            return Err(DenyReason::ScopeConstraintNotMet);
        }
        if !open_context
            && !compartment_free(self.registry, resource_type)
            && !self.in_compartment(resource_type, resource)
        {
            return Err(DenyReason::OutsideCompartment);
        }
        let class = self.registry.classify_typed(resource_type, resource);
        if !self.category_granted(resource_type, &class) {
            return Err(DenyReason::CategoryNotGranted);
        }
        Ok((resource_type, class))
    }

    /// Checks a resource returned by a read or vread (permission `r`).
    pub fn check_resource(&self, resource: &Value) -> Result<(), DenyReason> {
        self.visible(resource, Need::Read)
    }

    /// Checks a resource returned for `request` (its type must match what was addressed).
    pub fn check_read(&self, request: &FhirRequest, resource: &Value) -> Result<(), DenyReason> {
        if let Some(t) = &request.resource_type {
            if resource.get("resourceType").and_then(Value::as_str) != Some(t.as_str()) {
                return Err(DenyReason::TypeMismatch);
            }
        }
        self.check_resource(resource)
    }

    /// [`Enforcer::check_read`], returning the resource's classification when it is allowed
    /// (what the audit record discloses), from the one classification the check made.
    pub fn check_read_classified(
        &self,
        request: &FhirRequest,
        resource: &Value,
    ) -> Result<Classification, DenyReason> {
        self.check_read_view(request, resource)
    }

    /// [`Enforcer::check_read_classified`] over any view of the resource's JSON (the guard's
    /// pruned parse of the response bytes).
    pub(crate) fn check_read_view<V: JsonView>(
        &self,
        request: &FhirRequest,
        resource: &V,
    ) -> Result<Classification, DenyReason> {
        if let Some(t) = &request.resource_type {
            if resource.get("resourceType").and_then(JsonView::as_str) != Some(t.as_str()) {
                return Err(DenyReason::TypeMismatch);
            }
        }
        let (resource_type, class) = self.visible_as(resource, Need::Read)?;
        Ok(self.registry.expand(resource_type, class))
    }

    /// [`Enforcer::check_read_view`] adding the resource's category ids to `disclosed` instead
    /// of returning its classification: what the guard's audit trail keeps, without the
    /// classification's own allocations.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))] // used by the guard alone
    pub(crate) fn check_read_view_into<V: JsonView>(
        &self,
        request: &FhirRequest,
        resource: &V,
        disclosed: &mut BTreeSet<CategoryId>,
    ) -> Result<(), DenyReason> {
        if let Some(t) = &request.resource_type {
            if resource.get("resourceType").and_then(JsonView::as_str) != Some(t.as_str()) {
                return Err(DenyReason::TypeMismatch);
            }
        }
        let (resource_type, class) = self.visible_as(resource, Need::Read)?;
        self.registry.extend_ids(resource_type, &class, disclosed);
        Ok(())
    }

    /// Checks a resource a write sends (create, update, patch result) or removes (delete: pass
    /// the stored resource): the permission letter, the compartment and the categories.
    pub fn check_write(&self, request: &FhirRequest, resource: &Value) -> Result<(), DenyReason> {
        if self.config.read_only {
            return Err(DenyReason::ReadOnlyDeployment);
        }
        let need = match request.interaction {
            Interaction::Create => Need::Create,
            Interaction::Update | Interaction::Patch => Need::Update,
            Interaction::Delete => Need::Delete,
            _ => Need::Read,
        };
        if let Some(t) = &request.resource_type {
            if resource.get("resourceType").and_then(Value::as_str) != Some(t.as_str()) {
                return Err(DenyReason::TypeMismatch);
            }
        }
        self.visible(resource, need)
    }

    // -----------------------------------------------------------------------------------------
    // Bundles
    // -----------------------------------------------------------------------------------------

    /// Filters a search, history or `$everything` Bundle in place: drops every entry outside
    /// the grant, redacts the kept ones ([`Enforcer::redact`]), every OperationOutcome entry (its text could name hidden data) and every
    /// entry without a resource (deleted history versions); recomputes `total` when the bundle
    /// is the only page and removes it otherwise; keeps only the `self`, `next` and `previous`
    /// links.
    pub fn filter_bundle(&self, bundle: &mut Value) -> FilterReport {
        self.filter_bundle_with(bundle, &|_| true)
    }

    /// [`Enforcer::filter_bundle`] for the answer to `request`, which also drops a match that
    /// satisfies the search only through an element the grant withholds: a Patient found by
    /// `identifier=` its Social Security number would otherwise confirm that number although
    /// every read removes it.
    pub fn filter_search_bundle(&self, request: &FhirRequest, bundle: &mut Value) -> FilterReport {
        let ty = request.resource_type.as_ref().map_or("", |t| t.as_str());
        let rules: Vec<&crate::category::WithheldElement> = self
            .withheld_rules(ty)
            .filter(|r| r.element == "identifier" && r.is_identifier_filter())
            .collect();
        let searched: Vec<&SearchParam> = request
            .params
            .iter()
            .filter(|p| p.name == "identifier")
            .collect();
        if rules.is_empty() || searched.is_empty() {
            return self.filter_bundle(bundle);
        }
        let found_by_shown_identifier = |entry: &Value| {
            if is_include(entry) {
                return true;
            }
            let shown: Vec<&Value> = entry
                .get("resource")
                .and_then(|r| r.get("identifier"))
                .and_then(Value::as_array)
                .map(|ids| {
                    ids.iter()
                        .filter(|id| {
                            !rules
                                .iter()
                                .any(|r| super::redact::identifier_matches(r, id))
                        })
                        .collect()
                })
                .unwrap_or_default();
            searched.iter().all(|p| {
                p.values
                    .iter()
                    .any(|v| shown.iter().any(|id| identifier_token_matches(id, v)))
            })
        };
        self.filter_bundle_with(bundle, &found_by_shown_identifier)
    }

    fn filter_bundle_with(
        &self,
        bundle: &mut Value,
        shown: &dyn Fn(&Value) -> bool,
    ) -> FilterReport {
        let mut report = FilterReport::default();
        let Some(obj) = bundle.as_object_mut() else {
            return report;
        };
        let mut matches = 0usize;
        let mut dropped_matches = 0usize;
        if let Some(Value::Array(entries)) = obj.get_mut("entry") {
            entries.retain_mut(|entry| {
                let keep = self.entry_visible(entry) && shown(entry);
                if keep {
                    report.kept += 1;
                    if let Some(resource) = entry.get_mut("resource") {
                        if self.needs_redaction(resource) {
                            report.redacted += self.redact(resource);
                        }
                    }
                    let mode = entry
                        .get("search")
                        .and_then(|s| s.get("mode"))
                        .and_then(Value::as_str);
                    if mode != Some("include") {
                        matches += 1;
                    }
                } else {
                    report.dropped += 1;
                    if !is_include(entry) {
                        dropped_matches += 1;
                    }
                }
                keep
            });
            // An included resource is there for a match (R4 search.html#include). When a match
            // was withheld, what it alone brought in would tell that it exists (the Patient
            // included for a hidden lab result, the visit it belongs to): only includes that a
            // kept match refers to, or that refer to a kept match, stay.
            if dropped_matches > 0 {
                let before = entries.len();
                retain_linked_includes(entries);
                let orphans = before - entries.len();
                report.kept -= orphans;
                report.dropped += orphans;
            }
        } else if obj.contains_key("entry") {
            obj.remove("entry");
        }
        let mut has_more = false;
        if let Some(Value::Array(links)) = obj.get_mut("link") {
            links.retain(|l| {
                matches!(
                    l.get("relation").and_then(Value::as_str),
                    Some("self" | "next" | "previous" | "prev")
                )
            });
            has_more = links.iter().any(|l| {
                matches!(
                    l.get("relation").and_then(Value::as_str),
                    Some("next" | "previous" | "prev")
                )
            });
        }
        if has_more {
            obj.remove("total");
        } else if obj.contains_key("total")
            || obj.get("type").and_then(Value::as_str) == Some("searchset")
        {
            obj.insert("total".to_owned(), Value::from(matches));
        }
        report
    }

    fn entry_visible(&self, entry: &Value) -> bool {
        let Some(resource) = entry.get("resource") else {
            return false;
        };
        let mode = entry
            .get("search")
            .and_then(|s| s.get("mode"))
            .and_then(Value::as_str);
        if mode == Some("outcome")
            || resource.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome")
        {
            return false;
        }
        self.visible(resource, Need::ReadOrSearch).is_ok()
    }

    /// Parses, filters and re-serialises a Bundle held as bytes.
    pub fn filter_bundle_bytes(&self, bytes: &[u8]) -> Result<(Vec<u8>, FilterReport), DenyReason> {
        let mut bundle: Value =
            serde_json::from_slice(bytes).map_err(|_| DenyReason::Unclassifiable)?;
        let report = self.filter_bundle(&mut bundle);
        let out = serde_json::to_vec(&bundle).map_err(|_| DenyReason::Unclassifiable)?;
        Ok((out, report))
    }

    // -----------------------------------------------------------------------------------------
    // Request decisions
    // -----------------------------------------------------------------------------------------

    /// Decides a request before execution.
    pub fn decide(&self, request: &FhirRequest) -> Decision {
        match self.decide_inner(request) {
            Ok(d) => d,
            Err(reason) => Decision::Deny(reason),
        }
    }

    fn decide_inner(&self, request: &FhirRequest) -> Result<Decision, DenyReason> {
        let ty = request.resource_type.as_ref().map(|t| t.as_str());
        match &request.interaction {
            Interaction::Capabilities => Ok(Decision::Allow {
                response: ResponseCheck::Nothing,
            }),
            Interaction::Read | Interaction::Vread => {
                let ty = ty.ok_or(DenyReason::Incomplete)?;
                let id = request.id.as_deref().ok_or(DenyReason::Incomplete)?;
                let compartment = self.scope_check(ty, Need::Read)?;
                if compartment && ty == "Patient" && !self.is_patient_id(id) {
                    return Err(DenyReason::OtherPatientRecord);
                }
                // A read's only parameters subset the resource, which the response check
                // could then not classify: refused here as on a search.
                request.params.iter().try_for_each(check_supported)?;
                Ok(Decision::Allow {
                    response: ResponseCheck::Resource,
                })
            }
            Interaction::HistoryInstance => {
                let ty = ty.ok_or(DenyReason::Incomplete)?;
                let id = request.id.as_deref().ok_or(DenyReason::Incomplete)?;
                let compartment = self.scope_check(ty, Need::Read)?;
                if compartment && ty == "Patient" && !self.is_patient_id(id) {
                    return Err(DenyReason::OtherPatientRecord);
                }
                self.check_params(request, compartment)?;
                Ok(Decision::Allow {
                    response: ResponseCheck::Bundle,
                })
            }
            Interaction::HistoryType => {
                let ty = ty.ok_or(DenyReason::Incomplete)?;
                let compartment = self.scope_check(ty, Need::Search)?;
                self.check_params(request, compartment)?;
                Ok(Decision::Allow {
                    response: ResponseCheck::Bundle,
                })
            }
            Interaction::HistorySystem => {
                self.wildcard_search()?;
                self.check_params(request, true)?;
                Ok(Decision::Allow {
                    response: ResponseCheck::Bundle,
                })
            }
            Interaction::SearchType => {
                let ty = ty.ok_or(DenyReason::Incomplete)?;
                self.search_type(request, ty, true)
            }
            Interaction::SearchCompartment => {
                let ty = ty.ok_or(DenyReason::Incomplete)?;
                let compartment = self.scope_check(ty, Need::Search)?;
                if let Some((ctype, cid)) = &request.compartment {
                    if compartment && ctype.as_str() == "Patient" && !self.is_patient_id(cid) {
                        return Err(DenyReason::OtherPatientRecord);
                    }
                    if compartment && ctype.as_str() != "Patient" {
                        // Another compartment (Encounter/x/…) does not bound the patient.
                        return self.search_type(request, ty, true);
                    }
                }
                self.search_type(request, ty, false)
            }
            Interaction::SearchSystem => {
                let types: Vec<&str> = request
                    .params_named("_type")
                    .flat_map(|p| p.values.iter())
                    .flat_map(|v| v.split(','))
                    .collect();
                let mut compartment = false;
                if types.is_empty() {
                    self.wildcard_search()?;
                    compartment = true;
                } else {
                    for t in &types {
                        compartment |= self.scope_check(t, Need::Search)?;
                    }
                }
                self.check_params(request, compartment)?;
                Ok(Decision::Allow {
                    response: ResponseCheck::Bundle,
                })
            }
            Interaction::Create
            | Interaction::Update
            | Interaction::Patch
            | Interaction::Delete => {
                if self.config.read_only {
                    return Err(DenyReason::ReadOnlyDeployment);
                }
                let ty = ty.ok_or(DenyReason::Incomplete)?;
                let need = match request.interaction {
                    Interaction::Create => Need::Create,
                    Interaction::Delete => Need::Delete,
                    _ => Need::Update,
                };
                if need != Need::Create && request.id.is_none() {
                    return Err(DenyReason::Incomplete);
                }
                let compartment = self.scope_check(ty, need)?;
                if compartment && ty == "Patient" {
                    if need == Need::Create {
                        return Err(DenyReason::OtherPatient);
                    }
                    if !request
                        .id
                        .as_deref()
                        .is_some_and(|id| self.is_patient_id(id))
                    {
                        return Err(DenyReason::OtherPatient);
                    }
                }
                Ok(Decision::Allow {
                    response: ResponseCheck::Resource,
                })
            }
            Interaction::BatchOrTransaction => Err(DenyReason::BatchNeedsEntries),
            Interaction::Operation(name) => self.operation(request, name, ty),
        }
    }

    fn operation(
        &self,
        request: &FhirRequest,
        name: &str,
        ty: Option<&str>,
    ) -> Result<Decision, DenyReason> {
        match (name, ty) {
            ("everything", Some("Patient")) => {
                let compartment = self.scope_check("Patient", Need::Read)?;
                match request.id.as_deref() {
                    Some(id) if compartment && !self.is_patient_id(id) => {
                        Err(DenyReason::OtherPatientRecord)
                    }
                    None if compartment => Err(DenyReason::OtherPatient),
                    _ => {
                        self.check_params(request, compartment)?;
                        Ok(Decision::Allow {
                            response: ResponseCheck::Bundle,
                        })
                    }
                }
            }
            ("lastn", Some("Observation")) | ("docref", Some("DocumentReference"))
                if request.id.is_none() =>
            {
                self.search_type(request, ty.unwrap_or_default(), true)
            }
            _ => Err(DenyReason::OperationNotPermitted {
                name: name.chars().take(64).collect(),
            }),
        }
    }

    fn wildcard_search(&self) -> Result<(), DenyReason> {
        let ok = self
            .grants
            .iter()
            .any(|g| g.resource_type.is_none() && g.permissions.search);
        if !ok {
            return Err(DenyReason::SystemLevel);
        }
        if self.grants.iter().all(|g| self.in_patient_context(g)) && self.patient.is_none() {
            return Err(DenyReason::NoPatientContext);
        }
        Ok(())
    }

    fn is_patient_id(&self, id: &str) -> bool {
        self.patient.as_ref().is_some_and(|p| p.as_str() == id)
    }

    /// A type search (or a Patient-compartment search when `add_patient` is false).
    fn search_type(
        &self,
        request: &FhirRequest,
        ty: &str,
        add_patient: bool,
    ) -> Result<Decision, DenyReason> {
        let compartment = self.scope_check(ty, Need::Search)?;
        self.check_params(request, compartment)?;
        let mut add = Vec::new();
        if compartment && add_patient && !compartment_free(self.registry, ty) {
            if let Some(p) = &self.patient {
                if ty == "Patient" {
                    add.push(param("_id", p.as_str().to_owned()));
                } else {
                    add.push(param("patient", format!("Patient/{}", p.as_str())));
                }
            }
        }
        if let Some(narrow) = self.category_narrowing(ty) {
            add.push(narrow);
        }
        // Idempotent: a restriction the request already carries (a `next` link built from a
        // narrowed request) is not added again, so following links never grows the URL.
        add.retain(|p| !request.params.contains(p));
        Ok(if add.is_empty() {
            Decision::Allow {
                response: ResponseCheck::Bundle,
            }
        } else {
            Decision::Narrow {
                add,
                response: ResponseCheck::Bundle,
            }
        })
    }

    /// The exact category narrowing parameter, when the granted categories of the type all
    /// constrain the same element. A type no granted category reaches is not refused: its
    /// matches are all filtered out, while `_include`d resources that are visible on their own
    /// still come back (a refusal would depend on the grant only, so either answer is safe).
    fn category_narrowing(&self, ty: &str) -> Option<SearchParam> {
        let index = self.registry.type_index(ty)?;
        if index.supporting.is_some() {
            return None;
        }
        let is_granted = |i: &u16| self.granted.contains(usize::from(*i));
        let bucket_granted = match index.bucket {
            Some(b) => is_granted(&b),
            None => self
                .registry
                .uncategorised_id(ty)
                .is_some_and(|id| self.granted_ids.contains(&id)),
        };
        if index.whole.iter().any(is_granted) || bucket_granted {
            return None;
        }
        let mut element_used: Option<&str> = None;
        let mut values: Vec<String> = Vec::new();
        for (element, systems) in &index.elements {
            let mut used_here = false;
            for (system, codes) in systems {
                for (code, cats) in codes {
                    if cats.iter().any(is_granted) {
                        used_here = true;
                        for spelling in self.registry.system_spellings(system) {
                            values.push(if spelling.is_empty() {
                                code.clone()
                            } else {
                                format!("{spelling}|{code}")
                            });
                        }
                    }
                }
            }
            if used_here {
                if element_used.is_some() {
                    // Granted categories span two elements (e.g. smoking by code, labs by
                    // category): no single AND-ed parameter expresses the OR; filter only.
                    return None;
                }
                element_used = Some(element);
            }
        }
        let element = element_used?;
        if !matches!(element, "category" | "code" | "type") {
            return None;
        }
        values.sort();
        values.dedup();
        Some(SearchParam {
            name: element.to_owned(),
            modifier: None,
            values,
        })
    }

    /// Whether every resource of `ty` the caller could be shown is shown: a whole-type search
    /// scope without constraints, and every category that could hold one granted.
    pub(super) fn fully_visible(&self, ty: &str) -> bool {
        let scope = self
            .grants
            .iter()
            .any(|g| g.names_type(ty) && g.permissions.search && g.constraints.is_empty());
        if !scope {
            return false;
        }
        let is_granted = |i: u16| self.granted.contains(usize::from(i));
        match self.registry.type_index(ty) {
            None => self
                .registry
                .uncategorised_id(ty)
                .is_some_and(|id| self.granted_ids.contains(&id)),
            Some(index) if index.supporting.is_some() => self.supporting_granted(ty),
            Some(index) => {
                if index.whole.iter().any(|&i| is_granted(i)) {
                    return true;
                }
                let bucket = match index.bucket {
                    Some(b) => is_granted(b),
                    None => self
                        .registry
                        .uncategorised_id(ty)
                        .is_some_and(|id| self.granted_ids.contains(&id)),
                };
                bucket
                    && index.elements.iter().all(|(_, systems)| {
                        systems
                            .values()
                            .flat_map(|codes| codes.values())
                            .all(|cats| cats.iter().any(|&i| is_granted(i)))
                    })
            }
        }
    }

    /// Refuses parameters that could probe hidden data or blind the result filter, and
    /// patient parameters naming someone else.
    fn check_params(&self, request: &FhirRequest, compartment: bool) -> Result<(), DenyReason> {
        for p in &request.params {
            let name = p.name.as_str();
            check_supported(p)?;
            if let Some(rest) = name.strip_prefix("_has") {
                // `_has:Type:ref:param`; the sanitizer may also keep `Type:ref:param` in the
                // modifier.
                let spec = match (rest.strip_prefix(':'), &p.modifier) {
                    (Some(s), _) if !s.is_empty() => s.to_owned(),
                    (_, Some(m)) => m.clone(),
                    _ => String::new(),
                };
                let target = spec.split(':').next().unwrap_or("");
                // A nested `_has` inside the parameter is refused with it.
                if target.is_empty() || spec.contains("_has") || !self.fully_visible(target) {
                    return Err(DenyReason::ReverseChain {
                        resource_type: target.chars().take(64).collect(),
                    });
                }
                continue;
            }
            let full = match &p.modifier {
                Some(m) => format!("{name}:{m}"),
                None => name.to_owned(),
            };
            // `:text`, `:of-type`, `:not` or `:missing` on an identifier the grant withholds
            // would test it in ways the response check cannot replay (it replays plain token
            // values, `filter_search_bundle`).
            if name == "identifier" && p.modifier.is_some() {
                let ty = request.resource_type.as_ref().map_or("", |t| t.as_str());
                if self
                    .withheld_rules(ty)
                    .any(|r| r.element == "identifier" && r.is_identifier_filter())
                {
                    return Err(DenyReason::UnsupportedParameter {
                        name: full.chars().take(64).collect(),
                    });
                }
            }
            if full.contains('.') {
                self.check_chain(&full)?;
                continue;
            }
            if compartment {
                let base = name;
                if PATIENT_PARAMS.contains(&base)
                    && !matches!(p.modifier.as_deref(), Some("missing"))
                {
                    for v in &p.values {
                        if !self.value_is_patient(v) {
                            return Err(DenyReason::OtherPatient);
                        }
                    }
                }
                if base == "_id"
                    && request.resource_type.as_ref().map(|t| t.as_str()) == Some("Patient")
                {
                    for v in &p.values {
                        if !self.is_patient_id(v) {
                            return Err(DenyReason::OtherPatient);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn check_chain(&self, full: &str) -> Result<(), DenyReason> {
        let deny = || DenyReason::Chain {
            name: full.chars().take(128).collect(),
        };
        let mut hops = full.split('.');
        let first = hops.next().unwrap_or("");
        // Only one hop: deeper chains reach types we cannot name here.
        if full.matches('.').count() != 1 {
            return Err(deny());
        }
        let target = match first.split_once(':') {
            Some((_, t)) if t.chars().next().is_some_and(|c| c.is_ascii_uppercase()) => t,
            Some(_) => return Err(deny()),
            None => CHAIN_TARGETS
                .iter()
                .find(|(p, _)| *p == first)
                .map(|(_, t)| *t)
                .ok_or_else(deny)?,
        };
        if self.fully_visible(target) {
            Ok(())
        } else {
            Err(deny())
        }
    }

    /// `123`, `Patient/123`, `https://x/fhir/Patient/123` (optionally `/_history/n`).
    fn value_is_patient(&self, value: &str) -> bool {
        let Some(p) = &self.patient else {
            return false;
        };
        if value == p.as_str() {
            return true;
        }
        reference_patient_id(value) == Some(p.as_str())
    }

    // -----------------------------------------------------------------------------------------
    // Batches
    // -----------------------------------------------------------------------------------------

    /// Decides the entries of a batch (`atomic = false`) or transaction (`atomic = true`) one by
    /// one. In a transaction one denied entry denies them all (its index is recorded).
    pub fn decide_batch(&self, entries: &[FhirRequest], atomic: bool) -> Vec<Decision> {
        let decisions: Vec<Decision> = entries
            .iter()
            .map(|e| match e.interaction {
                Interaction::BatchOrTransaction => Decision::Deny(DenyReason::BatchNeedsEntries),
                _ => self.decide(e),
            })
            .collect();
        if atomic {
            if let Some(index) = decisions.iter().position(|d| !d.is_allowed()) {
                return entries
                    .iter()
                    .map(|_| Decision::Deny(DenyReason::TransactionEntryDenied { index }))
                    .collect();
            }
        }
        decisions
    }

    /// Filters a batch-response Bundle in place: a denied entry, or an entry whose returned
    /// resource is outside the grant, becomes a bare response with the generic refusal status;
    /// a nested search bundle is filtered.
    pub fn filter_batch_response(
        &self,
        response: &mut Value,
        requests: &[FhirRequest],
        decisions: &[Decision],
    ) -> FilterReport {
        let mut report = FilterReport::default();
        let Some(Value::Array(entries)) = response.get_mut("entry") else {
            return report;
        };
        for (i, entry) in entries.iter_mut().enumerate() {
            let refusal = match decisions.get(i) {
                None => Some(outcome(StatusCode::FORBIDDEN)),
                Some(Decision::Deny(reason)) => Some(self.wire_outcome(reason)),
                Some(d) => match (d.response_check(), entry.get_mut("resource")) {
                    (Some(ResponseCheck::Bundle), Some(nested)) => {
                        let r = self.filter_bundle(nested);
                        report.dropped += r.dropped;
                        report.redacted += r.redacted;
                        None
                    }
                    (Some(ResponseCheck::Resource), Some(resource)) => {
                        let check = match requests.get(i) {
                            Some(req) if req.interaction.is_write() => {
                                self.check_write(req, resource)
                            }
                            Some(req) => self.check_read(req, resource),
                            None => Err(DenyReason::Incomplete),
                        };
                        if check.is_ok() && self.needs_redaction(resource) {
                            report.redacted += self.redact(resource);
                        }
                        check.err().map(|reason| self.wire_outcome(&reason))
                    }
                    (_, Some(_)) => Some(outcome(StatusCode::FORBIDDEN)),
                    (_, None) => None,
                },
            };
            match refusal {
                Some(wire) => {
                    report.dropped += 1;
                    *entry = serde_json::json!({
                        "response": {
                            "status": wire.status.as_u16().to_string(),
                            "outcome": wire.body,
                        }
                    });
                }
                None => report.kept += 1,
            }
        }
        report
    }
}

fn param(name: &str, value: String) -> SearchParam {
    SearchParam {
        name: name.to_owned(),
        modifier: None,
        values: vec![value],
    }
}

/// The patient id a reference string points to, if it is a Patient reference.
fn reference_patient_id(reference: &str) -> Option<&str> {
    let path = match reference.find("/_history/") {
        Some(i) => &reference[..i],
        None => reference,
    };
    let (prefix, id) = path.rsplit_once('/')?;
    let ty = prefix.rsplit('/').next().unwrap_or(prefix);
    (ty == "Patient" && !id.is_empty()).then_some(id)
}

fn refers_to<V: JsonView>(reference: &V, patient: &PatientId) -> bool {
    reference
        .get("reference")
        .and_then(JsonView::as_str)
        .and_then(reference_patient_id)
        == Some(patient.as_str())
}

/// Whether a Bundle entry is an `_include`d or `_revinclude`d resource (`search.mode`).
fn is_include(entry: &Value) -> bool {
    entry
        .get("search")
        .and_then(|s| s.get("mode"))
        .and_then(Value::as_str)
        == Some("include")
}

/// `Type/id` of a literal reference (relative, absolute, or with `_history/n`), the form the
/// entries of one Bundle can be matched by.
fn reference_key(reference: &str) -> Option<String> {
    let path = reference.split(['?', '#']).next().unwrap_or("");
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(at) = segments.iter().rposition(|s| *s == "_history") {
        segments.truncate(at);
    }
    match segments.as_slice() {
        [.., ty, id] => Some(format!("{ty}/{id}")),
        _ => None,
    }
}

/// Every literal reference in `value`, as [`reference_key`]s.
fn collect_references(value: &Value, out: &mut std::collections::HashSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("reference", Value::String(r)) => {
                        if let Some(k) = reference_key(r) {
                            out.insert(k);
                        }
                    }
                    _ => collect_references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, out)),
        _ => {}
    }
}

fn resource_key(resource: &Value) -> Option<String> {
    let ty = resource.get("resourceType")?.as_str()?;
    let id = resource.get("id")?.as_str()?;
    Some(format!("{ty}/{id}"))
}

/// Keeps the include entries linked to a kept match: referred to by one (`_include`) or
/// referring to one (`_revinclude`).
fn retain_linked_includes(entries: &mut Vec<Value>) {
    let mut match_keys = std::collections::HashSet::new();
    let mut referenced = std::collections::HashSet::new();
    for entry in entries.iter().filter(|e| !is_include(e)) {
        if let Some(resource) = entry.get("resource") {
            if let Some(k) = resource_key(resource) {
                match_keys.insert(k);
            }
            collect_references(resource, &mut referenced);
        }
    }
    entries.retain(|entry| {
        if !is_include(entry) {
            return true;
        }
        let Some(resource) = entry.get("resource") else {
            return false;
        };
        if resource_key(resource).is_some_and(|k| referenced.contains(&k)) {
            return true;
        }
        let mut refers_to = std::collections::HashSet::new();
        collect_references(resource, &mut refers_to);
        refers_to.iter().any(|k| match_keys.contains(k))
    });
}

/// Whether an Identifier matches a token search value (`system|value`, `|value` for one
/// without a system, or `value` in any system; R4 search.html#token).
fn identifier_token_matches(identifier: &Value, wanted: &str) -> bool {
    let system = identifier.get("system").and_then(Value::as_str);
    let value = identifier.get("value").and_then(Value::as_str);
    match wanted.split_once('|') {
        Some(("", v)) => system.is_none() && value == Some(v),
        Some((s, "")) => system == Some(s),
        Some((s, v)) => system == Some(s) && value == Some(v),
        None => value == Some(wanted),
    }
}

#[cfg(test)]
mod granted_indices_tests {
    use super::GrantedIndices;

    #[test]
    fn inline_and_heap_sets_answer_alike() {
        for len in [0usize, 1, 64, 127, 128, 129, 300] {
            let mut set = GrantedIndices::new(len);
            assert_eq!(matches!(set, GrantedIndices::Inline(..)), len <= 128);
            let chosen: Vec<usize> = (0..len).filter(|i| i % 3 == 1).collect();
            for &i in &chosen {
                set.insert(i);
            }
            // Out of range: ignored, never a panic.
            set.insert(len + 7);
            for i in 0..len + 10 {
                assert_eq!(set.contains(i), chosen.contains(&i), "len {len}, index {i}");
            }
        }
    }
}
