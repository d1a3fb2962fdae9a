//! The per-resource-type search-parameter table.
//!
//! Every search parameter a request may carry is declared here with its FHIR type; anything
//! else is an unknown parameter. The default table is US Core's search parameters plus the
//! FHIR common parameters the issue names. Hosts extend it with [`ParamTable::add`].

use std::collections::BTreeMap;

use crate::fhir::ResourceType;

/// The FHIR search-parameter types fhirguard types values by, plus the special control
/// parameters whose values have their own grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParamType {
    /// `[system]|[code]`, `|code`, `system|` or `code`.
    Token,
    /// `Type/id`, `id`, `Type/id/_history/vid` or an absolute URL.
    Reference,
    /// A FHIR date/dateTime with an optional prefix (`ge2020-01-01`).
    Date,
    /// Free text, matched by the host as a string.
    String,
    /// A decimal with an optional prefix.
    Number,
    /// `[prefix][number]|[system]|[code]`.
    Quantity,
    /// An absolute URI or URN.
    Uri,
    /// `_id`: one or more logical ids.
    Id,
    /// `_count`: a bounded page size.
    Count,
    /// `_sort`: `-?name` keys that are search parameters of the type.
    Sort,
    /// `_include`: `Type:param[:Target]`.
    Include,
    /// `_revinclude`: `Type:param[:Target]`.
    RevInclude,
    /// `_summary`: `true|text|data|count|false`.
    Summary,
    /// `_elements`: element names.
    Elements,
    /// `_total`: `none|estimate|accurate`.
    Total,
    /// `_has:Type:ref:param` (reverse chaining, one level).
    Has,
    /// A FHIR instant (`_since` of history and `$everything`).
    Instant,
    /// A resource type name (`_type` of `$everything`).
    TypeName,
}

impl ParamType {
    /// The name used in documentation and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Token => "token",
            ParamType::Reference => "reference",
            ParamType::Date => "date",
            ParamType::String => "string",
            ParamType::Number => "number",
            ParamType::Quantity => "quantity",
            ParamType::Uri => "uri",
            ParamType::Id => "id",
            ParamType::Count => "count",
            ParamType::Sort => "sort",
            ParamType::Include => "include",
            ParamType::RevInclude => "revinclude",
            ParamType::Summary => "summary",
            ParamType::Elements => "elements",
            ParamType::Total => "total",
            ParamType::Has => "has",
            ParamType::Instant => "instant",
            ParamType::TypeName => "type",
        }
    }

    /// Whether `modifier` is allowed on a parameter of this type (FHIR R4 §3.1.1.5).
    ///
    /// A reference parameter also accepts a resource-type modifier (`subject:Patient`); that
    /// is checked against the allow-list by the caller.
    pub fn allows_modifier(self, modifier: &str) -> bool {
        match self {
            ParamType::String => matches!(modifier, "exact" | "contains" | "missing"),
            ParamType::Token => matches!(
                modifier,
                "text" | "not" | "above" | "below" | "in" | "not-in" | "of-type" | "missing"
            ),
            ParamType::Reference => matches!(modifier, "identifier" | "missing"),
            ParamType::Date | ParamType::Number | ParamType::Quantity => modifier == "missing",
            ParamType::Uri => matches!(modifier, "above" | "below" | "missing"),
            ParamType::Include | ParamType::RevInclude => modifier == "iterate",
            _ => false,
        }
    }

    /// Whether a repeated occurrence with a different value contradicts the first.
    ///
    /// Control parameters and references are single-valued: `patient=1&patient=2` is the
    /// parameter-pollution trick where one layer reads the first and another the last.
    pub fn single_valued(self) -> bool {
        matches!(
            self,
            ParamType::Reference
                | ParamType::Id
                | ParamType::Count
                | ParamType::Sort
                | ParamType::Summary
                | ParamType::Elements
                | ParamType::Total
                | ParamType::Instant
        )
    }
}

/// One declared search parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamDef {
    /// Its type.
    pub ty: ParamType,
    /// For a reference, the resource types it may point at (empty: any allowed type).
    pub targets: Vec<ResourceType>,
}

