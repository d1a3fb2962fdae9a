//! Access decisions for a typed FHIR request: patient compartment, search narrowing before
//! execution, result filtering after, and refusal of writes on read-only APIs.
