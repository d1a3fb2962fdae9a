//! The FHIR API at `/fhir`: discovery and the CapabilityStatement in the open, everything else
//! through the guard: sanitize → access token → consent grant → enforcement (compartment,
//! scopes × approved categories) → the in-memory store → response filtering → audit.
//!
//! Interim wiring of the guard stages until `fhirguard::middleware::GuardLayer` lands; each
//! stage is the library's, only the order lives here.

use std::collections::BTreeSet;

use http::{HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Value, json};

use fhirguard::audit::{
    Actor, ActorRole, AuditRecord, DenyReason as AuditDeny, ErrorKind, EventKind, HttpMethod,
    Outcome, PolicyDecision, UserId,
};
use fhirguard::enforce::{
    Decision, DenyReason, EnforceConfig, Enforcer, Permissions, ResourceGrant, ResponseCheck,
    ScopeContext,
};
use fhirguard::fhir::problem_response;
use fhirguard::sanitize::ResponseKind;
use fhirguard::scope::{Context, Permission, ScopeSet, TypeSelector};
use fhirguard::token::TokenRejection;
use fhirguard::{CategoryId, FhirRequest, PublicProblem, ResourceType, error_response};

use super::{Ehr, Peer, Req, Resp};
use crate::fhir_store::{FhirStore, StoreError};

const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

pub(crate) fn handle(ehr: &Ehr, req: &Req) -> Resp {
    let path = req.uri().path();
    let mut response = if req.method() == Method::OPTIONS {
        preflight()
    } else if path == "/fhir/.well-known/smart-configuration" {
        if req.method() == Method::GET || req.method() == Method::HEAD {
            let mut r = ehr.server.smart_configuration().to_response();
            ehr.headers.apply(r.headers_mut(), ResponseKind::Public);
            r
        } else {
            method_not_allowed(ehr)
        }
    } else if path == "/fhir/metadata"
        && (req.method() == Method::GET || req.method() == Method::HEAD)
    {
        capability_response(ehr)
    } else {
        guarded(ehr, req)
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("WWW-Authenticate, Location, Content-Location"),
    );
    if req.method() == Method::HEAD {
        response.body_mut().clear();
    }
    response
}

fn preflight() -> Resp {
    let mut r = Response::new(Vec::new());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, Accept, Prefer"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    r
}

fn method_not_allowed(ehr: &Ehr) -> Resp {
    let mut r = problem_response(PublicProblem::MethodNotAllowed);
    ehr.headers.apply(r.headers_mut(), ResponseKind::Phi);
    r
}

/// `GET /fhir/metadata`: an R4 CapabilityStatement describing what this server really does.
fn capability_response(ehr: &Ehr) -> Resp {
    let body = serde_json::to_vec(&capability_statement(ehr)).unwrap_or_default();
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    ehr.headers.apply(r.headers_mut(), ResponseKind::Public);
    r
}

pub(crate) fn capability_statement(ehr: &Ehr) -> Value {
    let types: BTreeSet<String> = ehr
        .store
        .all()
        .filter_map(|r| r["resourceType"].as_str().map(str::to_owned))
        .filter(|t| fhirguard::sanitize::ParamTable::us_core_types().any(|u| u == t.as_str()))
        .collect();
    let params: Vec<_> = crate::fhir_store::search_params().collect();
    let resources: Vec<Value> = types
        .iter()
        .map(|t| {
            let search: Vec<Value> = params
                .iter()
                .filter(|(pt, _, _)| *pt == t.as_str() || *pt == "*")
                .map(|(_, name, ty)| json!({ "name": name, "type": ty }))
                .collect();
            let mut resource = json!({
                "type": t,
                "interaction": [{ "code": "read" }, { "code": "vread" }, { "code": "search-type" }],
                "versioning": "versioned",
                "readHistory": false,
                "searchParam": search,
            });
            if t == "Patient" {
                resource["operation"] = json!([{
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"
                }]);
            }
            resource
        })
        .collect();
    let config = ehr.server.config();
    let mut oauth = vec![
        json!({ "url": "authorize", "valueUri": config.authorization_endpoint }),
        json!({ "url": "token", "valueUri": config.token_endpoint }),
        json!({ "url": "revoke", "valueUri": config.revocation_endpoint }),
        json!({ "url": "introspect", "valueUri": config.introspection_endpoint }),
    ];
    if let Some(manage) = &config.management_endpoint {
        oauth.push(json!({ "url": "manage", "valueUri": manage }));
    }
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-01",
        "publisher": "fhirguard demo",
        "kind": "instance",
        "software": { "name": "fhirguard demo EHR", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "fhirguard demo EHR (read-only patient access API)", "url": ehr.fhir_base },
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": true,
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": oauth,
                }],
                "service": [{
                    "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                        "display": "SMART-on-FHIR"
                    }],
                    "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"
                }],
                "description": "SMART App Launch 2.x: standalone launch with PKCE, public and confidential clients, backend services"
            },
            "resource": resources,
        }]
    })
}

