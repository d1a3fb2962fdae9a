//! Negotiation: what to grant when a client asks for scopes.
//!
//! The guide lets an authorization server grant fewer, narrower or different scopes than asked
//! and makes the token response's `scope` authoritative. fhirguard's rule:
//!
//! 1. every requested scope is held against what the **client** may have (its registration or
//!    pre-authorisation): resource, launch, identity, refresh and extension scopes alike;
//! 2. resource scopes are then held against what the **patient** approved. Her approval is about
//!    data; whether an app gets an id_token or a refresh token is settled between the client's
//!    registration and server policy, so the patient's set only limits resource scopes.
//!
//! A requested scope the limit covers is granted *as written* (a v1 request gets its v1 scope
//! back, the guide's SHOULD). One the limit covers only in part is replaced by its
//! intersections with the allowed scopes (`patient/*.rs` against an approval of
//! `patient/Observation.rs?category=…|laboratory` becomes that granular scope); those are
//! written in v1 when the request was v1 and v1 can say it, otherwise in v2. A v2 request is
//! never answered in v1 (Inferno only counts v2 grants for v2 requests). A scope with no
//! overlap is dropped, with the reason.

use super::item::Scope;
use super::set::ScopeSet;

/// Whose limit narrowed or dropped a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// The client's registration or pre-authorisation.
    Client,
    /// The patient's approval.
    Patient,
}

/// A requested scope granted only in part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narrowed {
    /// The scope as it stood before this limit was applied.
    pub requested: Scope,
    /// What was granted in its place (one scope per allowed scope it overlapped).
    pub granted: Vec<Scope>,
    /// The limit that narrowed it.
    pub by: Limit,
}

/// A requested scope not granted at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The scope as it stood before this limit was applied.
    pub scope: Scope,
    /// The limit that allowed none of it.
    pub by: Limit,
}

/// The outcome of a negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// What is granted: the token response's `scope` is `granted.to_string()`.
    pub granted: ScopeSet,
    /// Requested scopes granted in part.
    pub narrowed: Vec<Narrowed>,
    /// Requested scopes not granted.
    pub dropped: Vec<Dropped>,
}

impl Negotiated {
    /// Whether anything was narrowed or dropped (the app got less than it asked for).
    pub fn is_downscoped(&self) -> bool {
        !self.narrowed.is_empty() || !self.dropped.is_empty()
    }
}

/// Negotiates `requested` against what the client may have and what the patient approved (see
/// the module documentation for the rules).
///
/// ```
/// use fhirguard::scope::{negotiate, ScopeSet};
/// let requested: ScopeSet = "launch/patient openid fhirUser patient/*.read".parse()?;
/// let client: ScopeSet = "launch/patient openid fhirUser offline_access patient/*.read".parse()?;
/// let patient: ScopeSet = "patient/Patient.rs patient/Observation.rs".parse()?;
/// let n = negotiate(&requested, &client, &patient);
/// assert_eq!(
///     n.granted.to_string(),
///     "launch/patient openid fhirUser patient/Patient.read patient/Observation.read",
/// );
/// # Ok::<(), fhirguard::scope::ScopeSetError>(())
/// ```
pub fn negotiate(
    requested: &ScopeSet,
    client_allowed: &ScopeSet,
    patient_allowed: &ScopeSet,
) -> Negotiated {
    let mut n = Negotiated {
        granted: ScopeSet::new(),
        narrowed: Vec::new(),
        dropped: Vec::new(),
    };
    let after_client = restrict(requested, client_allowed, Limit::Client, &mut n);
    n.granted = restrict(&after_client, patient_allowed, Limit::Patient, &mut n);
    n
}

impl ScopeSet {
    /// Holds every scope of `self` against one limit (backend services: the client's
    /// pre-authorised scopes), with the narrowing rules of [`negotiate`].
    pub fn restrict_to(&self, allowed: &ScopeSet) -> Negotiated {
        let mut n = Negotiated {
            granted: ScopeSet::new(),
            narrowed: Vec::new(),
            dropped: Vec::new(),
        };
        n.granted = restrict(self, allowed, Limit::Client, &mut n);
        n
    }
}

fn restrict(requested: &ScopeSet, allowed: &ScopeSet, by: Limit, n: &mut Negotiated) -> ScopeSet {
    let mut out = ScopeSet::new();
    for scope in requested {
        let Scope::Resource(wanted) = scope else {
            if by == Limit::Patient || allowed.covers(scope) {
                out.insert(scope.clone());
            } else {
                n.dropped.push(Dropped {
                    scope: scope.clone(),
                    by,
                });
            }
            continue;
        };
        if allowed.covers(scope) {
            out.insert(scope.clone());
            continue;
        }
        let wants_v1 = wanted.syntax() == super::Syntax::V1;
        let parts: ScopeSet = allowed
            .resource_scopes()
            .filter_map(|a| wanted.intersect(a))
            .map(|p| {
                let p = if wants_v1 { p.to_v1().unwrap_or(p) } else { p };
                Scope::Resource(p)
            })
            .collect();
        let parts = minimal(parts);
        if parts.is_empty() {
            n.dropped.push(Dropped {
                scope: scope.clone(),
                by,
            });
        } else {
            n.narrowed.push(Narrowed {
                requested: scope.clone(),
                granted: parts.iter().cloned().collect(),
                by,
            });
            out.extend(parts);
        }
    }
    out
}

/// Drops parts covered by another part, keeping syntax and order.
fn minimal(parts: ScopeSet) -> ScopeSet {
    let all: Vec<Scope> = parts.into_iter().collect();
    let mut out = ScopeSet::new();
    for (j, s) in all.iter().enumerate() {
        let covered = all
            .iter()
            .enumerate()
            .any(|(i, t)| i != j && t.covers(s) && (i < j || !s.covers(t)));
        if !covered {
            out.insert(s.clone());
        }
    }
    out
}
