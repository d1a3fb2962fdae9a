//! JWT access tokens (RFC 9068) and their validation by the resource server.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde::{Deserialize, Deserializer, Serialize};
use time::{Duration, OffsetDateTime};

use super::jose::{Algorithm, JwsError, KeyError, UnverifiedJws};
use super::keys::KeySource;
use crate::consent::{ActiveGrant, GrantStatus, GrantStatusSource};
use crate::ids::{ClientId, GrantId, PatientId};

/// The JOSE `typ` of an RFC 9068 access token.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The longest access token the validator looks at; SMART asks to keep tokens well under the
/// ~8 kB header limits of common servers.
pub const MAX_ACCESS_TOKEN_LEN: usize = 8 * 1024;

/// The claims of a fhirguard access token (RFC 9068 plus SMART context).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// The authorization server's issuer URL.
    pub iss: String,
    /// The end user (or, for backend services, the client).
    pub sub: String,
    /// The FHIR base URL the token is for.
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time, seconds since the epoch.
    pub iat: i64,
    /// Not-before, seconds since the epoch, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Unique token id (used by revocation).
    pub jti: String,
    /// The client the token was issued to.
    pub client_id: ClientId,
    /// The granted scopes, space separated.
    pub scope: String,
    /// The consent grant the token belongs to (absent only for backend-services tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<GrantId>,
    /// Patient in context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<PatientId>,
    /// Encounter in context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    /// The user as a FHIR resource URL.
    #[serde(rename = "fhirUser", default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    /// The token family: the authorization code or refresh chain the token came from, so that
    /// revoking the family (code reuse, refresh reuse, revocation) revokes the token.
    #[serde(rename = "fam", default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// The rest of the launch context the token response carried (banner, style,
    /// `fhirContext`, intent, tenant), so introspection can return it as SMART requires.
    #[serde(rename = "smart", default, skip_serializing_if = "Option::is_none")]
    pub context: Option<SmartContextClaims>,
}

/// Launch-context parameters of the token response beyond `patient` and `encounter`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartContextClaims {
    /// `need_patient_banner`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub need_patient_banner: Option<bool>,
    /// `smart_style_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smart_style_url: Option<String>,
    /// `fhirContext` entries.
    #[serde(rename = "fhirContext", default, skip_serializing_if = "Vec::is_empty")]
    pub fhir_context: Vec<serde_json::Value>,
    /// `intent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// `tenant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl SmartContextClaims {
    /// The parameters `context` carries, or `None` when it carries none.
    pub fn of(context: &super::store::GrantContext) -> Option<Self> {
        let claims = Self {
            need_patient_banner: context.need_patient_banner,
            smart_style_url: context.smart_style_url.clone(),
            fhir_context: context.fhir_context.clone(),
            intent: context.intent.clone(),
            tenant: context.tenant.clone(),
        };
        (claims != Self::default()).then_some(claims)
    }
}

impl fmt::Debug for AccessTokenClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No jti: it is a revocation handle.
        f.debug_struct("AccessTokenClaims")
            .field("iss", &self.iss)
            .field("aud", &self.aud)
            .field("exp", &self.exp)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("grant_id", &self.grant_id)
            .finish_non_exhaustive()
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// Signs `claims` as an `at+jwt` with the key source's current key for `alg`.
pub fn sign_access_token(
    keys: &dyn KeySource,
    alg: Algorithm,
    claims: &AccessTokenClaims,
) -> Result<String, KeyError> {
    let key = keys.signing_key(alg).ok_or(KeyError::Rejected(alg))?;
    key.sign_jwt(ACCESS_TOKEN_TYP, claims)
}

/// Answers whether an access token was revoked individually (RFC 7009) or through its family
/// (code reuse, refresh-token reuse, revocation of a refresh token).
///
/// Runs on every request: answer from memory.
pub trait RevocationList: Send + Sync {
    /// True when the token `jti`, or its `family`, is revoked at `now`.
    fn is_revoked(&self, jti: &str, family: Option<&str>, now: OffsetDateTime) -> bool;
}

impl<R: RevocationList + ?Sized> RevocationList for Arc<R> {
    fn is_revoked(&self, jti: &str, family: Option<&str>, now: OffsetDateTime) -> bool {
        (**self).is_revoked(jti, family, now)
    }
}

