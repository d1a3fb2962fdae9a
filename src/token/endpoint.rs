//! The token endpoint: `authorization_code`, `refresh_token` and `client_credentials`.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use percent_encoding::percent_decode_str;
use serde::Serialize;
use time::OffsetDateTime;

use super::access::{AccessTokenClaims, TokenRejection, sign_access_token};
use super::assertion::{self, AssertionError, AssertionPolicy, JWT_BEARER};
use super::clients::{Client, ClientAuth};
use super::error::{Challenge, OAuthError, OAuthErrorCode, json_response};
use super::form::{FormError, FormParams};
use super::pkce::{self, PkceError};
use super::server::{AuthorizationServer, ServerFailure};
use super::store::{
    CodeRedemption, GrantContext, RefreshFamily, RefreshLookup, StoreError, TokenHash,
};
use crate::consent::{ActiveGrant, GrantStatus};
use crate::ids::ClientId;
use crate::oidc::IdTokenClaims;
use crate::scope::{Scope, ScopeSet};

/// A client authentication method (RFC 7591 `token_endpoint_auth_method`): the one a client
/// is registered for, or the one a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientAuthMethod {
    /// Public client: `client_id` only.
    None,
    /// `Authorization: Basic`.
    SecretBasic,
    /// `client_secret` in the form.
    SecretPost,
    /// `private_key_jwt`.
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    /// The registered name (`none`, `client_secret_basic`, `client_secret_post`,
    /// `private_key_jwt`).
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMethod::None => "none",
            ClientAuthMethod::SecretBasic => "client_secret_basic",
            ClientAuthMethod::SecretPost => "client_secret_post",
            ClientAuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// Why client authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientAuthFailure {
    /// More than one authentication method in one request.
    #[error("more than one client authentication method")]
    MultipleMethods,
    /// No `client_id` and no credentials.
    #[error("no client identification")]
    NoClient,
    /// The Basic header was not `base64(id:secret)` with form-encoded parts.
    #[error("malformed Basic credentials")]
    MalformedBasic,
    /// An `Authorization` header with a scheme other than Basic (or one that is not text):
    /// a credential this endpoint cannot check, so the request is not taken as unauthenticated
    /// either. Answered `invalid_client`, 401, `WWW-Authenticate: Basic`.
    #[error("unsupported Authorization scheme")]
    UnsupportedScheme,
    /// `client_id` in the form differs from the authenticated client.
    #[error("client_id does not match the credentials")]
    ClientIdMismatch,
    /// Unknown client.
    #[error("unknown client")]
    UnknownClient,
    /// Wrong secret, or a secret for a client that has none.
    #[error("bad client secret")]
    BadSecret,
    /// A confidential client sent no credentials.
    #[error("confidential client sent no credentials")]
    MissingCredentials,
    /// The client is registered for `client_secret_post`, which the server does not accept
    /// ([`ServerConfig::secret_post_clients`](crate::token::ServerConfig::secret_post_clients)
    /// is off).
    #[error("client_secret_post is not enabled on this server")]
    SecretPostDisabled,
    /// The client authenticated with a method other than its registered one
    /// (`client_secret_post` for a `client_secret_basic` client, a secret or an assertion for a
    /// public client, …).
    #[error("not the client's registered authentication method")]
    WrongMethod,
    /// `client_assertion_type` is not the JWT bearer type.
    #[error("unsupported client_assertion_type")]
    BadAssertionType,
    /// The assertion failed.
    #[error("client assertion: {0}")]
    Assertion(AssertionError),
    /// The bearer token authorizing an introspection call was refused (the wire says
    /// `invalid_token`, 401, `WWW-Authenticate: Bearer`).
    #[error("bearer token: {0}")]
    BearerRejected(TokenRejection),
}

