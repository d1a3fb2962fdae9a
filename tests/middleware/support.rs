//! A small axum FHIR app over the in-memory fixture store, behind the guard, on a loopback
//! socket; a raw hyper client; tokens signed with the committed test keys.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use fhirguard::abuse::{AnomalyDetector, AnomalyHook};
use fhirguard::audit::{AuditLog, ChainHead, KeyId, KeyRing, MemorySink, SealedRecord};
use fhirguard::category::CategoryRegistry;
use fhirguard::consent::ActiveGrant;
use fhirguard::enforce::EnforceConfig;
use fhirguard::middleware::{
    AuditRecorder, AuthorizeHost, CachedTokenValidator, CorsPolicy, FhirJson, GuardConfig,
    GuardContext, GuardLayer, RateLimit, SmartEndpoints,
};
use fhirguard::sanitize::SanitizerConfig;
use fhirguard::scope::ScopeSet;
use fhirguard::token::{
    AccessTokenClaims, Algorithm, Approval, AuthorizationServer, AuthorizeRequest,
    Client as OAuthClient, InMemoryClientRegistry, InMemoryKeySource, InMemoryTokenStore,
    MemoryGrantStatus, ServerConfig, SigningKey, TokenStore, sign_access_token,
};
use fhirguard::{CategoryId, ClientId, GrantId, ManualClock, PatientId};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tokio::sync::oneshot;

use crate::fhir_store::{FhirStore, StoreError};

pub const ISSUER: &str = "https://ehr.example.org/auth";
pub const FHIR_BASE: &str = "https://ehr.example.org/fhir";
pub const START: OffsetDateTime = datetime!(2026-11-24 12:00 UTC);
pub const APP: &str = "research-app";
pub const GRANT: &str = "g-355";
pub const SCOPE: &str =
    "launch/patient openid fhirUser patient/Observation.rs patient/Patient.rs patient/Condition.rs";
pub const REDIRECT: &str = "https://app.example.org/callback";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-and-some-more-entropy";

/// The host's login and approval: a session cookie stands for a signed-in patient who approves
/// everything asked.
pub struct CookieHost;

impl AuthorizeHost for CookieHost {
    fn authorize(
        &self,
        server: &AuthorizationServer,
        request: AuthorizeRequest,
        raw: &http::Request<Bytes>,
        now: OffsetDateTime,
    ) -> http::Response<Vec<u8>> {
        let signed_in = raw
            .headers()
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.contains("session=patient-355"));
        if !signed_in {
            let mut page = http::Response::new(b"<!doctype html><title>Sign in</title>".to_vec());
            page.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            return page;
        }
        let approval = Approval::new(
            GrantId::new(GRANT).unwrap(),
            request.scope.clone(),
            "user-355",
            Some(PatientId::new("355").unwrap()),
            now,
        );
        match server.approve(&request, approval, now) {
            Ok(redirect) => redirect.to_response(),
            Err(e) => e.to_response(),
        }
    }
}

/// A vital-signs Observation of patient 355.
pub const VITAL_355: &str = "4e425466-5d90-a9a3-8caa-53216d5430b7";
/// A laboratory Observation of patient 355.
pub const LAB_355: &str = "5ad2167c-0cf3-d7c4-bef3-0ef24683ce35";
/// A vital-signs Observation of patient 85.
pub const VITAL_85: &str = "4b14070a-2ef9-11ed-a261-0242ac120002";

fn key_pem(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/token")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// What the handler saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub uri: String,
    pub context: Option<GuardContext>,
    pub visibility: Option<fhirguard::middleware::Visibility>,
}

struct AppState {
    store: FhirStore,
    seen: Mutex<Vec<Seen>>,
    /// When set, the handler ignores the narrowing (a careless FHIR engine).
    careless: AtomicBool,
    /// When set, the handler takes 300 ms.
    slow: AtomicBool,
    /// How the handler answers (an [`Answer`] as `u8`).
    answer: AtomicU8,
}

/// How the test handler answers a successful request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Answer {
    /// The resource's JSON text.
    Bytes = 0,
    /// `FhirJson`: the resource itself.
    FhirJson = 1,
    /// `FhirJson`'s extensions, but the body swapped for another patient's resource.
    FhirJsonDecoyBody = 2,
    /// `FhirJson` with a `Content-Encoding` added after it.
    FhirJsonEncoded = 3,
}

