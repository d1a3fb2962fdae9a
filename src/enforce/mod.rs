//! Access decisions for a typed FHIR request: patient compartment, search narrowing before
//! execution, result filtering after, and refusal of writes on read-only APIs.
//!
//! Enforcement is pure: no I/O, no clock, no global state. The host hands it the caller's
//! granted scopes (typed as [`ResourceGrant`]s), the patient in context and the categories the
//! patient approved; an [`Enforcer`] then answers three questions:
//!
//! 1. **Before execution** — [`Enforcer::decide`]: [`Decision::Allow`], [`Decision::Narrow`]
//!    (search parameters to add: the patient compartment, and the category list when the granted
//!    categories of a type can be expressed exactly), or [`Decision::Deny`] with a typed
//!    [`DenyReason`] for the audit log. Batches are decided entry by entry
//!    ([`Enforcer::decide_batch`]).
//! 2. **After a read or write** — [`Enforcer::check_read`] / [`Enforcer::check_write`]: the
//!    resource is classified, its references are checked against the patient in context, and
//!    its categories against the grant.
//! 3. **After a search, history or `$everything`** — [`Enforcer::filter_bundle`]: entries outside
//!    the grant are dropped, `total` and `link` are rewritten so they reveal nothing about them.
//! 4. **Before sending** — [`Enforcer::needs_redaction`] / [`Enforcer::redact`]: a visible
//!    resource loses what it names outside the grant (the `display` and `identifier` of
//!    references to hidden types, contained resources of hidden types, and the registry's
//!    withheld elements such as government identifiers in `Patient`), and is labelled
//!    `REDACTED`.
//!
//! Every refusal has one generic wire form ([`Enforcer::wire_outcome`]); refusals that depend on
//! stored data look exactly like a missing resource ([`Enforcer::missing_outcome`]).
//! `docs/enforcement.md` walks through every read path and how it is closed.

mod decision;
mod enforcer;
mod grant;
mod redact;

pub use decision::{Concealment, Decision, DenyReason, ResponseCheck, WireOutcome};
pub use enforcer::{EnforceConfig, Enforcer, FilterReport};
pub use grant::{Need, Permissions, ResourceGrant, ScopeContext};
pub use redact::{REDACTED_CODE, REDACTED_SYSTEM};
pub(crate) use redact::{is_type_name, literal_type};

#[cfg(test)]
mod tests;
