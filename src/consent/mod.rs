//! Consent grants: the patient's right-of-access request, its one-year lifecycle, revocation
//! that cuts off every token of the grant at once, and the stores that keep them.

mod status;

pub use status::{ActiveGrant, GrantStatus, GrantStatusSource};
