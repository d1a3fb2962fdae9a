//! The research app, written the way any SMART app developer would write it with the `oauth2`
//! and `openidconnect` crates: SMART discovery, a standalone launch (authorization code + PKCE
//! S256 + state + nonce + `aud`), the code exchange, the id_token verified against the JWKS,
//! refresh, then a download of what the patient shared.
//!
//! Nothing here knows about fhirguard: the app only speaks HTTPS to the EHR.

use std::collections::BTreeSet;

use http::{HeaderValue, Method, Request, StatusCode, header};
use oauth2::TokenResponse as _;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::url::Url;
use openidconnect::{
    AccessToken, AdditionalClaims, AuthorizationCode, ClientId, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, ExtraTokenFields, IdTokenFields, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, StandardErrorResponse,
    StandardTokenResponse, TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::HttpsClient;

/// Why the app stopped. Never carries a token.
#[derive(Debug)]
pub struct AppError(pub String);

impl AppError {
    pub(crate) fn new(m: impl Into<String>) -> Self {
        Self(m.into())
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AppError {}

/// SMART's extra token-response fields (`patient`, `need_patient_banner`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SmartTokenFields {
    /// The patient in context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// Whether the app should show a patient banner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub need_patient_banner: Option<bool>,
}
impl ExtraTokenFields for SmartTokenFields {}

/// SMART's `fhirUser` id_token claim.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SmartClaims {
    /// The signed-in user as a FHIR resource URL.
    #[serde(rename = "fhirUser", default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
}
impl AdditionalClaims for SmartClaims {}

type SmartIdTokenFields = IdTokenFields<
    SmartClaims,
    SmartTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
/// A token response with the SMART fields.
pub type SmartTokenResponse = StandardTokenResponse<SmartIdTokenFields, CoreTokenType>;

type OidcClient = openidconnect::Client<
    SmartClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    SmartTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

type RefreshClient = oauth2::basic::BasicClient<
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// How the app is registered at the EHR.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The FHIR base URL (also the `aud` of the authorization request).
    pub fhir_base: String,
    /// The app's public client id.
    pub client_id: String,
    /// The registered loopback redirect URI.
    pub redirect_uri: String,
    /// The scopes the app asks for (space-separated).
    pub scope: String,
}

/// What SMART discovery said (the parts the app relies on).
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The authorization server's issuer.
    pub issuer: String,
    /// Where the patient is sent to approve.
    pub authorization_endpoint: String,
    /// Where codes and refresh tokens are exchanged.
    pub token_endpoint: String,
    /// SMART capabilities advertised.
    pub capabilities: Vec<String>,
    /// PKCE methods advertised.
    pub code_challenge_methods: Vec<String>,
    /// The JWKS URL (from the OpenID configuration).
    pub jwks_uri: String,
    /// Number of keys in the JWKS.
    pub jwks_keys: usize,
}

/// An authorization request waiting for the patient: the URL to open and what the app must
/// remember to check the answer.
pub struct PendingLaunch {
    /// The authorize URL to open in a browser.
    pub url: Url,
    state: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
}

impl std::fmt::Debug for PendingLaunch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLaunch").finish_non_exhaustive()
    }
}

/// The app's tokens after a successful launch. Tokens are never printed.
pub struct Session {
    access: AccessToken,
    refresh: Option<RefreshToken>,
    /// The scopes granted (what the patient approved).
    pub scopes: Vec<String>,
    /// The patient in context.
    pub patient: String,
    /// The id_token's subject (verified).
    pub subject: String,
    /// The id_token's `fhirUser` (verified).
    pub fhir_user: Option<String>,
    /// The id_token's signing algorithm.
    pub id_token_alg: String,
    /// Access-token lifetime in seconds, as announced.
    pub expires_in: Option<u64>,
    /// How many times the tokens were refreshed.
    pub refreshes: u32,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("access", &"<redacted>")
            .field("refresh", &self.refresh.as_ref().map(|_| "<redacted>"))
            .field("scopes", &self.scopes)
            .field("patient", &self.patient)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Whether the app holds a refresh token.
    pub fn has_refresh_token(&self) -> bool {
        self.refresh.is_some()
    }
}

/// A FHIR response as the app saw it.
#[derive(Debug, Clone)]
pub struct FhirResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// The JSON body (`Null` when not JSON).
    pub body: Value,
    /// The `WWW-Authenticate` header, if any.
    pub www_authenticate: Option<String>,
}

