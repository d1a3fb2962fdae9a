//! Token introspection (RFC 7662, SMART profile) and revocation (RFC 7009).

use http::{HeaderMap, Request, Response, StatusCode, header};
use serde::Serialize;
use time::OffsetDateTime;

use super::clients::Client;
use super::endpoint::{TokenError, TokenFailure, parse_form_post};
use super::error::json_response;
use super::server::AuthorizationServer;
use super::store::{RefreshLookup, TokenHash};
use crate::consent::GrantStatus;
use crate::ids::ClientId;

/// An introspection answer. Inactive tokens serialise as exactly `{"active":false}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Introspection {
    /// Whether the token is active.
    pub active: bool,
    /// Granted scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The client the token was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Expiry (seconds since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issue time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Subject (the id_token's `sub`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The access token's type, `Bearer` (RFC 7662 §2.2 refers to RFC 6749 §7.1's access
    /// token types). Absent for a refresh token, which has no such type (`refresh_token` is a
    /// `token_type_hint`, not a token type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// Patient in context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// Encounter in context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    /// The user as a FHIR resource URL.
    #[serde(rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    /// The other launch-context parameters of the token response (`need_patient_banner`,
    /// `smart_style_url`, `fhirContext`, `intent`, `tenant`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub context: Option<super::access::SmartContextClaims>,
}

impl Introspection {
    /// `{"active": false}`.
    pub fn inactive() -> Self {
        Self::default()
    }

    /// 200 JSON, no-store.
    pub fn to_response(&self) -> Response<Vec<u8>> {
        json_response(StatusCode::OK, serde_json::to_vec(self).unwrap_or_default())
    }
}

/// What an introspection found, before it goes on the wire
/// ([`AuthorizationServer::introspect_checked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
// The large variant is the usual one: boxing it would allocate for every answer.
#[allow(clippy::large_enum_variant)]
pub enum IntrospectionOutcome {
    /// The answer for the caller (`{"active":false}` for an unknown or inactive token).
    Answered(Introspection),
    /// The token is live but issued to a client other than the caller, which may only learn
    /// about its own: answered `{"active":false}`, exactly like a token that does not exist
    /// (RFC 7662 §2.2).
    Withheld,
}

impl IntrospectionOutcome {
    /// What the caller is told.
    pub fn into_answer(self) -> Introspection {
        match self {
            IntrospectionOutcome::Answered(answer) => answer,
            IntrospectionOutcome::Withheld => Introspection::inactive(),
        }
    }
}

/// Whose tokens an introspection caller may learn about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entitlement {
    /// Tokens issued to any client: a resource server (`Client::introspect_any_token`).
    AnyToken,
    /// Only tokens issued to this client.
    OwnTokens(ClientId),
}

impl AuthorizationServer {
    /// RFC 7662 introspection.
    ///
    /// The caller presents either an access token (`Authorization: Bearer`, which SMART asks
    /// the endpoint to accept) or confidential-client credentials, as at the token endpoint.
    /// What it may learn depends on who it is: a client registered with
    /// [`Client::introspect_any_token`](super::Client::introspect_any_token) (a resource server)
    /// is answered for any token; every other caller only for tokens issued to its own client.
    /// A token the caller is not entitled to is answered `{"active":false}`, exactly like an
    /// unknown one (RFC 7662 §2.2), so one app cannot learn another app's scopes or patient.
    pub fn introspect<B: AsRef<[u8]>>(
        &self,
        request: &Request<B>,
        now: OffsetDateTime,
    ) -> Result<Introspection, TokenError> {
        self.introspect_checked(request, now)
            .map(IntrospectionOutcome::into_answer)
    }

