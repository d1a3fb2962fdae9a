//! Redaction of a returned resource that is visible as a whole but names more than the grant
//! shows.
//!
//! A lab result the patient shared may still name the clinician who ordered it
//! (`performer.display`), and a `Patient` shared as demographics still carries her Social
//! Security number. Dropping the resource would withhold what she agreed to share, so the
//! parts are removed instead:
//!
//! - **References.** A reference's `display` and `identifier` say *who* or *what* it points to;
//!   the `reference` itself (an opaque id) says only *that* it points somewhere. When the
//!   target could not be read under the grant (its type is not fully visible, see
//!   [`Enforcer::fully_visible`]), `display` and `identifier` are removed. A reference the guard
//!   cannot type (only a `display`, a `urn:uuid:`, a contained `#id`) is treated the same way:
//!   what it names is unknown, so it may be hidden.
//! - **Contained resources** of a type that is not fully visible are removed; visible ones are
//!   redacted like the resource holding them.
//! - **Withheld elements.** The registry lists top-level elements a category's label does not
//!   promise (`Patient.contact`, government identifiers in `Patient.identifier`); they are
//!   removed unless a category covering them is granted.
//!
//! A resource that lost anything also loses its narrative (`text`, which could restate what
//! was removed) and gains the `REDACTED` security label in `meta.security`, so the app can tell
//! a redacted record from a complete one.

use serde_json::{Map, Value};

use super::enforcer::Enforcer;
use crate::category::WithheldElement;

/// The security label marking a resource the guard redacted (FHIR R4 security labels,
/// ObservationValue `REDACTED`).
pub const REDACTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";
/// The code of [`REDACTED_SYSTEM`] marking a redacted resource.
pub const REDACTED_CODE: &str = "REDACTED";

const DATA_ABSENT_REASON: &str = "http://hl7.org/fhir/StructureDefinition/data-absent-reason";

/// The keys a `Reference` may hold; an object with any other key is something else (a
/// `Coding` has `system`/`code`, an `Identifier` has `system`/`value`).
const REFERENCE_KEYS: &[&str] = &[
    "id",
    "extension",
    "reference",
    "type",
    "identifier",
    "display",
];

/// What a reference points to, as far as its own text says.
enum Target<'a> {
    /// A resource type, from `reference` or `type`.
    Typed(&'a str),
    /// `#id`, `urn:uuid:`, or a bare `display`: nothing says what it names.
    Unknown,
}

/// The resource type of a literal reference: `Type/id`, `Type/id/_history/v`, or an absolute
/// URL ending in one of those.
pub(crate) fn literal_type(reference: &str) -> Option<&str> {
    let path = reference.split(['?', '#']).next().unwrap_or("");
    let path = match path.find("/_history/") {
        Some(i) => &path[..i],
        None => path,
    };
    let mut segments = path.rsplit('/');
    let _id = segments.next().filter(|s| !s.is_empty())?;
    segments.next().filter(|t| is_type_name(t))
}

pub(crate) fn is_type_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

/// `Some` when `map` is a reference that names something (`display` or `identifier`).
fn naming_reference<'a>(map: &'a Map<String, Value>, parent_key: &str) -> Option<Target<'a>> {
    // One pass over the keys, the common case (a larger object, or one with a key a
    // `Reference` does not have) leaving at once.
    if map.len() > REFERENCE_KEYS.len() {
        return None;
    }
    let mut names = false;
    for key in map.keys() {
        match key.as_str() {
            "display" | "identifier" => names = true,
            k if REFERENCE_KEYS.contains(&k) => {}
            _ => return None,
        }
    }
    // A display-only `Coding` looks like a display-only reference; codings sit under
    // `coding` (and `valueCoding`-style choice elements).
    if !names || parent_key == "coding" || parent_key.ends_with("Coding") {
        return None;
    }
    let reference = match map.get("reference") {
        Some(Value::String(r)) => Some(r.as_str()),
        Some(_) => return None,
        None => None,
    };
    let declared = match map.get("type") {
        Some(Value::String(t)) => t.rsplit('/').next().filter(|t| is_type_name(t)),
        Some(_) => return None,
        None => None,
    };
    if let Some(t) = reference.and_then(|r| {
        if r.starts_with('#') || r.starts_with("urn:") {
            None
        } else {
            literal_type(r)
        }
    }) {
        return Some(Target::Typed(t));
    }
    Some(declared.map_or(Target::Unknown, Target::Typed))
}

