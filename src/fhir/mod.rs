//! The small FHIR REST model the rest of the crate needs: a typed request and the
//! OperationOutcome the wire sees.

mod outcome;
mod request;

pub use outcome::{
    Coding, ERROR_CODE_SYSTEM, Issue, IssueDetails, IssueSeverity, OperationOutcome, PublicError,
    PublicProblem, RejectionReason, error_response, problem_response,
};
pub use request::{FhirRequest, Interaction, ResourceType, SearchParam};
