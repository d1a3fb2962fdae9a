//! The OAuth 2.0 error wire type (RFC 6749 §4.1.2.1 and §5.2).
//!
//! Descriptions are fixed strings chosen by fhirguard: nothing from the request is reflected.
//! The precise reason travels separately, typed, for the audit log.

use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

/// The RFC 6749 / RFC 7009 / RFC 6750 / OpenID Connect error codes fhirguard emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OAuthErrorCode {
    /// Missing, repeated or malformed parameter.
    InvalidRequest,
    /// Client authentication failed.
    InvalidClient,
    /// The code, refresh token or PKCE verifier is invalid, expired, revoked or not this
    /// client's.
    InvalidGrant,
    /// The client may not use this grant type / response type.
    UnauthorizedClient,
    /// The grant type is not supported.
    UnsupportedGrantType,
    /// The response type is not supported.
    UnsupportedResponseType,
    /// The scope is invalid, unknown or exceeds what may be granted.
    InvalidScope,
    /// The user or policy denied the request.
    AccessDenied,
    /// The server failed (storage, signing).
    ServerError,
    /// RFC 7009: the token type cannot be revoked.
    UnsupportedTokenType,
    /// RFC 6750 §3.1: the bearer token authorizing the call (at introspection) is invalid.
    InvalidToken,
    /// OpenID Connect Core §3.1.2.6: the `request` parameter (a request object) is not
    /// supported.
    RequestNotSupported,
    /// OpenID Connect Core §3.1.2.6: the `request_uri` parameter is not supported.
    RequestUriNotSupported,
}

impl OAuthErrorCode {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::UnauthorizedClient => "unauthorized_client",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::UnsupportedResponseType => "unsupported_response_type",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::AccessDenied => "access_denied",
            OAuthErrorCode::ServerError => "server_error",
            OAuthErrorCode::UnsupportedTokenType => "unsupported_token_type",
            OAuthErrorCode::InvalidToken => "invalid_token",
            OAuthErrorCode::RequestNotSupported => "request_not_supported",
            OAuthErrorCode::RequestUriNotSupported => "request_uri_not_supported",
        }
    }
}

/// The `WWW-Authenticate` challenge of a 401: the scheme the client used in its
/// `Authorization` header (RFC 6749 §5.2 asks for the one "matching the authentication scheme
/// used by the client").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Challenge {
    /// `Basic realm="token"`: client authentication by HTTP Basic failed.
    Basic,
    /// `Bearer realm="token", error="invalid_token"` (RFC 6750 §3): the bearer token that
    /// authorizes an introspection call is invalid (RFC 7662 §2.3).
    Bearer,
}

impl Challenge {
    /// The header value.
    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Challenge::Basic => "Basic realm=\"token\"",
            Challenge::Bearer => "Bearer realm=\"token\", error=\"invalid_token\"",
        })
    }
}

/// An OAuth error as it goes on the wire.
///
/// 400 unless a [`Challenge`] is set (then 401) or the error is `server_error` (500). A failed
/// client authentication is 401 with a matching challenge only when the client authenticated
/// in the `Authorization` header; a client that sent its credentials in the form (or none)
/// gets 400 `invalid_client` and no challenge — RFC 6749 §5.2's default status, since a 401
/// must carry a challenge (RFC 9110 §15.5.2) and the only one to give, `Basic`, names a scheme
/// the client did not use, and never `Bearer`, which is not client authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthError {
    /// The error code.
    pub error: OAuthErrorCode,
    /// A fixed human-readable description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<&'static str>,
    /// The HTTP status (400, 401 with a challenge, 500 for `server_error`).
    #[serde(skip)]
    pub status: StatusCode,
    /// The `WWW-Authenticate` challenge, for a 401.
    #[serde(skip)]
    pub challenge: Option<Challenge>,
}

impl OAuthError {
    /// A 400 error (500 for `server_error`).
    pub fn new(error: OAuthErrorCode, description: &'static str) -> Self {
        let status = match error {
            OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            error,
            error_description: Some(description),
            status,
            challenge: None,
        }
    }

    /// The same error as a 401 carrying `challenge`.
    #[must_use]
    pub fn with_challenge(mut self, challenge: Challenge) -> Self {
        self.status = StatusCode::UNAUTHORIZED;
        self.challenge = Some(challenge);
        self
    }

    /// The JSON error response, with `Cache-Control: no-store`, `Pragma: no-cache` and, for
    /// 401, the `WWW-Authenticate` challenge.
    pub fn to_response(&self) -> Response<Vec<u8>> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let mut response = json_response(self.status, body);
        // A 401 always names a scheme (RFC 9110 §15.5.2); client authentication's is Basic.
        let challenge = match self.challenge {
            Some(c) => Some(c),
            None if self.status == StatusCode::UNAUTHORIZED => Some(Challenge::Basic),
            None => None,
        };
        if let Some(c) = challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, c.header_value());
        }
        response
    }
}

/// A JSON response with the no-store / no-cache headers every token-endpoint answer carries.
pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