    /// [`Self::introspect`], saying also whether the answer was withheld: the token is live
    /// but the caller may not learn about it. The wire answer is the same either way
    /// ([`IntrospectionOutcome::into_answer`]); the difference is for the audit trail, where
    /// one app asking about another app's tokens is worth a denial record.
    pub fn introspect_checked<B: AsRef<[u8]>>(
        &self,
        request: &Request<B>,
        now: OffsetDateTime,
    ) -> Result<IntrospectionOutcome, TokenError> {
        let form = parse_form_post(request).map_err(|r| self.token_error(r))?;
        let caller = self
            .authorize_introspection_caller(request.headers(), &form, now)
            .map_err(unauthorized_caller)?;
        let token = form
            .get("token")
            .map_err(|_| self.token_error(TokenFailure::Duplicate("token")))?
            .ok_or_else(|| self.token_error(TokenFailure::Missing("token")))?;
        // Not used (every kind of token is looked for), but a parameter sent twice is
        // refused here as everywhere (RFC 6749 §3.2).
        form.get("token_type_hint")
            .map_err(|_| self.token_error(TokenFailure::Duplicate("token_type_hint")))?;
        let answer = self.introspect_token(token, now);
        Ok(match caller {
            Entitlement::AnyToken => IntrospectionOutcome::Answered(answer),
            Entitlement::OwnTokens(id) if answer.client_id.as_deref() == Some(id.as_str()) => {
                IntrospectionOutcome::Answered(answer)
            }
            // A live token of another client.
            Entitlement::OwnTokens(_) if answer.active => IntrospectionOutcome::Withheld,
            // Unknown or inactive: the answer says nothing anyway.
            Entitlement::OwnTokens(_) => IntrospectionOutcome::Answered(Introspection::inactive()),
        })
    }