impl FhirResponse {
    /// The resources of a searchset Bundle with `search.mode = match` (or every resource when
    /// the body is a single resource).
    pub fn resources(&self) -> Vec<&Value> {
        if self.body["resourceType"] == "Bundle" {
            self.body["entry"]
                .as_array()
                .map(|entries| {
                    entries
                        .iter()
                        .filter(|e| {
                            e["search"]["mode"] != "include" && e["search"]["mode"] != "outcome"
                        })
                        .map(|e| &e["resource"])
                        .filter(|r| r["resourceType"] != "OperationOutcome")
                        .collect()
                })
                .unwrap_or_default()
        } else if self.status.is_success() && self.body["resourceType"].is_string() {
            vec![&self.body]
        } else {
            Vec::new()
        }
    }
}

/// What the app downloaded for one granted scope.
#[derive(Debug, Clone)]
pub struct Download {
    /// The granted scope this search came from.
    pub scope: String,
    /// The FHIR resource type.
    pub resource_type: String,
    /// The search narrowing from the scope (`category=...`), if any.
    pub filter: Option<(String, String)>,
    /// Resources downloaded (all pages).
    pub count: usize,
    /// A few human-readable names of what came back.
    pub examples: Vec<String>,
    /// The resources themselves (for checks).
    pub resources: Vec<Value>,
    /// HTTP status of the first page.
    pub status: StatusCode,
    /// Pages read.
    pub pages: usize,
    /// The status of a later page that failed (the download stopped there).
    pub truncated: Option<StatusCode>,
    /// A type the app reads only when another resource refers to it (not searched).
    pub reference_only: bool,
}

/// Types outside the patient compartment (or searched through `_revinclude`): the app reads
/// them when a downloaded resource refers to them, it does not search them by patient.
pub const REFERENCE_ONLY: [&str; 6] = [
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Medication",
    "Provenance",
];

/// The research app.
pub struct ResearchApp {
    http: HttpsClient,
    config: AppConfig,
    /// What discovery found.
    pub discovery: Discovery,
    oidc: OidcClient,
    refresher: RefreshClient,
}

