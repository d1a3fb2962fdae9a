//! Mapping to FHIR R4 `AuditEvent` following the IHE Basic Audit Log Patterns (BALP) RESTful
//! profiles: Create, Read, Update, Delete, Query and their Patient variants.
//!
//! One deliberate deviation: BALP's Query pattern puts the whole HTTP request, search values
//! included, base64-encoded in `entity[query].query`. Search values can identify a person
//! (`name=Smith&birthdate=…`), so fhirguard never keeps them: `query` carries the method,
//! resource type and search parameter *names* only (`GET Observation?patient&category`).

use base64::Engine;
use serde_json::{Value, json};

use super::chain::SealedRecord;
use super::record::{
    ActorRole, AuditInteraction, AuditRecord, DenyReason, EventKind, HttpMethod, Outcome,
};

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL: &str = "http://hl7.org/fhir/restful-interaction";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const BALP_ENTITY_TYPE: &str = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType";
const PROFILE_BASE: &str = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/";
/// The code system of fhirguard's own event codes (security events, deny reasons, categories).
pub const FHIRGUARD_SYSTEM: &str = "urn:fhirguard:audit";

/// The BALP profile a REST record maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BalpProfile {
    /// `IHE.BasicAudit.Create`.
    Create,
    /// `IHE.BasicAudit.Read`.
    Read,
    /// `IHE.BasicAudit.Update`.
    Update,
    /// `IHE.BasicAudit.Delete`.
    Delete,
    /// `IHE.BasicAudit.Query`.
    Query,
    /// `IHE.BasicAudit.PatientCreate`.
    PatientCreate,
    /// `IHE.BasicAudit.PatientRead`.
    PatientRead,
    /// `IHE.BasicAudit.PatientUpdate`.
    PatientUpdate,
    /// `IHE.BasicAudit.PatientDelete`.
    PatientDelete,
    /// `IHE.BasicAudit.PatientQuery`.
    PatientQuery,
}

impl BalpProfile {
    /// The profile's canonical URL.
    pub fn url(self) -> String {
        let name = match self {
            BalpProfile::Create => "Create",
            BalpProfile::Read => "Read",
            BalpProfile::Update => "Update",
            BalpProfile::Delete => "Delete",
            BalpProfile::Query => "Query",
            BalpProfile::PatientCreate => "PatientCreate",
            BalpProfile::PatientRead => "PatientRead",
            BalpProfile::PatientUpdate => "PatientUpdate",
            BalpProfile::PatientDelete => "PatientDelete",
            BalpProfile::PatientQuery => "PatientQuery",
        };
        format!("{PROFILE_BASE}IHE.BasicAudit.{name}")
    }

    /// The profile for `record`, if it is a REST access BALP has a pattern for.
    pub fn for_record(record: &AuditRecord) -> Option<Self> {
        if record.event != EventKind::RestAccess {
            return None;
        }
        let patient = record.patient.is_some();
        let p = match record.interaction.as_ref()? {
            AuditInteraction::Read | AuditInteraction::Vread => (Self::Read, Self::PatientRead),
            AuditInteraction::Create => (Self::Create, Self::PatientCreate),
            AuditInteraction::Update | AuditInteraction::Patch => {
                (Self::Update, Self::PatientUpdate)
            }
            AuditInteraction::Delete => (Self::Delete, Self::PatientDelete),
            i if i.is_query() => (Self::Query, Self::PatientQuery),
            _ => return None,
        };
        Some(if patient { p.1 } else { p.0 })
    }
}

/// Deployment facts the AuditEvent needs and the record does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalpContext {
    /// The observer (`source.observer`): a reference to the Device that is this server,
    /// e.g. `Device/fhirguard`.
    pub observer: String,
    /// The FHIR base URL of this server (the destination agent's network address).
    pub server_base: String,
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

fn subtype_code(interaction: &AuditInteraction) -> &'static str {
    match interaction {
        AuditInteraction::Capabilities => "capabilities",
        AuditInteraction::Read => "read",
        AuditInteraction::Vread => "vread",
        AuditInteraction::HistoryInstance => "history-instance",
        AuditInteraction::HistoryType => "history-type",
        AuditInteraction::HistorySystem => "history-system",
        AuditInteraction::SearchType => "search-type",
        AuditInteraction::SearchSystem => "search-system",
        AuditInteraction::SearchCompartment => "search-type",
        AuditInteraction::Create => "create",
        AuditInteraction::Update => "update",
        AuditInteraction::Patch => "patch",
        AuditInteraction::Delete => "delete",
        AuditInteraction::Batch => "batch",
        AuditInteraction::Operation(_) => "operation",
    }
}

