//! Data categories finer than a FHIR resource type: a declarative registry of CCDS/USCDI
//! categories mapped to FHIR resource types and category/code constraints, and a classifier.
//!
//! A patient chooses *categories* ("vital signs yes, smoking status no"), but a SMART resource
//! scope covers a whole FHIR type: vital signs, lab results and smoking status are all
//! Observations. The [`CategoryRegistry`] is the data that bridges the two. It is loaded from a
//! versioned JSON document — the default one ([`CategoryRegistry::default_registry`]) ships inside
//! the crate, and a host may load its own with [`CategoryRegistry::from_json`] — so rules are
//! data, reviewed in one place, not `match` arms scattered through code.
//!
//! # Rules, in one paragraph
//!
//! A category holds rules; a rule names a resource type and optionally an element (`category`,
//! `code`, `type`) with a list of `system|code` codings. A resource belongs to every category
//! one of whose rules it matches — a smoking-status Observation filed under `social-history` is
//! in both `smoking-status` and `social-history` — and it is visible when **any** of its
//! categories is granted (US Core 8/9 and Inferno semantics). A resource of a categorised type
//! that matches no rule falls into the explicit uncategorised bucket of its type
//! (`other-observation`); a resource of a type no rule mentions falls into the implicit bucket
//! `other-<type>`. Supporting types (Practitioner, PractitionerRole, Organization, Location,
//! Medication) are not patient data and have no category of their own: each is visible when one
//! of the categories it is declared `with` is granted (`care-providers`, `medications`), and,
//! when declared `compartment`, only if it belongs to the patient in context. Visits
//! (Encounter) and record history (Provenance) are categories, never supporting: an encounter's
//! reason can name a diagnosis and a Provenance lists the ids of the records it covers. Code systems are compared after trimming and alias replacement, so the
//! DSTU2 (Argonaut) and R4 (US Core) systems listed in the rules and the known typos in the
//! `systemAliases` table (`http://terminology.hl7.org//CodeSystem-observation-category`, …) are
//! all recognised.
//!
//! ```
//! use fhirguard::category::CategoryRegistry;
//!
//! let registry = CategoryRegistry::default_registry();
//! let obs = serde_json::json!({
//!     "resourceType": "Observation",
//!     "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
//!                               "code": "social-history"}]}],
//!     "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]}
//! });
//! let class = registry.classify(&obs).unwrap();
//! let ids: Vec<&str> = class.categories().iter().map(|c| c.as_str()).collect();
//! assert_eq!(ids, ["smoking-status", "social-history"]);
//! ```

mod classify;
mod registry;
mod scopes;

pub(crate) use classify::{Class, for_each_coding};
pub use classify::{Classification, ClassifyError, Membership};
pub use registry::{
    Category, CategoryKind, CategoryRegistry, REGISTRY_FORMAT, RegistryError, Rule, ScopeTemplate,
    SupportingType, WithheldElement,
};

#[cfg(test)]
mod tests;
