//! The small FHIR REST model the rest of the crate needs: a typed request and the
//! OperationOutcome the wire sees.

mod outcome;
mod request;

pub use outcome::{
    Coding, ERROR_CODE_SYSTEM, Issue, IssueDetails, IssueSeverity, OperationOutcome, PublicError,
    PublicProblem, RejectionReason, error_response, problem_response,
};
pub use request::{FhirRequest, Interaction, ResourceType, SearchParam};

/// The media type of every FHIR JSON response fhirguard writes.
///
/// FHIR R4 (http.html) asks every response to state its character set, so the
/// `charset=utf-8` parameter is part of the value rather than left to the client to assume.
pub const FHIR_JSON_MEDIA_TYPE: &str = "application/fhir+json; charset=utf-8";