pub struct Options {
    pub categories: Vec<&'static str>,
    pub enforce: EnforceConfig,
    pub rate_limiter: Option<Arc<dyn RateLimit>>,
    pub cors: Option<CorsPolicy>,
    pub max_concurrency: Option<usize>,
    /// Rate limits of the authorization-server endpoints.
    pub endpoint_limiter: Option<Arc<dyn RateLimit>>,
    /// Replaces the audit log the guard records to (the test log still exists, empty).
    pub audit: Option<Arc<dyn AuditRecorder>>,
    pub anomaly: Option<(Arc<AnomalyDetector>, Arc<dyn AnomalyHook>)>,
    pub allow_grantless: bool,
    /// Validate through `CachedTokenValidator` instead of the server's validator.
    pub cached_validator: bool,
    /// The guard asks this grant source instead of the one the token validator asks.
    pub guard_grants: Option<Arc<dyn fhirguard::consent::GrantStatusSource>>,
    /// Replaces the sanitizer configuration (default: `SanitizerConfig::us_core("/fhir")`).
    pub sanitizer: Option<SanitizerConfig>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            categories: vec!["vital-signs", "demographics"],
            enforce: EnforceConfig::default(),
            rate_limiter: None,
            cors: None,
            max_concurrency: None,
            endpoint_limiter: None,
            audit: None,
            anomaly: None,
            allow_grantless: false,
            cached_validator: false,
            guard_grants: None,
            sanitizer: None,
        }
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub server: Arc<AuthorizationServer>,
    pub audit: Arc<AuditLog<MemorySink>>,
    pub clock: Arc<ManualClock>,
    pub grants: Arc<MemoryGrantStatus>,
    pub tokens: Arc<InMemoryTokenStore>,
    keys: Arc<InMemoryKeySource>,
    state: Arc<AppState>,
    client: Client<HttpConnector, Full<Bytes>>,
    jti: AtomicU64,
    _shutdown: oneshot::Sender<()>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Bytes,
}

async fn metadata() -> Response {
    (
        [(header::CONTENT_TYPE, "application/fhir+json")],
        json!({"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
               "fhirVersion": "4.0.1", "format": ["json"]})
        .to_string(),
    )
        .into_response()
}

async fn fhir(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let context = req.extensions().get::<GuardContext>().cloned();
    state.seen.lock().unwrap().push(Seen {
        uri: req.uri().to_string(),
        context: context.clone(),
        visibility: req
            .extensions()
            .get::<fhirguard::middleware::Visibility>()
            .cloned(),
    });
    let Some(context) = context else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no guard context").into_response();
    };
    if state.slow.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let mut request = fhirguard::FhirRequest::clone(&context.request);
    if state.careless.load(Ordering::SeqCst) {
        let keep = request.params.len() - context.narrowing.len();
        request.params.truncate(keep);
    }
    let answer = state.answer.load(Ordering::SeqCst);
    match state.store.answer(&request, FHIR_BASE) {
        Ok(value) if answer != Answer::Bytes as u8 => {
            let mut response = FhirJson::new(value)
                .into_response()
                .map(axum::body::Body::new);
            if answer == Answer::FhirJsonDecoyBody as u8 {
                let decoy = state.store.read("Observation", VITAL_85).unwrap();
                *response.body_mut() = axum::body::Body::from(decoy.to_string());
            }
            if answer == Answer::FhirJsonEncoded as u8 {
                response
                    .headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            response
        }
        Ok(value) => (
            [
                (header::CONTENT_TYPE, "application/fhir+json"),
                (header::SERVER, "leaky-fhir/1.2.3"),
            ],
            value.to_string(),
        )
            .into_response(),
        Err(StoreError::NotFound) => (
            StatusCode::NOT_FOUND,
            format!("no such resource {}", req.uri()),
        )
            .into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("store: {e:?}")).into_response(),
    }
}