/// Search parameters per resource type, plus the common ones every type accepts.
#[derive(Debug, Clone, Default)]
pub struct ParamTable {
    common: BTreeMap<String, ParamDef>,
    per_type: BTreeMap<String, BTreeMap<String, ParamDef>>,
}

/// The parameters of one resource type (type-specific first, then common): what
/// [`ParamTable::get`] answers, with the type's own map found once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TypeParams<'a> {
    specific: Option<&'a BTreeMap<String, ParamDef>>,
    common: &'a BTreeMap<String, ParamDef>,
}

impl<'a> TypeParams<'a> {
    /// The declaration of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&'a ParamDef> {
        self.specific
            .and_then(|m| m.get(name))
            .or_else(|| self.common.get(name))
    }
}

/// The FHIR common parameters the default table accepts on every type.
const COMMON: &[(&str, ParamType)] = &[
    ("_id", ParamType::Id),
    ("_lastUpdated", ParamType::Date),
    ("_count", ParamType::Count),
    ("_sort", ParamType::Sort),
    ("_include", ParamType::Include),
    ("_revinclude", ParamType::RevInclude),
    ("_summary", ParamType::Summary),
    ("_elements", ParamType::Elements),
    ("_total", ParamType::Total),
    ("_has", ParamType::Has),
];

use ParamType::{Date as D, Quantity as Q, Reference as R, String as S, Token as T, Uri as U};