/// Why a token request failed: the precise reason for the audit log. The wire sees
/// [`TokenError::oauth`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFailure {
    /// Not a POST with a form body.
    #[error("the token request must be a form POST")]
    BadMethod,
    /// The form could not be parsed.
    #[error("form: {0}")]
    Form(FormError),
    /// A parameter was repeated.
    #[error("parameter {0} was repeated")]
    Duplicate(&'static str),
    /// A required parameter is missing.
    #[error("parameter {0} is missing")]
    Missing(&'static str),
    /// Unknown `grant_type`.
    #[error("unsupported grant_type")]
    UnsupportedGrantType,
    /// The client may not use this grant type.
    #[error("the client may not use this grant type")]
    GrantTypeNotAllowed,
    /// Client authentication failed.
    #[error("client authentication: {0}")]
    ClientAuth(ClientAuthFailure),
    /// Unknown authorization code.
    #[error("unknown code")]
    CodeUnknown,
    /// Expired authorization code.
    #[error("expired code")]
    CodeExpired,
    /// The code was already redeemed; its tokens were revoked.
    #[error("code reused; tokens issued from it were revoked")]
    CodeReused,
    /// The code belongs to another client.
    #[error("code issued to another client")]
    CodeOtherClient,
    /// `redirect_uri` differs from the authorize request's.
    #[error("redirect_uri does not match")]
    RedirectMismatch,
    /// PKCE verification failed.
    #[error("PKCE: {0}")]
    Pkce(PkceError),
    /// The grant is no longer active (expired, revoked, unknown) or not this client's.
    #[error("the grant is not active")]
    GrantInactive,
    /// Unknown refresh token.
    #[error("unknown refresh token")]
    RefreshUnknown,
    /// The refresh token's family was revoked.
    #[error("refresh token revoked")]
    RefreshRevoked,
    /// The refresh token expired.
    #[error("refresh token expired")]
    RefreshExpired,
    /// A rotated-out refresh token was used again; its family was revoked.
    #[error("refresh token reused; family revoked")]
    RefreshReused,
    /// The refresh token belongs to another client.
    #[error("refresh token issued to another client")]
    RefreshOtherClient,
    /// The token to revoke was issued to another client (RFC 7009 §2.1: refused, and the
    /// client told so).
    #[error("the token to revoke was issued to another client")]
    RevokeOtherClient,
    /// The scope parameter is malformed.
    #[error("malformed scope")]
    InvalidScope,
    /// The refresh asked for more than was granted.
    #[error("scope wider than granted")]
    ScopeWidened,
    /// Nothing requested may be granted.
    #[error("nothing requested may be granted")]
    NothingGranted,
    /// The grant ends before a token could be of any use.
    #[error("the grant ends now")]
    GrantEnding,
    /// The server failed.
    #[error("server: {0}")]
    Server(ServerFailure),
}

impl From<ServerFailure> for TokenFailure {
    fn from(e: ServerFailure) -> Self {
        TokenFailure::Server(e)
    }
}

impl From<StoreError> for TokenFailure {
    fn from(e: StoreError) -> Self {
        TokenFailure::Server(ServerFailure::Store(e))
    }
}

/// A failed token request: the wire error and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct TokenError {
    /// What the client sees.
    pub oauth: OAuthError,
    /// Why, for the audit log.
    pub reason: TokenFailure,
}

