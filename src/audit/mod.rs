//! Audit records shaped as FHIR AuditEvents, a keyed hash chain that makes alteration and
//! deletion detectable, and the sinks that keep them.