/// US Core 6/7 search parameters (plus `subject` where R4 defines it, which clients use
/// interchangeably with `patient`). `(type, name, param type, reference targets)`.
type ParamSpec = (&'static str, ParamType, &'static [&'static str]);
const US_CORE: &[(&str, &[ParamSpec])] = &[
    (
        "AllergyIntolerance",
        &[("clinical-status", T, &[]), ("patient", R, &["Patient"])],
    ),
    (
        "CarePlan",
        &[
            ("category", T, &[]),
            ("date", D, &[]),
            ("patient", R, &["Patient"]),
            ("subject", R, &["Patient", "Group"]),
            ("status", T, &[]),
        ],
    ),
    (
        "CareTeam",
        &[
            ("patient", R, &["Patient"]),
            ("status", T, &[]),
            ("role", T, &[]),
        ],
    ),
    (
        "Condition",
        &[
            ("abatement-date", D, &[]),
            ("asserted-date", D, &[]),
            ("category", T, &[]),
            ("clinical-status", T, &[]),
            ("code", T, &[]),
            ("encounter", R, &["Encounter"]),
            ("onset-date", D, &[]),
            ("patient", R, &["Patient"]),
            ("subject", R, &["Patient", "Group"]),
            ("recorded-date", D, &[]),
        ],
    ),
    ("Coverage", &[("patient", R, &["Patient"])]),
    (
        "Device",
        &[
            ("patient", R, &["Patient"]),
            ("type", T, &[]),
            ("status", T, &[]),
        ],
    ),
    (
        "DiagnosticReport",
        &[
            ("category", T, &[]),
            ("code", T, &[]),
            ("date", D, &[]),
            ("encounter", R, &["Encounter"]),
            ("patient", R, &["Patient"]),
            ("subject", R, &["Patient", "Group", "Device", "Location"]),
            ("status", T, &[]),
        ],
    ),
    (
        "DocumentReference",
        &[
            ("category", T, &[]),
            ("date", D, &[]),
            ("encounter", R, &["Encounter"]),
            ("patient", R, &["Patient"]),
            (
                "subject",
                R,
                &["Patient", "Group", "Device", "Practitioner"],
            ),
            ("period", D, &[]),
            ("status", T, &[]),
            ("type", T, &[]),
        ],
    ),
    (
        "Encounter",
        &[
            ("class", T, &[]),
            ("date", D, &[]),
            ("discharge-disposition", T, &[]),
            ("identifier", T, &[]),
            ("location", R, &["Location"]),
            ("patient", R, &["Patient"]),
            ("subject", R, &["Patient", "Group"]),
            ("status", T, &[]),
            ("type", T, &[]),
        ],
    ),
    (
        "Goal",
        &[
            ("description", T, &[]),
            ("lifecycle-status", T, &[]),
            ("patient", R, &["Patient"]),
            ("subject", R, &["Patient", "Group", "Organization"]),
            ("target-date", D, &[]),
        ],
    ),
    (
        "Immunization",
        &[
            ("date", D, &[]),
            ("patient", R, &["Patient"]),
            ("status", T, &[]),
        ],
    ),
    (
        "Location",
        &[
            ("address", S, &[]),
            ("address-city", S, &[]),
            ("address-postalcode", S, &[]),
            ("address-state", S, &[]),
            ("name", S, &[]),
        ],
    ),
    ("Medication", &[("code", T, &[])]),
    (
        "MedicationDispense",
        &[
            ("patient", R, &["Patient"]),
            ("status", T, &[]),
            ("type", T, &[]),
        ],
    ),
    (
        "MedicationRequest",
        &[
            ("authoredon", D, &[]),
            ("encounter", R, &["Encounter"]),
            ("intent", T, &[]),
            // R4's reference form of `code`: what `_include=MedicationRequest:medication`
            // follows (US Core SHALL).
            ("medication", R, &["Medication"]),
            ("patient", R, &["Patient"]),
            ("subject", R, &["Patient", "Group"]),
            ("status", T, &[]),
        ],
    ),
    (
        "Observation",
        &[
            ("category", T, &[]),
            ("code", T, &[]),
            ("date", D, &[]),
            ("encounter", R, &["Encounter"]),
            ("patient", R, &["Patient"]),
            ("subject", R, &["Patient", "Group", "Device", "Location"]),
            ("status", T, &[]),
            ("value-quantity", Q, &[]),
        ],
    ),
    (
        "Organization",
        &[
            ("address", S, &[]),
            ("identifier", T, &[]),
            ("name", S, &[]),
        ],
    ),
    (
        "Patient",
        &[
            ("birthdate", D, &[]),
            ("death-date", D, &[]),
            ("family", S, &[]),
            ("gender", T, &[]),
            ("given", S, &[]),
            ("identifier", T, &[]),
            ("name", S, &[]),
        ],
    ),
    ("Practitioner", &[("identifier", T, &[]), ("name", S, &[])]),
    (
        "PractitionerRole",
        &[
            ("practitioner", R, &["Practitioner"]),
            ("specialty", T, &[]),
        ],
    ),
    (
        "Procedure",
        &[
            ("code", T, &[]),
            ("date", D, &[]),
            ("patient", R, &["Patient"]),
            ("subject", R, &["Patient", "Group"]),
            ("status", T, &[]),
        ],
    ),
    (
        "Provenance",
        &[("patient", R, &["Patient"]), ("target", R, &[])],
    ),
    ("Questionnaire", &[("url", U, &[]), ("status", T, &[])]),
    (
        "QuestionnaireResponse",
        &[
            ("authored", D, &[]),
            ("patient", R, &["Patient"]),
            ("questionnaire", R, &["Questionnaire"]),
            ("status", T, &[]),
        ],
    ),
    (
        "RelatedPerson",
        &[("name", S, &[]), ("patient", R, &["Patient"])],
    ),
    (
        "ServiceRequest",
        &[
            ("authored", D, &[]),
            ("category", T, &[]),
            ("code", T, &[]),
            ("patient", R, &["Patient"]),
            ("status", T, &[]),
        ],
    ),
    (
        "Specimen",
        &[("patient", R, &["Patient"]), ("type", T, &[])],
    ),
    ("Group", &[("identifier", T, &[])]),
];

impl ParamTable {
    /// An empty table: no parameter is accepted until added.
    pub fn empty() -> Self {
        Self::default()
    }

    /// US Core's search parameters plus `_id _lastUpdated _count _sort _include _revinclude
    /// _summary _elements _total _has` on every type.
    pub fn us_core() -> Self {
        let mut table = Self::empty();
        for (name, ty) in COMMON {
            table.add_common(name, *ty);
        }
        for (rtype, params) in US_CORE {
            for (name, ty, targets) in *params {
                let targets: Vec<ResourceType> = targets
                    .iter()
                    .filter_map(|t| ResourceType::new(t))
                    .collect();
                table.insert(rtype, name, ParamDef { ty: *ty, targets });
            }
        }
        table
    }

    /// The resource types the default table has parameters for.
    pub fn us_core_types() -> impl Iterator<Item = &'static str> {
        US_CORE.iter().map(|(t, _)| *t)
    }

    /// Declares `name` of type `ty` on `resource_type` (replacing an earlier declaration).
    pub fn add(&mut self, resource_type: &str, name: &str, ty: ParamType) -> &mut Self {
        self.insert(
            resource_type,
            name,
            ParamDef {
                ty,
                targets: Vec::new(),
            },
        );
        self
    }

    /// Declares a reference parameter restricted to the given target types.
    pub fn add_reference(
        &mut self,
        resource_type: &str,
        name: &str,
        targets: &[ResourceType],
    ) -> &mut Self {
        self.insert(
            resource_type,
            name,
            ParamDef {
                ty: ParamType::Reference,
                targets: targets.to_vec(),
            },
        );
        self
    }

    /// Declares a parameter every resource type accepts.
    pub fn add_common(&mut self, name: &str, ty: ParamType) -> &mut Self {
        self.common.insert(
            name.to_owned(),
            ParamDef {
                ty,
                targets: Vec::new(),
            },
        );
        self
    }

    /// Removes a parameter from a type (or from the common set when `resource_type` is
    /// `None`), e.g. to refuse `_has` altogether.
    pub fn remove(&mut self, resource_type: Option<&str>, name: &str) -> &mut Self {
        match resource_type {
            None => {
                self.common.remove(name);
            }
            Some(t) => {
                if let Some(m) = self.per_type.get_mut(t) {
                    m.remove(name);
                }
            }
        }
        self
    }

    fn insert(&mut self, resource_type: &str, name: &str, def: ParamDef) {
        self.per_type
            .entry(resource_type.to_owned())
            .or_default()
            .insert(name.to_owned(), def);
    }

    /// The declaration of `name` on `resource_type` (type-specific first, then common).
    pub fn get(&self, resource_type: Option<&str>, name: &str) -> Option<&ParamDef> {
        resource_type
            .and_then(|t| self.per_type.get(t))
            .and_then(|m| m.get(name))
            .or_else(|| self.common.get(name))
    }

    /// The declarations that apply to `resource_type`, looked up once for a whole request.
    pub(crate) fn for_type(&self, resource_type: Option<&str>) -> TypeParams<'_> {
        TypeParams {
            specific: resource_type.and_then(|t| self.per_type.get(t)),
            common: &self.common,
        }
    }

    /// The type-specific declaration only (no common parameters).
    pub fn get_specific(&self, resource_type: &str, name: &str) -> Option<&ParamDef> {
        self.per_type.get(resource_type).and_then(|m| m.get(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn us_core_table_has_the_usual_suspects() {
        let t = ParamTable::us_core();
        assert_eq!(
            t.get(Some("Observation"), "patient").map(|d| d.ty),
            Some(ParamType::Reference)
        );
        assert_eq!(
            t.get(Some("Observation"), "_count").map(|d| d.ty),
            Some(ParamType::Count)
        );
        assert_eq!(
            t.get(Some("Patient"), "family").map(|d| d.ty),
            Some(ParamType::String)
        );
        assert!(t.get(Some("Observation"), "family").is_none());
        assert!(t.get_specific("Observation", "_count").is_none());
    }

    #[test]
    fn modifiers_per_type() {
        assert!(ParamType::Token.allows_modifier("not"));
        assert!(!ParamType::Token.allows_modifier("exact"));
        assert!(ParamType::String.allows_modifier("exact"));
        assert!(!ParamType::Date.allows_modifier("exact"));
        assert!(!ParamType::Count.allows_modifier("missing"));
    }
}