/// Why an access token was refused. For the audit log; the wire only ever sees a generic
/// `invalid_token`, or `invalid_request` for a malformed `Authorization` header (see
/// [`TokenRejection::www_authenticate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRejection {
    /// The request carried no `Authorization` header.
    #[error("no access token")]
    Missing,
    /// The `Authorization` header named `Bearer` but did not carry one token, or the request
    /// had more than one `Authorization` header: a malformed request, answered `400` with
    /// `error="invalid_request"` (RFC 6750 §3.1), not a bad token.
    #[error("the Authorization header is not a Bearer token")]
    NotBearer,
    /// The `Authorization` header used another scheme (`Basic`, say): no bearer token was
    /// sent, and the challenge says so without an error code (RFC 6750 §3.1).
    #[error("the Authorization header uses a scheme other than Bearer")]
    OtherScheme,
    /// The token is longer than [`MAX_ACCESS_TOKEN_LEN`].
    #[error("the token is too long")]
    TooLong,
    /// Not a compact JWS, or its header or claims are not valid JSON of the expected shape.
    #[error("the token is malformed")]
    Malformed,
    /// The header's `alg` is not on the configured allow-list (`none`, `HS256`, …).
    #[error("the token's algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// The header used `crit` or an embedded `jwk`.
    #[error("the token's header uses an unsupported extension")]
    UnsupportedHeader,
    /// `typ` is not `at+jwt` (an id_token or client assertion presented as an access token).
    #[error("the token is not an access token (typ)")]
    WrongType,
    /// No `kid`, or no key with that `kid` is published (unknown, or retired too long ago).
    #[error("the token's signing key is unknown")]
    UnknownKey,
    /// The signature does not verify (tampered token or key/algorithm mismatch).
    #[error("the token's signature does not verify")]
    BadSignature,
    /// `iss` is not this authorization server.
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    /// `aud` does not name this FHIR server.
    #[error("the token is for another audience")]
    WrongAudience,
    /// `exp` has passed (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The token, or the family it came from, was revoked.
    #[error("the token was revoked")]
    Revoked,
    /// The consent grant reached its end date.
    #[error("the token's grant has expired")]
    GrantExpired,
    /// The patient revoked the consent grant.
    #[error("the token's grant was revoked")]
    GrantRevoked,
    /// The consent grant is unknown.
    #[error("the token's grant is unknown")]
    GrantUnknown,
    /// The grant belongs to another client or patient than the token says.
    #[error("the token does not match its grant")]
    GrantMismatch,
}

impl From<JwsError> for TokenRejection {
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::TooLong => TokenRejection::TooLong,
            JwsError::Malformed => TokenRejection::Malformed,
            JwsError::AlgorithmNotAllowed => TokenRejection::AlgorithmNotAllowed,
            JwsError::UnsupportedHeader => TokenRejection::UnsupportedHeader,
        }
    }
}

impl TokenRejection {
    /// Why an `Authorization` value [`bearer_token`] refused is not a bearer token: another
    /// scheme, or a `Bearer` one without exactly one token.
    pub(crate) fn not_bearer(value: &HeaderValue) -> TokenRejection {
        let scheme = value
            .as_bytes()
            .split(|b| *b == b' ')
            .next()
            .unwrap_or_default();
        if scheme.eq_ignore_ascii_case(b"bearer") {
            TokenRejection::NotBearer
        } else {
            TokenRejection::OtherScheme
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3): no error code when no bearer token was sent
    /// (no `Authorization` header, or one of another scheme: RFC 6750 §3.1 "SHOULD NOT include
    /// an error code"), `invalid_request` when the header is malformed ([`Self::NotBearer`]),
    /// otherwise a generic `invalid_token` that reveals nothing of the reason.
    pub fn www_authenticate(&self) -> HeaderValue {
        match self {
            TokenRejection::Missing | TokenRejection::OtherScheme => {
                HeaderValue::from_static("Bearer realm=\"fhir\"")
            }
            TokenRejection::NotBearer => {
                HeaderValue::from_static("Bearer realm=\"fhir\", error=\"invalid_request\"")
            }
            _ => HeaderValue::from_static("Bearer realm=\"fhir\", error=\"invalid_token\""),
        }
    }

    /// Whether the request itself is malformed (RFC 6750 `invalid_request`, status 400)
    /// rather than carrying no or a bad token (401).
    pub fn is_malformed_request(&self) -> bool {
        matches!(self, TokenRejection::NotBearer)
    }

    /// The status RFC 6750 §3.1 gives the rejection: 400 for a malformed request, else 401.
    pub fn status(&self) -> StatusCode {
        if self.is_malformed_request() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNAUTHORIZED
        }
    }

    /// A bare response with [`Self::status`] carrying [`Self::www_authenticate`] (the
    /// middleware adds an OperationOutcome body).
    pub fn to_response(&self) -> Response<Vec<u8>> {
        let mut response = Response::new(Vec::new());
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(header::WWW_AUTHENTICATE, self.www_authenticate());
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// What the resource server accepts; fixed by configuration, never by the token.
#[derive(Debug, Clone)]
pub struct ValidatorConfig {
    /// The only accepted `iss`.
    pub issuer: String,
    /// This FHIR server's base URL; `aud` must contain it.
    pub audience: String,
    /// The accepted algorithms (default: ES256 only).
    pub algorithms: Vec<Algorithm>,
    /// Clock-skew allowance for `exp`, `nbf` and `iat` (default 30 s, capped at 2 min).
    pub leeway: Duration,
}

impl ValidatorConfig {
    /// ES256 only, 30 s leeway.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            algorithms: vec![Algorithm::ES256],
            leeway: Duration::seconds(30),
        }
    }
}