impl TokenError {
    fn from_reason(reason: TokenFailure, basic: bool) -> Self {
        use OAuthErrorCode as C;
        let (code, text) = match &reason {
            TokenFailure::BadMethod | TokenFailure::Form(_) | TokenFailure::Duplicate(_) => {
                (C::InvalidRequest, "malformed token request")
            }
            TokenFailure::Missing(_) => (C::InvalidRequest, "a required parameter is missing"),
            TokenFailure::UnsupportedGrantType => {
                (C::UnsupportedGrantType, "unsupported grant_type")
            }
            TokenFailure::GrantTypeNotAllowed => (
                C::UnauthorizedClient,
                "the client may not use this grant type",
            ),
            TokenFailure::ClientAuth(ClientAuthFailure::MultipleMethods) => (
                C::InvalidRequest,
                "use exactly one client authentication method",
            ),
            TokenFailure::ClientAuth(ClientAuthFailure::BearerRejected(_)) => {
                (C::InvalidToken, "the bearer token is invalid")
            }
            TokenFailure::ClientAuth(_) => (C::InvalidClient, "client authentication failed"),
            TokenFailure::Pkce(PkceError::MissingVerifier) => {
                (C::InvalidRequest, "code_verifier is required")
            }
            TokenFailure::InvalidScope
            | TokenFailure::ScopeWidened
            | TokenFailure::NothingGranted => (
                C::InvalidScope,
                "the requested scope is invalid or exceeds the grant",
            ),
            TokenFailure::Server(_) => {
                (C::ServerError, "the server could not complete the request")
            }
            // RFC 6749 §5.2's wording for a grant "issued to another client".
            TokenFailure::RevokeOtherClient => {
                (C::InvalidGrant, "the token was issued to another client")
            }
            _ => (C::InvalidGrant, "the grant is invalid, expired or revoked"),
        };
        let mut oauth = OAuthError::new(code, text);
        // RFC 6749 §5.2: 401 with the scheme the client used, when it used the header; a
        // bearer token authorizing introspection is answered as RFC 6750 §3 says (RFC 7662
        // §2.3). Credentials in the form get the 400 default.
        if code == C::InvalidToken {
            oauth = oauth.with_challenge(Challenge::Bearer);
        } else if basic && code == C::InvalidClient {
            oauth = oauth.with_challenge(Challenge::Basic);
        }
        Self { oauth, reason }
    }

    pub(crate) fn from_fail(f: Fail) -> Self {
        Self::from_reason(f.reason, f.basic)
    }

    /// The JSON error response: 400; 401 with `WWW-Authenticate: Basic` when HTTP Basic client
    /// authentication failed, or `Bearer` when an introspection caller's bearer token did;
    /// 500 for server failures.
    pub fn to_response(&self) -> Response<Vec<u8>> {
        self.oauth.to_response()
    }
}

/// A successful token response (RFC 6749 §5.1 plus SMART's context fields). `Debug` is
/// redacted.
#[derive(Clone, Serialize)]
pub struct TokenResponse {
    /// The JWT access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The granted scopes (authoritative; may differ from the request).
    pub scope: String,
    /// Refresh token, when `offline_access` was granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// id_token, when `openid` was granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// Patient in context (bare id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// Encounter in context (bare id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    /// `fhirContext`.
    #[serde(rename = "fhirContext", skip_serializing_if = "Option::is_none")]
    pub fhir_context: Option<Vec<serde_json::Value>>,
    /// `need_patient_banner`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub need_patient_banner: Option<bool>,
    /// `smart_style_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smart_style_url: Option<String>,
    /// `intent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// `tenant`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The grant the tokens belong to (for the host's audit; not serialised).
    #[serde(skip)]
    pub grant_id: Option<crate::ids::GrantId>,
    /// The client (for the host's audit; not serialised).
    #[serde(skip)]
    pub client_id: Option<ClientId>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .field("patient", &self.patient)
            .finish_non_exhaustive()
    }
}

impl TokenResponse {
    /// 200 JSON with `Cache-Control: no-store` and `Pragma: no-cache`.
    pub fn to_response(&self) -> Response<Vec<u8>> {
        json_response(StatusCode::OK, serde_json::to_vec(self).unwrap_or_default())
    }
}

/// The token endpoint's outcome.
pub type TokenOutcome = Result<TokenResponse, TokenError>;

/// Converts an outcome into its HTTP response.
pub fn token_response(outcome: &TokenOutcome) -> Response<Vec<u8>> {
    match outcome {
        Ok(ok) => ok.to_response(),
        Err(err) => err.to_response(),
    }
}

fn is_form_post<B>(request: &Request<B>) -> bool {
    request.method() == Method::POST
        && request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
}

