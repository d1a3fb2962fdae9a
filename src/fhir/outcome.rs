//! The one place internal errors become wire responses on the FHIR API.
//!
//! Every component's error knows two things about itself: the generic [`PublicProblem`] the
//! client may see (a status, a stable code, fixed text) and a precise machine-readable reason
//! for the audit record. [`error_response`] builds the client's `OperationOutcome` from the
//! first only, and puts the second in the response's extensions as a [`RejectionReason`] for
//! the middleware and the audit sink to pick up; it never reaches the body or a header.
//!
//! OAuth endpoints answer with RFC 6749 error JSON instead; that mapping lives in the token
//! module and is not duplicated here.

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::sanitize::headers::{ResponseKind, SecurityHeaders};

/// The generic problems a FHIR API client may be told about.
///
/// Deliberately coarse: the client learns the class of failure, never which check failed,
/// which library or storage was involved, or anything about other patients' data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PublicProblem {
    /// 400: the request is malformed or not acceptable.
    BadRequest,
    /// 401: no or invalid credentials.
    Unauthorized,
    /// 403: authenticated but not allowed.
    Forbidden,
    /// 404: nothing here (also used where "forbidden" would leak existence).
    NotFound,
    /// 405: the method is not allowed on this path.
    MethodNotAllowed,
    /// 400 with `not-supported`: an operation or feature the server does not offer.
    NotSupported,
    /// 406: the client accepts no format this API answers in (it speaks FHIR JSON only).
    NotAcceptable,
    /// 408: the request did not arrive in time (a server-side deadline on reading it).
    RequestTimeout,
    /// 413: the body is too large.
    PayloadTooLarge,
    /// 414: the request target is too long.
    UriTooLong,
    /// 415: the content type is not accepted.
    UnsupportedMediaType,
    /// 429: too many requests.
    TooManyRequests,
    /// 431: request headers too large.
    HeadersTooLarge,
    /// 500: something failed on the server; no detail.
    Internal,
    /// 503: temporarily unavailable.
    Unavailable,
}

impl PublicProblem {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            PublicProblem::BadRequest | PublicProblem::NotSupported => StatusCode::BAD_REQUEST,
            PublicProblem::Unauthorized => StatusCode::UNAUTHORIZED,
            PublicProblem::Forbidden => StatusCode::FORBIDDEN,
            PublicProblem::NotFound => StatusCode::NOT_FOUND,
            PublicProblem::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            PublicProblem::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            PublicProblem::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            PublicProblem::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            PublicProblem::UriTooLong => StatusCode::URI_TOO_LONG,
            PublicProblem::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PublicProblem::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            PublicProblem::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            PublicProblem::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            PublicProblem::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The FHIR `IssueType` code (`OperationOutcome.issue.code`).
    pub fn issue_type(self) -> &'static str {
        match self {
            PublicProblem::BadRequest => "invalid",
            PublicProblem::Unauthorized => "login",
            PublicProblem::Forbidden => "forbidden",
            PublicProblem::NotFound => "not-found",
            PublicProblem::MethodNotAllowed
            | PublicProblem::NotSupported
            | PublicProblem::NotAcceptable
            | PublicProblem::UnsupportedMediaType => "not-supported",
            PublicProblem::PayloadTooLarge
            | PublicProblem::UriTooLong
            | PublicProblem::HeadersTooLarge => "too-long",
            PublicProblem::TooManyRequests => "throttled",
            PublicProblem::RequestTimeout => "timeout",
            PublicProblem::Internal => "exception",
            PublicProblem::Unavailable => "transient",
        }
    }

    /// A stable code clients and support staff can quote (`OperationOutcome.issue.details`).
    pub fn code(self) -> &'static str {
        match self {
            PublicProblem::BadRequest => "API-400",
            PublicProblem::Unauthorized => "API-401",
            PublicProblem::Forbidden => "API-403",
            PublicProblem::NotFound => "API-404",
            PublicProblem::MethodNotAllowed => "API-405",
            PublicProblem::NotSupported => "API-400-NS",
            PublicProblem::NotAcceptable => "API-406",
            PublicProblem::RequestTimeout => "API-408",
            PublicProblem::PayloadTooLarge => "API-413",
            PublicProblem::UriTooLong => "API-414",
            PublicProblem::UnsupportedMediaType => "API-415",
            PublicProblem::TooManyRequests => "API-429",
            PublicProblem::HeadersTooLarge => "API-431",
            PublicProblem::Internal => "API-500",
            PublicProblem::Unavailable => "API-503",
        }
    }

    /// The fixed, generic text.
    pub fn text(self) -> &'static str {
        match self {
            PublicProblem::BadRequest => "The request is not valid.",
            PublicProblem::Unauthorized => "Authentication is required.",
            PublicProblem::Forbidden => "Access to this resource is not permitted.",
            PublicProblem::NotFound => "The requested resource was not found.",
            PublicProblem::MethodNotAllowed => "This method is not allowed here.",
            PublicProblem::NotSupported => "This request is not supported.",
            PublicProblem::NotAcceptable => {
                "The requested format is not available; this API answers in FHIR JSON."
            }
            PublicProblem::RequestTimeout => "The request took too long to arrive.",
            PublicProblem::PayloadTooLarge => "The request body is too large.",
            PublicProblem::UriTooLong => "The request URL is too long.",
            PublicProblem::UnsupportedMediaType => "The content type is not supported.",
            PublicProblem::TooManyRequests => "Too many requests; try again later.",
            PublicProblem::HeadersTooLarge => "The request headers are too large.",
            PublicProblem::Internal => "The server could not complete the request.",
            PublicProblem::Unavailable => "The service is temporarily unavailable.",
        }
    }

    /// The `OperationOutcome` for this problem.
    pub fn outcome(self) -> OperationOutcome {
        OperationOutcome::single(
            IssueSeverity::Error,
            self.issue_type(),
            self.code(),
            self.text(),
        )
    }
}

