//! OpenID Connect: the id_token with `fhirUser`, and the discovery documents.
