//! The demo EHR: a SMART-on-FHIR server over HTTPS built from fhirguard's pieces, with a patient
//! portal. `examples/ehr_server.rs` runs it from the command line; tests and the walkthrough
//! run it in-process with [`start`].
//!
//! Layout of one running server (all under `https://127.0.0.1:PORT`):
//!
//! | path | what |
//! |---|---|
//! | `/fhir` | FHIR R4 API over the two fixture patients (`metadata`, `.well-known/smart-configuration`, read, search) |
//! | `/auth` | the authorization server (issuer): `authorize`, `token`, `introspect`, `revoke`, JWKS, OpenID configuration |
//! | `/portal` | the patient portal: login, approval page, connected apps |
//!
//! The host's own parts — the FHIR store, the user directory, the pages — are here; every
//! security decision is fhirguard's.

#![allow(dead_code)]

mod fhir_api;
mod pages;
mod portal;
mod setup;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use http::{HeaderValue, Request, Response, StatusCode, header};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

use fhirguard::abuse::{
    EndpointClass, KeyKind, Limit, MemoryRateLimitStore, RateLimitPolicy, RateLimiter,
};
use fhirguard::audit::{
    AccessIndex, AuditLog, AuditRecord, AuditTime, FileSink, FileSinkConfig, KeyId, KeyRing, Tee,
    read_log_dir,
};
use fhirguard::auth::{
    DefaultRiskPolicy, LoginThrottle, MemoryThrottleStore, PasswordHash, ThrottleConfig,
    TotpCredential, TotpParams, TotpSecret,
};
use fhirguard::category::CategoryRegistry;
use fhirguard::enforce::EnforceConfig;
use fhirguard::middleware::{CorsPolicy, GuardConfig, PeerAddr, SmartEndpoints};
use fhirguard::sanitize::{InteractionCode, ResponseKind, SanitizerConfig, SecurityHeaders};
use fhirguard::scope::ScopeSet;
use fhirguard::tls::TlsServerConfigBuilder;
use fhirguard::token::{
    Algorithm, AuthorizationServer, Client, ClientSecret, InMemoryClientRegistry,
    InMemoryKeySource, SecretHash, SigningKey,
};
use fhirguard::{ClientId, PatientId, SystemClock};

use crate::fhir_store::FhirStore;

/// Why the demo could not start (or a request-independent step failed).
#[derive(Debug)]
pub struct EhrError(String);

impl EhrError {
    pub(crate) fn msg(m: impl Into<String>) -> Self {
        Self(m.into())
    }
}

impl std::fmt::Display for EhrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EhrError {}

impl From<std::io::Error> for EhrError {
    fn from(e: std::io::Error) -> Self {
        Self(format!("I/O: {e}"))
    }
}

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct EhrConfig {
    /// Where certificates, keys, secrets, the audit log and `demo.json` live.
    pub data_dir: PathBuf,
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub addr: SocketAddr,
    /// Hash new demo passwords with 1,000 PBKDF2 iterations instead of OWASP's 600,000, so
    /// unoptimised test builds do not spend seconds per sign-in. Tests only: never in a
    /// deployment (the default is `false`).
    pub dangerous_weak_password_hashing: bool,
    /// The longest one request may take from its complete headers to its response, body
    /// reading included ([`DEFAULT_REQUEST_TIMEOUT`]); a slower request is answered 408 and its
    /// connection closed, so a client announcing a body it never sends cannot hold a
    /// connection (headers themselves must arrive within 15 s).
    pub request_timeout: Duration,
}

/// The default [`EhrConfig::request_timeout`]: 30 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl EhrConfig {
    /// The demo in `data_dir` on `127.0.0.1:8443`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 8443)),
            dangerous_weak_password_hashing: false,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// A running demo server.
pub struct RunningEhr {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `https://127.0.0.1:PORT`.
    pub base_url: String,
    /// Path of the `demo.json` written at start.
    pub demo_json: PathBuf,
    /// The same document, parsed.
    pub demo: serde_json::Value,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    state: Arc<Ehr>,
}

impl RunningEhr {
    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let _ = self.state.audit.flush();
    }

    /// Waits until the server stops (it only stops through [`RunningEhr::stop`]).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Flushes the audit log to disk.
    pub fn flush_audit(&self) {
        let _ = self.state.audit.flush();
    }
}