fn action_code(interaction: Option<&AuditInteraction>) -> &'static str {
    match interaction {
        Some(AuditInteraction::Create) => "C",
        Some(AuditInteraction::Read | AuditInteraction::Vread) => "R",
        Some(AuditInteraction::Update | AuditInteraction::Patch) => "U",
        Some(AuditInteraction::Delete) => "D",
        _ => "E",
    }
}

fn kebab<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => "unknown".to_owned(),
    }
}

fn method_str(m: HttpMethod) -> &'static str {
    match m {
        HttpMethod::Get => "GET",
        HttpMethod::Head => "HEAD",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Patch => "PATCH",
        HttpMethod::Delete => "DELETE",
        HttpMethod::Options => "OPTIONS",
        HttpMethod::Other => "OTHER",
    }
}

fn deny_reason_str(r: DenyReason) -> String {
    kebab(&r)
}

impl AuditRecord {
    /// This record as a FHIR R4 `AuditEvent` (JSON), claiming the matching BALP profile when
    /// there is one. Holds nothing the record does not: no PHI, no token.
    pub fn to_audit_event(&self, ctx: &BalpContext) -> Value {
        let profile = BalpProfile::for_record(self);
        let mut event = serde_json::Map::new();
        event.insert("resourceType".into(), json!("AuditEvent"));
        if let Some(p) = profile {
            event.insert("meta".into(), json!({ "profile": [p.url()] }));
        }
        // type / subtype
        match self.event {
            EventKind::RestAccess | EventKind::RequestDenied | EventKind::RateLimited
                if self.interaction.is_some() =>
            {
                event.insert(
                    "type".into(),
                    coding(EVENT_TYPE, "rest", "Restful Operation"),
                );
                if let Some(i) = &self.interaction {
                    let code = subtype_code(i);
                    event.insert("subtype".into(), json!([coding(RESTFUL, code, code)]));
                }
            }
            EventKind::LoginSucceeded | EventKind::LoginFailed | EventKind::MfaFailed => {
                event.insert("type".into(), coding(DCM, "110114", "User Authentication"));
                event.insert(
                    "subtype".into(),
                    json!([
                        coding(DCM, "110122", "Login"),
                        coding(FHIRGUARD_SYSTEM, &kebab(&self.event), &kebab(&self.event))
                    ]),
                );
            }
            _ => {
                event.insert("type".into(), coding(DCM, "110113", "Security Alert"));
                event.insert(
                    "subtype".into(),
                    json!([coding(
                        FHIRGUARD_SYSTEM,
                        &kebab(&self.event),
                        &kebab(&self.event)
                    )]),
                );
            }
        }
        event.insert(
            "action".into(),
            json!(action_code(self.interaction.as_ref())),
        );
        event.insert("recorded".into(), json!(self.time));
        let (outcome, desc) = match self.outcome {
            Outcome::Success => ("0", None),
            Outcome::Denied(r) => ("4", Some(format!("denied: {}", deny_reason_str(r)))),
            Outcome::Error(e) => ("8", Some(format!("error: {}", kebab(&e)))),
        };
        event.insert("outcome".into(), json!(outcome));
        if let Some(desc) = desc {
            event.insert("outcomeDesc".into(), json!(desc));
        }
        if let Some(p) = self.purpose {
            event.insert(
                "purposeOfEvent".into(),
                json!([{ "coding": [{ "system": ACT_REASON, "code": p.code() }] }]),
            );
        }
        event.insert("agent".into(), Value::Array(self.agents(ctx)));
        event.insert(
            "source".into(),
            json!({
                "observer": { "reference": ctx.observer },
                "type": [coding(SOURCE_TYPE, "4", "Application Server")],
            }),
        );
        let entities = self.entities();
        if !entities.is_empty() {
            event.insert("entity".into(), Value::Array(entities));
        }
        Value::Object(event)
    }

