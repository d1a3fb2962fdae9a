//! The authorization server's configuration, validated once when the server is built.

use time::Duration;

use super::jose::Algorithm;

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An endpoint or base URL is not an absolute `https://` URL (or `http://localhost…`).
    #[error("{0} must be an absolute https URL")]
    NotAbsolute(&'static str),
    /// The issuer or FHIR base URL ends with `/`, has a query or a fragment.
    #[error("{0} must not end with '/' or carry a query or fragment")]
    UnnormalisedUrl(&'static str),
    /// Access tokens may live at most one hour.
    #[error("access tokens may live at most one hour")]
    AccessTokenTooLong,
    /// Backend-services tokens may live at most 300 seconds.
    #[error("backend-services tokens may live at most 300 seconds")]
    BackendTokenTooLong,
    /// Authorization codes may live at most 60 seconds.
    #[error("authorization codes may live at most 60 seconds")]
    CodeTooLong,
    /// A lifetime is zero or negative.
    #[error("lifetimes must be positive")]
    NonPositiveLifetime,
    /// The key source has no current key for a configured algorithm.
    #[error("no signing key for {0}")]
    MissingKey(Algorithm),
    /// `ehr_launch` was set without a launch-handle store.
    #[error("the EHR launch needs a launch store: use AuthorizationServer::with_launch_store")]
    EhrLaunchWithoutStore,
}

/// The authorization server's configuration.
///
/// Endpoint URLs default to `{issuer}/authorize`, `{issuer}/token`, `{issuer}/introspect`,
/// `{issuer}/revoke` and `{issuer}/.well-known/jwks.json`; change the fields to mount them
/// elsewhere. Every URL published in discovery is absolute.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The issuer (`iss` of every token and id_token), without trailing `/`.
    pub issuer: String,
    /// The FHIR base URL this server protects: the only accepted `aud`.
    pub fhir_base_url: String,
    /// Authorization endpoint.
    pub authorization_endpoint: String,
    /// Token endpoint (also the `aud` of client assertions).
    pub token_endpoint: String,
    /// Introspection endpoint.
    pub introspection_endpoint: String,
    /// Revocation endpoint.
    pub revocation_endpoint: String,
    /// JWKS document URL.
    pub jwks_uri: String,
    /// Where patients manage their grants (published as `management_endpoint`), if any.
    pub management_endpoint: Option<String>,
    /// Access-token lifetime (≤ 1 h; default 1 h). Never past the grant's end.
    pub access_token_ttl: Duration,
    /// Backend-services token lifetime (≤ 300 s; default 300 s).
    pub backend_token_ttl: Duration,
    /// Authorization-code lifetime (≤ 60 s; default 60 s).
    pub code_ttl: Duration,
    /// Refresh-token lifetime from each rotation (default 90 days, as ONC expects ≥ 3 months);
    /// never past the grant's end.
    pub refresh_token_ttl: Duration,
    /// id_token lifetime (default 1 h).
    pub id_token_ttl: Duration,
    /// Access-token signing algorithm (default ES256).
    pub access_token_alg: Algorithm,
    /// id_token signing algorithm (default RS256, which SMART requires support for).
    /// `None` disables OpenID Connect (no `sso-openid-connect`, no id_token).
    pub id_token_alg: Option<Algorithm>,
    /// Algorithms accepted in client assertions (default RS384, ES384, RS256, ES256).
    pub assertion_algs: Vec<Algorithm>,
    /// Clock-skew allowance for assertions (default 30 s).
    pub leeway: Duration,
    /// Whether the EHR launch (`launch-ehr`, `context-ehr-*`) is enabled. Set by
    /// [`AuthorizationServer::with_launch_store`](super::AuthorizationServer::with_launch_store),
    /// which supplies the handle store the launch needs; `AuthorizationServer::new` refuses a
    /// configuration that sets it by hand.
    pub ehr_launch: bool,
    /// Advertise `context-ehr-encounter`: the host's launches put an encounter in context
    /// (`LaunchContext::encounter`). Only with the EHR launch enabled; default `false`.
    pub ehr_encounter_context: bool,
    /// Advertise `context-banner` / `context-style`.
    pub ui_context: bool,
    /// Scopes advertised in `scopes_supported`.
    pub scopes_supported: Vec<String>,
    /// Advertise public clients (`client-public`).
    pub public_clients: bool,
    /// Advertise shared-secret clients (`client-confidential-symmetric`,
    /// `client_secret_basic`).
    pub symmetric_clients: bool,
    /// Accept, and advertise, `client_secret_post`: shared-secret clients registered with
    /// [`SecretMethod::Post`](crate::token::SecretMethod::Post) send their secret in the form
    /// body. Default `false`, and such a client is then refused (`invalid_client`,
    /// [`ClientAuthFailure::SecretPostDisabled`](crate::token::ClientAuthFailure::SecretPostDisabled)):
    /// SMART's symmetric profile authenticates with HTTP Basic, and RFC 6749 §2.3.1 does not
    /// recommend secrets in a request body, which is more often logged than a header.
    pub secret_post_clients: bool,
    /// Advertise `private_key_jwt` clients (`client-confidential-asymmetric`).
    pub asymmetric_clients: bool,
    /// Advertise backend services (`client_credentials`).
    pub backend_services: bool,
    /// Advertise `permission-v1` (v1 scopes are accepted and kept as written).
    pub permission_v1: bool,
    /// Advertise `permission-user`: the host has users other than patients (practitioners)
    /// whose approvals grant `user/` scopes, and a policy of its own for what each may see.
    /// Default `false`, with no `user/*.rs` in `scopes_supported`: fhirguard's consent grants
    /// are patients' requests, and the guard confines every token of a grant to its patient
    /// whatever the scope's context letter, so a `user/` scope there means no more than
    /// `patient/`.
    pub permission_user: bool,
}

