//! What the guard's load test (`examples/guard_load.rs`) and its benchmark
//! (`benches/guard.rs`) share: the host's FHIR read handler in its two answering styles, an
//! audit sink that counts, and a guard configured as the demo EHR's is, with a grant for
//! patient 355 (vital signs) and a signed access token for it.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use fhirguard::audit::{AuditLog, AuditSink, ChainHead, KeyId, KeyRing, SealedRecord, SinkError};
use fhirguard::category::CategoryRegistry;
use fhirguard::consent::ActiveGrant;
use fhirguard::middleware::{CachedTokenValidator, FhirJson, GuardConfig, TokenValidation};
use fhirguard::sanitize::SanitizerConfig;
use fhirguard::token::{
    AccessTokenClaims, Algorithm, AuthorizationServer, InMemoryClientRegistry, InMemoryKeySource,
    InMemoryTokenStore, MemoryGrantStatus, ServerConfig, SigningKey, sign_access_token,
};
use fhirguard::{CategoryId, ClientId, Clock, GrantId, PatientId, SystemClock};
use http::{Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tower::{Service, ServiceExt};

use crate::fhir_store::FhirStore;

pub const ISSUER: &str = "https://ehr.example.org/auth";
pub const FHIR_BASE: &str = "https://ehr.example.org/fhir";
/// A vital-signs Observation of patient 355 (836 bytes of JSON).
pub const VITAL_355: &str = "4e425466-5d90-a9a3-8caa-53216d5430b7";

/// How the handler answers: the resource's bytes (`Full<Bytes>`, what any handler can do), or
/// the resource itself (`FhirJson`, which the guard checks without parsing it again). The
/// load test measures both; each kind is served bare and behind the guard.
pub trait Answer: Body<Data = Bytes, Error = Infallible> + Send + Sized + 'static {
    const LABEL: &'static str;
    fn resource(resource: Value) -> Response<Self>;
    fn not_found() -> Response<Self>;
}

impl Answer for Full<Bytes> {
    const LABEL: &'static str = "bytes (Full<Bytes>)";
    fn resource(resource: Value) -> Response<Self> {
        Response::builder()
            .header(header::CONTENT_TYPE, "application/fhir+json")
            .body(Full::new(Bytes::from(
                serde_json::to_vec(&resource).unwrap(),
            )))
            .unwrap()
    }
    fn not_found() -> Response<Self> {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()))
            .unwrap()
    }
}

impl Answer for FhirJson {
    const LABEL: &'static str = "resource (FhirJson)";
    fn resource(resource: Value) -> Response<Self> {
        FhirJson::new(resource).into_response()
    }
    fn not_found() -> Response<Self> {
        FhirJson::new(serde_json::json!({"resourceType": "OperationOutcome"}))
            .into_response_with_status(StatusCode::NOT_FOUND)
    }
}

/// The host's FHIR handler: reads one resource from the in-memory store.
pub struct ReadHandler<A> {
    pub store: Arc<FhirStore>,
    pub answer: PhantomData<fn() -> A>,
}

impl<A> Clone for ReadHandler<A> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            answer: PhantomData,
        }
    }
}

impl<A: Answer, B> Service<Request<B>> for ReadHandler<A> {
    type Response = Response<A>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut segments = req.uri().path().trim_start_matches("/fhir/").split('/');
        let response = match (segments.next(), segments.next(), segments.next()) {
            (Some(ty), Some(id), None) => match self.store.read(ty, id) {
                Ok(resource) => A::resource(resource),
                Err(_) => A::not_found(),
            },
            _ => A::not_found(),
        };
        ready(Ok(response))
    }
}

/// An audit sink that seals (the chain's HMAC runs as usual) and counts, without keeping the
/// records in memory: the load test only needs the count.
#[derive(Default)]
pub struct CountingSink {
    pub records: AtomicU64,
}