/// The caller's scopes as enforcement's typed grants (v1 scopes mean their v2 letters).
pub(crate) fn resource_grants(scope: &ScopeSet) -> Vec<ResourceGrant> {
    scope
        .to_v2()
        .resource_scopes()
        .filter_map(|rs| {
            let context = match rs.context() {
                Context::Patient => ScopeContext::Patient,
                Context::User => ScopeContext::User,
                Context::System => ScopeContext::System,
            };
            let p = rs.permissions();
            let permissions = Permissions {
                create: p.contains(Permission::Create),
                read: p.contains(Permission::Read),
                update: p.contains(Permission::Update),
                delete: p.contains(Permission::Delete),
                search: p.contains(Permission::Search),
            };
            let mut grant = match rs.resource() {
                TypeSelector::Any => ResourceGrant::wildcard(context, permissions),
                TypeSelector::Type(t) => {
                    ResourceGrant::new(context, ResourceType::new(t.as_str())?, permissions)
                }
            };
            for filter in rs.filters() {
                let values: Vec<&str> = filter.values().collect();
                grant = grant.with_constraint(filter.name(), values.join(","));
            }
            Some(grant)
        })
        .collect()
}

fn fhir_json(status: StatusCode, body: &Value) -> Resp {
    let mut r = Response::new(serde_json::to_vec(body).unwrap_or_default());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

fn audit_deny_of_token(rejection: &TokenRejection) -> AuditDeny {
    match rejection {
        TokenRejection::Expired => AuditDeny::ExpiredToken,
        TokenRejection::GrantRevoked | TokenRejection::Revoked => AuditDeny::GrantRevoked,
        TokenRejection::GrantExpired => AuditDeny::GrantExpired,
        TokenRejection::GrantUnknown => AuditDeny::GrantUnknown,
        _ => AuditDeny::InvalidToken,
    }
}

fn audit_deny_of_enforce(reason: &DenyReason) -> AuditDeny {
    match reason {
        DenyReason::ReadOnlyDeployment => AuditDeny::WriteForbidden,
        DenyReason::OtherPatient
        | DenyReason::OutsideCompartment
        | DenyReason::NoPatientContext => AuditDeny::OutsideCompartment,
        DenyReason::CategoryNotGranted | DenyReason::Unclassifiable => {
            AuditDeny::CategoryNotGranted
        }
        DenyReason::UnsupportedParameter { .. } => AuditDeny::UnsupportedParameter,
        _ => AuditDeny::InsufficientScope,
    }
}

/// Categories of the resources in a response (a resource, or a Bundle's entries).
fn disclosed(ehr: &Ehr, body: &Value) -> BTreeSet<CategoryId> {
    let mut out = BTreeSet::new();
    let mut add = |r: &Value| {
        if let Ok(c) = ehr.registry.classify(r) {
            out.extend(c.categories().iter().cloned());
        }
    };
    if body["resourceType"] == "Bundle" {
        if let Some(entries) = body["entry"].as_array() {
            for e in entries {
                add(&e["resource"]);
            }
        }
    } else {
        add(body);
    }
    out
}

fn guarded(ehr: &Ehr, req: &Req) -> Resp {
    let now = Ehr::now();
    let source = req.extensions().get::<Peer>().map(|p| p.0.ip());
    let base_record = |event: EventKind, outcome: Outcome| {
        Ehr::audit_time().map(|t| {
            let mut r = AuditRecord::new(t, event, outcome);
            r.source = source;
            r.method = Some(HttpMethod::from(req.method()));
            r
        })
    };

    // 1. Sanitize: a typed request or a generic OperationOutcome.
    let sanitized = match ehr.sanitizer.parse(req) {
        Ok(s) => s,
        Err(err) => {
            if let Some(r) = base_record(
                EventKind::RequestDenied,
                Outcome::Denied(AuditDeny::MalformedRequest),
            ) {
                ehr.record(r);
            }
            let mut r = error_response(&err);
            ehr.headers.apply(r.headers_mut(), ResponseKind::Phi);
            return r;
        }
    };
    let request = sanitized.request;

    // 2. The access token (signature, claims, revocation list, grant status).
    let token = match ehr.server.validator().validate_headers(req.headers(), now) {
        Ok(t) => t,
        Err(rejection) => {
            if let Some(r) = base_record(
                EventKind::RequestDenied,
                Outcome::Denied(audit_deny_of_token(&rejection)),
            ) {
                ehr.record(r);
            }
            let mut r = rejection.to_response();
            *r.body_mut() = PublicProblem::Unauthorized.outcome().to_json();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
            ehr.headers.apply(r.headers_mut(), ResponseKind::Phi);
            return r;
        }
    };
    let claims = &token.claims;

    // 3. Scopes × patient × approved categories.
    let scope: ScopeSet = claims.scope.parse().unwrap_or_default();
    let grants = resource_grants(&scope);
    let categories: Vec<CategoryId> = match &token.grant {
        Some(grant) => grant.categories.iter().cloned().collect(),
        // Backend services: no patient grant; their pre-authorised system scopes decide.
        None => ehr.registry.ids().cloned().collect(),
    };
    let enforcer = Enforcer::new(
        &ehr.registry,
        grants,
        claims.patient.clone(),
        categories,
        EnforceConfig {
            read_only: true,
            ..EnforceConfig::default()
        },
    );

    let mut record = Ehr::audit_time()
        .and_then(|t| AuditRecord::for_request(t, &request, Outcome::Success).ok());
    if let Some(r) = record.as_mut() {
        r.source = source;
        r.method = Some(HttpMethod::from(req.method()));
        r.client = Some(claims.client_id.clone());
        r.grant = claims.grant_id.clone();
        if let Some(p) = &claims.patient {
            r.patient = Some(p.clone());
            let mut actor = Actor::new(ActorRole::Patient);
            actor.user = UserId::new(claims.sub.as_str()).ok();
            r.actor = Some(actor);
        } else {
            r.actor = Some(Actor::new(ActorRole::System));
        }
    }
    let finish = |record: Option<AuditRecord>,
                  outcome: Outcome,
                  decision: PolicyDecision,
                  cats: BTreeSet<CategoryId>|
     -> bool {
        match record {
            Some(mut r) => {
                if !matches!(outcome, Outcome::Success) {
                    r.event = EventKind::RequestDenied;
                }
                r.outcome = outcome;
                r.decision = Some(decision);
                r.categories = cats;
                ehr.record(r)
            }
            None => false,
        }
    };

    let decision = enforcer.decide(&request);
    let (run, check) = match decision {
        Decision::Deny(reason) => {
            let wire = enforcer.wire_outcome(&reason);
            finish(
                record,
                Outcome::Denied(audit_deny_of_enforce(&reason)),
                PolicyDecision::Deny,
                BTreeSet::new(),
            );
            let mut r = fhir_json(wire.status, &wire.body);
            ehr.headers.apply(r.headers_mut(), ResponseKind::Phi);
            return r;
        }
        Decision::Allow { response } => (request.clone(), response),
        Decision::Narrow { add, response } => {
            let mut narrowed: FhirRequest = request.clone();
            narrowed.params.extend(add);
            (narrowed, response)
        }
        _ => {
            finish(
                record,
                Outcome::Error(ErrorKind::Internal),
                PolicyDecision::Deny,
                BTreeSet::new(),
            );
            return problem(ehr, PublicProblem::Internal);
        }
    };

    // 4. The host's FHIR engine.
    let mut body = match ehr.store.answer(&run, &ehr.fhir_base) {
        Ok(v) => v,
        Err(err) => {
            let (problem_kind, outcome) = match err {
                StoreError::NotFound => {
                    let wire = enforcer.missing_outcome();
                    finish(
                        record,
                        Outcome::Success,
                        PolicyDecision::Permit,
                        BTreeSet::new(),
                    );
                    let mut r = fhir_json(wire.status, &wire.body);
                    ehr.headers.apply(r.headers_mut(), ResponseKind::Phi);
                    return r;
                }
                StoreError::UnsupportedParameter(_) | StoreError::BadValue(_) => (
                    PublicProblem::BadRequest,
                    Outcome::Denied(AuditDeny::UnsupportedParameter),
                ),
                StoreError::UnsupportedInteraction => (
                    PublicProblem::NotSupported,
                    Outcome::Denied(AuditDeny::MalformedRequest),
                ),
                StoreError::BadBundle(_) => {
                    (PublicProblem::Internal, Outcome::Error(ErrorKind::Internal))
                }
            };
            finish(record, outcome, PolicyDecision::Deny, BTreeSet::new());
            return problem(ehr, problem_kind);
        }
    };

    // 5. Filter what comes back.
    let decision = match check {
        ResponseCheck::Resource => match enforcer.check_read(&request, &body) {
            Ok(()) => PolicyDecision::Permit,
            Err(reason) => {
                let wire = enforcer.wire_outcome(&reason);
                finish(
                    record,
                    Outcome::Denied(audit_deny_of_enforce(&reason)),
                    PolicyDecision::Deny,
                    BTreeSet::new(),
                );
                let mut r = fhir_json(wire.status, &wire.body);
                ehr.headers.apply(r.headers_mut(), ResponseKind::Phi);
                return r;
            }
        },
        ResponseCheck::Bundle => {
            let report = enforcer.filter_bundle(&mut body);
            if report.dropped > 0 {
                PolicyDecision::Narrowed {
                    withheld: u32::try_from(report.dropped).unwrap_or(u32::MAX),
                }
            } else {
                PolicyDecision::Permit
            }
        }
        _ => PolicyDecision::Permit,
    };
    let cats = disclosed(ehr, &body);
    // 6. Audit, failing closed: no record, no data.
    if !finish(record, Outcome::Success, decision, cats) {
        return problem(ehr, PublicProblem::Unavailable);
    }
    let mut r = fhir_json(StatusCode::OK, &body);
    ehr.headers.apply(r.headers_mut(), ResponseKind::Phi);
    r
}

fn problem(ehr: &Ehr, p: PublicProblem) -> Resp {
    let mut r = problem_response(p);
    ehr.headers.apply(r.headers_mut(), ResponseKind::Phi);
    r
}

#[allow(unused)]
fn patient_of(resource: &Value) -> Option<String> {
    FhirStore::patient_of(resource)
}