impl ResearchApp {
    /// SMART discovery (`{fhir}/.well-known/smart-configuration`), then the OpenID
    /// configuration and the JWKS of the issuer it names.
    pub async fn discover(http: HttpsClient, config: AppConfig) -> Result<Self, AppError> {
        let url = format!(
            "{}/.well-known/smart-configuration",
            config.fhir_base.trim_end_matches('/')
        );
        let response = get_json(&http, &url, None).await?;
        if !response.status.is_success() {
            return Err(AppError::new(format!(
                "SMART discovery: {} answered {}",
                url, response.status
            )));
        }
        let smart = response.body;
        let text = |k: &str| -> Result<String, AppError> {
            smart[k]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| AppError::new(format!("SMART configuration has no {k}")))
        };
        let list = |k: &str| -> Vec<String> {
            smart[k]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let issuer = text("issuer")?;
        let authorization_endpoint = text("authorization_endpoint")?;
        let token_endpoint = text("token_endpoint")?;
        let capabilities = list("capabilities");
        let code_challenge_methods = list("code_challenge_methods_supported");
        if !code_challenge_methods.iter().any(|m| m == "S256") {
            return Err(AppError::new("the server does not offer PKCE S256"));
        }

        let issuer_url =
            IssuerUrl::new(issuer.clone()).map_err(|e| AppError::new(format!("issuer: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer_url, &http)
            .await
            .map_err(|e| AppError::new(format!("OpenID discovery: {}", error_chain(&e))))?;
        if metadata.authorization_endpoint().as_str() != authorization_endpoint {
            return Err(AppError::new(
                "SMART and OpenID configurations name different authorization endpoints",
            ));
        }
        let jwks_uri = metadata.jwks_uri().url().to_string();
        let jwks_keys = metadata.jwks().keys().len();
        let redirect = RedirectUrl::new(config.redirect_uri.clone())
            .map_err(|e| AppError::new(format!("redirect URI: {e}")))?;
        let oidc: OidcClient = openidconnect::Client::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            None,
        )
        .set_redirect_uri(redirect.clone());
        let refresher = oauth2::basic::BasicClient::new(ClientId::new(config.client_id.clone()))
            .set_token_uri(
                oauth2::TokenUrl::new(token_endpoint.clone())
                    .map_err(|e| AppError::new(format!("token endpoint: {e}")))?,
            )
            .set_redirect_uri(redirect);
        Ok(Self {
            http,
            config,
            discovery: Discovery {
                issuer,
                authorization_endpoint,
                token_endpoint,
                capabilities,
                code_challenge_methods,
                jwks_uri,
                jwks_keys,
            },
            oidc,
            refresher,
        })
    }

    /// The app's configuration.
    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// The standalone launch: an authorize URL with PKCE S256, state, nonce and `aud`.
    pub fn start_launch(&self) -> PendingLaunch {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self
            .oidc
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge)
            .add_extra_param("aud", self.config.fhir_base.clone());
        for scope in self.config.scope.split_whitespace() {
            if scope != "openid" {
                request = request.add_scope(Scope::new(scope.to_owned()));
            }
        }
        let (url, state, nonce) = request.url();
        PendingLaunch {
            url,
            state,
            nonce,
            verifier,
        }
    }

    /// Completes the launch from the URL the browser was redirected to: checks `state`,
    /// exchanges the code (with the PKCE verifier) and verifies the id_token (signature
    /// against the JWKS, issuer, audience, expiry, nonce).
    pub async fn finish_launch(
        &self,
        launch: PendingLaunch,
        callback_url: &str,
    ) -> Result<Session, AppError> {
        let url =
            Url::parse(callback_url).map_err(|e| AppError::new(format!("callback URL: {e}")))?;
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        if param("state").as_deref() != Some(launch.state.secret().as_str()) {
            return Err(AppError::new(
                "the callback's state does not match: possible CSRF, refusing",
            ));
        }
        if let Some(error) = param("error") {
            return Err(AppError::new(format!(
                "the authorization was refused: {error}"
            )));
        }
        let code = param("code").ok_or_else(|| AppError::new("the callback has no code"))?;
        let token = self
            .oidc
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| AppError::new(format!("token endpoint: {e}")))?
            .set_pkce_verifier(launch.verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| AppError::new(format!("code exchange: {}", error_chain(&e))))?;
        let id_token = token
            .id_token()
            .ok_or_else(|| AppError::new("no id_token although openid was asked"))?;
        let verifier = self.oidc.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &launch.nonce)
            .map_err(|e| AppError::new(format!("id_token rejected: {e}")))?;
        let id_token_alg = id_token
            .signing_alg()
            .ok()
            .and_then(|a| serde_json::to_value(a).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".to_owned());
        let subject = claims.subject().to_string();
        let fhir_user = claims.additional_claims().fhir_user.clone();
        let patient = token
            .extra_fields()
            .extra_fields()
            .patient
            .clone()
            .ok_or_else(|| AppError::new("no patient in context"))?;
        Ok(Session {
            access: token.access_token().clone(),
            refresh: token.refresh_token().cloned(),
            scopes: scopes_of(token.scopes(), &self.config.scope),
            patient,
            subject,
            fhir_user,
            id_token_alg,
            expires_in: token.expires_in().map(|d| d.as_secs()),
            refreshes: 0,
        })
    }

    /// Exchanges the refresh token for new tokens (the server rotates the refresh token).
    pub async fn refresh(&self, session: &mut Session) -> Result<(), AppError> {
        let refresh = session
            .refresh
            .clone()
            .ok_or_else(|| AppError::new("no refresh token (offline_access not granted)"))?;
        let token = self
            .refresher
            .exchange_refresh_token(&refresh)
            .request_async(&self.http)
            .await
            .map_err(|e| AppError::new(format!("refresh: {}", error_chain(&e))))?;
        session.access = token.access_token().clone();
        if let Some(r) = token.refresh_token() {
            session.refresh = Some(r.clone());
        }
        if token.scopes().is_some() {
            session.scopes = scopes_of(token.scopes(), &session.scopes.join(" "));
        }
        session.expires_in = token.expires_in().map(|d| d.as_secs());
        session.refreshes += 1;
        Ok(())
    }

    /// Tries a refresh with a refresh token the app no longer should use (to show rotation).
    pub async fn refresh_with_stale(&self, stale: &RefreshToken) -> Result<(), AppError> {
        self.refresher
            .exchange_refresh_token(stale)
            .request_async(&self.http)
            .await
            .map(|_| ())
            .map_err(|e| AppError::new(error_chain(&e)))
    }

    /// The current refresh token (to keep a copy for the rotation check).
    pub fn current_refresh(session: &Session) -> Option<RefreshToken> {
        session.refresh.clone()
    }

