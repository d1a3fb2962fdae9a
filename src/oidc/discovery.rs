//! `.well-known/smart-configuration` and `.well-known/openid-configuration`.
//!
//! Both are derived from the server's configuration, so what is advertised is what is
//! supported: `S256` is the only PKCE method, capabilities follow the enabled client types and
//! launch modes, and every URL is absolute (the configuration refuses relative ones).

use http::Response;
use serde::Serialize;

use crate::token::AuthorizationServer;

/// The SMART App Launch discovery document (2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmartConfiguration {
    /// Present when `sso-openid-connect` is advertised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// JWKS URL.
    pub jwks_uri: String,
    /// Authorization endpoint.
    pub authorization_endpoint: String,
    /// `authorization_code`, and `client_credentials` with backend services.
    pub grant_types_supported: Vec<&'static str>,
    /// Token endpoint.
    pub token_endpoint: String,
    /// Client authentication methods.
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    /// Algorithms accepted in client assertions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    /// Scopes supported.
    pub scopes_supported: Vec<String>,
    /// `["code"]`.
    pub response_types_supported: Vec<&'static str>,
    /// `["query"]`: written out, because RFC 8414 defaults it to `["query", "fragment"]`.
    pub response_modes_supported: Vec<&'static str>,
    /// Where patients manage their grants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub management_endpoint: Option<String>,
    /// Introspection endpoint.
    pub introspection_endpoint: String,
    /// Revocation endpoint.
    pub revocation_endpoint: String,
    /// How clients authenticate at the revocation and introspection endpoints.
    #[serde(flatten)]
    pub endpoint_auth: EndpointAuthMethods,
    /// SMART capabilities.
    pub capabilities: Vec<&'static str>,
    /// `["S256"]`: never `plain`.
    pub code_challenge_methods_supported: Vec<&'static str>,
}

/// The OpenID Provider metadata document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenIdConfiguration {
    /// Issuer.
    pub issuer: String,
    /// Authorization endpoint.
    pub authorization_endpoint: String,
    /// Token endpoint.
    pub token_endpoint: String,
    /// JWKS URL.
    pub jwks_uri: String,
    /// `["code"]`.
    pub response_types_supported: Vec<&'static str>,
    /// `["query"]`: written out, because OpenID Connect Discovery defaults it to `["query",
    /// "fragment"]`.
    pub response_modes_supported: Vec<&'static str>,
    /// `["public"]`.
    pub subject_types_supported: Vec<&'static str>,
    /// The id_token algorithm (RS256 by default).
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    /// Scopes supported.
    pub scopes_supported: Vec<String>,
    /// Client authentication methods.
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    /// Algorithms accepted in `private_key_jwt` client assertions (present whenever
    /// `private_key_jwt` is, as RFC 8414 §2 requires).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    /// Grant types.
    pub grant_types_supported: Vec<&'static str>,
    /// `["S256"]`.
    pub code_challenge_methods_supported: Vec<&'static str>,
    /// Claims an id_token may carry.
    pub claims_supported: Vec<&'static str>,
    /// Introspection endpoint.
    pub introspection_endpoint: String,
    /// Revocation endpoint.
    pub revocation_endpoint: String,
    /// How clients authenticate at the revocation and introspection endpoints.
    #[serde(flatten)]
    pub endpoint_auth: EndpointAuthMethods,
    /// `false`: the authorization endpoint answers a `request` object with
    /// `request_not_supported`.
    pub request_parameter_supported: bool,
    /// `false`: the authorization endpoint answers `request_uri` with
    /// `request_uri_not_supported`. Written out because the OpenID default is `true`.
    pub request_uri_parameter_supported: bool,
}

fn auth_methods(server: &AuthorizationServer) -> Vec<&'static str> {
    let c = server.config();
    let mut methods = Vec::new();
    if c.symmetric_clients {
        methods.push("client_secret_basic");
        if c.secret_post_clients {
            methods.push("client_secret_post");
        }
    }
    if c.asymmetric_clients || c.backend_services {
        methods.push("private_key_jwt");
    }
    if c.public_clients {
        methods.push("none");
    }
    methods
}

/// How clients authenticate at the revocation and introspection endpoints (RFC 8414 §2;
/// absent, the entries would mean `client_secret_basic` alone). Part of both discovery
/// documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointAuthMethods {
    /// At the revocation endpoint: as at the token endpoint, public clients included.
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    /// The client-assertion algorithms there (present whenever `private_key_jwt` is).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revocation_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    /// At the introspection endpoint: a confidential client's methods (a public client's
    /// `client_id` proves nothing; a bearer token is accepted too, which no registered method
    /// names).
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    /// The client-assertion algorithms there (present whenever `private_key_jwt` is).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub introspection_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
}