    fn authorize_introspection_caller(
        &self,
        headers: &HeaderMap,
        form: &super::form::FormParams,
        now: OffsetDateTime,
    ) -> Result<Entitlement, TokenError> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
        let entitlement = |client: &Client| {
            if client.may_introspect_any_token() {
                Entitlement::AnyToken
            } else {
                Entitlement::OwnTokens(client.id.clone())
            }
        };
        if bearer {
            // The bearer token is this request's credential (RFC 6749 §2.3: one method only).
            let second_credential = headers
                .get_all(header::AUTHORIZATION)
                .iter()
                .nth(1)
                .is_some()
                || ["client_secret", "client_assertion", "client_assertion_type"]
                    .iter()
                    .any(|name| form.contains(name));
            if second_credential {
                return Err(self.token_error(TokenFailure::ClientAuth(
                    super::endpoint::ClientAuthFailure::MultipleMethods,
                )));
            }
            let valid = self.validator.validate_headers(headers, now).map_err(|e| {
                self.token_error(TokenFailure::ClientAuth(
                    super::endpoint::ClientAuthFailure::BearerRejected(e),
                ))
            })?;
            // The registration is read now, not from the token: withdrawing a resource
            // server's permission takes effect for the tokens it already holds.
            let client_id = &valid.claims.client_id;
            return Ok(match self.clients.client(client_id) {
                Some(client) => entitlement(&client),
                None => Entitlement::OwnTokens(client_id.clone()),
            });
        }
        match self.authenticate_client(headers, form, now) {
            Ok((client, _)) if client.auth.is_confidential() => Ok(entitlement(&client)),
            // A public client's `client_id` proves nothing: anyone could send it.
            Ok(_) => Err(self.token_error(TokenFailure::ClientAuth(
                super::endpoint::ClientAuthFailure::MissingCredentials,
            ))),
            Err(f) => Err(TokenError::from_fail(f)),
        }
    }

    /// Introspects one token with **no caller check**: access tokens by signature, claims,
    /// revocation and grant; refresh tokens by the store and grant. For a host that decided
    /// itself who may see the answer; [`Self::introspect`] is the endpoint.
    pub fn introspect_token(&self, token: &str, now: OffsetDateTime) -> Introspection {
        if let Ok(valid) = self.validator.validate(token, now) {
            let c = std::sync::Arc::unwrap_or_clone(valid.claims);
            return Introspection {
                active: true,
                scope: Some(c.scope),
                client_id: Some(c.client_id.to_string()),
                exp: Some(c.exp),
                iat: Some(c.iat),
                iss: Some(c.iss),
                sub: Some(c.sub),
                aud: c.aud.into_iter().next(),
                // RFC 7662 §2.2: the token type as RFC 6749 §7.1 names it, not a hint value.
                token_type: Some("Bearer"),
                patient: c.patient.map(|p| p.to_string()),
                encounter: c.encounter,
                fhir_user: c.fhir_user.map(|u| self.absolute_fhir_url(&u)),
                context: c.context,
            };
        }
        if token.len() > 512 {
            return Introspection::inactive();
        }
        let Ok(RefreshLookup::Current(family)) =
            self.store.lookup_refresh(&TokenHash::of(token), now)
        else {
            return Introspection::inactive();
        };
        if !matches!(
            self.grants.grant_status(&family.context.grant_id, now),
            GrantStatus::Active(_)
        ) {
            return Introspection::inactive();
        }
        let ctx = family.context;
        let context = super::access::SmartContextClaims::of(&ctx);
        Introspection {
            active: true,
            scope: Some(ctx.scope.to_string()),
            client_id: Some(family.client_id.to_string()),
            exp: Some(family.expires_at.unix_timestamp()),
            iat: None,
            iss: Some(self.config.issuer.clone()),
            sub: Some(ctx.subject),
            aud: Some(self.config.fhir_base_url.clone()),
            token_type: None,
            patient: ctx.patient.map(|p| p.to_string()),
            encounter: ctx.encounter,
            fhir_user: ctx.fhir_user.map(|u| self.absolute_fhir_url(&u)),
            context,
        }
    }

    /// RFC 7009 revocation. The client authenticates as at the token endpoint (public
    /// clients send `client_id`). A refresh token revokes its whole family (and so the
    /// family's access tokens); an access token is revoked by `jti`. Tokens that are unknown
    /// or already invalid are answered 200 (§2.2: the client could do nothing with an error);
    /// a live token of another client is refused, `invalid_grant`
    /// ([`TokenFailure::RevokeOtherClient`]), and left alone (§2.1). The refusal tells the
    /// caller no more than the token it already holds does.
    pub fn revoke<B: AsRef<[u8]>>(
        &self,
        request: &Request<B>,
        now: OffsetDateTime,
    ) -> Result<Revoked, TokenError> {
        let form = parse_form_post(request).map_err(|r| self.token_error(r))?;
        let (client, _) = self
            .authenticate_client(request.headers(), &form, now)
            .map_err(TokenError::from_fail)?;
        let token = form
            .get("token")
            .map_err(|_| self.token_error(TokenFailure::Duplicate("token")))?
            .ok_or_else(|| self.token_error(TokenFailure::Missing("token")))?;
        form.get("token_type_hint")
            .map_err(|_| self.token_error(TokenFailure::Duplicate("token_type_hint")))?;
        let store_err = |e| self.token_error(TokenFailure::from(e));
        if token.len() <= 512 {
            match self
                .store
                .lookup_refresh(&TokenHash::of(token), now)
                .map_err(store_err)?
            {
                RefreshLookup::Current(family) if family.client_id == client.id => {
                    self.store
                        .revoke_family(&family.family_id)
                        .map_err(store_err)?;
                    return Ok(Revoked);
                }
                RefreshLookup::RotatedOut {
                    family_id,
                    client_id,
                } if client_id == client.id => {
                    self.store.revoke_family(&family_id).map_err(store_err)?;
                    return Ok(Revoked);
                }
                RefreshLookup::Current(_) | RefreshLookup::RotatedOut { .. } => {
                    return Err(self.token_error(TokenFailure::RevokeOtherClient));
                }
                _ => {}
            }
        }
        if let Ok(claims) = self.validator.verify_signature_and_claims(token, now) {
            if claims.client_id != client.id {
                return Err(self.token_error(TokenFailure::RevokeOtherClient));
            }
            let exp = OffsetDateTime::from_unix_timestamp(claims.exp)
                .unwrap_or(now + self.config.access_token_ttl);
            self.store
                .revoke_access_token(&claims.jti, exp + self.config.leeway)
                .map_err(store_err)?;
        }
        Ok(Revoked)
    }

    fn token_error(&self, reason: TokenFailure) -> TokenError {
        TokenError::from_fail(reason.into())
    }
}

/// A successful revocation: 200, empty body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked;

impl Revoked {
    /// 200 with an empty body and `Cache-Control: no-store`.
    pub fn to_response(&self) -> Response<Vec<u8>> {
        let mut response = json_response(StatusCode::OK, Vec::new());
        response.headers_mut().remove(header::CONTENT_TYPE);
        response
    }
}

/// RFC 7662 §2.3: a caller whose credentials are missing or invalid is answered `401`, however
/// it tried to authenticate (the token endpoint may answer `400` when no `Authorization`
/// header was used, RFC 6749 §5.2; introspection may not). The challenge names Basic, which
/// the endpoint accepts.
fn unauthorized_caller(mut e: TokenError) -> TokenError {
    if e.oauth.error == super::error::OAuthErrorCode::InvalidClient
        && e.oauth.status == http::StatusCode::BAD_REQUEST
    {
        e.oauth = e.oauth.with_challenge(super::error::Challenge::Basic);
    }
    e
}