/// Parses a form POST for the token, introspection and revocation endpoints.
pub(crate) fn parse_form_post<B: AsRef<[u8]>>(
    request: &Request<B>,
) -> Result<FormParams, TokenFailure> {
    if !is_form_post(request) {
        return Err(TokenFailure::BadMethod);
    }
    FormParams::parse(request.body().as_ref()).map_err(TokenFailure::Form)
}

fn param<'a>(form: &'a FormParams, name: &'static str) -> Result<Option<&'a str>, TokenFailure> {
    form.get(name).map_err(|_| TokenFailure::Duplicate(name))
}

fn required<'a>(form: &'a FormParams, name: &'static str) -> Result<&'a str, TokenFailure> {
    param(form, name)?.ok_or(TokenFailure::Missing(name))
}

pub(crate) struct Fail {
    reason: TokenFailure,
    basic: bool,
}

impl From<TokenFailure> for Fail {
    fn from(reason: TokenFailure) -> Self {
        Fail {
            reason,
            basic: false,
        }
    }
}

impl From<ServerFailure> for Fail {
    fn from(e: ServerFailure) -> Self {
        TokenFailure::Server(e).into()
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        TokenFailure::from(e).into()
    }
}

fn auth_fail(failure: ClientAuthFailure, basic: bool) -> Fail {
    Fail {
        reason: TokenFailure::ClientAuth(failure),
        basic,
    }
}

fn decode_basic(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    let form_decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    Some((form_decode(id)?, form_decode(secret)?))
}