impl EndpointAuthMethods {
    /// What `server`'s configuration accepts.
    pub fn for_server(server: &AuthorizationServer) -> Self {
        let mut introspection = auth_methods(server);
        introspection.retain(|m| *m != "none");
        Self {
            revocation_endpoint_auth_methods_supported: auth_methods(server),
            revocation_endpoint_auth_signing_alg_values_supported: assertion_algs(server),
            introspection_endpoint_auth_methods_supported: introspection,
            introspection_endpoint_auth_signing_alg_values_supported: assertion_algs(server),
        }
    }
}

/// The algorithms the token endpoint verifies client assertions with, when `private_key_jwt`
/// is advertised (empty otherwise: no default is implied by its absence).
fn assertion_algs(server: &AuthorizationServer) -> Vec<&'static str> {
    let c = server.config();
    if c.asymmetric_clients || c.backend_services {
        c.assertion_algs.iter().map(|a| a.as_str()).collect()
    } else {
        Vec::new()
    }
}

fn grant_types(server: &AuthorizationServer) -> Vec<&'static str> {
    let mut grants = vec!["authorization_code", "refresh_token"];
    if server.config().backend_services {
        grants.push("client_credentials");
    }
    grants
}

impl SmartConfiguration {
    /// The document for `server`.
    pub fn for_server(server: &AuthorizationServer) -> Self {
        let c = server.config();
        let oidc = c.id_token_alg.is_some();
        let mut caps = vec!["launch-standalone"];
        if c.ehr_launch {
            caps.push("launch-ehr");
        }
        caps.push("authorize-post");
        if c.public_clients {
            caps.push("client-public");
        }
        if c.symmetric_clients {
            caps.push("client-confidential-symmetric");
        }
        if c.asymmetric_clients || c.backend_services {
            caps.push("client-confidential-asymmetric");
        }
        if oidc {
            caps.push("sso-openid-connect");
        }
        caps.extend(["context-standalone-patient"]);
        if c.ehr_launch {
            caps.push("context-ehr-patient");
            if c.ehr_encounter_context {
                caps.push("context-ehr-encounter");
            }
        }
        if c.ui_context {
            caps.extend(["context-banner", "context-style"]);
        }
        // No `permission-online`: `online_access` is never granted (a refresh token tied to
        // the user's session needs the host's sessions, which the server does not see).
        caps.extend(["permission-offline", "permission-patient"]);
        if c.permission_user {
            caps.push("permission-user");
        }
        if c.permission_v1 {
            caps.push("permission-v1");
        }
        caps.push("permission-v2");
        Self {
            issuer: oidc.then(|| c.issuer.clone()),
            jwks_uri: c.jwks_uri.clone(),
            authorization_endpoint: c.authorization_endpoint.clone(),
            grant_types_supported: grant_types(server),
            token_endpoint: c.token_endpoint.clone(),
            token_endpoint_auth_methods_supported: auth_methods(server),
            token_endpoint_auth_signing_alg_values_supported: assertion_algs(server),
            scopes_supported: c.scopes_supported.clone(),
            response_types_supported: vec!["code"],
            response_modes_supported: vec!["query"],
            management_endpoint: c.management_endpoint.clone(),
            introspection_endpoint: c.introspection_endpoint.clone(),
            revocation_endpoint: c.revocation_endpoint.clone(),
            endpoint_auth: EndpointAuthMethods::for_server(server),
            capabilities: caps,
            code_challenge_methods_supported: vec!["S256"],
        }
    }

    /// 200 `application/json`, open to any origin (SMART requires CORS here).
    pub fn to_response(&self) -> Response<Vec<u8>> {
        crate::token::public_json_response(serde_json::to_vec(self).unwrap_or_default())
    }
}

impl OpenIdConfiguration {
    /// The document for `server`; `None` when OpenID Connect is disabled.
    pub fn for_server(server: &AuthorizationServer) -> Option<Self> {
        let c = server.config();
        let alg = c.id_token_alg?;
        Some(Self {
            issuer: c.issuer.clone(),
            authorization_endpoint: c.authorization_endpoint.clone(),
            token_endpoint: c.token_endpoint.clone(),
            jwks_uri: c.jwks_uri.clone(),
            response_types_supported: vec!["code"],
            response_modes_supported: vec!["query"],
            subject_types_supported: vec!["public"],
            id_token_signing_alg_values_supported: vec![alg.as_str()],
            scopes_supported: c.scopes_supported.clone(),
            token_endpoint_auth_methods_supported: auth_methods(server),
            token_endpoint_auth_signing_alg_values_supported: assertion_algs(server),
            grant_types_supported: grant_types(server),
            code_challenge_methods_supported: vec!["S256"],
            claims_supported: vec![
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "fhirUser",
            ],
            introspection_endpoint: c.introspection_endpoint.clone(),
            revocation_endpoint: c.revocation_endpoint.clone(),
            endpoint_auth: EndpointAuthMethods::for_server(server),
            request_parameter_supported: false,
            request_uri_parameter_supported: false,
        })
    }

    /// 200 `application/json`, open to any origin.
    pub fn to_response(&self) -> Response<Vec<u8>> {
        crate::token::public_json_response(serde_json::to_vec(self).unwrap_or_default())
    }
}
