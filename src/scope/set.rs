//! The space-separated scope string as a set, and the questions enforcement asks of it.

use std::fmt;
use std::str::FromStr;

use super::ParseOptions;
use super::error::{ScopeError, ScopeSetError, excerpt};
use super::filter::Filter;
use super::item::Scope;
use super::permission::{Permission, Permissions};
use super::resource::{Context, ResourceScope};
use super::types::FhirType;

/// A set of scopes: the `scope` parameter of an authorization request or token response.
///
/// Duplicates are removed as scopes are added and the first occurrence's position is kept, so
/// printing a set gives back the client's order (minus repeats), one space between scopes.
/// Equality ignores order. Scopes are a union: the set grants what any of its scopes grants.
#[derive(Clone, Default)]
pub struct ScopeSet {
    scopes: Vec<Scope>,
}

/// A token [`ScopeSet::parse_lenient`] refused, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedScope {
    /// The token's 0-based position in the string.
    pub position: usize,
    /// The token as written (cut to 64 bytes if longer).
    pub text: String,
    /// Why it was refused.
    pub error: ScopeError,
}

impl ScopeSet {
    /// The empty set (what a token response's `scope: ""` means).
    pub fn new() -> ScopeSet {
        ScopeSet::default()
    }

    /// Parses a space-separated scope string; any malformed token fails the whole string.
    ///
    /// Runs of spaces are tolerated (clients send them); any other whitespace is refused by the
    /// token grammar. The length limit is checked before anything else, so a hostile string costs
    /// nothing beyond that comparison.
    pub fn parse_with(s: &str, opts: &ParseOptions) -> Result<ScopeSet, ScopeSetError> {
        let (count, tokens) = tokens(s, opts)?;
        let mut set = ScopeSet {
            scopes: Vec::with_capacity(count),
        };
        for (position, token) in tokens {
            let scope = Scope::parse_with(token, opts)
                .map_err(|error| ScopeSetError::Invalid { position, error })?;
            set.insert(scope);
        }
        Ok(set)
    }

    /// Parses a space-separated scope string, setting malformed tokens aside instead of failing.
    ///
    /// The guide lets a server ignore malformed scope requests; this keeps the well-formed ones
    /// and reports the rest so the server can log why. Only the length and count limits fail
    /// the whole string.
    pub fn parse_lenient(
        s: &str,
        opts: &ParseOptions,
    ) -> Result<(ScopeSet, Vec<RejectedScope>), ScopeSetError> {
        let mut set = ScopeSet::new();
        let mut rejected = Vec::new();
        for (position, token) in tokens(s, opts)?.1 {
            match Scope::parse_with(token, opts) {
                Ok(scope) => {
                    set.insert(scope);
                }
                Err(error) => rejected.push(RejectedScope {
                    position,
                    text: excerpt(token),
                    error,
                }),
            }
        }
        Ok((set, rejected))
    }

    /// How many scopes the set holds.
    pub fn len(&self) -> usize {
        self.scopes.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// The scopes, in first-occurrence order.
    pub fn iter(&self) -> std::slice::Iter<'_, Scope> {
        self.scopes.iter()
    }

    /// The resource scopes, in order.
    pub fn resource_scopes(&self) -> impl Iterator<Item = &ResourceScope> {
        self.scopes.iter().filter_map(Scope::as_resource)
    }

    /// Whether the set holds exactly this scope (structurally; see [`covers`](Self::covers)
    /// for meaning).
    pub fn contains(&self, scope: &Scope) -> bool {
        self.scopes.contains(scope)
    }

    /// Adds a scope at the end unless it is already present; returns whether it was added.
    pub fn insert(&mut self, scope: Scope) -> bool {
        if self.scopes.contains(&scope) {
            false
        } else {
            self.scopes.push(scope);
            true
        }
    }

    /// Removes a scope; returns whether it was present.
    pub fn remove(&mut self, scope: &Scope) -> bool {
        let before = self.scopes.len();
        self.scopes.retain(|s| s != scope);
        before != self.scopes.len()
    }

    /// Whether any resource scope has this context (granting a `patient/` scope obliges the
    /// server to establish a patient in context).
    pub fn has_context(&self, context: Context) -> bool {
        self.resource_scopes().any(|r| r.context() == context)
    }

