//! Revocation and expiry cut off access tokens, refresh tokens and codes at the next request,
//! through the real authorization server and resource-server validator.

use std::path::PathBuf;
use std::sync::Arc;

use fhirguard::clock::{Clock, ManualClock};
use fhirguard::consent::{Approver, ConsentStore, Grant, MemoryConsentStore};
use fhirguard::scope::ScopeSet;
use fhirguard::token::{
    Algorithm, Approval, AuthorizationServer, Client, InMemoryClientRegistry, InMemoryKeySource,
    InMemoryTokenStore, ServerConfig, SigningKey, TokenRejection, TokenResponse, TokenStore,
    pkce_s256,
};
use fhirguard::{ClientId, PatientId};
use http::{Request, header};
use time::{Duration, OffsetDateTime};

use super::suite::{T0, request};

pub const ISSUER: &str = "https://ehr.example.org/auth";
pub const FHIR_BASE: &str = "https://ehr.example.org/fhir";
pub const REDIRECT: &str = "https://app.example.org/callback";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-and-some-more-entropy";
pub const SCOPE: &str = "launch/patient openid fhirUser offline_access patient/*.rs";

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn keys() -> Arc<InMemoryKeySource> {
    let pem = |name: &str| {
        std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/token")
                .join(name),
        )
        .unwrap()
    };
    let es = SigningKey::from_pem(Algorithm::ES256, "es-1", &pem("as_es256.pem")).unwrap();
    let rs = SigningKey::from_pem(Algorithm::RS256, "rs-1", &pem("as_rs256.pem")).unwrap();
    Arc::new(InMemoryKeySource::with_keys(Duration::hours(2), [es, rs]).unwrap())
}

/// An authorization server over `tokens` and `grants`, with the public client `app-a`.
pub fn server(
    tokens: Arc<dyn TokenStore>,
    grants: Arc<dyn fhirguard::consent::GrantStatusSource>,
) -> AuthorizationServer {
    let clients = Arc::new(InMemoryClientRegistry::new());
    clients.register(Client::public(
        ClientId::new("app-a").unwrap(),
        vec![REDIRECT.into()],
        SCOPE.parse::<ScopeSet>().unwrap(),
    ));
    AuthorizationServer::new(
        ServerConfig::new(ISSUER, FHIR_BASE),
        keys(),
        clients,
        tokens,
        grants,
    )
    .unwrap()
}

/// Authorize + approve under `grant`: the code.
pub fn code(server: &AuthorizationServer, grant: &Grant, now: OffsetDateTime) -> String {
    let challenge = pkce_s256(VERIFIER);
    let q = query(&[
        ("response_type", "code"),
        ("client_id", "app-a"),
        ("redirect_uri", REDIRECT),
        ("scope", SCOPE),
        ("state", "st-1"),
        ("aud", FHIR_BASE),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    let req = Request::get(format!("{ISSUER}/authorize?{q}"))
        .body(Vec::new())
        .unwrap();
    let authorize = server
        .authorize_request(&req, time::OffsetDateTime::now_utc())
        .unwrap();
    let approval = Approval::new(
        grant.id.clone(),
        SCOPE.parse().unwrap(),
        "user-355",
        Some(PatientId::new("355").unwrap()),
        now,
    );
    let redirect = server.approve(&authorize, approval, now).unwrap();
    let query = redirect.location.split_once('?').unwrap().1;
    let code = query
        .split('&')
        .find_map(|p| p.strip_prefix("code="))
        .unwrap();
    percent_encoding::percent_decode_str(code)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

fn post(pairs: &[(&str, &str)]) -> Request<Vec<u8>> {
    Request::post(format!("{ISSUER}/token"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(query(pairs).into_bytes())
        .unwrap()
}

pub fn exchange(
    server: &AuthorizationServer,
    code: &str,
    now: OffsetDateTime,
) -> Result<TokenResponse, fhirguard::token::TokenError> {
    server.token(
        &post(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", "app-a"),
        ]),
        now,
    )
}

pub fn refresh(
    server: &AuthorizationServer,
    token: &str,
    now: OffsetDateTime,
) -> Result<TokenResponse, fhirguard::token::TokenError> {
    server.token(
        &post(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", "app-a"),
        ]),
        now,
    )
}

/// The cut-off scenario against any consent store + token store pair.
pub fn cutoff_flow(consent: Arc<dyn ConsentStore>, tokens: Arc<dyn TokenStore>) {
    let grants: Arc<dyn fhirguard::consent::GrantStatusSource> = consent.clone();
    let server = server(tokens, grants);
    let clock = ManualClock::new(T0);
    let now = clock.now();

    // Revocation.
    let grant = consent.approve(request("355", "app-a", now), now).unwrap();
    let first = exchange(&server, &code(&server, &grant, now), now).unwrap();
    let unused = code(&server, &grant, now);
    let refresh_token = first.refresh_token.clone().unwrap();
    let validated = server
        .validator()
        .validate(&first.access_token, now)
        .unwrap();
    assert_eq!(validated.grant.unwrap().grant_id, grant.id);
    let rotated = refresh(&server, &refresh_token, now).unwrap();

    clock.advance(Duration::seconds(5));
    let now = clock.now();
    consent
        .revoke(&grant.id, Approver::Patient, "no more", now)
        .unwrap();
    for token in [&first.access_token, &rotated.access_token] {
        // The SQL stores also revoke the grant's refresh families in the revoking
        // transaction, so their validator may say so first.
        let rejection = server.validator().validate(token, now).unwrap_err();
        assert!(
            matches!(
                rejection,
                TokenRejection::GrantRevoked | TokenRejection::Revoked
            ),
            "{rejection:?}"
        );
    }
    assert!(refresh(&server, rotated.refresh_token.as_deref().unwrap(), now).is_err());
    assert!(exchange(&server, &unused, now).is_err());

    // Expiry exactly one year after approval (with a moved clock).
    let start = clock.now();
    let grant = consent
        .approve(request("355", "app-a", start), start)
        .unwrap();
    assert_eq!(grant.ends_at, fhirguard::consent::one_year_after(start));
    clock.set(grant.ends_at - Duration::minutes(2));
    let now = clock.now();
    let late = exchange(&server, &code(&server, &grant, now), now).unwrap();
    assert!(server.validator().validate(&late.access_token, now).is_ok());
    let pending = code(&server, &grant, now);
    clock.set(grant.ends_at);
    let now = clock.now();
    let rejection = server
        .validator()
        .validate(&late.access_token, now)
        .unwrap_err();
    assert!(
        matches!(
            rejection,
            TokenRejection::GrantExpired | TokenRejection::Expired
        ),
        "{rejection:?}"
    );
    assert!(refresh(&server, late.refresh_token.as_deref().unwrap(), now).is_err());
    assert!(exchange(&server, &pending, now).is_err());
}

#[test]
fn memory_stores_cut_off_every_token() {
    cutoff_flow(
        Arc::new(MemoryConsentStore::new()),
        Arc::new(InMemoryTokenStore::new()),
    );
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_store_cuts_off_every_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(fhirguard::consent::SqliteStore::open(dir.path().join("c.db")).unwrap());
    cutoff_flow(store.clone(), store);
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_store_cuts_off_every_token() {
    let store = Arc::new(super::pg::store(&super::pg::fresh_schema()));
    cutoff_flow(store.clone(), store);
}
