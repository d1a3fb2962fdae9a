//! The small FHIR REST model the rest of the crate needs: a typed request and, later, the
//! OperationOutcome the wire sees.

mod request;

pub use request::{FhirRequest, Interaction, ResourceType, SearchParam};