    /// Whether the set, granted, allows everything `scope` asks for.
    ///
    /// For a resource scope the set's scopes are a union: every scope whose context, type and
    /// filters cover the request contributes its permissions, so `Observation.r Observation.s`
    /// covers `Observation.rs`. (A union over *filter values* is not combined: `category=a` and
    /// `category=b` granted separately do not cover a request for `category=a,b`. The answer
    /// is then a safe "no".) No allocation.
    pub fn covers(&self, scope: &Scope) -> bool {
        match scope {
            Scope::Resource(wanted) => {
                let mut got = Permissions::NONE;
                for g in self.resource_scopes() {
                    if g.context() == wanted.context()
                        && g.resource().covers(wanted.resource())
                        && g.filters_cover(wanted)
                    {
                        got = got.union(g.permissions());
                        if got.contains_all(wanted.permissions()) {
                            return true;
                        }
                    }
                }
                false
            }
            other => self.scopes.iter().any(|g| g.covers(other)),
        }
    }

    /// Whether the set covers every scope of `other` (a refresh request's scope must be).
    pub fn covers_all(&self, other: &ScopeSet) -> bool {
        other.iter().all(|s| self.covers(s))
    }

    /// The scopes granting what both sets grant.
    ///
    /// Resource scopes meet pairwise ([`ResourceScope::intersect`]); other scopes are kept when
    /// the other set covers them. The result is minimal: no scope in it is covered by another.
    #[must_use]
    pub fn intersect(&self, other: &ScopeSet) -> ScopeSet {
        let mut out = ScopeSet::new();
        for (a, b) in [(self, other), (other, self)] {
            for s in a.iter().filter(|s| s.as_resource().is_none()) {
                if b.covers(s) {
                    out.insert(s.clone());
                }
            }
        }
        for x in self.resource_scopes() {
            for y in other.resource_scopes() {
                if let Some(i) = x.intersect(y) {
                    out.insert(Scope::Resource(i));
                }
            }
        }
        out.drop_covered();
        out
    }

    /// The normal form: every scope normalised (v2 syntax, sorted filters), scopes with the same
    /// context, type and filters merged into one (`Observation.r Observation.s` →
    /// `Observation.rs`), and scopes covered by another scope of the set dropped. Order of first
    /// occurrence is kept. Idempotent; grants exactly what `self` grants.
    #[must_use]
    pub fn normalized(&self) -> ScopeSet {
        let mut merged: Vec<Scope> = Vec::with_capacity(self.scopes.len());
        for s in &self.scopes {
            let n = s.normalized();
            if let Scope::Resource(r) = &n {
                let same = merged.iter_mut().find_map(|m| match m {
                    Scope::Resource(m) if m.same_target(r) => Some(m),
                    _ => None,
                });
                if let Some(m) = same {
                    *m = m.with_permissions(m.permissions().union(r.permissions()));
                    continue;
                }
            }
            // Only resource scopes change under normalisation, and those were merged above, so
            // the rest cannot have become duplicates.
            merged.push(n);
        }
        let mut out = ScopeSet { scopes: merged };
        out.drop_covered();
        out
    }

    /// Every scope in v2 syntax (`.read` → `.rs`, `.write` → `.cud`, `.*` → `.cruds`).
    #[must_use]
    pub fn to_v2(&self) -> ScopeSet {
        self.iter().map(Scope::to_v2).collect()
    }

    /// Removes every scope covered by another one (on a tie the earlier one stays).
    ///
    /// Only resource scopes and launch-context scopes can cover a scope other than themselves,
    /// and the set holds no duplicates, so only pairs of those are compared.
    fn drop_covered(&mut self) {
        let candidates: Vec<usize> = self
            .scopes
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Scope::Resource(_) | Scope::LaunchContext(_)))
            .map(|(i, _)| i)
            .collect();
        if candidates.len() < 2 {
            return;
        }
        let mut keep = vec![true; self.scopes.len()];
        for &j in &candidates {
            let Some(sj) = self.scopes.get(j) else {
                continue;
            };
            for &i in &candidates {
                if i == j || !keep.get(i).copied().unwrap_or(false) {
                    continue;
                }
                let Some(si) = self.scopes.get(i) else {
                    continue;
                };
                if si.covers(sj) && (i < j || !sj.covers(si)) {
                    if let Some(k) = keep.get_mut(j) {
                        *k = false;
                    }
                    break;
                }
            }
        }
        let mut flags = keep.into_iter();
        self.scopes.retain(|_| flags.next().unwrap_or(true));
    }

    /// What the set allows for `permission` on resources of type `t` in `context`.
    ///
    /// [`Access::Full`] if some scope grants it without filters; [`Access::Filtered`] if only
    /// granular scopes grant it (the search must be narrowed and results checked);
    /// [`Access::Denied`] otherwise. No allocation.
    pub fn access(&self, context: Context, t: FhirType, permission: Permission) -> Access<'_> {
        let mut filtered = false;
        for r in self.resource_scopes() {
            if r.grants(context, t, permission) {
                if !r.is_granular() {
                    return Access::Full;
                }
                filtered = true;
            }
        }
        if filtered {
            Access::Filtered(FilteredAccess {
                set: self,
                context,
                t,
                permission,
            })
        } else {
            Access::Denied
        }
    }

    /// Whether any scope grants `permission` on type `t` in `context`, with or without filters.
    pub fn permits(&self, context: Context, t: FhirType, permission: Permission) -> bool {
        !matches!(self.access(context, t, permission), Access::Denied)
    }
}