    /// `GET {fhir}/{path}` with the session's access token.
    pub async fn get(&self, session: &Session, path: &str) -> Result<FhirResponse, AppError> {
        let url = if path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}/{}", self.config.fhir_base.trim_end_matches('/'), path)
        };
        get_json(&self.http, &url, Some(&session.access)).await
    }

    /// Downloads everything the session's scopes allow: one search per granted
    /// `patient/<Type>.rs[?param=value]` scope, following `next` links.
    pub async fn download(&self, session: &Session) -> Result<Vec<Download>, AppError> {
        let mut out = Vec::new();
        for scope in &session.scopes {
            let Some(rest) = scope.strip_prefix("patient/") else {
                continue;
            };
            let (head, query) = match rest.split_once('?') {
                Some((h, q)) => (h, Some(q)),
                None => (rest, None),
            };
            let Some((resource_type, perms)) = head.split_once('.') else {
                continue;
            };
            let readable = perms.contains('s') || perms == "read" || perms == "*";
            if resource_type == "*" || !readable {
                continue;
            }
            if REFERENCE_ONLY.contains(&resource_type) {
                out.push(Download {
                    scope: scope.clone(),
                    resource_type: resource_type.to_owned(),
                    filter: None,
                    count: 0,
                    examples: Vec::new(),
                    resources: Vec::new(),
                    status: StatusCode::OK,
                    pages: 0,
                    truncated: None,
                    reference_only: true,
                });
                continue;
            }
            let filter = query.and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .next()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
            });
            let mut url = format!(
                "{}/{resource_type}?patient={}",
                self.config.fhir_base.trim_end_matches('/'),
                enc(&session.patient)
            );
            if resource_type == "Patient" {
                url = format!(
                    "{}/Patient?_id={}",
                    self.config.fhir_base.trim_end_matches('/'),
                    enc(&session.patient)
                );
            }
            if let Some((k, v)) = &filter {
                url.push_str(&format!("&{}={}", enc(k), enc(v)));
            }
            let mut resources = Vec::new();
            let mut next = Some(url);
            let mut status = None;
            let mut pages = 0;
            let mut truncated = None;
            while let Some(page_url) = next.take() {
                let page = get_json(&self.http, &page_url, Some(&session.access)).await?;
                if status.is_some() && !page.status.is_success() {
                    truncated = Some(page.status);
                    break;
                }
                status.get_or_insert(page.status);
                if !page.status.is_success() {
                    break;
                }
                resources.extend(page.resources().into_iter().cloned());
                pages += 1;
                if pages >= 50 {
                    break;
                }
                next = page.body["link"].as_array().and_then(|links| {
                    links
                        .iter()
                        .find(|l| l["relation"] == "next")
                        .and_then(|l| l["url"].as_str().map(str::to_owned))
                });
            }
            let mut names = BTreeSet::new();
            for r in &resources {
                if let Some(n) = display_name(r) {
                    names.insert(n);
                }
            }
            out.push(Download {
                scope: scope.clone(),
                resource_type: resource_type.to_owned(),
                filter,
                count: resources.len(),
                examples: names.into_iter().take(3).collect(),
                resources,
                status: status.unwrap_or(StatusCode::OK),
                pages,
                truncated,
                reference_only: false,
            });
        }
        Ok(out)
    }
}

fn scopes_of(granted: Option<&Vec<Scope>>, asked: &str) -> Vec<String> {
    match granted {
        Some(s) => s.iter().map(|s| s.to_string()).collect(),
        // RFC 6749 §5.1: no scope in the response means "as requested".
        None => asked.split_whitespace().map(str::to_owned).collect(),
    }
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A short human name for a resource (its code's display or text).
pub fn display_name(r: &Value) -> Option<String> {
    let code = &r["code"];
    code["text"]
        .as_str()
        .or_else(|| code["coding"][0]["display"].as_str())
        .map(str::to_owned)
}

/// The error and its sources, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

async fn get_json(
    http: &HttpsClient,
    url: &str,
    token: Option<&AccessToken>,
) -> Result<FhirResponse, AppError> {
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(url)
        .header(header::ACCEPT, "application/fhir+json, application/json");
    if let Some(t) = token {
        let value = HeaderValue::from_str(&format!("Bearer {}", t.secret()))
            .map_err(|_| AppError::new("access token is not a valid header value"))?;
        builder = builder.header(header::AUTHORIZATION, value);
    }
    let request = builder
        .body(Vec::new())
        .map_err(|e| AppError::new(format!("request to {url}: {e}")))?;
    let response = http
        .send(request)
        .await
        .map_err(|e| AppError::new(format!("GET {url}: {e}")))?;
    let status = response.status();
    let www_authenticate = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
    Ok(FhirResponse {
        status,
        body,
        www_authenticate,
    })
}
