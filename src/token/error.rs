//! The OAuth 2.0 error wire type (RFC 6749 §4.1.2.1 and §5.2).
//!
//! Descriptions are fixed strings chosen by fhirguard: nothing from the request is reflected.
//! The precise reason travels separately, typed, for the audit log.

use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

/// The RFC 6749 / RFC 7009 error codes fhirguard emits.
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
        }
    }
}

/// An OAuth error as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthError {
    /// The error code.
    pub error: OAuthErrorCode,
    /// A fixed human-readable description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<&'static str>,
    /// The HTTP status (400 or 401; 500 for `server_error`).
    #[serde(skip)]
    pub status: StatusCode,
    /// When 401 for HTTP Basic, the scheme to name in `WWW-Authenticate`.
    #[serde(skip)]
    pub basic_challenge: bool,
}

impl OAuthError {
    /// A 400 error.
    pub fn new(error: OAuthErrorCode, description: &'static str) -> Self {
        let status = match error {
            OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            error,
            error_description: Some(description),
            status,
            basic_challenge: false,
        }
    }

    /// The JSON error response, with `Cache-Control: no-store`, `Pragma: no-cache` and, for
    /// 401, a `WWW-Authenticate` challenge.
    pub fn to_response(&self) -> Response<Vec<u8>> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let mut response = json_response(self.status, body);
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = if self.basic_challenge {
                "Basic realm=\"token\""
            } else {
                "Bearer realm=\"token\", error=\"invalid_client\""
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
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
