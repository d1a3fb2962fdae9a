//! The FHIR API at `/fhir`: the demo's FHIR engine (the in-memory fixture store) behind
//! `fhirguard::middleware::GuardLayer`. The guard sanitizes, validates the access token, asks
//! the consent store whether the grant is still active, enforces compartment × scopes ×
//! approved categories (narrowing searches), filters what the store returns and writes one
//! audit record per request; the handler here only answers the request the guard hands it
//! (`GuardContext::request`, already narrowed). `metadata` and
//! `.well-known/smart-configuration` are the guard's public paths.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use tower::Layer as _;

use fhirguard::enforce::Need;
use fhirguard::fhir::FHIR_JSON_MEDIA_TYPE as FHIR_JSON;
use fhirguard::fhir::Interaction;
use fhirguard::middleware::{
    FhirJson, GuardBody, GuardConfig, GuardContext, GuardLayer, GuardService, Visibility,
};
use fhirguard::sanitize::{ParamTable, ParamType};
use fhirguard::token::AuthorizationServer;
use http_body_util::Either;

use crate::fhir_store::{FhirStore, StoreError};

/// What the store handler answers with: the resource itself (the guard checks it and writes
/// its bytes, without parsing them again), or fixed bytes (metadata, discovery, a bare status).
pub(crate) type FhirBody = Either<FhirJson, GuardBody>;

/// The FHIR API as served: the guard around the store handler.
pub(crate) type GuardedFhir = GuardService<FhirHandler>;

/// The guard of `config` around the demo's FHIR engine.
pub(crate) fn guarded(
    store: Arc<FhirStore>,
    server: Arc<AuthorizationServer>,
    fhir_base: String,
    config: GuardConfig,
    table: &ParamTable,
) -> GuardedFhir {
    let metadata = serde_json::to_vec(&capability_statement(&store, &server, &fhir_base, table))
        .map(Bytes::from)
        .unwrap_or_default();
    // R4 http.html#capabilities: the statement SHOULD carry an ETag that changes when it does.
    // It is built once per start, so a digest of its bytes is one.
    let digest = ring::digest::digest(&ring::digest::SHA256, &metadata);
    let hex: String = digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let metadata_etag = HeaderValue::from_str(&format!("W/\"{hex}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("W/\"0\""));
    GuardLayer::new(config).layer(FhirHandler(Arc::new(FhirApi {
        store,
        server,
        fhir_base,
        metadata,
        metadata_etag,
    })))
}

struct FhirApi {
    store: Arc<FhirStore>,
    server: Arc<AuthorizationServer>,
    fhir_base: String,
    /// The CapabilityStatement, serialized once.
    metadata: Bytes,
    /// Its `ETag`.
    metadata_etag: HeaderValue,
}

/// The host's FHIR handler the guard wraps: answers from the fixture store.
#[derive(Clone)]
pub(crate) struct FhirHandler(Arc<FhirApi>);

impl tower::Service<Request<GuardBody>> for FhirHandler {
    type Response = Response<FhirBody>;
    type Error = Infallible;
    type Future = Ready<Result<Response<FhirBody>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<GuardBody>) -> Self::Future {
        ready(Ok(self.0.answer(&req)))
    }
}

impl FhirApi {
    fn answer(&self, req: &Request<GuardBody>) -> Response<FhirBody> {
        match req.uri().path() {
            // Public paths (the guard lets only GET and HEAD through, without a token).
            "/fhir/metadata" => {
                let mut r = fhir_json(StatusCode::OK, self.metadata.clone());
                r.headers_mut()
                    .insert(header::ETAG, self.metadata_etag.clone());
                public(r).map(Either::Right)
            }
            "/fhir/.well-known/smart-configuration" => public(
                self.server
                    .smart_configuration()
                    .to_response()
                    .map(|b| GuardBody::new(Bytes::from(b))),
            )
            .map(Either::Right),
            _ => {
                // The guard inserts the context into every request it lets through.
                let Some(ctx) = req.extensions().get::<GuardContext>() else {
                    return status_only(StatusCode::INTERNAL_SERVER_ERROR).map(Either::Right);
                };
                // A patient's token reads her record: of the resources outside every
                // compartment, only those her record names.
                let patient = ctx.patient.as_ref().map(|p| p.as_str());
                let in_record = |r: &Value| patient.is_none_or(|p| self.store.in_record_of(p, r));
                // A search the guard could not narrow is paged over visible matches only.
                let answer = match req.extensions().get::<Visibility>() {
                    Some(visibility) => {
                        let enforcer = visibility.enforcer();
                        self.store
                            .answer_visible(&ctx.request, &self.fhir_base, &|r| {
                                in_record(r) && enforcer.visible(r, Need::Search).is_ok()
                            })
                    }
                    None => self
                        .store
                        .answer_visible(&ctx.request, &self.fhir_base, &in_record),
                };
                let read = matches!(
                    ctx.request.interaction,
                    Interaction::Read | Interaction::Vread
                );
                let answer = match answer {
                    Ok(body) if read && !in_record(&body) => Err(StoreError::NotFound),
                    other => other,
                };
                match answer {
                    Ok(body) => {
                        let mut versions = http::HeaderMap::new();
                        if matches!(
                            ctx.request.interaction,
                            Interaction::Read | Interaction::Vread
                        ) {
                            version_headers(&body, &mut versions);
                        }
                        let mut response = FhirJson::new(body).into_response();
                        response
                            .headers_mut()
                            .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
                        response.headers_mut().extend(versions);
                        response.map(Either::Left)
                    }
                    // The guard replaces error bodies by its generic OperationOutcome (a
                    // missing resource looks exactly like a denied one); only the status counts.
                    Err(StoreError::NotFound) => {
                        status_only(StatusCode::NOT_FOUND).map(Either::Right)
                    }
                    Err(
                        StoreError::UnsupportedParameter(_)
                        | StoreError::BadValue(_)
                        | StoreError::UnsupportedInteraction,
                    ) => status_only(StatusCode::BAD_REQUEST).map(Either::Right),
                    Err(StoreError::BadBundle(_)) => {
                        status_only(StatusCode::INTERNAL_SERVER_ERROR).map(Either::Right)
                    }
                }
            }
        }
    }
}

