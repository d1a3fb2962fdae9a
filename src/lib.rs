//! # fhirguard
//!
//! SMART-on-FHIR privacy and security building blocks for EHR servers.
//!
//! A patient logs in to her provider's portal from an app of her choice, sees what will be
//! shared and with whom, ticks the data categories she agrees to share and approves: that is
//! her HIPAA right-of-access request. The app then reads those categories, and only those,
//! through a SMART-on-FHIR API until a year has passed or she revokes the grant. fhirguard gives
//! an EHR every piece of that story as plain Rust types, traits the host implements, and a
//! tower middleware.
//!
//! ## Contents
//!
//! | module | what it does |
//! |---|---|
//! | [`scope`] | SMART scopes v1 and v2: grammar, normal form, v1→v2 mapping, covers/intersection, negotiation |
//! | [`category`] | data categories finer than a FHIR resource (vital signs, labs, smoking status…) and a classifier |
//! | [`enforce`] | the access decision for a FHIR request: compartment, narrowing, result filtering, writes |
//! | [`fhir`] | the typed FHIR REST request the other stages share |
//! | [`sanitize`] | request validation, limits, encodings, redirect URIs, HTML encoding, header hygiene |
//! | [`token`] | authorization-server core: authorize, PKCE, codes, tokens, refresh rotation, introspection, revocation, keys |
//! | [`oidc`] | id_token with `fhirUser` and discovery documents |
//! | [`consent`] | right-of-access request, grant lifecycle, revocation, stores |
//! | [`audit`] | AuditEvent-shaped records, keyed hash chain, sinks |
//! | [`auth`] | password hashing and policy, TOTP, risk-based step-up, throttling |
//! | [`abuse`] | rate limits per client, grant, patient and address; anomaly signals |
//! | [`clock`] | time as a dependency, so expiry is testable without sleeping |
//! | [`ids`] | validated identifiers shared by every component |
//!
//! ## Crate features
//!
//! The default feature set is the pure policy core: no async runtime, no database, no TLS stack.
//!
//! | feature | adds |
//! |---|---|
//! | `tls` | rustls server configuration: TLS 1.2+ with AEAD suites only, ring provider |
//! | `tower` | the guard middleware as a tower `Layer` + `Service` |
//! | `axum` | an axum `Router` mounting the authorization-server endpoints |
//! | `sqlite` | the SQLite consent and token store (the embedded default) |
//! | `postgres` | the PostgreSQL store for several API nodes sharing one database |
//!
//! ## Security model in a paragraph
//!
//! Every byte from the network is parsed into a typed value or refused with a typed error; the
//! wire only ever sees a generic OAuth error or OperationOutcome, while the precise reason goes
//! to the audit record. Tokens are short-lived, bound to a client and to a consent grant, and a
//! grant's revocation or expiry is checked on every request, so cutting off an app takes effect
//! at the very next call. Secrets are compared in constant time, stored hashed, and have
//! redacted `Debug` output; tokens, secrets and PHI never reach logs or error messages. Insecure
//! options exist only where a deployment truly needs them, and then only under a name that says
//! so (`dangerous`).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod clock;
pub mod ids;

// --- modules: scope (issue 2) ---
pub mod scope;

// --- modules: category / enforce (issue 3) ---
pub mod category;

pub mod enforce;

// --- modules: token / oidc (issue 4) ---
pub mod token;

pub mod oidc;

// --- modules: consent (issue 5) ---
pub mod consent;

// --- modules: fhir / sanitize / integrity (issue 6) ---
pub mod fhir;

pub mod sanitize;

pub mod integrity;

// --- modules: audit (issue 7) ---
pub mod audit;

mod json;

// --- modules: middleware / tls (issue 8) ---
#[cfg(feature = "tower")]
pub mod middleware;

#[cfg(feature = "tls")]
pub mod tls;

pub mod abuse;

// --- modules: auth (issue 9) ---
pub mod auth;

// ---------------------------------------------------------------------------------------------
// The curated public interface: the types most hosts need, flat at the crate root.
// ---------------------------------------------------------------------------------------------

pub use clock::{Clock, ManualClock, SystemClock};

pub use ids::{CategoryId, ClientId, GrantId, IdError, PatientId};

// --- pub use: scope (issue 2) ---
pub use scope::{
    FhirType, Negotiated, Permission, Permissions, ResourceScope, Scope, ScopeError, ScopeSet,
    ScopeSetError, negotiate,
};

// --- pub use: category / enforce (issue 3) ---
pub use category::{CategoryRegistry, Classification};
pub use enforce::{Decision, DenyReason, EnforceConfig, Enforcer, ResourceGrant, ScopeContext};

// --- pub use: token / oidc (issue 4) ---

// --- pub use: consent (issue 5) ---
#[cfg(feature = "sqlite")]
pub use consent::SqliteStore;
pub use consent::{
    ActiveGrant, Approver, ConsentError, ConsentStore, Disclosure, DisclosureRef, Grant,
    GrantState, GrantStatus, GrantStatusSource, MemoryConsentStore, RightOfAccessRequest,
};
#[cfg(feature = "postgres")]
pub use consent::{PostgresConfig, PostgresStore};

// --- pub use: fhir / sanitize / integrity (issue 6) ---
pub use fhir::{FhirRequest, Interaction, ResourceType, SearchParam};

pub use fhir::{OperationOutcome, PublicError, PublicProblem, RejectionReason, error_response};

pub use integrity::{DigestAlgorithm, DigestError, verify_content_digest};

pub use sanitize::{
    RedirectUri, SanitizeError, SanitizedRequest, Sanitizer, SanitizerConfig, SecurityHeaders,
};

// --- pub use: audit (issue 7) ---
pub use audit::{AuditLog, AuditRecord, AuditSink, ChainHead, FileSink, KeyRing, Verifier};

// --- pub use: middleware / tls (issue 8) ---
#[cfg(feature = "tls")]
pub use tls::{Hsts, TlsConfigError, TlsServerConfigBuilder};

pub use abuse::{AnomalyDetector, RateLimitDecision, RateLimitPolicy, RateLimiter};

#[cfg(feature = "tower")]
pub use middleware::{GuardConfig, GuardContext, GuardLayer, GuardRejection, GuardService};

// --- pub use: auth (issue 9) ---