impl Enforcer<'_> {
    fn target_hidden(&self, target: &Target<'_>) -> bool {
        match target {
            Target::Typed(t) => !self.fully_visible(t),
            Target::Unknown => true,
        }
    }

    /// The registry's withheld elements of `resource_type` that no granted category lets
    /// through.
    pub(super) fn withheld_rules<'a>(
        &'a self,
        resource_type: &'a str,
    ) -> impl Iterator<Item = &'a WithheldElement> + 'a {
        let registry = self.registry();
        registry
            .withheld
            .iter()
            .zip(&registry.withheld_with)
            .filter(move |(rule, with)| {
                rule.resource_type == resource_type && !with.iter().any(|&i| self.granted_index(i))
            })
            .map(|(rule, _)| rule)
    }

    /// Whether `resource` (already found visible) names anything the grant hides, so that
    /// [`Enforcer::redact`] would change it. Reads only: a resource the host shares between
    /// requests is copied only when it must change.
    pub fn needs_redaction(&self, resource: &Value) -> bool {
        let Some(map) = resource.as_object() else {
            return false;
        };
        let resource_type = map
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("");
        for rule in self.withheld_rules(resource_type) {
            let hit = match map.get(&rule.element) {
                None => false,
                Some(value) if rule.is_identifier_filter() => value
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|id| identifier_matches(rule, id))),
                Some(_) => true,
            };
            if hit {
                return true;
            }
        }
        map.iter().any(|(key, value)| match key.as_str() {
            "resourceType" | "text" | "meta" => false,
            "contained" => value.as_array().is_some_and(|items| {
                items.iter().any(|c| {
                    let ty = c.get("resourceType").and_then(Value::as_str).unwrap_or("");
                    !self.fully_visible(ty) || self.needs_redaction(c)
                })
            }),
            _ => self.names_hidden(value, key),
        })
    }

    /// [`Enforcer::needs_redaction`] for the bytes of a returned resource of `resource_type`,
    /// which serde_json has already parsed once (the guard's probe), without building it:
    /// `false` only when nothing would be removed. A `true` may be conservative (withheld
    /// elements of the type, contained resources, a repeated reference key, an escaped member
    /// name): the parsed value then decides.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))] // used by the guard alone
    pub(crate) fn needs_redaction_bytes(&self, bytes: &[u8], resource_type: &str) -> bool {
        if self.withheld_rules(resource_type).next().is_some() {
            return true;
        }
        crate::json::scan_naming_references(bytes, &|target| match target {
            Some(t) => !self.fully_visible(t),
            None => true,
        })
    }

    fn names_hidden(&self, value: &Value, parent_key: &str) -> bool {
        match value {
            Value::Object(map) => {
                if let Some(target) = naming_reference(map, parent_key) {
                    if self.target_hidden(&target) {
                        return true;
                    }
                }
                map.iter().any(|(k, v)| self.names_hidden(v, k))
            }
            Value::Array(items) => items.iter().any(|v| self.names_hidden(v, parent_key)),
            _ => false,
        }
    }

    /// Removes from `resource` (already found visible) what the grant hides: the name and
    /// identifier of every reference to something not visible, contained resources not
    /// visible, and the registry's withheld elements. Returns how many parts were removed;
    /// when any were, the narrative is dropped and the `REDACTED` label added.
    pub fn redact(&self, resource: &mut Value) -> usize {
        let Some(map) = resource.as_object_mut() else {
            return 0;
        };
        let resource_type = map
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut removed = 0usize;
        // The local references (`#id`) of contained resources about to go: a reference to one
        // would dangle (R4 ref-1), so it goes with it.
        let dropped: Vec<String> = map
            .get("contained")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter(|c| {
                        !self.fully_visible(
                            c.get("resourceType").and_then(Value::as_str).unwrap_or(""),
                        )
                    })
                    .filter_map(|c| c.get("id").and_then(Value::as_str))
                    .map(|id| format!("#{id}"))
                    .collect()
            })
            .unwrap_or_default();
        for rule in self.withheld_rules(&resource_type) {
            if rule.is_identifier_filter() {
                if let Some(Value::Array(ids)) = map.get_mut(&rule.element) {
                    let before = ids.len();
                    ids.retain(|id| !identifier_matches(rule, id));
                    removed += before - ids.len();
                    if ids.is_empty() {
                        map.remove(&rule.element);
                    }
                }
            } else if map.remove(&rule.element).is_some() {
                removed += 1;
            }
        }
        for (key, value) in map.iter_mut() {
            match key.as_str() {
                "resourceType" | "text" | "meta" => {}
                "contained" => {
                    if let Value::Array(items) = value {
                        let before = items.len();
                        items.retain(|c| {
                            let ty = c.get("resourceType").and_then(Value::as_str).unwrap_or("");
                            self.fully_visible(ty)
                        });
                        removed += before - items.len();
                        for item in items.iter_mut() {
                            removed += self.redact(item);
                        }
                    }
                }
                _ => removed += self.strip_hidden(value, key, &dropped),
            }
        }
        if map
            .get("contained")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            map.remove("contained");
        }
        if removed > 0 {
            mark_redacted(map);
        }
        removed
    }

    fn strip_hidden(&self, value: &mut Value, parent_key: &str, dropped: &[String]) -> usize {
        match value {
            Value::Object(map) => {
                // A reference to a contained resource that was removed would dangle (ref-1).
                let dangling = !dropped.is_empty()
                    && map.keys().all(|k| REFERENCE_KEYS.contains(&k.as_str()))
                    && map
                        .get("reference")
                        .and_then(Value::as_str)
                        .is_some_and(|r| dropped.iter().any(|d| d == r));
                if dangling {
                    map.remove("reference");
                }
                let hidden = dangling
                    || naming_reference(map, parent_key)
                        .is_some_and(|target| self.target_hidden(&target));
                if hidden {
                    map.remove("display");
                    map.remove("identifier");
                    if !(map.contains_key("reference")
                        || map.contains_key("type")
                        || map.contains_key("extension"))
                    {
                        // An element must hold a value or children (ele-1): say why it has none.
                        map.insert("extension".to_owned(), masked_extension());
                    }
                    return 1;
                }
                map.iter_mut()
                    .map(|(k, v)| self.strip_hidden(v, k, dropped))
                    .sum()
            }
            Value::Array(items) => items
                .iter_mut()
                .map(|v| self.strip_hidden(v, parent_key, dropped))
                .sum(),
            _ => 0,
        }
    }
}

