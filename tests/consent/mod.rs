//! Consent grants (issue 5): one behavioural suite run against every store, the cut-off of
//! tokens through the real authorization server, FHIR Consent round trips, access history,
//! and (with the store features) persistence, crash, two-node and race tests.

mod cutoff;
mod fhir;
mod history;
mod memory;
mod props;
mod suite;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod crash;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod race;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod token_suite;
