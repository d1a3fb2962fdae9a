//! The registry file format and its compiled, validated form.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::ids::CategoryId;

/// The `format` string this version of the crate reads.
pub const REGISTRY_FORMAT: &str = "fhirguard-category-registry/1";

/// The default registry shipped inside the crate (CCDS/USCDI → US Core R4 and Argonaut DSTU2).
const DEFAULT_REGISTRY: &str = include_str!("default_categories.json");

/// Why a registry file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The file is not JSON of the registry's shape (unknown fields are refused, so a typo in a
    /// field name cannot silently drop a rule).
    #[error("registry file is not a valid registry document: {0}")]
    Parse(#[from] serde_json::Error),
    /// The file declares a format this crate does not read.
    #[error("registry format {found:?} is not supported (expected {REGISTRY_FORMAT:?})")]
    UnsupportedFormat {
        /// The `format` the file declared.
        found: String,
    },
    /// A category id is not a valid [`CategoryId`].
    #[error("category id {id:?} is not a valid category id")]
    BadCategoryId {
        /// The offending id.
        id: String,
    },
    /// Two categories (or a category and an uncategorised bucket) share an id.
    #[error("category id {id:?} is declared twice")]
    DuplicateCategory {
        /// The repeated id.
        id: String,
    },
    /// A category has no rule and no supporting type names it in `with`, so granting it
    /// could never show anything.
    #[error("category {id:?} has no rules and unlocks no supporting type")]
    NoRules {
        /// The category.
        id: String,
    },
    /// A rule, bucket or supporting entry names something that is not a FHIR resource type.
    #[error("{name:?} is not a FHIR resource type name")]
    BadResourceType {
        /// The offending name.
        name: String,
    },
    /// A rule names an element but lists no codes, or lists codes without an element.
    #[error("a rule of category {id:?} must name an element together with at least one code")]
    BadRule {
        /// The category holding the rule.
        id: String,
    },
    /// A `system|code` entry has an empty code.
    #[error("coding {coding:?} in category {id:?} has no code")]
    BadCoding {
        /// The category holding the rule.
        id: String,
        /// The offending entry.
        coding: String,
    },
    /// A supporting resource type refers to a category that is not declared.
    #[error(
        "supporting type or withheld element of {resource_type} refers to unknown category {id:?}"
    )]
    UnknownCategory {
        /// The supporting type.
        resource_type: String,
        /// The unknown category id.
        id: String,
    },
    /// A resource type is both a supporting type and covered by category rules, which would make
    /// its visibility ambiguous.
    #[error("{resource_type} is declared as supporting and also has category rules")]
    SupportingConflict {
        /// The type declared twice.
        resource_type: String,
    },
    /// A scope template is malformed (a parameter without a value or the reverse).
    #[error("a scope of category {id:?} has a parameter without a value (or the reverse)")]
    BadScope {
        /// The category holding the scope.
        id: String,
    },
    /// A withheld-element rule names no element, or an identifier type without a system or
    /// code.
    #[error(
        "a withheld element of {resource_type} names no element or a malformed identifier type"
    )]
    BadWithheld {
        /// The resource type of the rule.
        resource_type: String,
    },
}

/// One rule: a resource type, optionally constrained to resources whose `element` carries one
/// of the listed `system|code` codings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// The FHIR resource type the rule applies to.
    pub resource_type: String,
    /// The top-level element holding codes (`category`, `code`, `type`); absent: the whole type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub element: Option<String>,
    /// `system|code` entries; a resource matches when its element carries any of them. An entry
    /// with an empty system (`|food`) matches a bare string code (DSTU2 style).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any_of: Vec<String>,
}

/// The SMART v2 granular scope a category is expressed by (context and permissions are added
/// when rendering): `Observation.rs?category=…|laboratory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScopeTemplate {
    /// The resource type of the scope.
    pub resource_type: String,
    /// The search parameter restricting it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// The parameter's value (`system|code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// What kind of bucket a category is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CategoryKind {
    /// A clinical category declared with rules (vital signs, problems…).
    Clinical,
    /// The explicit "everything else" bucket of one resource type.
    Uncategorised {
        /// The resource type whose leftovers this bucket holds.
        resource_type: String,
    },
}

