//! Request validation: FHIR REST requests, search-parameter values, size limits, encodings,
//! redirect URIs, HTML encoding for portal pages and response-header hygiene.