    fn agents(&self, ctx: &BalpContext) -> Vec<Value> {
        let mut agents = Vec::new();
        // The client (Source Role ID): the app, identified by client_id, at its IP address.
        let mut client = json!({
            "type": { "coding": [coding(DCM, "110153", "Source Role ID")] },
            "requestor": false,
        });
        match &self.client {
            Some(c) => {
                client["who"] = json!({ "identifier": { "system": "urn:ietf:rfc:6749#client_id", "value": c.as_str() } });
            }
            None => {
                client["who"] = json!({ "display": "unidentified client" });
            }
        }
        if let Some(ip) = &self.source {
            client["network"] = json!({ "address": ip.to_string(), "type": "2" });
        }
        agents.push(client);
        // The server (Destination Role ID).
        agents.push(json!({
            "type": { "coding": [coding(DCM, "110152", "Destination Role ID")] },
            "who": { "reference": ctx.observer },
            "requestor": false,
            "network": { "address": ctx.server_base, "type": "5" },
        }));
        // The person on whose authority the request was made.
        if let Some(actor) = &self.actor {
            let role = match actor.role {
                ActorRole::Patient => coding(FHIRGUARD_SYSTEM, "patient", "Patient"),
                ActorRole::Representative => {
                    coding(FHIRGUARD_SYSTEM, "representative", "Representative")
                }
                ActorRole::Practitioner => coding(FHIRGUARD_SYSTEM, "practitioner", "Practitioner"),
                ActorRole::System => coding(FHIRGUARD_SYSTEM, "system", "System"),
            };
            let mut who = serde_json::Map::new();
            if let Some(fu) = &actor.fhir_user {
                who.insert("reference".into(), json!(fu.reference()));
            }
            if let Some(user) = &actor.user {
                who.insert(
                    "identifier".into(),
                    json!({ "system": "urn:fhirguard:user", "value": user.as_str() }),
                );
            }
            let mut agent = json!({
                "type": { "coding": [coding("http://terminology.hl7.org/CodeSystem/extra-security-role-type", "humanuser", "human user")] },
                "role": [{ "coding": [role] }],
                "who": Value::Object(who),
                "requestor": true,
            });
            if let Some(p) = self.purpose {
                agent["purposeOfUse"] =
                    json!([{ "coding": [{ "system": ACT_REASON, "code": p.code() }] }]);
            }
            agents.push(agent);
        }
        agents
    }

    fn entities(&self) -> Vec<Value> {
        let mut entities = Vec::new();
        if let Some(patient) = &self.patient {
            entities.push(json!({
                "what": { "reference": format!("Patient/{patient}") },
                "type": coding(ENTITY_TYPE, "1", "Person"),
                "role": coding(OBJECT_ROLE, "1", "Patient"),
            }));
        }
        let is_query = self
            .interaction
            .as_ref()
            .is_some_and(AuditInteraction::is_query);
        let endpoint = self.endpoint.as_ref();
        let resource_type = endpoint.and_then(|e| e.resource_type.as_ref());
        let detail: Vec<Value> = self
            .categories
            .iter()
            .map(|c| json!({ "type": "category", "valueString": c.as_str() }))
            .collect();
        if is_query {
            let mut text = String::new();
            text.push_str(self.method.map(method_str).unwrap_or("GET"));
            text.push(' ');
            if let Some(t) = resource_type {
                text.push_str(t.as_str());
            }
            let names: Vec<&str> = self.params.iter().map(|p| p.as_str()).collect();
            if !names.is_empty() {
                text.push('?');
                text.push_str(&names.join("&"));
            }
            let mut query = json!({
                "type": coding(ENTITY_TYPE, "2", "System Object"),
                "role": coding(OBJECT_ROLE, "24", "Query"),
                "query": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
            });
            if !detail.is_empty() {
                query["detail"] = Value::Array(detail);
            }
            entities.push(query);
        } else if self.interaction.is_some() {
            let mut what = serde_json::Map::new();
            match (resource_type, endpoint.and_then(|e| e.id.as_ref())) {
                (Some(t), Some(id)) => {
                    what.insert("reference".into(), json!(format!("{t}/{id}")));
                }
                (Some(t), None) => {
                    what.insert("type".into(), json!(t.as_str()));
                }
                _ => {}
            }
            let mut data = json!({
                "what": Value::Object(what),
                "type": coding(ENTITY_TYPE, "2", "System Object"),
                "role": coding(OBJECT_ROLE, "4", "Domain Resource"),
            });
            if !detail.is_empty() {
                data["detail"] = Value::Array(detail);
            }
            entities.push(data);
        }
        if let Some(grant) = &self.grant {
            entities.push(json!({
                "what": { "identifier": { "system": "urn:fhirguard:grant", "value": grant.as_str() } },
                "type": coding(ENTITY_TYPE, "2", "System Object"),
                "role": coding(OBJECT_ROLE, "13", "Security Resource"),
            }));
        }
        if let Some(request_id) = &self.request_id {
            entities.push(json!({
                "what": { "identifier": { "value": request_id.as_str() } },
                "type": coding(BALP_ENTITY_TYPE, "XrequestId", "X-Request-Id"),
            }));
        }
        entities
    }
}

impl SealedRecord {
    /// The record as an `AuditEvent` whose `id` is `{kid}-{seq}`, so events shipped to a FHIR
    /// server can be traced back to the chain.
    pub fn to_audit_event(&self, ctx: &BalpContext) -> Value {
        let mut event = self.record().to_audit_event(ctx);
        event["id"] = json!(format!("{}-{}", self.key_id(), self.seq()));
        event
    }
}