impl AuthorizationServer {
    /// Authenticates the client of a token, introspection or revocation request.
    ///
    /// Exactly one method per request (RFC 6749 §2.3: two are `invalid_request`), and it must
    /// be the client's registered one ([`ClientAuth::method`]): a secret registered for HTTP
    /// Basic is refused in the form body and the other way round, an assertion is refused for a
    /// secret client, and a confidential client cannot pass as public by sending `client_id`
    /// alone.
    pub(crate) fn authenticate_client(
        &self,
        headers: &HeaderMap,
        form: &FormParams,
        now: OffsetDateTime,
    ) -> Result<(Arc<Client>, ClientAuthMethod), Fail> {
        // `Authorization` is a singleton field: a second one is a second credential, and only
        // the first would be looked at.
        if headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .nth(1)
            .is_some()
        {
            return Err(auth_fail(ClientAuthFailure::MultipleMethods, false));
        }
        let authorization = headers.get(header::AUTHORIZATION);
        let basic = authorization
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.len() >= 6 && v[..6].eq_ignore_ascii_case("basic "));
        // A header this endpoint cannot read is still a credential the client meant to present:
        // ignoring it would let a public `client_id` in the form stand in for it.
        if authorization.is_some() && !basic {
            return Err(auth_fail(ClientAuthFailure::UnsupportedScheme, true));
        }
        let post_secret = form.contains("client_secret");
        let assertion = form.contains("client_assertion") || form.contains("client_assertion_type");
        if usize::from(basic) + usize::from(post_secret) + usize::from(assertion) > 1 {
            return Err(auth_fail(ClientAuthFailure::MultipleMethods, basic));
        }
        let presented = if basic {
            ClientAuthMethod::SecretBasic
        } else if post_secret {
            ClientAuthMethod::SecretPost
        } else if assertion {
            ClientAuthMethod::PrivateKeyJwt
        } else {
            ClientAuthMethod::None
        };
        // Checked before the secret or assertion is: a credential sent the wrong way is refused
        // whether or not it is right.
        let post_enabled = self.config.secret_post_clients;
        let registered = |client: &Client| match client.auth.method() {
            ClientAuthMethod::SecretPost if !post_enabled => {
                Err(auth_fail(ClientAuthFailure::SecretPostDisabled, basic))
            }
            method if method == presented => Ok(()),
            _ if presented == ClientAuthMethod::None => {
                Err(auth_fail(ClientAuthFailure::MissingCredentials, basic))
            }
            _ => Err(auth_fail(ClientAuthFailure::WrongMethod, basic)),
        };
        let form_client = param(form, "client_id")?;
        let form_client_id = match form_client {
            Some(id) => Some(
                ClientId::new(id)
                    .map_err(|_| auth_fail(ClientAuthFailure::UnknownClient, basic))?,
            ),
            None => None,
        };
        let lookup = |id: &ClientId, basic: bool| {
            self.clients
                .client(id)
                .ok_or_else(|| auth_fail(ClientAuthFailure::UnknownClient, basic))
        };
        if basic || post_secret {
            let (id, secret) = if basic {
                let value = authorization.and_then(|v| v.to_str().ok()).unwrap_or("");
                decode_basic(value)
                    .ok_or_else(|| auth_fail(ClientAuthFailure::MalformedBasic, true))?
            } else {
                let id =
                    form_client.ok_or_else(|| auth_fail(ClientAuthFailure::NoClient, false))?;
                (id.to_owned(), required(form, "client_secret")?.to_owned())
            };
            let id = ClientId::new(id)
                .map_err(|_| auth_fail(ClientAuthFailure::UnknownClient, basic))?;
            if form_client_id.as_ref().is_some_and(|f| *f != id) {
                return Err(auth_fail(ClientAuthFailure::ClientIdMismatch, basic));
            }
            let client = lookup(&id, basic)?;
            registered(&client)?;
            let ClientAuth::Secret { hash, .. } = &client.auth else {
                return Err(auth_fail(ClientAuthFailure::BadSecret, basic));
            };
            if !hash.verify(&secret) {
                return Err(auth_fail(ClientAuthFailure::BadSecret, basic));
            }
            return Ok((client, presented));
        }
        if assertion {
            if param(form, "client_assertion_type")? != Some(JWT_BEARER) {
                return Err(auth_fail(ClientAuthFailure::BadAssertionType, false));
            }
            let jwt = required(form, "client_assertion")?;
            let id = assertion::claimed_client(jwt)
                .map_err(|e| auth_fail(ClientAuthFailure::Assertion(e), false))?;
            if form_client_id.as_ref().is_some_and(|f| *f != id) {
                return Err(auth_fail(ClientAuthFailure::ClientIdMismatch, false));
            }
            let client = lookup(&id, false)?;
            registered(&client)?;
            let mut policy = AssertionPolicy::new(&self.config.token_endpoint);
            policy.algorithms = self.config.assertion_algs.clone();
            policy.leeway = self.config.leeway;
            assertion::verify_assertion_with(
                jwt,
                &client,
                &policy,
                &*self.store,
                self.client_jwks.as_ref(),
                now,
            )
            .map_err(|e| auth_fail(ClientAuthFailure::Assertion(e), false))?;
            return Ok((client, presented));
        }
        let id = form_client_id.ok_or_else(|| auth_fail(ClientAuthFailure::NoClient, false))?;
        let client = lookup(&id, false)?;
        registered(&client)?;
        Ok((client, presented))
    }

    /// Handles a token request (`POST`, form-encoded).
    pub fn token<B: AsRef<[u8]>>(&self, request: &Request<B>, now: OffsetDateTime) -> TokenOutcome {
        let form = parse_form_post(request).map_err(|r| TokenError::from_reason(r, false))?;
        self.token_form(request.headers(), &form, now)
    }

    /// Handles a token request whose form is already parsed.
    pub fn token_form(
        &self,
        headers: &HeaderMap,
        form: &FormParams,
        now: OffsetDateTime,
    ) -> TokenOutcome {
        self.token_inner(headers, form, now)
            .map_err(|f| TokenError::from_reason(f.reason, f.basic))
    }

    fn token_inner(
        &self,
        headers: &HeaderMap,
        form: &FormParams,
        now: OffsetDateTime,
    ) -> Result<TokenResponse, Fail> {
        let grant_type = required(form, "grant_type")?;
        if !matches!(
            grant_type,
            "authorization_code" | "refresh_token" | "client_credentials"
        ) {
            return Err(TokenFailure::UnsupportedGrantType.into());
        }
        let (client, _method) = self.authenticate_client(headers, form, now)?;
        match grant_type {
            "authorization_code" => self.exchange_code(&client, form, now),
            "refresh_token" => self.refresh(&client, form, now),
            _ => self.client_credentials(&client, form, now),
        }
    }

    fn active_grant(
        &self,
        context: &GrantContext,
        client: &Client,
        now: OffsetDateTime,
    ) -> Result<Arc<ActiveGrant>, TokenFailure> {
        match self.grants.grant_status(&context.grant_id, now) {
            GrantStatus::Active(grant)
                if grant.client_id == client.id
                    && context.patient.as_ref().is_none_or(|p| *p == grant.patient) =>
            {
                Ok(grant)
            }
            _ => Err(TokenFailure::GrantInactive),
        }
    }

    fn exchange_code(
        &self,
        client: &Client,
        form: &FormParams,
        now: OffsetDateTime,
    ) -> Result<TokenResponse, Fail> {
        if !client.authorization_code {
            return Err(TokenFailure::GrantTypeNotAllowed.into());
        }
        let code = required(form, "code")?;
        let redirect_uri = required(form, "redirect_uri")?;
        let verifier = param(form, "code_verifier")?;
        let record = match self.store.redeem_code(&TokenHash::of(code), now)? {
            CodeRedemption::Fresh(record) => record,
            CodeRedemption::Reused { family_id } => {
                self.store.revoke_family(&family_id)?;
                return Err(TokenFailure::CodeReused.into());
            }
            CodeRedemption::Expired => return Err(TokenFailure::CodeExpired.into()),
            _ => return Err(TokenFailure::CodeUnknown.into()),
        };
        if record.client_id != client.id {
            return Err(TokenFailure::CodeOtherClient.into());
        }
        if record.redirect_uri != redirect_uri {
            return Err(TokenFailure::RedirectMismatch.into());
        }
        pkce::verify(&record.code_challenge, verifier).map_err(TokenFailure::Pkce)?;
        let grant = self.active_grant(&record.context, client, now)?;
        let context = &record.context;
        let (access_token, expires_in) =
            self.issue_access_token(client, context, &grant, &record.family_id, now)?;
        let refresh_token = if wants_refresh(&context.scope) {
            let token = self.random()?;
            let expires_at = (now + self.config.refresh_token_ttl).min(grant.ends_at);
            self.store.put_refresh(
                TokenHash::of(&token),
                RefreshFamily {
                    family_id: record.family_id.clone(),
                    client_id: client.id.clone(),
                    context: context.clone(),
                    expires_at,
                },
            )?;
            Some(token)
        } else {
            None
        };
        let id_token = self.issue_id_token(
            client,
            context,
            record.nonce.as_deref(),
            record.auth_time,
            now,
        )?;
        Ok(self.response(
            client,
            context,
            access_token,
            expires_in,
            refresh_token,
            id_token,
        ))
    }

    fn refresh(
        &self,
        client: &Client,
        form: &FormParams,
        now: OffsetDateTime,
    ) -> Result<TokenResponse, Fail> {
        if !client.authorization_code {
            return Err(TokenFailure::GrantTypeNotAllowed.into());
        }
        let presented = TokenHash::of(required(form, "refresh_token")?);
        let requested = param(form, "scope")?;
        let family = match self.store.lookup_refresh(&presented, now)? {
            RefreshLookup::Current(family) => family,
            RefreshLookup::RotatedOut { family_id, .. } => {
                // A rotated-out token is a copy in someone's hands: end the whole family.
                self.store.revoke_family(&family_id)?;
                return Err(TokenFailure::RefreshReused.into());
            }
            RefreshLookup::Revoked => return Err(TokenFailure::RefreshRevoked.into()),
            RefreshLookup::Expired => return Err(TokenFailure::RefreshExpired.into()),
            _ => return Err(TokenFailure::RefreshUnknown.into()),
        };
        if family.client_id != client.id {
            return Err(TokenFailure::RefreshOtherClient.into());
        }
        let scope = match requested {
            None => family.context.scope.clone(),
            Some(text) => {
                let asked: ScopeSet = text.parse().map_err(|_| TokenFailure::InvalidScope)?;
                if !family.context.scope.covers_all(&asked) {
                    return Err(TokenFailure::ScopeWidened.into());
                }
                asked
            }
        };
        let grant = match self.active_grant(&family.context, client, now) {
            Ok(grant) => grant,
            Err(e) => {
                self.store.revoke_family(&family.family_id)?;
                return Err(e.into());
            }
        };
        // RFC 6749 §6: a narrower `scope` narrows this access token only; the new refresh
        // token keeps exactly the scope of the one presented.
        let mut context = family.context.clone();
        context.scope = scope;
        let new_refresh = if wants_refresh(&family.context.scope) {
            let token = self.random()?;
            let expires_at = (now + self.config.refresh_token_ttl).min(grant.ends_at);
            let rotated = self.store.rotate_refresh(
                &family.family_id,
                &presented,
                TokenHash::of(&token),
                &family.context.scope,
                expires_at,
            )?;
            if !rotated {
                self.store.revoke_family(&family.family_id)?;
                return Err(TokenFailure::RefreshReused.into());
            }
            Some(token)
        } else {
            // The family never asked for a refresh token (online access ended): this one was the
            // last.
            self.store.revoke_family(&family.family_id)?;
            None
        };
        // Access tokens of a revoked family fail validation, so a family that ended here gets
        // its last access token outside the family.
        let fam = if new_refresh.is_some() {
            family.family_id.clone()
        } else {
            self.random()?
        };
        let (access_token, expires_in) =
            self.issue_access_token(client, &context, &grant, &fam, now)?;
        Ok(self.response(
            client,
            &context,
            access_token,
            expires_in,
            new_refresh,
            None,
        ))
    }

    fn client_credentials(
        &self,
        client: &Client,
        form: &FormParams,
        now: OffsetDateTime,
    ) -> Result<TokenResponse, Fail> {
        if !client.client_credentials || !matches!(client.auth, ClientAuth::PrivateKeyJwt { .. }) {
            return Err(TokenFailure::GrantTypeNotAllowed.into());
        }
        let asked: ScopeSet = required(form, "scope")?
            .parse()
            .map_err(|_| TokenFailure::InvalidScope)?;
        let granted = asked.restrict_to(&client.allowed_scopes).granted;
        if granted.is_empty() {
            return Err(TokenFailure::NothingGranted.into());
        }
        let exp = now + self.config.backend_token_ttl;
        let claims = AccessTokenClaims {
            iss: self.config.issuer.clone(),
            sub: client.id.to_string(),
            aud: vec![self.config.fhir_base_url.clone()],
            exp: exp.unix_timestamp(),
            iat: now.unix_timestamp(),
            nbf: None,
            jti: self.random()?,
            client_id: client.id.clone(),
            scope: granted.to_string(),
            grant_id: None,
            patient: None,
            encounter: None,
            fhir_user: None,
            family: None,
            context: None,
        };
        let access_token = sign_access_token(&*self.keys, self.config.access_token_alg, &claims)
            .map_err(|_| ServerFailure::Signing)?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.config.backend_token_ttl.whole_seconds(),
            scope: granted.to_string(),
            refresh_token: None,
            id_token: None,
            patient: None,
            encounter: None,
            fhir_context: None,
            need_patient_banner: None,
            smart_style_url: None,
            intent: None,
            tenant: None,
            grant_id: None,
            client_id: Some(client.id.clone()),
        })
    }

    fn issue_access_token(
        &self,
        client: &Client,
        context: &GrantContext,
        grant: &ActiveGrant,
        family: &str,
        now: OffsetDateTime,
    ) -> Result<(String, i64), Fail> {
        let exp = (now + self.config.access_token_ttl).min(grant.ends_at);
        let expires_in = (exp - now).whole_seconds();
        if expires_in <= 0 {
            return Err(TokenFailure::GrantEnding.into());
        }
        let claims = AccessTokenClaims {
            iss: self.config.issuer.clone(),
            sub: context.subject.clone(),
            aud: vec![self.config.fhir_base_url.clone()],
            exp: exp.unix_timestamp(),
            iat: now.unix_timestamp(),
            nbf: None,
            jti: self.random()?,
            client_id: client.id.clone(),
            scope: context.scope.to_string(),
            grant_id: Some(context.grant_id.clone()),
            patient: context.patient.clone(),
            encounter: context.encounter.clone(),
            fhir_user: context.fhir_user.clone(),
            family: Some(family.to_owned()),
            context: super::access::SmartContextClaims::of(context),
        };
        let token = sign_access_token(&*self.keys, self.config.access_token_alg, &claims)
            .map_err(|_| ServerFailure::Signing)?;
        Ok((token, expires_in))
    }

    fn issue_id_token(
        &self,
        client: &Client,
        context: &GrantContext,
        nonce: Option<&str>,
        auth_time: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<String>, Fail> {
        let Some(alg) = self.config.id_token_alg else {
            return Ok(None);
        };
        if !context.scope.contains(&Scope::OpenId) {
            return Ok(None);
        }
        let fhir_user = if context.scope.contains(&Scope::FhirUser) {
            context
                .fhir_user
                .as_deref()
                .map(|u| self.absolute_fhir_url(u))
        } else {
            None
        };
        let claims = IdTokenClaims {
            iss: self.config.issuer.clone(),
            sub: context.subject.clone(),
            aud: client.id.to_string(),
            exp: (now + self.config.id_token_ttl).unix_timestamp(),
            iat: now.unix_timestamp(),
            auth_time: Some(auth_time.unix_timestamp()),
            nonce: nonce.map(str::to_owned),
            fhir_user,
        };
        let key = self.keys.signing_key(alg).ok_or(ServerFailure::Signing)?;
        let token =
            crate::oidc::sign_id_token(&key, &claims).map_err(|_| ServerFailure::Signing)?;
        Ok(Some(token))
    }

    /// `Patient/355` → `{fhir_base}/Patient/355`; absolute URLs unchanged.
    pub(crate) fn absolute_fhir_url(&self, reference: &str) -> String {
        if reference.starts_with("https://") || reference.starts_with("http://") {
            reference.to_owned()
        } else {
            format!(
                "{}/{}",
                self.config.fhir_base_url,
                reference.trim_start_matches('/')
            )
        }
    }

    fn response(
        &self,
        client: &Client,
        context: &GrantContext,
        access_token: String,
        expires_in: i64,
        refresh_token: Option<String>,
        id_token: Option<String>,
    ) -> TokenResponse {
        TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            scope: context.scope.to_string(),
            refresh_token,
            id_token,
            patient: context.patient.as_ref().map(|p| p.to_string()),
            encounter: context.encounter.clone(),
            fhir_context: (!context.fhir_context.is_empty()).then(|| context.fhir_context.clone()),
            need_patient_banner: context.need_patient_banner,
            smart_style_url: context.smart_style_url.clone(),
            intent: context.intent.clone(),
            tenant: context.tenant.clone(),
            grant_id: Some(context.grant_id.clone()),
            client_id: Some(client.id.clone()),
        }
    }
}

fn wants_refresh(scope: &ScopeSet) -> bool {
    // `online_access` is never granted (see `AuthorizationServer::approve`); a family stored
    // with it by an older version gets no further refresh token.
    scope.contains(&Scope::OfflineAccess)
}