/// Discovery and the CapabilityStatement are readable by any page, with or without `Origin`.
fn public(mut r: Response<GuardBody>) -> Response<GuardBody> {
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

fn fhir_json(status: StatusCode, body: Bytes) -> Response<GuardBody> {
    let mut r = Response::new(GuardBody::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

/// `ETag` (weak, the version id) and `Last-Modified` of a read resource, as FHIR R4's read
/// interaction asks (http.html#read).
fn version_headers(resource: &Value, headers: &mut http::HeaderMap) {
    let meta = &resource["meta"];
    if let Some(etag) = meta["versionId"]
        .as_str()
        .filter(|v| fhirguard::sanitize::is_valid_id(v))
        .and_then(|v| HeaderValue::from_str(&format!("W/\"{v}\"")).ok())
    {
        headers.insert(header::ETAG, etag);
    }
    let imf_fixdate = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    if let Some(modified) = meta["lastUpdated"]
        .as_str()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).format(imf_fixdate).ok())
        .and_then(|t| HeaderValue::from_str(&t).ok())
    {
        headers.insert(header::LAST_MODIFIED, modified);
    }
}

fn status_only(status: StatusCode) -> Response<GuardBody> {
    let mut r = Response::new(GuardBody::default());
    *r.status_mut() = status;
    r
}

/// `GET /fhir/metadata`: an R4 CapabilityStatement describing what this server really does.
/// A search parameter is declared only when both the store evaluates it and the guard's
/// sanitizer (`table`) lets it through: a declared parameter must work end to end.
fn capability_statement(
    store: &FhirStore,
    server: &AuthorizationServer,
    fhir_base: &str,
    table: &ParamTable,
) -> Value {
    let types: BTreeSet<String> = store
        .all()
        .filter_map(|r| r["resourceType"].as_str().map(str::to_owned))
        .filter(|t| ParamTable::us_core_types().any(|u| u == t.as_str()))
        .collect();
    // The profiles the data really claims (`meta.profile`, version suffix dropped), per type.
    let mut profiles: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in store.all() {
        let Some(t) = r["resourceType"].as_str() else {
            continue;
        };
        for p in r["meta"]["profile"].as_array().into_iter().flatten() {
            if let Some(p) = p.as_str() {
                let canonical = p.split_once('|').map_or(p, |(url, _)| url);
                profiles
                    .entry(t.to_owned())
                    .or_default()
                    .insert(canonical.to_owned());
            }
        }
    }
    let params: Vec<_> = crate::fhir_store::search_params().collect();
    // Reference parameters both the store follows and the sanitizer accepts in `_include`.
    let includable = |t: &str, name: &str| {
        params
            .iter()
            .any(|(pt, n, ty)| *pt == t && *n == name && *ty == "reference")
            && table
                .get_specific(t, name)
                .is_some_and(|d| d.ty == ParamType::Reference)
    };
    let provenance_revinclude = types.contains("Provenance") && includable("Provenance", "target");
    let resources: Vec<Value> = types
        .iter()
        .map(|t| {
            let search: Vec<Value> = params
                .iter()
                .filter(|(pt, _, _)| *pt == t.as_str() || *pt == "*")
                .filter(|(_, name, _)| table.get(Some(t.as_str()), name).is_some())
                .map(|(_, name, ty)| json!({ "name": name, "type": ty }))
                .collect();
            let includes: Vec<String> = params
                .iter()
                .filter(|(pt, name, _)| *pt == t.as_str() && includable(t, name))
                .map(|(_, name, _)| format!("{t}:{name}"))
                .collect();
            let mut resource = json!({
                "type": t,
                "supportedProfile": profiles.get(t.as_str()).cloned().unwrap_or_default(),
                "interaction": [{ "code": "read" }, { "code": "vread" }, { "code": "search-type" }],
                "versioning": "versioned",
                "readHistory": false,
                "searchParam": search,
            });
            if !includes.is_empty() {
                resource["searchInclude"] = json!(includes);
            }
            if provenance_revinclude {
                resource["searchRevInclude"] = json!(["Provenance:target"]);
            }
            if t == "Patient" {
                resource["operation"] = json!([{
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"
                }]);
            }
            resource
        })
        .collect();
    let config = server.config();
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
        "implementation": { "description": "fhirguard demo EHR (read-only patient access API)", "url": fhir_base },
        "instantiates": ["http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server"],
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json"],
        "implementationGuide": [
            "http://hl7.org/fhir/us/core/ImplementationGuide/hl7.fhir.us.core",
            "http://hl7.org/fhir/smart-app-launch/ImplementationGuide/hl7.fhir.uv.smart-app-launch"
        ],
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
                "description": "SMART App Launch 2.x: standalone and EHR launch with PKCE, public and confidential clients, backend services"
            },
            "resource": resources,
        }]
    })
}
