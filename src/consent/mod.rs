//! Consent grants: the patient's right-of-access request, its one-year lifecycle, revocation
//! that cuts off every token of the grant at once, and the stores that keep them.
//!
//! * [`RightOfAccessRequest`] — what the patient (or her representative) approved: the app, the
//!   categories, the exact disclosure ([`Disclosure`]) she saw, when and how, her chosen end.
//! * [`Grant`] — the request in force: active → expired | revoked (both final), ending at
//!   min(approval + 1 year, chosen end); narrowing removes categories; history is kept.
//! * [`ConsentStore`] — where grants live: [`MemoryConsentStore`] here, `SqliteStore` and
//!   `PostgresStore` behind the `sqlite` and `postgres` features. Every store is also the
//!   request path's [`GrantStatusSource`], answering from a warm [`GrantCache`].
//!
//! See `docs/consent.md` for the lifecycle and the legal wording choices.

mod cache;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod codec;
mod disclosure;
mod error;
mod fhir;
mod history;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod record;
#[cfg(feature = "sqlite")]
mod sqlite;
mod status;
mod store;

#[cfg(test)]
mod tests;

pub use cache::GrantCache;
pub use disclosure::{DISCLOSURE_VERSION, Disclosure};
pub use error::ConsentError;
pub use fhir::{
    CATEGORY_SYSTEM, CLIENT_ID_SYSTEM, EXTENSION_BASE, FhirConsentError, MAX_NARROWINGS,
};
pub use memory::MemoryConsentStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresConfig, PostgresStore};
pub use record::{
    ApprovalMethod, Approver, DisclosureRef, Grant, GrantState, GrantStateKind, MAX_CATEGORIES,
    MAX_NAME_LEN, MAX_REASON_LEN, MAX_USER_AGENT_LEN, MAX_VERSION_LEN, Narrowing,
    RightOfAccessRequest, Transition, one_year_after,
};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use status::{ActiveGrant, GrantStatus, GrantStatusSource};
pub use store::{ConsentStore, new_grant_id};