/// One demo account.
pub(crate) struct User {
    pub username: String,
    pub patient: PatientId,
    pub display_name: String,
    pub hash: PasswordHash,
    pub totp: Option<Mutex<TotpCredential>>,
}

/// The whole server state.
pub(crate) struct Ehr {
    pub base_url: String,
    pub issuer: String,
    pub portal_url: String,
    /// The SMART style document (`smart_style_url` in token responses).
    pub smart_style_url: String,
    pub server: Arc<AuthorizationServer>,
    pub clients: Arc<InMemoryClientRegistry>,
    pub registry: Arc<CategoryRegistry>,
    /// The FHIR API: `fhirguard::middleware::GuardLayer` around the fixture store.
    pub fhir: fhir_api::GuardedFhir,
    /// The authorization server's endpoints at `/auth` (`fhirguard::middleware::SmartEndpoints`,
    /// with the portal as the `AuthorizeHost`).
    pub auth: SmartEndpoints,
    /// The consent store (right-of-access requests and grants); also the grant-status source
    /// the authorization server and the token validator ask.
    pub consent: Arc<fhirguard::consent::SqliteStore>,
    pub audit: Arc<AuditLog<Tee<FileSink, Arc<AccessIndex>>>>,
    pub access: Arc<AccessIndex>,
    pub users: Vec<User>,
    pub hasher: fhirguard::auth::PasswordHasher,
    pub throttle: LoginThrottle<SystemClock>,
    pub risk: DefaultRiskPolicy,
    pub sessions: Mutex<HashMap<String, portal::Session>>,
    pub pending: Mutex<HashMap<String, portal::Pending>>,
    pub headers: SecurityHeaders,
    pub client_names: HashMap<ClientId, String>,
}

impl Ehr {
    pub(crate) fn now() -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }

    /// Appends an audit record (the log fails closed: an error means nothing was recorded).
    pub(crate) fn record(&self, record: AuditRecord) -> bool {
        self.audit.record(record).is_ok()
    }

    pub(crate) fn audit_time() -> Option<AuditTime> {
        AuditTime::new(Self::now()).ok()
    }

    pub(crate) fn client_name(&self, id: &ClientId) -> String {
        self.client_names
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }
}

/// The source address of a request, put in its extensions by the connection loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub SocketAddr);

