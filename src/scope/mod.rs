//! The SMART App Launch scope language (v1 and v2): grammar, normal form, v1→v2 mapping, the
//! covers/intersection algebra and negotiation of a requested scope set.
//!
//! # The pieces
//!
//! - [`Scope`]: one token. Resource scopes ([`ResourceScope`]: context, type, permissions,
//!   granular [`Filter`]s), `launch` and [`LaunchScope`]s, `openid`, `fhirUser`, `profile`,
//!   `offline_access`, `online_access`, and [`OpaqueScope`] for everything else.
//! - [`ScopeSet`]: the space-separated string, deduplicated, in the client's order.
//! - The algebra: [`ResourceScope::covers`], [`ScopeSet::covers`], [`ResourceScope::intersect`],
//!   [`ScopeSet::intersect`], [`ScopeSet::normalized`], and for enforcement
//!   [`ScopeSet::access`] (full, filtered or denied, with the filters that apply).
//! - [`negotiate`]: what to grant given what the client may have and what the patient approved.
//!
//! ```
//! use fhirguard::scope::{Access, Context, FhirType, Permission, ScopeSet};
//!
//! let granted: ScopeSet = "launch/patient openid fhirUser patient/Patient.read \
//!     patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
//!     .parse()?;
//! assert!(granted.permits(Context::Patient, FhirType::PATIENT, Permission::Search));
//! let Access::Filtered(f) = granted.access(Context::Patient, FhirType::OBSERVATION, Permission::Search)
//! else { panic!("granular") };
//! assert_eq!(
//!     f.allowed_values("category"),
//!     Some(vec!["http://terminology.hl7.org/CodeSystem/observation-category|laboratory"]),
//! );
//! # Ok::<(), fhirguard::scope::ScopeSetError>(())
//! ```
//!
//! # Choices where the guide leaves freedom
//!
//! - Malformed SMART-looking tokens (`patient/Observation.dus`, `Patient/Observation.rs`,
//!   `patient/Foo.rs`) are errors with a reason, never reinterpreted; [`ScopeSet::parse_lenient`]
//!   sets them aside for servers that prefer to ignore them. Unknown tokens are kept opaque.
//! - v1 syntax is accepted and kept as written (so v1 clients get v1 back); it means exactly the
//!   v2 letters of the guide's table (`read` = `rs`, `write` = `cud`, `*` = `cruds`).
//! - Experimental filter features (modifiers, chains, `_filter`) are refused unless
//!   [`ParseOptions::experimental_filters`] is on; then they are compared as opaque names.
//! - Known typos of category system URLs in US Core's published scopes are repaired on parsing
//!   (see [`canonical_system`]), so only the correct URL is ever stored or printed.
//!
//! `docs/scopes.md` has the grammar and the algebra's rules in full.

mod errata;
mod error;
mod filter;
mod item;
mod negotiate;
mod permission;
mod resource;
mod set;
mod types;

pub use errata::canonical_system;
pub use error::{ExperimentalFeature, QueryError, ScopeError, ScopeSetError};
pub use filter::{Filter, TokenValue};
pub use item::{LaunchScope, OpaqueScope, Scope};
pub use negotiate::{Dropped, Limit, Narrowed, Negotiated, negotiate};
pub use permission::{Permission, Permissions};
pub use resource::{Context, ResourceScope, Syntax, TypeSelector};
pub use set::{Access, FilteredAccess, RejectedScope, ScopeSet};
pub use types::FhirType;

/// Limits that keep hostile scope strings cheap: every one is checked before the work it bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Longest scope string, in bytes (default 16 KiB: the guide warns that scope strings
    /// beyond a few kB break headers).
    pub max_len: usize,
    /// Most scope tokens in one string (default 256).
    pub max_scopes: usize,
    /// Longest single scope token, in bytes (default 2 KiB).
    pub max_scope_len: usize,
    /// Most `&`-joined filters in one granular scope (default 8).
    pub max_filters: usize,
    /// Most comma-separated alternatives in one filter (default 32).
    pub max_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_len: 16 * 1024,
            max_scopes: 256,
            max_scope_len: 2048,
            max_filters: 8,
            max_values: 32,
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_len`].
    #[must_use]
    pub fn max_len(mut self, n: usize) -> Self {
        self.max_len = n;
        self
    }

    /// Sets [`Limits::max_scopes`].
    #[must_use]
    pub fn max_scopes(mut self, n: usize) -> Self {
        self.max_scopes = n;
        self
    }

    /// Sets [`Limits::max_scope_len`].
    #[must_use]
    pub fn max_scope_len(mut self, n: usize) -> Self {
        self.max_scope_len = n;
        self
    }

    /// Sets [`Limits::max_filters`].
    #[must_use]
    pub fn max_filters(mut self, n: usize) -> Self {
        self.max_filters = n;
        self
    }

    /// Sets [`Limits::max_values`].
    #[must_use]
    pub fn max_values(mut self, n: usize) -> Self {
        self.max_values = n;
        self
    }
}

/// How scope strings are parsed. `FromStr` uses the default: v1 accepted, experimental
/// filters refused, default [`Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseOptions {
    /// Accept SMART v1 permissions (`read`, `write`, `*`); a server advertising
    /// `permission-v1` should. Default `true`.
    pub accept_v1: bool,
    /// Accept the guide's experimental filter features (modifiers, chains, `_filter`).
    /// Default `false`.
    pub experimental_filters: bool,
    /// Size limits.
    pub limits: Limits,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            accept_v1: true,
            experimental_filters: false,
            limits: Limits::default(),
        }
    }
}

impl ParseOptions {
    /// Sets [`ParseOptions::accept_v1`].
    #[must_use]
    pub fn accept_v1(mut self, yes: bool) -> Self {
        self.accept_v1 = yes;
        self
    }

    /// Sets [`ParseOptions::experimental_filters`].
    #[must_use]
    pub fn experimental_filters(mut self, yes: bool) -> Self {
        self.experimental_filters = yes;
        self
    }

    /// Sets [`ParseOptions::limits`].
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

#[cfg(test)]
mod tests;