impl AuditSink for CountingSink {
    fn append(&self, _record: &SealedRecord) -> Result<(), SinkError> {
        self.records.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The guard and what a measurement needs around it.
pub struct Fixture {
    pub config: GuardConfig,
    /// A signed ES256 access token for the grant.
    pub token: String,
    pub sink: Arc<CountingSink>,
    pub store: Arc<FhirStore>,
}

impl Fixture {
    /// The guard, validating tokens through `CachedTokenValidator` when `token_cache` (the
    /// default wiring), otherwise verifying every signature.
    pub fn new(token_cache: bool) -> Self {
        // The authorization server's keys, a grant for patient 355 (vital signs), a token.
        let pem = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/token/as_es256.pem"),
        )
        .unwrap();
        let rs_pem = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/token/as_rs256.pem"),
        )
        .unwrap();
        let keys = Arc::new(
            InMemoryKeySource::with_keys(
                time::Duration::hours(2),
                [
                    SigningKey::from_pem(Algorithm::ES256, "es-1", &pem).unwrap(),
                    SigningKey::from_pem(Algorithm::RS256, "rs-1", &rs_pem).unwrap(),
                ],
            )
            .unwrap(),
        );
        let now = SystemClock.now();
        let grants = Arc::new(MemoryGrantStatus::new());
        grants.insert(ActiveGrant {
            grant_id: GrantId::new("g-load").unwrap(),
            patient: PatientId::new("355").unwrap(),
            client_id: ClientId::new("load-app").unwrap(),
            categories: BTreeSet::from([CategoryId::new("vital-signs").unwrap()]),
            ends_at: now + time::Duration::days(30),
        });
        let server = Arc::new(
            AuthorizationServer::new(
                ServerConfig::new(ISSUER, FHIR_BASE),
                keys.clone(),
                Arc::new(InMemoryClientRegistry::new()),
                Arc::new(InMemoryTokenStore::new()),
                grants.clone(),
            )
            .unwrap(),
        );
        let claims = AccessTokenClaims {
            iss: ISSUER.into(),
            sub: "user-355".into(),
            aud: vec![FHIR_BASE.into()],
            exp: (now + time::Duration::minutes(50)).unix_timestamp(),
            iat: now.unix_timestamp(),
            nbf: None,
            jti: "load-jti".into(),
            client_id: ClientId::new("load-app").unwrap(),
            scope: "launch/patient patient/Observation.rs".into(),
            grant_id: Some(GrantId::new("g-load").unwrap()),
            patient: Some(PatientId::new("355").unwrap()),
            encounter: None,
            fhir_user: None,
            family: None,
            context: None,
        };
        let token = sign_access_token(keys.as_ref(), Algorithm::ES256, &claims).unwrap();

        let sink = Arc::new(CountingSink::default());
        let audit = Arc::new(AuditLog::new(
            KeyRing::new(KeyId::new("load").unwrap(), &[7u8; 32]).unwrap(),
            ChainHead::GENESIS,
            sink.clone(),
        ));
        let validator: Arc<dyn TokenValidation> = if token_cache {
            Arc::new(CachedTokenValidator::new(server))
        } else {
            server
        };
        let config = GuardConfig::builder()
            .fhir_base(FHIR_BASE)
            .sanitizer_config(SanitizerConfig::us_core("/fhir"))
            .validator(validator)
            .grants(grants)
            .registry(Arc::new(CategoryRegistry::default_registry()))
            .audit(audit)
            .clock(Arc::new(SystemClock))
            .build()
            .unwrap();
        Self {
            config,
            token,
            sink,
            store: Arc::new(FhirStore::with_fixtures().unwrap()),
        }
    }

    /// The handler answering with `A`.
    pub fn handler<A: Answer>(&self) -> ReadHandler<A> {
        ReadHandler {
            store: Arc::clone(&self.store),
            answer: PhantomData,
        }
    }

    /// A GET of the vital-signs Observation with the token.
    pub fn request(&self) -> Request<Full<Bytes>> {
        Request::get(format!("/fhir/Observation/{VITAL_355}"))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .body(Full::new(Bytes::new()))
            .unwrap()
    }
}

/// One request through `svc` on `rt`, its body read whole as a server would (a `FhirJson` is
/// serialised then); the body's length. Panics unless the answer is `200 OK` with a body.
pub fn serve_one<S, A>(
    rt: &tokio::runtime::Runtime,
    svc: &S,
    request: Request<Full<Bytes>>,
) -> usize
where
    S: Service<Request<Full<Bytes>>, Response = Response<A>> + Clone,
    S::Error: std::fmt::Debug,
    A: Body,
    A::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let response = svc.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let length = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .len();
        assert!(length > 0);
        length
    })
}