fn valid_url(url: &str) -> bool {
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        // Plain http only for loopback development servers.
        if !(rest.starts_with("localhost") || rest.starts_with("127.0.0.1")) {
            return false;
        }
        rest
    } else {
        return false;
    };
    !rest.is_empty()
        && !rest.starts_with('/')
        && url.bytes().all(|b| b.is_ascii_graphic())
        && !url.contains('#')
}

impl ServerConfig {
    /// Defaults for `issuer` and `fhir_base_url` (see the type's documentation).
    pub fn new(issuer: impl Into<String>, fhir_base_url: impl Into<String>) -> Self {
        let issuer: String = issuer.into();
        Self {
            authorization_endpoint: format!("{issuer}/authorize"),
            token_endpoint: format!("{issuer}/token"),
            introspection_endpoint: format!("{issuer}/introspect"),
            revocation_endpoint: format!("{issuer}/revoke"),
            jwks_uri: format!("{issuer}/.well-known/jwks.json"),
            management_endpoint: None,
            issuer,
            fhir_base_url: fhir_base_url.into(),
            access_token_ttl: Duration::hours(1),
            backend_token_ttl: Duration::seconds(300),
            code_ttl: Duration::seconds(60),
            refresh_token_ttl: Duration::days(90),
            id_token_ttl: Duration::hours(1),
            access_token_alg: Algorithm::ES256,
            id_token_alg: Some(Algorithm::RS256),
            assertion_algs: vec![
                Algorithm::RS384,
                Algorithm::ES384,
                Algorithm::RS256,
                Algorithm::ES256,
            ],
            leeway: Duration::seconds(30),
            ehr_launch: false,
            ehr_encounter_context: false,
            ui_context: false,
            scopes_supported: [
                "openid",
                "fhirUser",
                "launch",
                "launch/patient",
                "offline_access",
                "patient/*.rs",
                "system/*.rs",
            ]
            .into_iter()
            .map(str::to_owned)
            .collect(),
            public_clients: true,
            symmetric_clients: true,
            secret_post_clients: false,
            asymmetric_clients: true,
            backend_services: true,
            permission_v1: true,
            permission_user: false,
        }
    }

    /// Checks every rule listed in [`ConfigError`] except key presence.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let urls: [(&'static str, &str); 7] = [
            ("issuer", &self.issuer),
            ("fhir_base_url", &self.fhir_base_url),
            ("authorization_endpoint", &self.authorization_endpoint),
            ("token_endpoint", &self.token_endpoint),
            ("introspection_endpoint", &self.introspection_endpoint),
            ("revocation_endpoint", &self.revocation_endpoint),
            ("jwks_uri", &self.jwks_uri),
        ];
        for (name, url) in urls {
            if !valid_url(url) {
                return Err(ConfigError::NotAbsolute(name));
            }
        }
        if let Some(url) = &self.management_endpoint {
            if !valid_url(url) {
                return Err(ConfigError::NotAbsolute("management_endpoint"));
            }
        }
        for (name, url) in [
            ("issuer", &self.issuer),
            ("fhir_base_url", &self.fhir_base_url),
        ] {
            if url.ends_with('/') || url.contains('?') {
                return Err(ConfigError::UnnormalisedUrl(name));
            }
        }
        for ttl in [
            self.access_token_ttl,
            self.backend_token_ttl,
            self.code_ttl,
            self.refresh_token_ttl,
            self.id_token_ttl,
        ] {
            if ttl <= Duration::ZERO {
                return Err(ConfigError::NonPositiveLifetime);
            }
        }
        if self.access_token_ttl > Duration::hours(1) {
            return Err(ConfigError::AccessTokenTooLong);
        }
        if self.backend_token_ttl > Duration::seconds(300) {
            return Err(ConfigError::BackendTokenTooLong);
        }
        if self.code_ttl > Duration::seconds(60) {
            return Err(ConfigError::CodeTooLong);
        }
        Ok(())
    }
}
