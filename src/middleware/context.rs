//! What the guard hands the host: the typed decision in the request's extensions, the typed
//! rejection in the response's extensions.

use std::collections::BTreeSet;

use http::StatusCode;

use crate::abuse::{EndpointClass, KeyKind};
use crate::audit::{DenyReason as AuditDenyReason, ErrorKind, Outcome, RequestId};
use crate::enforce::{Concealment, DenyReason};
use crate::fhir::{FhirRequest, PublicProblem, SearchParam};
use crate::ids::{CategoryId, ClientId, GrantId, PatientId};
use crate::sanitize::SanitizeError;
use crate::scope::ScopeSet;
use crate::token::TokenRejection;

/// The access decision for a request the guard let through, inserted into the request's
/// extensions for the host's FHIR handler (`req.extensions().get::<GuardContext>()`, or axum's
/// `Extension<GuardContext>`).
///
/// The handler must execute [`GuardContext::request`] — the request *after* narrowing — or
/// the request's URI, which the guard rewrote to carry the same narrowing parameters.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GuardContext {
    /// The patient in context (from the grant; for a grantless backend token, the token's).
    pub patient: Option<PatientId>,
    /// The OAuth client (the app).
    pub client_id: ClientId,
    /// The consent grant the token belongs to (`None` only for grantless backend tokens,
    /// which the guard refuses unless configured otherwise).
    pub grant_id: Option<GrantId>,
    /// The categories the patient approved.
    pub categories: BTreeSet<CategoryId>,
    /// The token's scopes, parsed (once per distinct scope string, shared between requests).
    pub scopes: std::sync::Arc<ScopeSet>,
    /// The typed request after narrowing: the client's parameters followed by the added ones
    /// (shared with the guard's audit record when nothing was added).
    pub request: std::sync::Arc<FhirRequest>,
    /// The parameters enforcement added (already part of [`GuardContext::request`]).
    pub narrowing: Vec<SearchParam>,
    /// The `fhirUser` claim of the token, if any.
    pub fhir_user: Option<String>,
    /// The correlation id the guard gave the request (also in the `X-Request-Id` response
    /// header and the audit record).
    pub request_id: Option<RequestId>,
}

/// Why the guard refused a request (or failed it), inserted into the response's extensions.
///
/// The wire only sees a generic OperationOutcome (or `401` with `WWW-Authenticate`); this is
/// the precise reason, for the host's logs and metrics. It holds no token, value or PHI.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GuardRejection {
    /// The sanitizer refused the request.
    #[error("request refused by the sanitizer: {0}")]
    Sanitize(SanitizeError),
    /// The access token is missing or invalid, or its grant is not active.
    #[error("access token refused: {0}")]
    Token(TokenRejection),
    /// The token carries no consent grant and the guard is configured to require one.
    #[error("the access token carries no consent grant")]
    GrantlessToken,
    /// Enforcement refused the request before it reached the handler.
    #[error("request denied: {0}")]
    Denied(DenyReason),
    /// Enforcement refused what the handler returned (a read of a resource outside the grant).
    #[error("response withheld: {0}")]
    ResponseDenied(DenyReason),
    /// A rate limit was hit.
    #[error("rate limit hit ({class:?}, by {key:?})")]
    RateLimited {
        /// The endpoint class.
        class: EndpointClass,
        /// Which identity's bucket was empty (client, grant, patient or address).
        key: KeyKind,
        /// Seconds until the request would fit (the `Retry-After` value).
        retry_after_seconds: u64,
    },
    /// The rate-limit store failed; the guard fails closed.
    #[error("the rate-limit store failed")]
    RateLimitUnavailable,
    /// The request body is larger than the sanitizer's body limit.
    #[error("the request body is too large")]
    BodyTooLarge,
    /// The request body could not be read.
    #[error("the request body could not be read")]
    BodyUnreadable,
    /// The concurrency limit was reached.
    #[error("too many requests in flight")]
    Overloaded,
    /// The handler's response could not be read, was too large, or was not the JSON its
    /// interaction requires.
    #[error("the handler's response could not be used")]
    UpstreamResponse,
    /// The method is not allowed on a public path.
    #[error("method not allowed on a public path")]
    MethodNotAllowed,
    /// The CORS preflight or request came from an origin that is not allowed.
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// The narrowing parameters could not be written into the request URI.
    #[error("the narrowed request could not be built")]
    NarrowingFailed,
    /// The audit record could not be kept; the response was withheld.
    #[error("the audit record could not be kept")]
    AuditFailed,
}