/// An error that knows how it is shown to a FHIR API client and how it is audited.
///
/// Implemented by [`crate::sanitize::SanitizeError`]; other components implement it for
/// their own error enums so that [`error_response`] stays the only mapping to the wire.
pub trait PublicError: std::error::Error {
    /// The generic problem the client sees.
    fn public(&self) -> PublicProblem;
    /// The component the error comes from (`"sanitize"`), for the audit record.
    fn component(&self) -> &'static str;
    /// A stable machine-readable reason (`"unknown_parameter"`), for the audit record.
    fn reason_code(&self) -> &'static str;
    /// Headers the problem's status requires (the `Allow` of a `405`, RFC 9110 §15.5.6).
    /// They say what the server accepts, never why the request failed. Default: none.
    fn response_headers(&self, headers: &mut HeaderMap) {
        let _ = headers;
    }
}

impl PublicError for crate::sanitize::SanitizeError {
    fn public(&self) -> PublicProblem {
        crate::sanitize::SanitizeError::public(self)
    }
    fn component(&self) -> &'static str {
        "sanitize"
    }
    fn reason_code(&self) -> &'static str {
        self.code()
    }
    fn response_headers(&self, headers: &mut HeaderMap) {
        if let Some(allow) = self.allowed_methods() {
            headers.insert(header::ALLOW, allow.header_value());
        }
    }
}

/// The detailed, typed reason kept for the audit log, attached to the response's extensions
/// by [`error_response`]. It never appears in the body or headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionReason {
    /// The component that refused (`"sanitize"`).
    pub component: &'static str,
    /// Its stable reason code (`"double_encoding"`).
    pub code: &'static str,
    /// The error's own message (parameter names at most; never values, tokens or PHI).
    pub detail: String,
    /// What the client was told.
    pub public: PublicProblem,
}