/// A token that passed every check, with the grant it belongs to.
#[derive(Debug, Clone)]
pub struct ValidatedToken {
    /// The verified claims (shared with a validator's cache, so a cached token costs no copy).
    pub claims: Arc<AccessTokenClaims>,
    /// The active grant (None for backend-services tokens, which carry no grant).
    pub grant: Option<Arc<ActiveGrant>>,
}

/// The resource server's access-token validator.
///
/// Order of checks: size and shape, `alg` against the allow-list, `typ`, key by `kid`,
/// signature, `iss`, `aud`, `exp`/`nbf`/`iat` with leeway, revocation, then the grant's status.
pub struct AccessTokenValidator {
    config: ValidatorConfig,
    keys: Arc<dyn KeySource>,
    grants: Arc<dyn GrantStatusSource>,
    revocations: Option<Arc<dyn RevocationList>>,
}

impl fmt::Debug for AccessTokenValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessTokenValidator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AccessTokenValidator {
    /// A validator over `keys` that asks `grants` about each token's grant.
    pub fn new(
        mut config: ValidatorConfig,
        keys: Arc<dyn KeySource>,
        grants: Arc<dyn GrantStatusSource>,
    ) -> Self {
        config.leeway = config.leeway.clamp(Duration::ZERO, Duration::minutes(2));
        Self {
            config,
            keys,
            grants,
            revocations: None,
        }
    }

    /// Also refuses tokens the list says are revoked (for example the token store).
    #[must_use]
    pub fn with_revocations(mut self, revocations: Arc<dyn RevocationList>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ValidatorConfig {
        &self.config
    }

    /// The grant source each token's grant is checked against.
    pub fn grants(&self) -> &Arc<dyn GrantStatusSource> {
        &self.grants
    }

    /// Validates the `Authorization: Bearer` token of a request.
    pub fn validate_headers(
        &self,
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Result<ValidatedToken, TokenRejection> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let value = values.next().ok_or(TokenRejection::Missing)?;
        if values.next().is_some() {
            return Err(TokenRejection::NotBearer);
        }
        let token = bearer_token(value).ok_or_else(|| TokenRejection::not_bearer(value))?;
        self.validate(token, now)
    }

    /// Validates a compact access token.
    pub fn validate(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<ValidatedToken, TokenRejection> {
        let claims = self.verify_signature_and_claims(token, now)?;
        if let Some(revocations) = &self.revocations {
            if revocations.is_revoked(&claims.jti, claims.family.as_deref(), now) {
                return Err(TokenRejection::Revoked);
            }
        }
        let grant = match &claims.grant_id {
            None => None,
            Some(grant_id) => match self.grants.grant_status(grant_id, now) {
                GrantStatus::Active(grant) => {
                    if grant.client_id != claims.client_id
                        || claims.patient.as_ref().is_some_and(|p| *p != grant.patient)
                    {
                        return Err(TokenRejection::GrantMismatch);
                    }
                    Some(grant)
                }
                GrantStatus::Expired => return Err(TokenRejection::GrantExpired),
                GrantStatus::Revoked => return Err(TokenRejection::GrantRevoked),
                _ => return Err(TokenRejection::GrantUnknown),
            },
        };
        Ok(ValidatedToken {
            claims: Arc::new(claims),
            grant,
        })
    }

    /// Signature and claim checks without revocation or grant lookups (used by introspection,
    /// which reports those separately, and by tests).
    pub fn verify_signature_and_claims(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<AccessTokenClaims, TokenRejection> {
        let jws = UnverifiedJws::parse(token, MAX_ACCESS_TOKEN_LEN, &self.config.algorithms)?;
        if !jws.header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
        }) {
            return Err(TokenRejection::WrongType);
        }
        let kid = jws
            .header
            .kid
            .as_deref()
            .ok_or(TokenRejection::UnknownKey)?;
        let key = self
            .keys
            .verifying_key(kid, now)
            .ok_or(TokenRejection::UnknownKey)?;
        if !jws.verify_with(&key) {
            return Err(TokenRejection::BadSignature);
        }
        let claims: AccessTokenClaims =
            serde_json::from_slice(&jws.payload).map_err(|_| TokenRejection::Malformed)?;
        if claims.iss != self.config.issuer {
            return Err(TokenRejection::WrongIssuer);
        }
        if !claims.aud.contains(&self.config.audience) {
            return Err(TokenRejection::WrongAudience);
        }
        let now_s = now.unix_timestamp();
        let leeway = self.config.leeway.whole_seconds();
        if claims.exp.saturating_add(leeway) <= now_s {
            return Err(TokenRejection::Expired);
        }
        if claims.nbf.unwrap_or(i64::MIN) > now_s.saturating_add(leeway)
            || claims.iat > now_s.saturating_add(leeway)
        {
            return Err(TokenRejection::NotYetValid);
        }
        Ok(claims)
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_start_matches(' ');
    (!token.is_empty() && !token.contains(' ')).then_some(token)
}