/// The portal's stylesheet, inline on every page and allowed by its CSP hash.
pub(crate) const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1d2733;line-height:1.5}\
h1{font-size:1.5rem}h2{font-size:1.15rem;margin:0}fieldset{border:1px solid #c6ced8;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}\
label{display:block}.cat{margin:.5rem 0;display:flex;gap:.5rem;align-items:flex-start}.cat label small{display:block;color:#4b5866}\
input[type=text],input[type=password],input[type=date]{padding:.4rem;font-size:1rem}\
button{font-size:1rem;padding:.4rem 1rem;margin-right:.5rem;border-radius:4px;border:1px solid #345;background:#f4f6f8;cursor:pointer}\
button.primary{background:#1d5fa8;color:#fff}.error{color:#a01818;font-weight:bold}.app{border:1px solid #c6ced8;border-radius:6px;padding:.75rem 1rem;margin:1rem 0}\
.apphead{display:flex;justify-content:space-between;align-items:center;gap:1rem}table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #e1e6eb;text-align:left}\
.muted{color:#4b5866}.inline{display:inline}.disclosure{background:#f4f6f8;padding:.75rem 1rem;border-radius:6px}";

/// The portal's Content-Security-Policy: no scripts at all, only the inline stylesheet (by
/// hash), forms posting to this origin and, on the approval page, to the app's redirect origin
/// (browsers apply `form-action` to the redirect that follows a form post).
pub(crate) fn portal_csp(extra_form_targets: &[String]) -> HeaderValue {
    use base64::Engine as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, STYLE.as_bytes());
    let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    let mut form_action = String::from("'self'");
    for target in extra_form_targets {
        form_action.push(' ');
        form_action.push_str(target);
    }
    let csp = format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self'; form-action {form_action}; \
         base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&csp)
        .unwrap_or_else(|_| HeaderValue::from_static(fhirguard::sanitize::headers::STRICT_CSP))
}

/// `scheme://host[:port]` of an absolute URL (for CSP source lists).
pub(crate) fn origin_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?.as_str();
    let authority = authority.rsplit('@').next()?;
    authority
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
        .then(|| format!("{scheme}://{authority}"))
}

/// The demo's clients, as registered.
struct DemoClient {
    id: &'static str,
    name: &'static str,
    kind: &'static str,
    redirect_uris: Vec<String>,
    /// Where the portal's "Open" button sends the patient (EHR launch); `None` for backends.
    launch_uri: Option<String>,
    scope: &'static str,
}

const PATIENT_APP_SCOPE: &str = "launch/patient openid fhirUser offline_access patient/*.rs";
const PATIENT_APP_ALLOWED: &str =
    "launch launch/patient openid fhirUser offline_access patient/*.rs";
const BACKEND_SCOPE: &str = "system/*.rs";

/// Starts the demo EHR: prepares the data directory, binds, writes `demo.json` and serves.
pub async fn start(config: EhrConfig) -> Result<RunningEhr, EhrError> {
    let dir = &config.data_dir;
    // The data directory holds keys, secrets, the consent database and the audit log: the
    // service's user alone may enter it (a directory that already exists keeps its mode).
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    let dir = std::fs::canonicalize(dir)?;

    let listener = TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    let base_url = format!("https://{}:{}", addr.ip(), addr.port());
    let fhir_base = format!("{base_url}/fhir");
    let issuer = format!("{base_url}/auth");
    let portal_url = format!("{base_url}/portal");

    // --- TLS ---
    let tls = setup::tls_files(&dir)?;
    let tls_config = TlsServerConfigBuilder::new()
        .certificate_chain_pem(&tls.cert_chain_pem)
        .private_key_pem(&tls.key_pem)
        .alpn_protocols(vec![b"http/1.1".to_vec()])
        .build()
        .map_err(|e| EhrError::msg(format!("TLS configuration: {e}")))?;

    // --- secrets, users ---
    let hasher = if config.dangerous_weak_password_hashing {
        fhirguard::auth::dangerous::weak_hasher(fhirguard::auth::HashParams {
            iterations: 1_000,
            ..fhirguard::auth::HashParams::default()
        })
        .map_err(|e| EhrError::msg(format!("password hasher: {e}")))?
        .with_max_iterations(fhirguard::auth::MAX_ENCODED_ITERATIONS)
    } else {
        setup::hasher()?
    };
    let secrets = setup::secrets(&dir, &hasher)?;
    let store =
        FhirStore::with_fixtures().map_err(|e| EhrError::msg(format!("fixtures: {e:?}")))?;
    let mut users = Vec::new();
    for stored in &secrets.users {
        let patient =
            PatientId::new(stored.patient_id.as_str()).map_err(|e| EhrError::msg(e.to_string()))?;
        let hash =
            PasswordHash::parse(&stored.password_hash).map_err(|e| EhrError::msg(e.to_string()))?;
        let totp = match &stored.totp_secret {
            Some(b32) => {
                let secret =
                    TotpSecret::from_base32(b32).map_err(|e| EhrError::msg(e.to_string()))?;
                Some(Mutex::new(
                    TotpCredential::new(secret, TotpParams::default(), None)
                        .map_err(|e| EhrError::msg(e.to_string()))?,
                ))
            }
            None => None,
        };
        let display_name = store
            .read("Patient", &stored.patient_id)
            .ok()
            .and_then(|p| {
                let name = &p["name"][0];
                let given = name["given"][0].as_str()?.to_owned();
                let family = name["family"].as_str()?.to_owned();
                Some(format!("{given} {family}"))
            })
            .unwrap_or_else(|| stored.username.clone());
        users.push(User {
            username: stored.username.clone(),
            patient,
            display_name,
            hash,
            totp,
        });
    }

    // --- signing keys ---
    let server_keys = setup::server_keys(&dir)?;
    let key_err = |e: fhirguard::token::KeyError| EhrError::msg(format!("signing key: {e}"));
    let access_key =
        SigningKey::from_pem(Algorithm::ES256, "at-es256-1", &server_keys.access_es256)
            .map_err(key_err)?;
    let id_key = SigningKey::from_pem(Algorithm::RS256, "id-rs256-1", &server_keys.id_rs256)
        .map_err(key_err)?;
    let keys = Arc::new(
        InMemoryKeySource::with_keys(time::Duration::hours(2), [access_key, id_key])
            .map_err(|e| EhrError::msg(format!("key source: {e}")))?,
    );

    // --- clients ---
    let loopback_redirect = "http://127.0.0.1:8765/callback".to_owned();
    let loopback_launch = Some("http://127.0.0.1:8765/launch".to_owned());
    let demo_clients = [
        DemoClient {
            id: "research-app",
            name: "S4S Research App",
            kind: "public",
            redirect_uris: vec![
                loopback_redirect.clone(),
                "https://research-app.example.org/callback".to_owned(),
            ],
            launch_uri: loopback_launch.clone(),
            scope: PATIENT_APP_SCOPE,
        },
        DemoClient {
            id: "clinic-companion",
            name: "Clinic Companion (confidential, shared secret)",
            kind: "confidential-symmetric",
            redirect_uris: vec![
                loopback_redirect.clone(),
                "https://clinic-companion.example.org/callback".to_owned(),
            ],
            launch_uri: loopback_launch.clone(),
            scope: PATIENT_APP_SCOPE,
        },
        DemoClient {
            id: "wellness-tracker",
            name: "Wellness Tracker (confidential, private_key_jwt)",
            kind: "confidential-asymmetric",
            redirect_uris: vec![
                loopback_redirect.clone(),
                "https://wellness-tracker.example.org/callback".to_owned(),
            ],
            launch_uri: loopback_launch.clone(),
            scope: PATIENT_APP_SCOPE,
        },
        DemoClient {
            id: "population-health",
            name: "Population Health Backend",
            kind: "backend",
            redirect_uris: Vec::new(),
            launch_uri: None,
            scope: BACKEND_SCOPE,
        },
        DemoClient {
            id: "hostile-name-app",
            name: "<script>alert(\"xss\")</script><img src=x onerror=alert(1)> & \"Friends'",
            kind: "public",
            redirect_uris: vec![loopback_redirect.clone()],
            launch_uri: loopback_launch.clone(),
            scope: PATIENT_APP_SCOPE,
        },
    ];
    let clients = Arc::new(InMemoryClientRegistry::new());
    let mut client_names = HashMap::new();
    let mut demo_clients_json = Vec::new();
    for c in &demo_clients {
        let id = ClientId::new(c.id).map_err(|e| EhrError::msg(e.to_string()))?;
        let scope_err =
            |e: fhirguard::scope::ScopeSetError| EhrError::msg(format!("client scope: {e}"));
        let allowed: ScopeSet = if c.kind == "backend" {
            BACKEND_SCOPE
        } else {
            PATIENT_APP_ALLOWED
        }
        .parse()
        .map_err(scope_err)?;
        let mut entry = json!({
            "client_id": c.id,
            "name": c.name,
            "type": c.kind,
            "redirect_uris": c.redirect_uris,
            "scope": c.scope,
        });
        if let Some(uri) = &c.launch_uri {
            entry["launch_uri"] = json!(uri);
        }
        let mut client = match c.kind {
            "public" => Client::public(id.clone(), c.redirect_uris.clone(), allowed),
            "confidential-symmetric" => {
                let hash = SecretHash::new(&ClientSecret::new(secrets.client_secret.clone()))
                    .ok_or_else(|| EhrError::msg("secret hashing failed"))?;
                entry["client_secret"] = json!(secrets.client_secret);
                entry["token_endpoint_auth_method"] = json!("client_secret_basic");
                Client::confidential(id.clone(), hash, c.redirect_uris.clone(), allowed)
            }
            _ => {
                let rsa = c.kind == "backend";
                let key_file = setup::client_key(&dir, c.id, rsa)?;
                let alg = if rsa {
                    Algorithm::RS384
                } else {
                    Algorithm::ES384
                };
                let kid = format!("{}-key-1", c.id);
                let signing =
                    SigningKey::from_pem(alg, kid.clone(), &key_file.pem).map_err(key_err)?;
                let public = signing.verifying_key().clone();
                entry["private_key_pem"] = json!(key_file.path);
                entry["alg"] = json!(alg.as_str());
                entry["kid"] = json!(kid);
                entry["jwks"] = json!({ "keys": [public.to_jwk()] });
                entry["token_endpoint_auth_method"] = json!("private_key_jwt");
                if c.kind == "backend" {
                    Client::backend(id.clone(), vec![public], None, allowed)
                } else {
                    Client::asymmetric(
                        id.clone(),
                        vec![public],
                        None,
                        c.redirect_uris.clone(),
                        allowed,
                    )
                }
            }
        };
        client.name = c.name.to_owned();
        client.launch_uri = c.launch_uri.clone();
        client_names.insert(id, c.name.to_owned());
        clients.register(client);
        demo_clients_json.push(entry);
    }

    // --- consent, authorization server ---
    // One SQLite file keeps the grants and the token store (codes, refresh families, revoked
    // tokens), so a restart keeps approvals and revocations.
    let consent = Arc::new(
        fhirguard::consent::SqliteStore::open(dir.join("consent.sqlite"))
            .map_err(|e| EhrError::msg(format!("consent store: {e}")))?,
    );
    let mut server_config = fhirguard::token::ServerConfig::new(issuer.clone(), fhir_base.clone());
    server_config.management_endpoint = Some(format!("{portal_url}/apps"));
    // The portal's launches and approvals carry `need_patient_banner` and `smart_style_url`.
    server_config.ui_context = true;
    // A patient portal: no practitioner users, so no user-level scopes (the default).
    let smart_style_url = format!("{portal_url}/smart-style.json");
    let server = Arc::new(
        AuthorizationServer::new(
            server_config,
            keys,
            Arc::clone(&clients) as Arc<dyn fhirguard::token::ClientRegistry>,
            Arc::clone(&consent) as Arc<dyn fhirguard::token::TokenStore>,
            Arc::clone(&consent) as Arc<dyn fhirguard::consent::GrantStatusSource>,
        )
        .map_err(|e| EhrError::msg(format!("authorization server: {e}")))?
        // The portal's "Open" button launches apps (EHR launch); one node, so in memory.
        .with_launch_store(Arc::new(fhirguard::token::InMemoryLaunchStore::new())),
    );

    // --- audit ---
    use base64::Engine as _;
    let audit_key = base64::engine::general_purpose::STANDARD
        .decode(&secrets.audit_key_b64)
        .map_err(|e| EhrError::msg(format!("audit key: {e}")))?;
    let audit_dir = dir.join("audit");
    let existing = if audit_dir.exists() {
        read_log_dir(&audit_dir, "audit").unwrap_or_default()
    } else {
        Vec::new()
    };
    let access = Arc::new(AccessIndex::from_records(existing.iter()));
    let (file_sink, recovery) = FileSink::open(FileSinkConfig::new(&audit_dir).prefix("audit"))?;
    let key_ring = KeyRing::new(
        KeyId::new("demo-1").map_err(|e| EhrError::msg(e.to_string()))?,
        &audit_key,
    )
    .map_err(|e| EhrError::msg(format!("audit key: {e}")))?;
    let audit = Arc::new(AuditLog::new(
        key_ring,
        recovery.head,
        Tee::new(file_sink, Arc::clone(&access)),
    ));
    if let Some(time) = Ehr::audit_time() {
        if let Some(event) = recovery.event(time) {
            let _ = audit.record(event);
        }
    }

    let headers = SecurityHeaders {
        html_csp: portal_csp(&[]),
        ..SecurityHeaders::default()
    };

    let registry = Arc::new(CategoryRegistry::default_registry());
    let categories_json: Vec<_> = registry
        .categories()
        .iter()
        .map(|c| json!({ "id": c.id.as_str(), "label": c.label, "description": c.description }))
        .collect();
    let users_json: Vec<_> = secrets
        .users
        .iter()
        .map(|u| {
            json!({
                "username": u.username,
                "password": u.password,
                "patient_id": u.patient_id,
                "fhir_user": format!("{fhir_base}/Patient/{}", u.patient_id),
                "totp_secret": u.totp_secret,
            })
        })
        .collect();

    let demo = json!({
        "base_url": base_url,
        "fhir_base_url": fhir_base,
        "issuer": issuer,
        "smart_configuration_url": format!("{fhir_base}/.well-known/smart-configuration"),
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "portal_url": portal_url,
        "connected_apps_url": format!("{portal_url}/apps"),
        "ca_cert": tls.ca_cert,
        "audit_dir": audit_dir,
        "clients": demo_clients_json,
        "users": users_json,
        "categories": categories_json,
    });
    let demo_json = dir.join("demo.json");
    setup::write_private(
        &demo_json,
        &serde_json::to_vec_pretty(&demo).map_err(|e| EhrError::msg(e.to_string()))?,
    )?;

    // --- the FHIR API behind the guard ---
    // Read-only (the default: a write is 405), and only what the store answers: no history,
    // no system-level search, so those are 405 too rather than a store error. The
    // CapabilityStatement says the same (read, vread, search-type).
    // Of the US Core default operations the store answers `$everything` only: `$docref` and
    // bulk `$export` are withdrawn, so the guard refuses them as unknown operations instead of
    // passing them to a handler that cannot answer.
    // The fixture store pages with `_offset` (R4 has no standard paging parameter): its
    // `next` links must pass the guard like the first page did.
    let mut sanitizer_config = SanitizerConfig::us_core("/fhir")
        .deny_interaction(InteractionCode::HistoryInstance)
        .deny_interaction(InteractionCode::HistoryType)
        .deny_interaction(InteractionCode::HistorySystem)
        .deny_interaction(InteractionCode::SearchSystem)
        .without_operation("docref")
        .without_operation("export");
    sanitizer_config
        .table_mut()
        .add_common("_offset", fhirguard::sanitize::ParamType::Number);
    // Browser apps may call the API from the origins of their registered redirect URIs.
    let origins: BTreeSet<String> = demo_clients
        .iter()
        .flat_map(|c| c.redirect_uris.iter())
        .filter_map(|u| origin_of(u))
        .collect();
    let cors = Arc::new(CorsPolicy::with_origins(origins));
    // What the guard accepts, for the CapabilityStatement (declare only what works).
    let declared_params = sanitizer_config.table_mut().clone();
    let guard = GuardConfig::builder()
        .fhir_base(fhir_base.clone())
        .sanitizer_config(sanitizer_config)
        .validator(Arc::clone(&server) as Arc<dyn fhirguard::middleware::TokenValidation>)
        .grants(Arc::clone(&consent) as Arc<dyn fhirguard::consent::GrantStatusSource>)
        .registry(Arc::clone(&registry))
        .audit(Arc::clone(&audit) as Arc<dyn fhirguard::middleware::AuditRecorder>)
        .clock(Arc::new(SystemClock))
        .rate_limiter(Arc::new(RateLimiter::new(
            demo_rate_policy(),
            MemoryRateLimitStore::default(),
        )))
        .enforce(EnforceConfig {
            read_only: true,
            ..EnforceConfig::default()
        })
        .public_paths(["metadata", ".well-known/smart-configuration"])
        .security_headers(headers.clone())
        // Backend services hold no patient grant: their pre-authorised system scopes bound them.
        .allow_grantless_tokens(true)
        .max_concurrency(256)
        .cors(Arc::clone(&cors))
        .build()
        .map_err(|e| EhrError::msg(format!("guard: {e}")))?;
    let fhir = fhir_api::guarded(
        Arc::new(store),
        Arc::clone(&server),
        fhir_base.clone(),
        guard,
        &declared_params,
    );

    let auth_headers = headers.clone();
    let state = Arc::new_cyclic(|ehr: &std::sync::Weak<Ehr>| Ehr {
        base_url: base_url.clone(),
        issuer,
        portal_url,
        smart_style_url,
        server: Arc::clone(&server),
        clients,
        registry,
        fhir,
        auth: SmartEndpoints::new(
            Arc::clone(&server),
            Arc::new(portal::PortalHost(ehr.clone())),
            Arc::new(SystemClock),
        )
        .with_audit(Arc::clone(&audit) as Arc<dyn fhirguard::middleware::AuditRecorder>)
        .with_rate_limiter(Arc::new(RateLimiter::new(
            demo_rate_policy(),
            MemoryRateLimitStore::default(),
        )))
        .with_cors(cors)
        .with_security_headers(auth_headers),
        consent,
        audit,
        access,
        users,
        hasher,
        throttle: LoginThrottle::new(
            demo_throttle_config(),
            SystemClock,
            MemoryThrottleStore::default(),
        ),
        risk: DefaultRiskPolicy::default(),
        sessions: Mutex::new(HashMap::new()),
        pending: Mutex::new(HashMap::new()),
        headers,
        client_names,
    });

    let timeout_headers = state.headers.clone();
    let request_timeout = config.request_timeout;
    let router = axum::Router::new()
        .fallback(dispatch)
        .with_state(Arc::clone(&state));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config));
    let (tx, mut rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut rx => break,
                accepted = listener.accept() => {
                    let Ok((tcp, peer)) = accepted else { continue };
                    let acceptor = acceptor.clone();
                    let router = router.clone();
                    let timeout_headers = timeout_headers.clone();
                    tokio::spawn(async move {
                        let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else {
                            return;
                        };
                        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                            req.extensions_mut().insert(Peer(peer));
                            req.extensions_mut().insert(PeerAddr::from(peer));
                            let fhir_api = is_fhir_path(req.uri().path());
                            // RFC 9112 §3.2: an HTTP/1.1 request without a Host, or with more
                            // than one, is answered 400 and not routed.
                            let hostless = req.version() == http::Version::HTTP_11
                                && req.headers().get_all(header::HOST).iter().count() != 1;
                            let answer = router.clone().oneshot(req.map(Body::new));
                            let headers = timeout_headers.clone();
                            // One deadline for the whole request, body included (the header
                            // timeout below does not cover a body that never arrives).
                            async move {
                                if hostless {
                                    return Ok(closing_error(&headers, fhir_api, StatusCode::BAD_REQUEST));
                                }
                                match tokio::time::timeout(request_timeout, answer).await {
                                    Ok(response) => response,
                                    Err(_) => Ok(closing_error(&headers, fhir_api, StatusCode::REQUEST_TIMEOUT)),
                                }
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(Duration::from_secs(15))
                            .max_buf_size(64 * 1024)
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                            .await;
                    });
                }
            }
        }
    });

    Ok(RunningEhr {
        addr,
        base_url,
        demo_json,
        demo,
        shutdown: Some(tx),
        task: Some(task),
        state,
    })
}