impl GuardRejection {
    /// The generic problem the client is shown, given the deployment's concealment.
    pub fn problem(&self, concealment: Concealment) -> PublicProblem {
        match self {
            GuardRejection::Sanitize(e) => e.public(),
            GuardRejection::Token(t) if t.is_malformed_request() => PublicProblem::BadRequest,
            GuardRejection::Token(_) | GuardRejection::GrantlessToken => {
                PublicProblem::Unauthorized
            }
            // A parameter enforcement cannot make safe is one the API does not support
            // (FHIR: 400 under strict handling), whoever asks: not a permission matter.
            GuardRejection::Denied(DenyReason::UnsupportedParameter { .. }) => {
                PublicProblem::NotSupported
            }
            GuardRejection::Denied(r) | GuardRejection::ResponseDenied(r) => {
                if r.depends_on_data() {
                    match concealment {
                        Concealment::NotFound => PublicProblem::NotFound,
                        Concealment::Forbidden => PublicProblem::Forbidden,
                    }
                } else {
                    PublicProblem::Forbidden
                }
            }
            GuardRejection::RateLimited { .. } => PublicProblem::TooManyRequests,
            GuardRejection::RateLimitUnavailable | GuardRejection::Overloaded => {
                PublicProblem::Unavailable
            }
            GuardRejection::BodyTooLarge => PublicProblem::PayloadTooLarge,
            GuardRejection::BodyUnreadable => PublicProblem::BadRequest,
            GuardRejection::UpstreamResponse
            | GuardRejection::NarrowingFailed
            | GuardRejection::AuditFailed => PublicProblem::Internal,
            GuardRejection::MethodNotAllowed => PublicProblem::MethodNotAllowed,
            GuardRejection::OriginNotAllowed => PublicProblem::Forbidden,
        }
    }

    /// Whether the refusal is RFC 6750's `insufficient_scope` (§3.1): the token is valid, and
    /// another token could be allowed this request (a scope naming the type or a wildcard, a
    /// grant of the categories `_has` or a chain looks into, the patient in context). The
    /// guard then answers `403` with `WWW-Authenticate: Bearer realm="fhir",
    /// error="insufficient_scope"`.
    ///
    /// Never for a refusal that depends on stored data (a resource outside the compartment or
    /// the grant): those must look exactly like a missing resource, which carries no
    /// challenge, under either [`Concealment`].
    pub fn insufficient_scope(&self) -> bool {
        match self {
            GuardRejection::Denied(reason) => matches!(
                reason,
                DenyReason::NoCoveringScope { .. }
                    | DenyReason::NoPatientContext
                    | DenyReason::OtherPatient
                    | DenyReason::SystemLevel
                    | DenyReason::ReverseChain { .. }
                    | DenyReason::Chain { .. }
            ),
            _ => false,
        }
    }

    /// The HTTP status the client sees.
    pub fn status(&self, concealment: Concealment) -> StatusCode {
        self.problem(concealment).status()
    }

    /// A stable machine-readable code (`"token"`, `"denied"`…), for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            GuardRejection::Sanitize(e) => e.code(),
            GuardRejection::Token(t) if t.is_malformed_request() => "invalid_request",
            GuardRejection::Token(_) => "invalid_token",
            GuardRejection::GrantlessToken => "grantless_token",
            GuardRejection::Denied(_) => "denied",
            GuardRejection::ResponseDenied(_) => "response_denied",
            GuardRejection::RateLimited { .. } => "rate_limited",
            GuardRejection::RateLimitUnavailable => "rate_limit_unavailable",
            GuardRejection::BodyTooLarge => "body_too_large",
            GuardRejection::BodyUnreadable => "body_unreadable",
            GuardRejection::Overloaded => "overloaded",
            GuardRejection::UpstreamResponse => "upstream_response",
            GuardRejection::MethodNotAllowed => "method_not_allowed",
            GuardRejection::OriginNotAllowed => "origin_not_allowed",
            GuardRejection::NarrowingFailed => "narrowing_failed",
            GuardRejection::AuditFailed => "audit_failed",
        }
    }

    /// The outcome the audit record carries.
    pub fn audit_outcome(&self) -> Outcome {
        match self {
            GuardRejection::Sanitize(e) => Outcome::Denied(match e.public() {
                PublicProblem::PayloadTooLarge
                | PublicProblem::UriTooLong
                | PublicProblem::HeadersTooLarge => AuditDenyReason::TooLarge,
                PublicProblem::NotSupported => AuditDenyReason::UnsupportedParameter,
                _ => match e {
                    SanitizeError::UnknownParameter { .. } => AuditDenyReason::UnsupportedParameter,
                    _ => AuditDenyReason::MalformedRequest,
                },
            }),
            GuardRejection::Token(t) => Outcome::Denied(match t {
                TokenRejection::Expired => AuditDenyReason::ExpiredToken,
                TokenRejection::GrantExpired => AuditDenyReason::GrantExpired,
                TokenRejection::GrantRevoked => AuditDenyReason::GrantRevoked,
                TokenRejection::GrantUnknown => AuditDenyReason::GrantUnknown,
                TokenRejection::NotBearer => AuditDenyReason::MalformedRequest,
                _ => AuditDenyReason::InvalidToken,
            }),
            GuardRejection::GrantlessToken => Outcome::Denied(AuditDenyReason::GrantUnknown),
            GuardRejection::Denied(r) | GuardRejection::ResponseDenied(r) => {
                Outcome::Denied(audit_deny_reason(r))
            }
            GuardRejection::RateLimited { .. } => Outcome::Denied(AuditDenyReason::RateLimited),
            GuardRejection::BodyTooLarge => Outcome::Denied(AuditDenyReason::TooLarge),
            GuardRejection::BodyUnreadable | GuardRejection::MethodNotAllowed => {
                Outcome::Denied(AuditDenyReason::MalformedRequest)
            }
            GuardRejection::OriginNotAllowed => Outcome::Denied(AuditDenyReason::InvalidToken),
            GuardRejection::RateLimitUnavailable | GuardRejection::Overloaded => {
                Outcome::Error(ErrorKind::Unavailable)
            }
            GuardRejection::UpstreamResponse => Outcome::Error(ErrorKind::Upstream),
            GuardRejection::NarrowingFailed | GuardRejection::AuditFailed => {
                Outcome::Error(ErrorKind::Internal)
            }
        }
    }
}