pub(super) fn identifier_matches(rule: &WithheldElement, identifier: &Value) -> bool {
    let system = identifier.get("system").and_then(Value::as_str);
    if system.is_some_and(|s| rule.identifier_systems.iter().any(|r| r == s)) {
        return true;
    }
    let codings = identifier
        .get("type")
        .and_then(|t| t.get("coding"))
        .and_then(Value::as_array);
    codings.is_some_and(|codings| {
        codings.iter().any(|c| {
            let system = c.get("system").and_then(Value::as_str).unwrap_or("");
            let code = c.get("code").and_then(Value::as_str).unwrap_or("");
            rule.identifier_types.iter().any(|t| {
                t.split_once('|')
                    .is_some_and(|(s, k)| s == system && k == code)
            })
        })
    })
}

fn masked_extension() -> Value {
    serde_json::json!([{ "url": DATA_ABSENT_REASON, "valueCode": "masked" }])
}

fn mark_redacted(map: &mut Map<String, Value>) {
    map.remove("text");
    let meta = map
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let security = meta
        .entry("security")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(labels) = security {
        let present = labels.iter().any(|l| {
            l.get("system").and_then(Value::as_str) == Some(REDACTED_SYSTEM)
                && l.get("code").and_then(Value::as_str) == Some(REDACTED_CODE)
        });
        if !present {
            labels.push(serde_json::json!({
                "system": REDACTED_SYSTEM,
                "code": REDACTED_CODE,
                "display": "redacted",
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{REDACTED_CODE, literal_type};
    use crate::category::CategoryRegistry;
    use crate::enforce::{EnforceConfig, Enforcer, Permissions, ResourceGrant, ScopeContext};
    use crate::ids::{CategoryId, PatientId};

    fn enforcer<'r>(reg: &'r CategoryRegistry, granted: &[&str]) -> Enforcer<'r> {
        Enforcer::new(
            reg,
            vec![ResourceGrant::wildcard(
                ScopeContext::Patient,
                Permissions::READ_SEARCH,
            )],
            PatientId::new("355").ok(),
            granted.iter().map(|c| CategoryId::new(*c).unwrap()),
            EnforceConfig::default(),
        )
    }

    fn lab() -> Value {
        json!({"resourceType": "Observation", "id": "l1",
            "text": {"status": "generated", "div": "<div>Hb 13.1, by Dr Adams</div>"},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory", "display": "Laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}], "text": "Hemoglobin"},
            "subject": {"reference": "Patient/355", "display": "Amy Shaw"},
            "performer": [
                {"reference": "Practitioner/p1", "display": "Dr Ann Adams",
                 "identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999999999"}},
                {"reference": "https://ehr.example/fhir/Organization/o1", "display": "Acme Labs"},
                {"display": "Night nurse"}
            ],
            "valueQuantity": {"value": 13.1, "unit": "g/dL"}})
    }

    fn labels(v: &Value) -> Vec<&str> {
        v["meta"]["security"]
            .as_array()
            .map(|l| l.iter().filter_map(|c| c["code"].as_str()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn names_outside_the_grant_are_removed_and_the_record_is_labelled() {
        let reg = CategoryRegistry::default_registry();
        let e = enforcer(&reg, &["laboratory"]);
        let mut obs = lab();
        assert!(e.check_resource(&obs).is_ok());
        assert!(e.needs_redaction(&obs));
        assert_eq!(e.redact(&mut obs), 4);
        assert_eq!(obs["subject"], json!({"reference": "Patient/355"}));
        assert_eq!(obs["performer"][0], json!({"reference": "Practitioner/p1"}));
        assert_eq!(
            obs["performer"][1],
            json!({"reference": "https://ehr.example/fhir/Organization/o1"})
        );
        // Nothing says what the display-only reference names: it keeps a reason, no name.
        assert_eq!(obs["performer"][2]["extension"][0]["valueCode"], "masked");
        assert!(obs["performer"][2].get("display").is_none());
        // Codings keep their display; the narrative, which repeats the name, is gone.
        assert_eq!(obs["code"]["coding"][0]["display"], "Hemoglobin");
        assert_eq!(obs["category"][0]["coding"][0]["display"], "Laboratory");
        assert!(obs.get("text").is_none());
        assert_eq!(labels(&obs), vec![REDACTED_CODE]);
        // Redacting again finds nothing and adds no second label.
        assert!(!e.needs_redaction(&obs) || e.redact(&mut obs) == 1);
        assert_eq!(labels(&obs), vec![REDACTED_CODE]);
    }

    #[test]
    fn granted_names_are_left_alone() {
        let reg = CategoryRegistry::default_registry();
        let e = enforcer(&reg, &["laboratory", "care-providers", "demographics"]);
        let mut obs = lab();
        // Only the untyped reference is still redacted.
        assert!(e.needs_redaction(&obs));
        assert_eq!(e.redact(&mut obs), 1);
        assert_eq!(obs["subject"]["display"], "Amy Shaw");
        assert_eq!(obs["performer"][0]["display"], "Dr Ann Adams");
        assert_eq!(obs["performer"][1]["display"], "Acme Labs");

        let mut typed = lab();
        typed["performer"].as_array_mut().unwrap().pop();
        assert!(!e.needs_redaction(&typed));
        assert_eq!(e.redact(&mut typed), 0);
        assert_eq!(typed, {
            let mut l = lab();
            l["performer"].as_array_mut().unwrap().pop();
            l
        });
    }

    fn identifier_values(resource: &Value) -> Vec<&str> {
        resource["identifier"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["value"].as_str())
            .collect()
    }

    /// A coded reason names a diagnosis: only a diagnosis category lets it through.
    #[test]
    fn coded_reasons_need_a_diagnosis_category() {
        let reg = CategoryRegistry::default_registry();
        let prescription = json!({"resourceType": "MedicationRequest", "id": "m1",
            "status": "active", "intent": "order", "subject": {"reference": "Patient/355"},
            "medicationCodeableConcept": {"text": "amiodarone"},
            "reasonCode": [{"text": "Ventricular fibrillation"}]});
        let meds = enforcer(&reg, &["medications"]);
        assert!(meds.needs_redaction(&prescription));
        let mut shown = prescription.clone();
        meds.redact(&mut shown);
        assert!(shown.get("reasonCode").is_none());
        assert_eq!(shown["medicationCodeableConcept"]["text"], "amiodarone");
        let with_problems = enforcer(&reg, &["medications", "problems"]);
        assert!(!with_problems.needs_redaction(&prescription));
    }

    #[test]
    fn demographics_withhold_government_ids_and_contacts() {
        let reg = CategoryRegistry::default_registry();
        let patient = json!({"resourceType": "Patient", "id": "355",
            "identifier": [
                {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                 "system": "http://hospital.smarthealthit.org", "value": "mrn-1"},
                {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]},
                 "system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-61-9797"},
                {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-61-9797"},
                {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "DL"}]},
                 "system": "urn:oid:2.16.840.1.113883.4.3.25", "value": "S99940283"},
                {"system": "http://hl7.org/fhir/sid/us-mbi", "value": "1EG4TE5MK73"}
            ],
            "name": [{"family": "Shaw", "given": ["Amy"]}],
            "contact": [{"name": {"family": "Shaw", "given": ["Bob"]}, "telecom": [{"system": "phone", "value": "555-0100"}]}],
            "generalPractitioner": [{"reference": "Practitioner/p1", "display": "Dr Ann Adams"}]});

        let demo = enforcer(&reg, &["demographics"]);
        assert!(demo.check_resource(&patient).is_ok());
        let mut p = patient.clone();
        assert!(demo.needs_redaction(&p));
        demo.redact(&mut p);
        assert_eq!(identifier_values(&p), vec!["mrn-1"]);
        assert!(p.get("contact").is_none());
        assert_eq!(
            p["generalPractitioner"][0],
            json!({"reference": "Practitioner/p1"})
        );
        assert_eq!(p["name"][0]["family"], "Shaw");

        // Family and insurance let their parts through; government ids never go.
        let wide = enforcer(
            &reg,
            &[
                "demographics",
                "related-people",
                "insurance",
                "care-providers",
            ],
        );
        let mut p = patient.clone();
        wide.redact(&mut p);
        assert_eq!(p["contact"], patient["contact"]);
        assert_eq!(p["generalPractitioner"], patient["generalPractitioner"]);
        assert_eq!(identifier_values(&p), vec!["mrn-1", "1EG4TE5MK73"]);
    }

    #[test]
    fn contained_resources_of_hidden_types_are_removed() {
        let reg = CategoryRegistry::default_registry();
        let e = enforcer(&reg, &["laboratory"]);
        let mut obs = json!({"resourceType": "Observation", "id": "l2",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "subject": {"reference": "Patient/355"},
            "contained": [{"resourceType": "Practitioner", "id": "pr", "name": [{"family": "Adams"}]}],
            "performer": [{"reference": "#pr"}]});
        assert!(e.needs_redaction(&obs));
        e.redact(&mut obs);
        assert!(obs.get("contained").is_none());
        // Its local reference would dangle (ref-1): it goes too, and says why.
        assert_eq!(obs["performer"][0]["extension"][0]["valueCode"], "masked");
        assert!(obs["performer"][0].get("reference").is_none());
        // With its type declared, the type is what is left.
        let mut typed = json!({"resourceType": "Observation", "id": "l3",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "subject": {"reference": "Patient/355"},
            "contained": [{"resourceType": "Practitioner", "id": "pr", "name": [{"family": "Adams"}]}],
            "performer": [{"reference": "#pr", "type": "Practitioner"}, {"reference": "Practitioner/x"}]});
        e.redact(&mut typed);
        assert_eq!(typed["performer"][0], json!({"type": "Practitioner"}));
        // A literal reference elsewhere is not a local one: kept.
        assert_eq!(
            typed["performer"][1],
            json!({"reference": "Practitioner/x"})
        );
        assert_eq!(labels(&obs), vec![REDACTED_CODE]);
    }

    #[test]
    fn the_byte_scan_sees_what_the_parsed_value_shows() {
        let reg = CategoryRegistry::default_registry();
        let e = enforcer(&reg, &["laboratory"]);
        let scan = |json: &str| Some(e.needs_redaction_bytes(json.as_bytes(), "Observation"));
        let obs = |performer: &str| {
            format!(r#"{{"resourceType":"Observation","id":"o","performer":[{performer}]}}"#)
        };
        assert_eq!(scan(&obs(r#"{"reference":"Practitioner/1"}"#)), Some(false));
        assert_eq!(
            scan(&obs(r#"{"reference":"Practitioner/1","display":"Dr A"}"#)),
            Some(true)
        );
        // An escaped member name is the same name to the client.
        assert_eq!(
            scan(&obs(r#"{"reference":"Practitioner/1","display":"Dr A"}"#)),
            Some(true)
        );
        // A repeated key, however it would be read, sends the resource to the parser.
        assert_eq!(
            scan(&obs(
                r#"{"type":{},"type":"Practitioner","display":"Dr A"}"#
            )),
            Some(true)
        );
        // Codings keep their display; a contained resource is decided on the value.
        assert_eq!(
            scan(r#"{"resourceType":"Observation","code":{"coding":[{"display":"Hb"}]}}"#),
            Some(false)
        );
        assert_eq!(
            scan(r#"{"resourceType":"Observation","contained":[]}"#),
            Some(true)
        );
        // Truncated input cannot have been validated: parse it (and fail there).
        assert_eq!(
            scan(r#"{"resourceType":"Observation","performer":[{"#),
            Some(true)
        );
        // Whitespace, numbers and nesting as serde_json accepts them.
        assert_eq!(
            scan(
                " {\"resourceType\" : \"Observation\" ,\n \"valueQuantity\":{\"value\":-1.5e3},\"x\":[true,null,[ ]],\"performer\" : [ { \"reference\" : \"Practitioner/1\" , \"display\" : \"A \\\" B\" } ] } "
            ),
            Some(true)
        );
        assert_eq!(
            scan(r#"{"resourceType":"Observation","note":[{"text":"a \" }{ b"}],"x":{}}"#),
            Some(false)
        );
        // A type with withheld elements is always parsed.
        assert!(e.needs_redaction_bytes(br#"{"resourceType":"Patient","id":"355"}"#, "Patient"));
    }

    fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-1000i64..1000).prop_map(Value::from),
            prop::sample::select(vec![
                "Practitioner/p1",
                "Patient/355",
                "https://e/fhir/Organization/o1/_history/2",
                "urn:uuid:1",
                "#c1",
                "Observation/o9",
                "Practitioner",
                "a \"quoted\" \\ name",
                "",
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let keys = prop::sample::select(vec![
                "reference",
                "display",
                "identifier",
                "type",
                "id",
                "extension",
                "coding",
                "valueCoding",
                "performer",
                "subject",
                "system",
                "code",
                "text",
                "meta",
                "note",
            ]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys, inner, 0..5).prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]
        /// The byte scan and the parsed value agree on whether anything would be removed.
        #[test]
        fn the_byte_scan_agrees_with_the_value(body in arbitrary_json(), pretty in proptest::prelude::any::<bool>()) {
            let reg = CategoryRegistry::default_registry();
            let mut resource = json!({"resourceType": "Observation", "id": "o"});
            if let Value::Object(members) = body {
                for (k, v) in members {
                    resource[k] = v;
                }
            }
            let bytes = if pretty {
                serde_json::to_vec_pretty(&resource).unwrap()
            } else {
                serde_json::to_vec(&resource).unwrap()
            };
            for granted in [&["laboratory"][..], &["laboratory", "care-providers", "demographics"]] {
                let e = enforcer(&reg, granted);
                proptest::prop_assert_eq!(
                    e.needs_redaction_bytes(&bytes, "Observation"),
                    e.needs_redaction(&resource),
                    "{}", String::from_utf8_lossy(&bytes)
                );
            }
        }
    }

    #[test]
    fn bundles_redact_their_entries() {
        let reg = CategoryRegistry::default_registry();
        let e = enforcer(&reg, &["laboratory"]);
        let mut bundle = json!({"resourceType": "Bundle", "type": "searchset",
            "entry": [{"resource": lab(), "search": {"mode": "match"}}]});
        let report = e.filter_bundle(&mut bundle);
        assert_eq!((report.kept, report.redacted), (1, 4));
        assert!(
            bundle["entry"][0]["resource"]["performer"][0]
                .get("display")
                .is_none()
        );
    }

    #[test]
    fn literal_reference_types() {
        assert_eq!(literal_type("Practitioner/123"), Some("Practitioner"));
        assert_eq!(
            literal_type("https://ehr.example/fhir/Organization/o1/_history/3"),
            Some("Organization")
        );
        assert_eq!(literal_type("Patient/1?x=y"), Some("Patient"));
        assert_eq!(literal_type("123"), None);
        assert_eq!(literal_type("Practitioner/"), None);
        assert_eq!(literal_type("lower/1"), None);
    }
}
