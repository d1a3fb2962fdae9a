//! fhirguard's integration tests: one binary, one module per component, so that a 2-core
//! machine links the crate's test dependencies once.

#![allow(
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

// --- tests: shared helpers ---
mod common;

// --- tests: scope (issue 2) ---
mod scope;

// --- tests: category / enforce (issue 3) ---
mod category;

// --- tests: token / oidc (issue 4) ---
mod token;

// --- tests: consent (issue 5) ---
mod consent;

// --- tests: sanitize / integrity (issue 6) ---
mod sanitize;

mod integrity;

// --- tests: audit (issue 7) ---
mod audit;

// --- tests: middleware / tls (issue 8) ---
#[cfg(feature = "axum")]
mod middleware;

#[cfg(feature = "tls")]
mod tls;

// --- tests: demo EHR (issue 10) ---
#[path = "../examples/support/fhir_store.rs"]
mod fhir_store;
mod fhir_store_tests;

#[cfg(all(feature = "tls", feature = "axum", feature = "sqlite"))]
#[path = "../examples/support/ehr/mod.rs"]
mod ehr;

#[cfg(all(feature = "tls", feature = "axum", feature = "sqlite"))]
mod demo;

// --- tests: walkthrough + browser (issue 10) ---
#[cfg(all(feature = "tls", feature = "axum"))]
mod walkthrough;

#[cfg(all(feature = "tls", feature = "axum"))]
mod browser;

// --- tests: auth (issue 9) ---
mod auth;