/// Enforcement's precise reason, in the audit vocabulary.
pub(crate) fn audit_deny_reason(reason: &DenyReason) -> AuditDenyReason {
    match reason {
        DenyReason::OtherPatient
        | DenyReason::OtherPatientRecord
        | DenyReason::OutsideCompartment
        | DenyReason::NoPatientContext => AuditDenyReason::OutsideCompartment,
        DenyReason::CategoryNotGranted => AuditDenyReason::CategoryNotGranted,
        DenyReason::ReadOnlyDeployment => AuditDenyReason::WriteForbidden,
        DenyReason::UnsupportedParameter { .. } => AuditDenyReason::UnsupportedParameter,
        DenyReason::Incomplete | DenyReason::BatchNeedsEntries => AuditDenyReason::MalformedRequest,
        _ => AuditDenyReason::InsufficientScope,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request-level denial another token could pass is `insufficient_scope`; no
    /// denial that depends on stored data is, whatever the concealment.
    #[test]
    fn insufficient_scope_is_never_a_concealed_denial() {
        let request_level = [
            DenyReason::NoCoveringScope {
                resource_type: "Observation".into(),
                letters: "rs",
            },
            DenyReason::NoPatientContext,
            DenyReason::OtherPatient,
            DenyReason::SystemLevel,
            DenyReason::ReverseChain {
                resource_type: "Observation".into(),
            },
            DenyReason::Chain {
                name: "subject.name".into(),
            },
        ];
        for reason in request_level {
            let denied = GuardRejection::Denied(reason.clone());
            assert!(denied.insufficient_scope(), "{reason:?}");
            assert!(!reason.depends_on_data(), "{reason:?}");
            for concealment in [Concealment::NotFound, Concealment::Forbidden] {
                assert_eq!(denied.problem(concealment), PublicProblem::Forbidden);
            }
            // The same reason about a returned resource is never a challenge.
            assert!(!GuardRejection::ResponseDenied(reason).insufficient_scope());
        }
        for reason in [
            DenyReason::OutsideCompartment,
            DenyReason::CategoryNotGranted,
            DenyReason::ScopeConstraintNotMet,
            DenyReason::Unclassifiable,
            DenyReason::TypeMismatch,
            DenyReason::ReadOnlyDeployment,
            DenyReason::OperationNotPermitted {
                name: "export".into(),
            },
            DenyReason::UnsupportedParameter {
                name: "_filter".into(),
            },
        ] {
            assert!(
                !GuardRejection::Denied(reason.clone()).insufficient_scope(),
                "{reason:?}"
            );
        }
        assert!(!GuardRejection::GrantlessToken.insufficient_scope());
        assert!(!GuardRejection::OriginNotAllowed.insufficient_scope());
    }

    #[test]
    fn unsupported_parameters_are_400_not_supported() {
        let denied = GuardRejection::Denied(DenyReason::UnsupportedParameter {
            name: "_contained".into(),
        });
        for concealment in [Concealment::NotFound, Concealment::Forbidden] {
            assert_eq!(denied.problem(concealment), PublicProblem::NotSupported);
        }
        assert_eq!(
            denied.status(Concealment::NotFound),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            denied.audit_outcome(),
            Outcome::Denied(AuditDenyReason::UnsupportedParameter)
        );
    }
}