/// A data category as the consent screen shows it and enforcement applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    /// Machine id (stored in grants).
    pub id: CategoryId,
    /// Patient-facing short label.
    pub label: String,
    /// Patient-facing one-paragraph description.
    pub description: String,
    /// Clinical category or uncategorised bucket.
    pub kind: CategoryKind,
    /// The rules deciding membership (empty for an uncategorised bucket, and for a category
    /// that only unlocks supporting types, such as `care-providers`).
    pub rules: Vec<Rule>,
    /// The SMART v2 scopes expressing this category.
    pub scopes: Vec<ScopeTemplate>,
}

/// A supporting resource type (Practitioner, Organization, Encounter…): no category of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SupportingType {
    /// The resource type.
    pub resource_type: String,
    /// Category ids of which one must be granted; `*` means any category.
    pub with: Vec<String>,
    /// Whether the resource must also belong to the patient in context.
    pub compartment: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CategoryDef {
    id: String,
    label: String,
    description: String,
    rules: Vec<Rule>,
    #[serde(default)]
    scopes: Vec<ScopeTemplate>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BucketDef {
    resource_type: String,
    label: String,
    description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UncategorisedDef {
    id_prefix: String,
    default_label: String,
    default_description: String,
    #[serde(default)]
    types: Vec<BucketDef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SupportingDef {
    #[serde(default)]
    rule: String,
    types: Vec<SupportingType>,
}

/// An element of a returned resource that a category's label does not cover: it is removed
/// unless one of the categories in `with` is granted (`Patient.contact` names family members,
/// which the family-and-caregivers category covers, not demographics). With
/// `identifier_types` or `identifier_systems`, the element is an `Identifier` list and only the
/// matching entries are removed (a Social Security number, not the medical record number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WithheldElement {
    /// The resource type.
    pub resource_type: String,
    /// The top-level element.
    pub element: String,
    /// Category ids of which one, granted, lets the element through; empty: never sent.
    #[serde(default)]
    pub with: Vec<String>,
    /// `system|code` identifier types (`Identifier.type.coding`) whose entries are removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier_types: Vec<String>,
    /// `Identifier.system` values whose entries are removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier_systems: Vec<String>,
}

impl WithheldElement {
    /// Whether the rule removes only some entries of an `Identifier` list.
    pub fn is_identifier_filter(&self) -> bool {
        !self.identifier_types.is_empty() || !self.identifier_systems.is_empty()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WithheldDef {
    #[serde(default)]
    rule: String,
    elements: Vec<WithheldElement>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegistryFile {
    format: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    system_aliases: BTreeMap<String, String>,
    categories: Vec<CategoryDef>,
    uncategorised: UncategorisedDef,
    supporting: SupportingDef,
    #[serde(default)]
    withheld: WithheldDef,
}

/// The registry's lookup tables. Only configuration is inserted into them; the codes of
/// returned resources are looked up, which costs a hash each per request, so a faster keyed hash
/// than the standard SipHash pays.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// system → code → category indices.
pub(crate) type CodeIndex = FastMap<String, FastMap<String, Vec<u16>>>;

/// Compiled rules of one resource type.
#[derive(Debug, Default, Clone)]
pub(crate) struct TypeIndex {
    /// Categories holding every resource of the type.
    pub(crate) whole: Vec<u16>,
    /// element name → system → code → categories.
    pub(crate) elements: Vec<(String, CodeIndex)>,
    /// The explicit uncategorised bucket of the type, if declared.
    pub(crate) bucket: Option<u16>,
    /// The supporting rule, if the type is a supporting type.
    pub(crate) supporting: Option<usize>,
}

/// The data-category registry: categories, their rules, and the compiled classifier index.
///
/// Build the default with [`CategoryRegistry::default_registry`] or load a host's own file with
/// [`CategoryRegistry::from_json`]; both validate everything up front, so classification never
/// fails because of the registry.
#[derive(Debug, Clone)]
pub struct CategoryRegistry {
    pub(crate) version: String,
    pub(crate) source: Option<String>,
    pub(crate) categories: Vec<Category>,
    pub(crate) by_id: FastMap<CategoryId, u16>,
    pub(crate) aliases: FastMap<String, String>,
    pub(crate) types: FastMap<String, TypeIndex>,
    pub(crate) supporting: Vec<SupportingType>,
    pub(crate) supporting_rule: String,
    pub(crate) bucket_prefix: String,
    pub(crate) default_label: String,
    pub(crate) default_description: String,
    /// `resourceType` and every element name any rule looks at: what the raw-bytes probe
    /// keeps.
    pub(crate) element_names: Vec<String>,
    /// Elements removed from returned resources unless a category covering them is granted.
    pub(crate) withheld: Vec<WithheldElement>,
    /// For each withheld element, the indices of the categories in its `with`.
    pub(crate) withheld_with: Vec<Vec<usize>>,
}

fn check_type(name: &str) -> Result<(), RegistryError> {
    crate::fhir::ResourceType::new(name)
        .map(|_| ())
        .ok_or_else(|| RegistryError::BadResourceType {
            name: name.to_owned(),
        })
}

/// Normalises a code-system URI the way both rules and data are compared: surrounding
/// whitespace and trailing slashes removed.
pub(crate) fn trim_system(system: &str) -> &str {
    system.trim().trim_end_matches('/')
}

impl CategoryRegistry {
    /// The registry shipped with the crate: the CCDS/USCDI categories of
    /// `docs/categories.md`.
    pub fn default_registry() -> Self {
        match Self::from_json(DEFAULT_REGISTRY) {
            Ok(registry) => registry,
            // The shipped file is validated by a unit test; an empty registry (which grants
            // nothing) is the fail-closed answer should that ever be bypassed.
            Err(_) => Self::empty(),
        }
    }

    /// The JSON text of the default registry, for hosts that want to start their own from it.
    pub fn default_json() -> &'static str {
        DEFAULT_REGISTRY
    }

    fn empty() -> Self {
        Self {
            version: String::new(),
            source: None,
            categories: Vec::new(),
            by_id: FastMap::default(),
            aliases: FastMap::default(),
            types: FastMap::default(),
            supporting: Vec::new(),
            supporting_rule: String::new(),
            bucket_prefix: "other-".to_owned(),
            default_label: String::new(),
            default_description: String::new(),
            element_names: vec!["resourceType".to_owned()],
            withheld: Vec::new(),
            withheld_with: Vec::new(),
        }
    }

    /// Loads and validates a registry document (the format of `docs/categories.md`).
    pub fn from_json(text: &str) -> Result<Self, RegistryError> {
        let file: RegistryFile = serde_json::from_str(text)?;
        if file.format != REGISTRY_FORMAT {
            return Err(RegistryError::UnsupportedFormat { found: file.format });
        }
        let mut reg = Self::empty();
        reg.version = file.version;
        reg.source = file.source;
        reg.supporting_rule = file.supporting.rule;
        reg.bucket_prefix = file.uncategorised.id_prefix;
        reg.default_label = file.uncategorised.default_label;
        reg.default_description = file.uncategorised.default_description;
        for (from, to) in file.system_aliases {
            reg.aliases
                .insert(trim_system(&from).to_owned(), trim_system(&to).to_owned());
        }

        // Categories without rules are valid only when a supporting type needs them.
        let mut ruleless: Vec<String> = Vec::new();
        for def in file.categories {
            let id = CategoryId::new(def.id.clone())
                .map_err(|_| RegistryError::BadCategoryId { id: def.id.clone() })?;
            if def.rules.is_empty() {
                ruleless.push(def.id.clone());
            }
            let index = u16::try_from(reg.categories.len())
                .map_err(|_| RegistryError::DuplicateCategory { id: def.id.clone() })?;
            if reg.by_id.insert(id.clone(), index).is_some() {
                return Err(RegistryError::DuplicateCategory { id: def.id });
            }
            for rule in &def.rules {
                check_type(&rule.resource_type)?;
                let entry = reg.types.entry(rule.resource_type.clone()).or_default();
                match &rule.element {
                    None if rule.any_of.is_empty() => entry.whole.push(index),
                    Some(element) if !rule.any_of.is_empty() && !element.is_empty() => {
                        let slot = match entry.elements.iter().position(|(e, _)| e == element) {
                            Some(i) => i,
                            None => {
                                entry.elements.push((element.clone(), FastMap::default()));
                                entry.elements.len() - 1
                            }
                        };
                        for coding in &rule.any_of {
                            let (system, code) = coding.split_once('|').unwrap_or(("", coding));
                            if code.trim().is_empty() {
                                return Err(RegistryError::BadCoding {
                                    id: def.id.clone(),
                                    coding: coding.clone(),
                                });
                            }
                            let system = trim_system(system);
                            let system = reg
                                .aliases
                                .get(system)
                                .map(String::as_str)
                                .unwrap_or(system)
                                .to_owned();
                            let cats = entry.elements[slot]
                                .1
                                .entry(system)
                                .or_default()
                                .entry(code.trim().to_owned())
                                .or_default();
                            if !cats.contains(&index) {
                                cats.push(index);
                            }
                        }
                        if !reg.element_names.contains(element) {
                            reg.element_names.push(element.clone());
                        }
                    }
                    _ => return Err(RegistryError::BadRule { id: def.id }),
                }
            }
            for scope in &def.scopes {
                check_type(&scope.resource_type)?;
                if scope.param.is_some() != scope.value.is_some() {
                    return Err(RegistryError::BadScope { id: def.id });
                }
            }
            reg.categories.push(Category {
                id,
                label: def.label,
                description: def.description,
                kind: CategoryKind::Clinical,
                rules: def.rules,
                scopes: def.scopes,
            });
        }

        for bucket in file.uncategorised.types {
            check_type(&bucket.resource_type)?;
            let raw = format!(
                "{}{}",
                reg.bucket_prefix,
                bucket.resource_type.to_ascii_lowercase()
            );
            let id = CategoryId::new(raw.clone())
                .map_err(|_| RegistryError::BadCategoryId { id: raw.clone() })?;
            let index = u16::try_from(reg.categories.len())
                .map_err(|_| RegistryError::DuplicateCategory { id: raw.clone() })?;
            if reg.by_id.insert(id.clone(), index).is_some() {
                return Err(RegistryError::DuplicateCategory { id: raw });
            }
            reg.types
                .entry(bucket.resource_type.clone())
                .or_default()
                .bucket = Some(index);
            reg.categories.push(Category {
                id,
                label: bucket.label,
                description: bucket.description,
                kind: CategoryKind::Uncategorised {
                    resource_type: bucket.resource_type.clone(),
                },
                rules: Vec::new(),
                scopes: Vec::new(),
            });
        }

        for (i, support) in file.supporting.types.into_iter().enumerate() {
            check_type(&support.resource_type)?;
            for with in &support.with {
                let known = with == "*"
                    || CategoryId::new(with.clone())
                        .ok()
                        .is_some_and(|id| reg.by_id.contains_key(&id));
                if !known {
                    return Err(RegistryError::UnknownCategory {
                        resource_type: support.resource_type.clone(),
                        id: with.clone(),
                    });
                }
            }
            let entry = reg.types.entry(support.resource_type.clone()).or_default();
            if !entry.whole.is_empty() || !entry.elements.is_empty() || entry.bucket.is_some() {
                return Err(RegistryError::SupportingConflict {
                    resource_type: support.resource_type,
                });
            }
            entry.supporting = Some(i);
            reg.supporting.push(support);
        }
        if let Some(id) = ruleless
            .into_iter()
            .find(|id| !reg.supporting.iter().any(|s| s.with.contains(id)))
        {
            return Err(RegistryError::NoRules { id });
        }
        for rule in file.withheld.elements {
            check_type(&rule.resource_type)?;
            if rule.element.is_empty()
                || rule.identifier_types.iter().any(|t| {
                    t.split_once('|')
                        .is_none_or(|(s, c)| s.trim().is_empty() || c.trim().is_empty())
                })
            {
                return Err(RegistryError::BadWithheld {
                    resource_type: rule.resource_type,
                });
            }
            let mut with = Vec::with_capacity(rule.with.len());
            for w in &rule.with {
                match CategoryId::new(w.clone())
                    .ok()
                    .and_then(|id| reg.index_of(&id))
                {
                    Some(i) => with.push(i),
                    None => {
                        return Err(RegistryError::UnknownCategory {
                            resource_type: rule.resource_type.clone(),
                            id: w.clone(),
                        });
                    }
                }
            }
            reg.withheld.push(rule);
            reg.withheld_with.push(with);
        }
        Ok(reg)
    }

    /// The registry's version string (recorded with grants, so an audit can tell which rules
    /// were in force).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Where the registry's rules come from (free text), if the file says.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// Every declared category, clinical ones first then the explicit uncategorised buckets,
    /// in file order (the order a consent screen should list them).
    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// The declared clinical categories only.
    pub fn clinical(&self) -> impl Iterator<Item = &Category> {
        self.categories
            .iter()
            .filter(|c| c.kind == CategoryKind::Clinical)
    }

    /// The category with this id, if declared.
    pub fn get(&self, id: &CategoryId) -> Option<&Category> {
        self.by_id
            .get(id)
            .and_then(|&i| self.categories.get(usize::from(i)))
    }

    /// The index of the category with this id in [`CategoryRegistry::categories`].
    pub(crate) fn index_of(&self, id: &CategoryId) -> Option<usize> {
        self.by_id.get(id).map(|&i| usize::from(i))
    }

    /// Every declared category id.
    pub fn ids(&self) -> impl Iterator<Item = &CategoryId> {
        self.categories.iter().map(|c| &c.id)
    }

    /// The supporting resource types and the rule text that governs them.
    pub fn supporting(&self) -> (&[SupportingType], &str) {
        (&self.supporting, &self.supporting_rule)
    }

    /// The supporting rule of `resource_type`, if it is a supporting type.
    pub fn supporting_rule_for(&self, resource_type: &str) -> Option<&SupportingType> {
        self.types
            .get(resource_type)
            .and_then(|t| t.supporting)
            .and_then(|i| self.supporting.get(i))
    }

    /// The id of the uncategorised bucket of `resource_type` (declared or implicit):
    /// `other-observation`.
    pub fn uncategorised_id(&self, resource_type: &str) -> Option<CategoryId> {
        if let Some(i) = self.types.get(resource_type).and_then(|t| t.bucket) {
            return self.categories.get(usize::from(i)).map(|c| c.id.clone());
        }
        CategoryId::new(format!(
            "{}{}",
            self.bucket_prefix,
            resource_type.to_ascii_lowercase()
        ))
        .ok()
    }

    /// Patient-facing label and description of any category id, including the implicit
    /// uncategorised bucket of a type that has no declared bucket.
    pub fn describe(&self, id: &CategoryId) -> Option<(String, String)> {
        if let Some(c) = self.get(id) {
            return Some((c.label.clone(), c.description.clone()));
        }
        let lower = id.as_str().strip_prefix(self.bucket_prefix.as_str())?;
        let type_name = self
            .types
            .keys()
            .find(|t| t.to_ascii_lowercase() == lower)
            .cloned()
            .unwrap_or_else(|| lower.to_owned());
        Some((
            self.default_label.replace("{type}", &type_name),
            self.default_description.replace("{type}", &type_name),
        ))
    }

    /// Whether `id` is a category this registry can ever assign: a declared one or the
    /// implicit uncategorised bucket of some type.
    pub fn knows(&self, id: &CategoryId) -> bool {
        self.by_id.contains_key(id) || id.as_str().starts_with(self.bucket_prefix.as_str())
    }

    /// The canonical form of a code-system URI: trimmed, and known typos and version-specific
    /// variants replaced by the system they mean.
    pub fn canonical_system<'a>(&'a self, system: &'a str) -> &'a str {
        let trimmed = trim_system(system);
        self.aliases
            .get(trimmed)
            .map(String::as_str)
            .unwrap_or(trimmed)
    }

    /// Every spelling of `system` this registry accepts (itself and its aliases).
    pub fn system_spellings(&self, system: &str) -> Vec<String> {
        let canonical = self.canonical_system(system).to_owned();
        let mut out = vec![canonical.clone()];
        for (from, to) in &self.aliases {
            if *to == canonical {
                out.push(from.clone());
            }
        }
        out
    }

    pub(crate) fn type_index(&self, resource_type: &str) -> Option<&TypeIndex> {
        self.types.get(resource_type)
    }

    /// The elements withheld from returned resources unless a covering category is granted.
    pub fn withheld(&self) -> &[WithheldElement] {
        &self.withheld
    }
}

impl Default for CategoryRegistry {
    fn default() -> Self {
        Self::default_registry()
    }
}
