//! Token introspection (RFC 7662, SMART profile) and revocation (RFC 7009).

use http::{HeaderMap, Request, Response, StatusCode, header};
use serde::Serialize;
use time::OffsetDateTime;

use super::endpoint::{TokenError, TokenFailure, parse_form_post};
use super::error::json_response;
use super::server::AuthorizationServer;
use super::store::{RefreshLookup, TokenHash};
use crate::consent::GrantStatus;

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
    /// `access_token` or `refresh_token`.
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

impl AuthorizationServer {
    /// RFC 7662 introspection. The caller must present either a valid access token
    /// (`Authorization: Bearer`, as SMART requires introspection to accept) or confidential
    /// client credentials; any active token of any client may then be introspected.
    pub fn introspect<B: AsRef<[u8]>>(
        &self,
        request: &Request<B>,
        now: OffsetDateTime,
    ) -> Result<Introspection, TokenError> {
        let form = parse_form_post(request).map_err(|r| self.token_error(r))?;
        self.authorize_introspection_caller(request.headers(), &form, now)?;
        let token = form
            .get("token")
            .map_err(|_| self.token_error(TokenFailure::Duplicate("token")))?
            .ok_or_else(|| self.token_error(TokenFailure::Missing("token")))?;
        Ok(self.introspect_token(token, now))
    }

    fn authorize_introspection_caller(
        &self,
        headers: &HeaderMap,
        form: &super::form::FormParams,
        now: OffsetDateTime,
    ) -> Result<(), TokenError> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
        if bearer {
            return self
                .validator
                .validate_headers(headers, now)
                .map(|_| ())
                .map_err(|_| {
                    self.token_error(TokenFailure::ClientAuth(
                        super::endpoint::ClientAuthFailure::UnknownClient,
                    ))
                });
        }
        match self.authenticate_client(headers, form, now) {
            Ok((client, _)) if client.auth.is_confidential() => Ok(()),
            Ok(_) => Err(self.token_error(TokenFailure::ClientAuth(
                super::endpoint::ClientAuthFailure::MissingCredentials,
            ))),
            Err(f) => Err(TokenError::from_fail(f)),
        }
    }

    /// Introspects one token (no caller check): access tokens by signature, claims,
    /// revocation and grant; refresh tokens by the store and grant.
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
                token_type: Some("access_token"),
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
            token_type: Some("refresh_token"),
            patient: ctx.patient.map(|p| p.to_string()),
            encounter: ctx.encounter,
            fhir_user: ctx.fhir_user.map(|u| self.absolute_fhir_url(&u)),
            context,
        }
    }

    /// RFC 7009 revocation. The client authenticates as at the token endpoint (public
    /// clients send `client_id`). A refresh token revokes its whole family (and so the
    /// family's access tokens); an access token is revoked by `jti`. Tokens that are unknown,
    /// already invalid or another client's are ignored, and the answer is 200 either way.
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
                _ => {}
            }
        }
        if let Ok(claims) = self.validator.verify_signature_and_claims(token, now) {
            if claims.client_id == client.id {
                let exp = OffsetDateTime::from_unix_timestamp(claims.exp)
                    .unwrap_or(now + self.config.access_token_ttl);
                self.store
                    .revoke_access_token(&claims.jti, exp + self.config.leeway)
                    .map_err(store_err)?;
            }
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