impl TestServer {
    pub async fn start(options: Options) -> TestServer {
        let clock = Arc::new(ManualClock::new(START));
        let key = SigningKey::from_pem(Algorithm::ES256, "es-1", &key_pem("as_es256.pem")).unwrap();
        let rs = SigningKey::from_pem(Algorithm::RS256, "rs-1", &key_pem("as_rs256.pem")).unwrap();
        let keys = Arc::new(InMemoryKeySource::with_keys(Duration::hours(2), [key, rs]).unwrap());
        let grants = Arc::new(MemoryGrantStatus::new());
        grants.insert(ActiveGrant {
            grant_id: GrantId::new(GRANT).unwrap(),
            patient: PatientId::new("355").unwrap(),
            client_id: ClientId::new(APP).unwrap(),
            categories: options
                .categories
                .iter()
                .map(|c| CategoryId::new(*c).unwrap())
                .collect::<BTreeSet<_>>(),
            ends_at: START + Duration::days(365),
        });
        let tokens = Arc::new(InMemoryTokenStore::new());
        let clients = Arc::new(InMemoryClientRegistry::new());
        clients.register(OAuthClient::public(
            ClientId::new(APP).unwrap(),
            vec![REDIRECT.into()],
            format!("{SCOPE} offline_access")
                .parse::<ScopeSet>()
                .unwrap(),
        ));
        let server = Arc::new(
            AuthorizationServer::new(
                ServerConfig::new(ISSUER, FHIR_BASE),
                keys.clone(),
                clients,
                tokens.clone(),
                grants.clone(),
            )
            .unwrap(),
        );
        let audit = Arc::new(AuditLog::new(
            KeyRing::new(KeyId::new("k1").unwrap(), &[9u8; 32]).unwrap(),
            ChainHead::GENESIS,
            MemorySink::new(),
        ));
        let mut builder = GuardConfig::builder()
            .fhir_base(FHIR_BASE)
            .sanitizer_config(
                options
                    .sanitizer
                    .clone()
                    .unwrap_or_else(|| SanitizerConfig::us_core("/fhir")),
            )
            .validator(if options.cached_validator {
                Arc::new(CachedTokenValidator::new(server.clone()))
            } else {
                server.clone()
            })
            .grants(
                options
                    .guard_grants
                    .clone()
                    .unwrap_or_else(|| grants.clone()),
            )
            .registry(Arc::new(CategoryRegistry::default_registry()))
            .audit(options.audit.clone().unwrap_or_else(|| audit.clone()))
            .clock(clock.clone())
            .allow_grantless_tokens(options.allow_grantless)
            .enforce(options.enforce);
        if let Some(limiter) = options.rate_limiter {
            builder = builder.rate_limiter(limiter);
        }
        let cors = options.cors.map(Arc::new);
        if let Some(cors) = &cors {
            builder = builder.cors(cors.clone());
        }
        let mut endpoints =
            SmartEndpoints::new(server.clone(), Arc::new(CookieHost), clock.clone())
                .with_audit(audit.clone());
        if let Some(cors) = &cors {
            endpoints = endpoints.with_cors(cors.clone());
        }
        if let Some(limiter) = options.endpoint_limiter {
            endpoints = endpoints.with_rate_limiter(limiter);
        }
        if let Some((detector, hook)) = options.anomaly {
            builder = builder.anomaly_detector(detector).anomaly_hook(hook);
        }
        if let Some(n) = options.max_concurrency {
            builder = builder.max_concurrency(n);
        }
        let config = builder.build().unwrap();
        let state = Arc::new(AppState {
            store: FhirStore::with_fixtures().unwrap(),
            seen: Mutex::new(Vec::new()),
            careless: AtomicBool::new(false),
            slow: AtomicBool::new(false),
            answer: AtomicU8::new(Answer::Bytes as u8),
        });
        let fhir_app = Router::new()
            .route("/fhir/metadata", get(metadata))
            .route("/fhir/{*rest}", get(fhir).post(fhir))
            .with_state(state.clone())
            .layer(GuardLayer::new(config));
        let app = Router::new()
            .merge(fhirguard::middleware::axum::smart_router_with(endpoints))
            .merge(fhir_app);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            addr,
            server,
            audit,
            clock,
            grants,
            tokens,
            keys,
            state,
            client: Client::builder(TokioExecutor::new()).build_http(),
            jti: AtomicU64::new(0),
            _shutdown: tx,
        }
    }

    pub fn claims(&self) -> AccessTokenClaims {
        let now = self.clock_now();
        AccessTokenClaims {
            iss: ISSUER.into(),
            sub: "user-355".into(),
            aud: vec![FHIR_BASE.into()],
            exp: (now + Duration::hours(1)).unix_timestamp(),
            iat: now.unix_timestamp(),
            nbf: None,
            jti: format!("jti-{}", self.jti.fetch_add(1, Ordering::SeqCst)),
            client_id: ClientId::new(APP).unwrap(),
            scope: SCOPE.into(),
            grant_id: Some(GrantId::new(GRANT).unwrap()),
            patient: Some(PatientId::new("355").unwrap()),
            encounter: None,
            fhir_user: Some(format!("{FHIR_BASE}/Patient/355")),
            family: None,
            context: None,
        }
    }

    fn clock_now(&self) -> OffsetDateTime {
        use fhirguard::Clock;
        self.clock.now()
    }

    pub fn sign(&self, claims: &AccessTokenClaims) -> String {
        sign_access_token(self.keys.as_ref(), Algorithm::ES256, claims).unwrap()
    }

    pub fn token(&self) -> String {
        self.sign(&self.claims())
    }

    pub fn revoke_token(&self, claims: &AccessTokenClaims) {
        let exp = OffsetDateTime::from_unix_timestamp(claims.exp).unwrap();
        self.tokens.revoke_access_token(&claims.jti, exp).unwrap();
    }

    pub fn set_careless(&self, careless: bool) {
        self.state.careless.store(careless, Ordering::SeqCst);
    }

    pub fn set_answer(&self, answer: Answer) {
        self.state.answer.store(answer as u8, Ordering::SeqCst);
    }

    pub fn set_slow(&self, slow: bool) {
        self.state.slow.store(slow, Ordering::SeqCst);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// A stored resource, as the handler would return it.
    pub fn resource(&self, resource_type: &str, id: &str) -> Value {
        self.state.store.read(resource_type, id).unwrap()
    }

    pub fn records(&self) -> Vec<SealedRecord> {
        self.audit.sink().records()
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Reply {
        self.send_body(method, path, token, extra, Bytes::new())
            .await
    }

    /// A form POST.
    pub async fn post_form(
        &self,
        path: &str,
        pairs: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> Reply {
        let body = form(pairs);
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        headers.extend_from_slice(extra);
        self.send_body(Method::POST, path, None, &headers, Bytes::from(body))
            .await
    }

    pub async fn send_body(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let response = self
            .client
            .request(req.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let raw = body.collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
            raw,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, path, token, &[]).await
    }
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}