/// Largest request body read (FHIR `_search` forms, OAuth forms, portal forms).
const MAX_BODY: usize = 256 * 1024;

/// A request with its body read.
/// The recommended limits, except per source address: every client of the demo (the research
/// app, a test suite, the browser) connects from 127.0.0.1, so the per-address budgets are ten
/// times the recommended ones. Per-client, per-grant and per-patient limits are unchanged.
fn demo_rate_policy() -> RateLimitPolicy {
    let minute = Duration::from_secs(60);
    let per_address = [
        (EndpointClass::Token, 1_200),
        (EndpointClass::Authorize, 600),
        (EndpointClass::FhirRead, 24_000),
        (EndpointClass::Login, 300),
        (EndpointClass::TokenManagement, 6_000),
    ];
    per_address
        .into_iter()
        .fold(
            RateLimitPolicy::recommended(),
            |policy, (class, count)| match Limit::per(count, minute) {
                Ok(limit) => policy.with_limit(class, KeyKind::Address, limit),
                Err(_) => policy,
            },
        )
}

/// Account back-off as recommended (5 free failures, then doubling up to 15 minutes); the
/// per-address back-off allows ten times the failures, for the same one-address reason.
fn demo_throttle_config() -> ThrottleConfig {
    let mut config = ThrottleConfig::default();
    config.source.free_failures = 200;
    config
}