/// What a [`ScopeSet`] allows for one type and permission: see [`ScopeSet::access`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Access<'a> {
    /// No scope grants it.
    Denied,
    /// A scope grants it for every resource of the type.
    Full,
    /// Only granular scopes grant it: a resource is allowed if it matches one of them.
    Filtered(FilteredAccess<'a>),
}

/// The granular scopes that grant one type and permission (an OR of ANDs of filters).
#[derive(Debug, Clone, Copy)]
pub struct FilteredAccess<'a> {
    set: &'a ScopeSet,
    context: Context,
    t: FhirType,
    permission: Permission,
}

impl<'a> FilteredAccess<'a> {
    /// Each granting scope's filters. A resource is allowed if, for some item, it matches every
    /// filter of that item (a filter matches if the resource matches one of its values).
    pub fn alternatives(&self) -> impl Iterator<Item = &'a [Filter]> + 'a {
        let (context, t, permission) = (self.context, self.t, self.permission);
        self.set
            .resource_scopes()
            .filter(move |r| r.grants(context, t, permission))
            .map(ResourceScope::filters)
    }

    /// Whether a resource is allowed, given a predicate telling whether it matches the search
    /// parameter `name` with the value `value` (one alternative of a filter).
    pub fn allows(&self, mut matches: impl FnMut(&str, &str) -> bool) -> bool {
        self.alternatives().any(|filters| {
            filters
                .iter()
                .all(|f| f.values().any(|v| matches(f.name(), v)))
        })
    }

    /// The values of `param` some allowed resource may have, if every granting scope constrains
    /// `param`: for `Observation.rs?category=…|laboratory` and `…|vital-signs`, the two
    /// category values. A search narrowed to these values never loses an allowed resource (the
    /// other filters of a scope may narrow further; check results with [`allows`](Self::allows)).
    /// `None` if some granting scope does not constrain `param`.
    pub fn allowed_values(&self, param: &str) -> Option<Vec<&'a str>> {
        let mut out: Vec<&'a str> = Vec::new();
        for filters in self.alternatives() {
            let mut constrained = false;
            for f in filters.iter().filter(|f| f.name() == param) {
                constrained = true;
                for v in f.values() {
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
            }
            if !constrained {
                return None;
            }
        }
        Some(out)
    }
}

/// Splits on spaces after checking the limits.
fn tokens<'s>(
    s: &'s str,
    opts: &ParseOptions,
) -> Result<(usize, impl Iterator<Item = (usize, &'s str)>), ScopeSetError> {
    if s.len() > opts.limits.max_len {
        return Err(ScopeSetError::TooLong {
            len: s.len(),
            max: opts.limits.max_len,
        });
    }
    let count = s.split(' ').filter(|t| !t.is_empty()).count();
    if count > opts.limits.max_scopes {
        return Err(ScopeSetError::TooManyScopes {
            max: opts.limits.max_scopes,
        });
    }
    Ok((count, s.split(' ').filter(|t| !t.is_empty()).enumerate()))
}

impl PartialEq for ScopeSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|s| other.contains(s))
    }
}

impl Eq for ScopeSet {}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopeSet({:?})", self.to_string())
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.scopes.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

impl FromStr for ScopeSet {
    type Err = ScopeSetError;

    /// Parses with [`ParseOptions::default`]; any malformed token fails the whole string.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ScopeSet::parse_with(s, &ParseOptions::default())
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = ScopeSet::new();
        for s in iter {
            set.insert(s);
        }
        set
    }
}

impl Extend<Scope> for ScopeSet {
    fn extend<I: IntoIterator<Item = Scope>>(&mut self, iter: I) {
        for s in iter {
            self.insert(s);
        }
    }
}

impl IntoIterator for ScopeSet {
    type Item = Scope;
    type IntoIter = std::vec::IntoIter<Scope>;

    fn into_iter(self) -> Self::IntoIter {
        self.scopes.into_iter()
    }
}

impl<'a> IntoIterator for &'a ScopeSet {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;

    fn into_iter(self) -> Self::IntoIter {
        self.scopes.iter()
    }
}

impl serde::Serialize for ScopeSet {
    /// As the space-separated string, as in a token response or a JWT `scope` claim.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ScopeSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
