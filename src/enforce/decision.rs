//! What enforcement answers: decisions, typed reasons, and the generic wire outcome.

use http::StatusCode;
use serde_json::{Value, json};

use crate::fhir::SearchParam;

/// What the host must do with the response once its FHIR handler has run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseCheck {
    /// Nothing (`metadata`).
    Nothing,
    /// Pass the single resource returned (read, vread) or written (create, update) to
    /// [`Enforcer::check_resource`](super::Enforcer::check_resource) /
    /// [`Enforcer::check_write`](super::Enforcer::check_write).
    Resource,
    /// Pass the Bundle returned (search, history, `$everything`) to
    /// [`Enforcer::filter_bundle`](super::Enforcer::filter_bundle).
    Bundle,
}

/// The access decision for one request, before it reaches the host's FHIR handler.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Run the request as sent, then apply the response check.
    Allow {
        /// What to do with the response.
        response: ResponseCheck,
    },
    /// Run the request with these search parameters added (they AND with the client's), then
    /// apply the response check. Narrowing keeps paging honest; filtering keeps it safe.
    Narrow {
        /// Parameters to append before execution.
        add: Vec<SearchParam>,
        /// What to do with the response.
        response: ResponseCheck,
    },
    /// Refuse. The reason is for the audit log; the wire gets
    /// [`Enforcer::wire_outcome`](super::Enforcer::wire_outcome).
    Deny(DenyReason),
}

impl Decision {
    /// Whether the request may run.
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Decision::Deny(_))
    }

    /// The deny reason, if denied.
    pub fn deny_reason(&self) -> Option<&DenyReason> {
        match self {
            Decision::Deny(r) => Some(r),
            _ => None,
        }
    }

    /// The response check, if allowed.
    pub fn response_check(&self) -> Option<ResponseCheck> {
        match self {
            Decision::Allow { response } | Decision::Narrow { response, .. } => Some(*response),
            Decision::Deny(_) => None,
        }
    }
}

/// Why access was refused: precise, for the audit record. Carries resource type and parameter
/// names only — never ids, codes or other PHI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DenyReason {
    /// No granted scope names this resource type with the needed permission letter.
    #[error("no granted scope covers {resource_type} with permission {letters}")]
    NoCoveringScope {
        /// The resource type asked for (`*` for system level).
        resource_type: String,
        /// The letter(s) needed.
        letters: &'static str,
    },
    /// The deployment is read-only (an S4S right-of-access API): writes are refused outright.
    #[error("this API is read-only")]
    ReadOnlyDeployment,
    /// A `patient/` scope is in use but the token has no patient in context.
    #[error("patient-scoped access without a patient in context")]
    NoPatientContext,
    /// A search names a patient other than the one in context (`patient=`, `subject=`,
    /// `Patient?_id=`).
    #[error("the request addresses a patient other than the one in context")]
    OtherPatient,
    /// The request addresses another patient's record by its id (`Patient/[id]`, its
    /// history, `Patient/[id]/$everything`, the compartment `Patient/[id]/[type]`). Answered
    /// as a missing record under [`Concealment::NotFound`], exactly as an id that does not
    /// exist (decided before any data is read, so both get the same answer).
    #[error("the request addresses another patient's record")]
    OtherPatientRecord,
    /// The resource does not belong to the compartment of the patient in context (checked
    /// through its references).
    #[error("the resource is outside the patient's compartment")]
    OutsideCompartment,
    /// None of the resource's categories is granted.
    #[error("none of the resource's data categories is granted")]
    CategoryNotGranted,
    /// Scopes name the type, but the resource fails every granular `param=value` constraint.
    #[error("the resource does not match the granular scope constraints")]
    ScopeConstraintNotMet,
    /// The resource cannot be classified (not a JSON object, no `resourceType`).
    #[error("the resource could not be classified")]
    Unclassifiable,
    /// The resource's type differs from the one the request addressed.
    #[error("the resource type differs from the one requested")]
    TypeMismatch,
    /// `_has` would select resources by the content of resources the caller cannot see.
    #[error("_has on {resource_type}, which is not fully visible to the caller")]
    ReverseChain {
        /// The type `_has` looks into.
        resource_type: String,
    },
    /// A chained parameter would select resources by the content of resources the caller
    /// cannot see, or its target type is ambiguous.
    #[error("chained parameter {name} reaches data not fully visible to the caller")]
    Chain {
        /// The parameter name as sent.
        name: String,
    },
    /// A parameter enforcement cannot make safe (`_filter`, `_query`, `_list`, `_elements`,
    /// `_summary`, `_contained`): it would bypass or blind the result filter.
    #[error("parameter {name} is not supported under category enforcement")]
    UnsupportedParameter {
        /// The parameter name.
        name: String,
    },
    /// A system-level search without `_type`, or a system-level history, needs a `*` scope.
    #[error("system-level access needs a wildcard scope")]
    SystemLevel,
    /// An operation enforcement does not know how to filter.
    #[error("operation ${name} is not permitted")]
    OperationNotPermitted {
        /// The operation name, without `$`.
        name: String,
    },
    /// The request lacks the resource type or id its interaction needs.
    #[error("the request lacks a resource type or id")]
    Incomplete,
    /// A batch or transaction must be decided entry by entry with `decide_batch`.
    #[error("batch and transaction bundles are decided entry by entry")]
    BatchNeedsEntries,
    /// A transaction is all-or-nothing, and one of its entries is denied.
    #[error("transaction entry {index} is denied")]
    TransactionEntryDenied {
        /// The entry's position.
        index: usize,
    },
}

impl DenyReason {
    /// Whether the reason depends on the content of stored data (as opposed to the request and
    /// the grant alone). Those are the reasons that must look exactly like "not found".
    pub fn depends_on_data(&self) -> bool {
        matches!(
            self,
            DenyReason::OutsideCompartment
                | DenyReason::OtherPatientRecord
                | DenyReason::CategoryNotGranted
                | DenyReason::ScopeConstraintNotMet
                | DenyReason::Unclassifiable
                | DenyReason::TypeMismatch
        )
    }
}

/// How a denied read of an existing resource is shown, and therefore also how a missing one
/// must be shown so the two are indistinguishable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Concealment {
    /// Both as `404 Not Found` (the default: hides existence).
    #[default]
    NotFound,
    /// Both as `403 Forbidden`.
    Forbidden,
}

/// What goes on the wire for a refusal: a status and a generic OperationOutcome whose text
/// never depends on the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct WireOutcome {
    /// HTTP status.
    pub status: StatusCode,
    /// An OperationOutcome.
    pub body: Value,
}

pub(crate) fn outcome(status: StatusCode) -> WireOutcome {
    let (code, text) = if status == StatusCode::NOT_FOUND {
        ("not-found", "Resource not found")
    } else if status == StatusCode::BAD_REQUEST {
        ("not-supported", "Parameter not supported")
    } else {
        ("forbidden", "Access denied")
    };
    WireOutcome {
        status,
        body: json!({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}]
        }),
    }
}