/// The guarded FHIR API: everything under `/fhir`.
fn is_fhir_path(path: &str) -> bool {
    path == "/fhir" || path.starts_with("/fhir/")
}

/// `408` for a request that did not arrive in time, or `400` for one without a single Host,
/// with the connection closed: an OperationOutcome on the FHIR API (a FHIR client parses
/// every error body as one), plain text elsewhere.
fn closing_error(headers: &SecurityHeaders, fhir_api: bool, status: StatusCode) -> Response<Body> {
    let timed_out = status == StatusCode::REQUEST_TIMEOUT;
    let mut r = if fhir_api {
        let mut r = fhirguard::fhir::problem_response(if timed_out {
            fhirguard::PublicProblem::RequestTimeout
        } else {
            fhirguard::PublicProblem::BadRequest
        });
        headers.apply(r.headers_mut(), ResponseKind::Phi);
        r
    } else {
        let text = if timed_out {
            "The request took too long to arrive.\n"
        } else {
            "The request could not be understood.\n"
        };
        let mut r = text_response(status, text);
        headers.apply(r.headers_mut(), ResponseKind::Public);
        r
    };
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r.map(Body::from)
}

pub(crate) type Req = Request<Vec<u8>>;
/// A response before conversion to axum's body.
pub(crate) type Resp = Response<Vec<u8>>;