/// Builds the wire response for `err`: a generic `OperationOutcome` (`application/fhir+json`)
/// with the problem's status, the headers that status requires
/// ([`PublicError::response_headers`]) and security headers (`no-store`), and a
/// [`RejectionReason`] in the extensions.
pub fn error_response<E: PublicError + ?Sized>(err: &E) -> Response<Vec<u8>> {
    let public = err.public();
    let mut response = problem_response(public);
    err.response_headers(response.headers_mut());
    response.extensions_mut().insert(RejectionReason {
        component: err.component(),
        code: err.reason_code(),
        detail: err.to_string(),
        public,
    });
    response
}

/// The wire response for a bare problem (no audit reason attached).
pub fn problem_response(problem: PublicProblem) -> Response<Vec<u8>> {
    let body = problem.outcome().to_json();
    let mut response = Response::new(body);
    *response.status_mut() = problem.status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(super::FHIR_JSON_MEDIA_TYPE),
    );
    if problem == PublicProblem::Unauthorized {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    SecurityHeaders::default().apply(headers, ResponseKind::Phi);
    response
}

/// `OperationOutcome.issue.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum IssueSeverity {
    /// The request failed.
    Error,
    /// The request succeeded with a caveat (e.g. a parameter stripped under lenient handling).
    Warning,
    /// Information only.
    Information,
}

/// A minimal FHIR R4 `OperationOutcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationOutcome {
    resource_type: &'static str,
    /// The issues.
    pub issue: Vec<Issue>,
}

/// One `OperationOutcome.issue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// Severity.
    pub severity: IssueSeverity,
    /// FHIR IssueType code.
    pub code: &'static str,
    /// Stable details code and generic text.
    pub details: IssueDetails,
}

/// `OperationOutcome.issue.details` as a CodeableConcept with one coding and a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssueDetails {
    /// One coding in the code system.
    pub coding: Vec<Coding>,
    /// Generic human-readable text.
    pub text: &'static str,
}

/// A FHIR Coding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coding {
    /// The code system.
    pub system: &'static str,
    /// The code.
    pub code: &'static str,
}

/// The code system of fhirguard's stable error codes.
pub const ERROR_CODE_SYSTEM: &str = "urn:api:error-code";

impl OperationOutcome {
    /// An outcome with one issue.
    pub fn single(
        severity: IssueSeverity,
        issue_type: &'static str,
        code: &'static str,
        text: &'static str,
    ) -> Self {
        Self {
            resource_type: "OperationOutcome",
            issue: vec![Issue {
                severity,
                code: issue_type,
                details: IssueDetails {
                    coding: vec![Coding {
                        system: ERROR_CODE_SYSTEM,
                        code,
                    }],
                    text,
                },
            }],
        }
    }

    /// Serialised JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail; fall back to a fixed body anyway.
        serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}"#
                .to_vec()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_json_shape() {
        let json: serde_json::Value =
            serde_json::from_slice(&PublicProblem::BadRequest.outcome().to_json()).unwrap();
        assert_eq!(json["resourceType"], "OperationOutcome");
        assert_eq!(json["issue"][0]["code"], "invalid");
        assert_eq!(json["issue"][0]["details"]["coding"][0]["code"], "API-400");
    }

    #[test]
    fn rejection_reason_goes_to_extensions_only() {
        let err = crate::sanitize::SanitizeError::UnknownParameter {
            name: "secretname".into(),
        };
        let resp = error_response(&err);
        assert_eq!(resp.status(), 400);
        let body = String::from_utf8(resp.body().clone()).unwrap();
        assert!(!body.contains("secretname"));
        let reason = resp.extensions().get::<RejectionReason>().unwrap();
        assert_eq!(reason.code, "unknown_parameter");
        assert!(reason.detail.contains("secretname"));
    }

    #[test]
    fn method_not_allowed_carries_allow() {
        use crate::sanitize::{AllowedMethods, SanitizeError};
        let err = SanitizeError::MethodNotAllowed {
            allow: AllowedMethods::GET_HEAD | AllowedMethods::POST,
        };
        let resp = error_response(&err);
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[header::ALLOW], "GET, HEAD, POST");
        // Other problems carry no `Allow`.
        let other = error_response(&SanitizeError::InvalidId);
        assert!(other.headers().get(header::ALLOW).is_none());
    }
}
