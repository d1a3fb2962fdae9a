//! The classifier: which categories a FHIR resource belongs to.

use std::collections::BTreeSet;

use serde_json::Value;
use smallvec::{SmallVec, smallvec};

use super::registry::{CategoryRegistry, SupportingType};
use crate::ids::CategoryId;
use crate::json::{JsonView, probe};

/// Why a resource could not be classified. Classification failures are fail-closed: enforcement
/// treats an unclassifiable resource as outside every grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClassifyError {
    /// The bytes are not a JSON object.
    #[error("resource is not a JSON object")]
    NotJson,
    /// The object has no string `resourceType`.
    #[error("resource has no resourceType")]
    NoResourceType,
}

/// Where a resource stands in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Membership {
    /// The resource belongs to these categories (at least one; the uncategorised bucket of its
    /// type when no rule matched). It is visible when any one of them is granted.
    Categories(Vec<CategoryId>),
    /// A supporting resource (Practitioner, Encounter…), visible under the given rule.
    Supporting(SupportingType),
}

/// The result of classifying one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The resource's `resourceType`.
    pub resource_type: String,
    /// Its categories or supporting rule.
    pub membership: Membership,
}

impl Classification {
    /// The categories of the resource (empty for a supporting resource).
    pub fn categories(&self) -> &[CategoryId] {
        match &self.membership {
            Membership::Categories(c) => c,
            Membership::Supporting(_) => &[],
        }
    }
}

/// The classifier's internal, allocation-light answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Class {
    /// Indices into `CategoryRegistry::categories` (sorted, deduplicated, non-empty).
    Indices(Indices),
    /// No rule matched and the type has no declared bucket: its implicit bucket.
    Implicit,
    /// A supporting type: index into `CategoryRegistry::supporting`.
    Supporting(usize),
}

/// Registry indices of the categories a resource falls in, inline up to eight (a resource
/// falls in one or two), so that classifying one does not allocate.
pub(crate) type Indices = SmallVec<[u16; 8]>;

/// Calls `f(system, code)` for every coding found in an element value: a CodeableConcept, a
/// list of them, a Coding, or a bare string code (system `""`).
pub(crate) fn for_each_coding<V: JsonView>(value: &V, depth: u8, f: &mut impl FnMut(&str, &str)) {
    if let Some(code) = value.as_str() {
        f("", code);
    } else if let Some(items) = value.as_array() {
        if depth < 2 {
            for item in items {
                for_each_coding(item, depth + 1, f);
            }
        }
    } else if value.is_object() {
        if let Some(codings) = value.get("coding").and_then(JsonView::as_array) {
            for coding in codings {
                if let Some(code) = coding.get("code").and_then(JsonView::as_str) {
                    let system = coding
                        .get("system")
                        .and_then(JsonView::as_str)
                        .unwrap_or("");
                    f(system, code);
                }
            }
        } else if let Some(code) = value.get("code").and_then(JsonView::as_str) {
            let system = value.get("system").and_then(JsonView::as_str).unwrap_or("");
            f(system, code);
        }
    }
}

impl CategoryRegistry {
    /// Classifies a resource held as a `serde_json::Value`.
    pub fn classify(&self, resource: &Value) -> Result<Classification, ClassifyError> {
        let resource_type = resource
            .as_object()
            .ok_or(ClassifyError::NotJson)?
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or(ClassifyError::NoResourceType)?;
        let class = self.classify_typed(resource_type, resource);
        Ok(self.expand(resource_type, class))
    }

    /// Classifies a resource from its raw JSON bytes, reading only `resourceType` and the
    /// elements the rules look at (everything else is checked for syntax and skipped, never
    /// built). The same pruned parse the guard checks returned resources with, so a document
    /// that repeats a member the rules read is refused here too.
    pub fn classify_bytes(&self, bytes: &[u8]) -> Result<Classification, ClassifyError> {
        let view = probe(bytes, &self.element_names).ok_or(ClassifyError::NotJson)?;
        let resource_type = view
            .get("resourceType")
            .and_then(JsonView::as_str)
            .ok_or(ClassifyError::NoResourceType)?;
        let class = self.classify_typed(resource_type, &view);
        Ok(self.expand(resource_type, class))
    }

    /// The fast path used by enforcement: the type is already known.
    pub(crate) fn classify_typed<V: JsonView>(&self, resource_type: &str, resource: &V) -> Class {
        let Some(index) = self.type_index(resource_type) else {
            return Class::Implicit;
        };
        if let Some(s) = index.supporting {
            return Class::Supporting(s);
        }
        let mut found = Indices::from_slice(&index.whole);
        for (element, systems) in &index.elements {
            if let Some(value) = resource.get(element) {
                for_each_coding(value, 0, &mut |system, code| {
                    let system = self.canonical_system(system);
                    if let Some(cats) = systems.get(system).and_then(|codes| codes.get(code)) {
                        found.extend_from_slice(cats);
                    }
                });
            }
        }
        if found.is_empty() {
            return match index.bucket {
                Some(b) => Class::Indices(smallvec![b]),
                None => Class::Implicit,
            };
        }
        found.sort_unstable();
        found.dedup();
        Class::Indices(found)
    }

    pub(crate) fn expand(&self, resource_type: &str, class: Class) -> Classification {
        let membership = match class {
            Class::Indices(idx) => Membership::Categories(
                idx.into_iter()
                    .filter_map(|i| self.categories.get(usize::from(i)).map(|c| c.id.clone()))
                    .collect(),
            ),
            Class::Implicit => {
                Membership::Categories(self.uncategorised_id(resource_type).into_iter().collect())
            }
            Class::Supporting(i) => match self.supporting.get(i) {
                Some(s) => Membership::Supporting(s.clone()),
                None => Membership::Categories(Vec::new()),
            },
        };
        Classification {
            resource_type: resource_type.to_owned(),
            membership,
        }
    }

    /// Adds the category ids of `class` to `out`: [`CategoryRegistry::expand`]'s categories
    /// without building the classification (the guard's audit trail wants only the ids).
    #[cfg_attr(not(feature = "tower"), allow(dead_code))] // used by the guard alone
    pub(crate) fn extend_ids(
        &self,
        resource_type: &str,
        class: &Class,
        out: &mut BTreeSet<CategoryId>,
    ) {
        match class {
            Class::Indices(idx) => out.extend(
                idx.iter()
                    .filter_map(|&i| self.categories.get(usize::from(i)).map(|c| c.id.clone())),
            ),
            Class::Implicit => out.extend(self.uncategorised_id(resource_type)),
            Class::Supporting(_) => {}
        }
    }
}