async fn dispatch(State(ehr): State<Arc<Ehr>>, req: Request<Body>) -> Response<Body> {
    if is_fhir_path(req.uri().path()) {
        // The guard reads the body itself (up to the sanitizer's limit) and answers HEAD as
        // GET without the body (its handler runs a GET, the audit record says HEAD).
        let response = match ehr.fhir.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        return response.map(Body::new);
    }
    let (parts, body) = req.into_parts();
    let bytes = match fhirguard::middleware::read_body(body, &parts.headers, MAX_BODY).await {
        Ok(b) => b.to_vec(),
        Err(e) => {
            // The OAuth endpoints answer in OAuth's JSON (and audit it); the portal's forms
            // get a page.
            if let Some(r) = ehr.auth.body_refused(&parts, &e) {
                return r.map(Body::from);
            }
            let too_large = matches!(e, fhirguard::middleware::BodyReadError::TooLarge);
            if parts.uri.path().starts_with("/portal") {
                let (status, title, text) = if too_large {
                    (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "Request too large",
                        "The form sent was larger than this portal accepts.",
                    )
                } else {
                    (
                        StatusCode::BAD_REQUEST,
                        "Request not understood",
                        "The form sent could not be read. Please try again.",
                    )
                };
                return portal::problem_page(&ehr, status, "", title, text).map(Body::from);
            }
            let mut r = fhirguard::fhir::problem_response(if too_large {
                fhirguard::PublicProblem::PayloadTooLarge
            } else {
                fhirguard::PublicProblem::BadRequest
            });
            ehr.headers.apply(r.headers_mut(), ResponseKind::Phi);
            return r.map(Body::from);
        }
    };
    let req = Request::from_parts(parts, bytes);
    let path = req.uri().path().to_owned();
    let response = if path.starts_with("/auth/") {
        let head = req.method() == http::Method::HEAD;
        let req = req.map(axum::body::Bytes::from);
        let mut response = match ehr.auth.handle(&req) {
            Some(r) => r.map(Vec::from),
            None => {
                let mut r = text_response(StatusCode::NOT_FOUND, "Not found\n");
                ehr.headers.apply(r.headers_mut(), ResponseKind::Public);
                r
            }
        };
        // HEAD is GET without the body (RFC 9110 §9.3.2): the GET body's length stays in
        // `Content-Length` (§8.6: a HEAD answer may carry no other).
        if head {
            let len = response.body().len();
            response.body_mut().clear();
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        response
    } else if path == "/portal" || path.starts_with("/portal/") {
        portal::handle(&ehr, &req).await
    } else if path == "/" {
        // The root only points a browser at the portal; nothing is written there.
        let mut r = if req.method() == http::Method::GET || req.method() == http::Method::HEAD {
            redirect_see_other("/portal")
        } else {
            let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed\n");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        };
        ehr.headers.apply(r.headers_mut(), ResponseKind::Public);
        r
    } else {
        let mut r = text_response(StatusCode::NOT_FOUND, "Not found\n");
        ehr.headers.apply(r.headers_mut(), ResponseKind::Public);
        r
    };
    response.map(Body::from)
}

pub(crate) fn text_response(status: StatusCode, text: &str) -> Resp {
    let mut r = Response::new(text.as_bytes().to_vec());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub(crate) fn redirect_see_other(location: &str) -> Resp {
    let mut r = Response::new(Vec::new());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}
