//! The classifier: which categories a FHIR resource belongs to.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::registry::{CategoryRegistry, SupportingType};
use crate::ids::CategoryId;
use crate::json::JsonView;

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
    Indices(Vec<u16>),
    /// No rule matched and the type has no declared bucket: its implicit bucket.
    Implicit,
    /// A supporting type: index into `CategoryRegistry::supporting`.
    Supporting(usize),
}

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
    /// elements the rules look at (everything else is skipped without being built).
    pub fn classify_bytes(&self, bytes: &[u8]) -> Result<Classification, ClassifyError> {
        let probe = self.probe(bytes)?;
        self.classify(&Value::Object(probe))
    }

    /// Parses only the fields classification needs.
    fn probe(&self, bytes: &[u8]) -> Result<Map<String, Value>, ClassifyError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let map = ProbeSeed {
            fields: &self.element_names,
        }
        .deserialize(&mut de)
        .map_err(|_| ClassifyError::NotJson)?;
        de.end().map_err(|_| ClassifyError::NotJson)?;
        if !map.contains_key("resourceType") {
            return Err(ClassifyError::NoResourceType);
        }
        Ok(map)
    }

    /// The fast path used by enforcement: the type is already known.
    pub(crate) fn classify_typed<V: JsonView>(&self, resource_type: &str, resource: &V) -> Class {
        let Some(index) = self.type_index(resource_type) else {
            return Class::Implicit;
        };
        if let Some(s) = index.supporting {
            return Class::Supporting(s);
        }
        let mut found: Vec<u16> = index.whole.clone();
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
                Some(b) => Class::Indices(vec![b]),
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
}

/// Deserialises a JSON object keeping only `resourceType` and the named fields.
struct ProbeSeed<'a> {
    fields: &'a [String],
}

impl<'de> DeserializeSeed<'de> for ProbeSeed<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ProbeSeed<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a FHIR resource object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "resourceType" || self.fields.iter().any(|f| *f == key) {
                let value: Value = map.next_value()?;
                out.insert(key.into_owned(), value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}
