//! An authorization server with one client of each kind, and helpers to drive it.

use std::sync::Arc;

use fhirguard::scope::ScopeSet;
use fhirguard::token::{
    Algorithm, Approval, AuthorizationServer, AuthorizeRequest, Client, ClientSecret,
    InMemoryClientRegistry, InMemoryKeySource, InMemoryTokenStore, MemoryGrantStatus, ServerConfig,
    SigningKey, TokenOutcome, pkce_s256,
};
use fhirguard::{ClientId, GrantId, PatientId};
use http::{Request, header};
use time::{Duration, OffsetDateTime};

use super::support::*;

pub const REDIRECT: &str = "https://app.example.org/callback";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-and-some-more-entropy";
pub const SCOPE: &str = "launch/patient openid fhirUser offline_access patient/*.rs";
pub const SECRET: &str = "s3cr3t-value-that-is-long-and-random-enough-0123456789";
pub const JWT_APP_JWKS: &str = "https://jwt-app.example.org/jwks.json";

#[allow(dead_code)]
pub struct Harness {
    pub server: AuthorizationServer,
    pub keys: Arc<InMemoryKeySource>,
    pub store: Arc<InMemoryTokenStore>,
    pub grants: Arc<MemoryGrantStatus>,
    pub clients: Arc<InMemoryClientRegistry>,
    pub rs384: SigningKey,
    pub es384: SigningKey,
}

pub fn scopes(s: &str) -> ScopeSet {
    s.parse().unwrap()
}

pub fn client_rs384() -> SigningKey {
    SigningKey::from_pem(Algorithm::RS384, "jwt-app-1", &key_pem("client_rs384.pem")).unwrap()
}

pub fn client_es384() -> SigningKey {
    SigningKey::from_pem(Algorithm::ES384, "backend-1", &key_pem("client_es384.pem")).unwrap()
}

pub fn harness() -> Harness {
    harness_with(|_| {})
}

/// [`harness`] with its server configuration changed by `configure`.
pub fn harness_with(configure: impl FnOnce(&mut ServerConfig)) -> Harness {
    let keys = key_source();
    let store = Arc::new(InMemoryTokenStore::new());
    let grants = grants_with([
        grant("g-public", "public-app", "355", START + Duration::days(365)),
        grant("g-secret", "secret-app", "355", START + Duration::days(365)),
        grant("g-jwt", "jwt-app", "85", START + Duration::days(365)),
        grant("g-other", "other-app", "355", START + Duration::days(365)),
    ]);
    let clients = Arc::new(InMemoryClientRegistry::new());
    let allowed = scopes("launch/patient openid fhirUser offline_access patient/*.rs");
    let id = |s: &str| ClientId::new(s).unwrap();
    clients.register(Client::public(
        id("public-app"),
        vec![REDIRECT.into()],
        allowed.clone(),
    ));
    clients.register(Client::public(
        id("other-app"),
        vec![REDIRECT.into()],
        allowed.clone(),
    ));
    clients.register(Client::confidential(
        id("secret-app"),
        fhirguard::token::SecretHash::new(&ClientSecret::new(SECRET)).unwrap(),
        vec![REDIRECT.into()],
        allowed.clone(),
    ));
    // A resource server: confidential, registered to introspect any client's tokens.
    let mut resource_server = Client::confidential(
        id("resource-server"),
        fhirguard::token::SecretHash::new(&ClientSecret::new(SECRET)).unwrap(),
        Vec::new(),
        ScopeSet::new(),
    );
    resource_server.authorization_code = false;
    resource_server.introspect_any_token = true;
    clients.register(resource_server);
    let rs384 = client_rs384();
    let es384 = client_es384();
    clients.register(Client::asymmetric(
        id("jwt-app"),
        vec![rs384.verifying_key().clone()],
        Some(JWT_APP_JWKS.into()),
        vec![REDIRECT.into()],
        allowed,
    ));
    clients.register(Client::backend(
        id("backend"),
        vec![es384.verifying_key().clone()],
        None,
        scopes("system/Observation.rs system/Patient.rs"),
    ));
    let mut config = ServerConfig::new(ISSUER, FHIR_BASE);
    configure(&mut config);
    let server = AuthorizationServer::new(
        config,
        keys.clone(),
        clients.clone(),
        store.clone(),
        grants.clone(),
    )
    .unwrap();
    Harness {
        server,
        keys,
        store,
        grants,
        clients,
        rs384,
        es384,
    }
}

pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The standard authorize parameters for `client`, with overrides (an empty value removes).
pub fn authorize_params(client: &str, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let challenge = pkce_s256(VERIFIER);
    let mut params: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", REDIRECT),
        ("scope", SCOPE),
        ("state", "st-123 &=?"),
        ("aud", FHIR_BASE),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("nonce", "n-0S6_WzA2Mj"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in overrides {
        params.retain(|(name, _)| name != k);
        if !v.is_empty() {
            params.push(((*k).to_owned(), (*v).to_owned()));
        }
    }
    params
}

pub fn get_authorize(params: &[(String, String)]) -> Request<Vec<u8>> {
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Request::get(format!("{ISSUER}/authorize?{}", query(&pairs)))
        .body(Vec::new())
        .unwrap()
}

pub fn post_form(url: &str, pairs: &[(&str, &str)]) -> Request<Vec<u8>> {
    Request::post(url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(query(pairs).into_bytes())
        .unwrap()
}

pub fn grant_for(client: &str) -> (&'static str, &'static str) {
    match client {
        "public-app" => ("g-public", "355"),
        "secret-app" => ("g-secret", "355"),
        "jwt-app" => ("g-jwt", "85"),
        _ => ("g-other", "355"),
    }
}

pub fn approval(client: &str, now: OffsetDateTime) -> Approval {
    let (grant, patient) = grant_for(client);
    let mut a = Approval::new(
        GrantId::new(grant).unwrap(),
        scopes("launch/patient openid fhirUser offline_access patient/*.rs"),
        format!("user-{patient}"),
        Some(PatientId::new(patient).unwrap()),
        now,
    );
    a.fhir_user = Some(format!("Patient/{patient}"));
    a.need_patient_banner = Some(false);
    a.smart_style_url = Some("https://ehr.example.org/smart-style.json".into());
    a
}

pub fn validated_request(h: &Harness, client: &str) -> AuthorizeRequest {
    h.server
        .authorize_request(
            &get_authorize(&authorize_params(client, &[])),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap()
}

/// Runs authorize + approve and returns the code.
pub fn code_for(h: &Harness, client: &str, now: OffsetDateTime) -> String {
    let request = validated_request(h, client);
    let redirect = h
        .server
        .approve(&request, approval(client, now), now)
        .unwrap();
    redirect_param(&redirect.location, "code").unwrap()
}

pub fn redirect_param(location: &str, name: &str) -> Option<String> {
    let query = location.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .unwrap()
                .into_owned()
        })
    })
}

pub fn token_url() -> String {
    format!("{ISSUER}/token")
}

pub fn exchange(h: &Harness, client: &str, code: &str, now: OffsetDateTime) -> TokenOutcome {
    let request = post_form(
        &token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", client),
        ],
    );
    h.server.token(&request, now)
}

pub fn refresh(
    h: &Harness,
    client: &str,
    token: &str,
    scope: Option<&str>,
    now: OffsetDateTime,
) -> TokenOutcome {
    let mut pairs = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", token),
        ("client_id", client),
    ];
    if let Some(scope) = scope {
        pairs.push(("scope", scope));
    }
    h.server.token(&post_form(&token_url(), &pairs), now)
}

/// A client assertion signed with `key`, from claims built by `edit`.
pub fn assertion(
    key: &SigningKey,
    client: &str,
    now: OffsetDateTime,
    jti: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> String {
    let mut claims = serde_json::json!({
        "iss": client,
        "sub": client,
        "aud": token_url(),
        "exp": (now + Duration::minutes(5)).unix_timestamp(),
        "jti": jti,
    });
    edit(&mut claims);
    key.sign_jwt("JWT", &claims).unwrap()
}

pub fn json(response: &http::Response<Vec<u8>>) -> serde_json::Value {
    serde_json::from_slice(response.body()).unwrap()
}
