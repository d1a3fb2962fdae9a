//! Resource scopes: `context/Type.permissions[?filters]`, in v1 or v2 syntax.

use std::fmt;

use super::ParseOptions;
use super::error::{ScopeError, excerpt};
use super::filter::{Filter, parse_query};
use super::permission::{Permission, Permissions};
use super::types::FhirType;

/// Whose data a resource scope is about.
///
/// The guide defines no order among the three: `patient/` is bounded by the patient in context,
/// `user/` by what the signed-in user may see, `system/` by what a backend client was
/// pre-authorised for. Neither is a subset of another in general, so a scope only ever covers
/// scopes of its own context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Context {
    /// `patient/`: data about the one patient in context.
    Patient,
    /// `user/`: data the user may access.
    User,
    /// `system/`: data the client system is pre-authorised for (backend services).
    System,
}

impl Context {
    /// The literal (`patient`, `user`, `system`).
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        }
    }

    fn from_literal(s: &str) -> Option<Context> {
        match s {
            "patient" => Some(Context::Patient),
            "user" => Some(Context::User),
            "system" => Some(Context::System),
            _ => None,
        }
    }

    /// Whether `s` is a context literal in any letter case (`Patient`, `USER`).
    pub(crate) fn is_literal_any_case(s: &str) -> bool {
        ["patient", "user", "system"]
            .iter()
            .any(|c| c.eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The resource types a scope is about: all of them (`*`) or one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TypeSelector {
    /// `*`: every type, now and in the future.
    Any,
    /// One named type.
    Type(FhirType),
}

impl TypeSelector {
    /// Whether resources of type `t` are selected.
    pub fn matches(self, t: FhirType) -> bool {
        match self {
            TypeSelector::Any => true,
            TypeSelector::Type(own) => own == t,
        }
    }

    /// Whether everything `other` selects is selected.
    pub fn covers(self, other: TypeSelector) -> bool {
        self == TypeSelector::Any || self == other
    }

    fn intersect(self, other: TypeSelector) -> Option<TypeSelector> {
        match (self, other) {
            (TypeSelector::Any, o) | (o, TypeSelector::Any) => Some(o),
            (a, b) if a == b => Some(a),
            _ => None,
        }
    }
}

impl fmt::Display for TypeSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeSelector::Any => f.write_str("*"),
            TypeSelector::Type(t) => f.write_str(t.as_str()),
        }
    }
}

impl From<FhirType> for TypeSelector {
    fn from(t: FhirType) -> Self {
        TypeSelector::Type(t)
    }
}

/// Which version of the guide's grammar a scope was written in.
///
/// Kept so a server can answer a v1 client in v1 (the guide's SHOULD); it never changes what a
/// scope means: `patient/Observation.read` and `patient/Observation.rs` cover each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Syntax {
    /// SMART 1.0: `read`, `write` or `*`.
    V1,
    /// SMART 2.x: the letters `cruds`, optionally with `?` filters.
    V2,
}

/// A scope granting access to FHIR resources: `patient/Observation.rs?category=…`.
///
/// Fields are private so every value upholds the grammar: permissions are never empty, a v1
/// scope carries only `rs`, `cud` or `cruds` and no filter. Equality is structural (syntax and
/// filter order included); compare meaning with [`ResourceScope::covers`] or
/// [`ResourceScope::normalized`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceScope {
    context: Context,
    resource: TypeSelector,
    permissions: Permissions,
    syntax: Syntax,
    filters: Vec<Filter>,
}

impl ResourceScope {
    /// A v2 scope without filters. Fails if `permissions` is empty.
    pub fn new(
        context: Context,
        resource: impl Into<TypeSelector>,
        permissions: Permissions,
    ) -> Result<ResourceScope, ScopeError> {
        if permissions.is_empty() {
            return Err(ScopeError::EmptyPermissions);
        }
        Ok(ResourceScope {
            context,
            resource: resource.into(),
            permissions,
            syntax: Syntax::V2,
            filters: Vec::new(),
        })
    }

    /// The same scope with one more filter (ANDed with the others). A v1 scope becomes v2,
    /// since v1 has no filters.
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> ResourceScope {
        self.syntax = Syntax::V2;
        self.filters.push(filter);
        self
    }

    /// Whose data the scope is about.
    pub fn context(&self) -> Context {
        self.context
    }

    /// The resource types the scope selects.
    pub fn resource(&self) -> TypeSelector {
        self.resource
    }

    /// The permissions granted.
    pub fn permissions(&self) -> Permissions {
        self.permissions
    }

    /// The syntax it was written in.
    pub fn syntax(&self) -> Syntax {
        self.syntax
    }

    /// The granular filters, all of which must hold (an AND); empty for a whole-type scope.
    pub fn filters(&self) -> &[Filter] {
        &self.filters
    }

    /// Whether the scope carries granular filters.
    pub fn is_granular(&self) -> bool {
        !self.filters.is_empty()
    }

    /// Whether the scope grants `permission` on resources of type `t` in `context`, if only
    /// for resources matching its filters.
    pub fn grants(&self, context: Context, t: FhirType, permission: Permission) -> bool {
        self.context == context && self.resource.matches(t) && self.permissions.contains(permission)
    }

    /// Whether this scope, granted, allows everything `other` asks for.
    ///
    /// Same context; `*` covers every type; our permissions ⊇ theirs; and each of our filters is
    /// implied by one of theirs (same parameter, their alternatives ⊆ ours), so every resource
    /// `other` reaches we reach too. No allocation.
    pub fn covers(&self, other: &ResourceScope) -> bool {
        self.context == other.context
            && self.resource.covers(other.resource)
            && self.permissions.contains_all(other.permissions)
            && self.filters_cover(other)
    }

    /// The filter part of [`covers`](Self::covers), ignoring context, type and permissions.
    pub(crate) fn filters_cover(&self, other: &ResourceScope) -> bool {
        self.filters.iter().all(|mine| {
            other
                .filters
                .iter()
                .any(|theirs| theirs.name() == mine.name() && mine.values_superset_of(theirs))
        })
    }

    /// The scope granting what both grant, or `None` if they share nothing.
    ///
    /// Types meet (`*` ∩ `Observation` = `Observation`), permissions intersect, filters are
    /// ANDed. A filter the other side implies (same parameter, a subset of its alternatives)
    /// gives way to the narrower one; the remaining same-name filters of the two sides keep
    /// their common alternatives, and none in common means nothing is shared. That last rule
    /// grants less than the exact meet for a repeating element (an Observation coded both
    /// `category=a` and `category=b` meets both scopes), never more. Filters of one side are
    /// not merged with each other. The result is v1 only if both were v1 and v1 can still say
    /// it.
    pub fn intersect(&self, other: &ResourceScope) -> Option<ResourceScope> {
        if self.context != other.context {
            return None;
        }
        let resource = self.resource.intersect(other.resource)?;
        let permissions = self.permissions.intersection(other.permissions);
        if permissions.is_empty() {
            return None;
        }
        let implied_by = |f: &Filter, side: &[Filter], strictly: bool| {
            side.iter().any(|g| {
                g.name() == f.name()
                    && f.values_superset_of(g)
                    && !(strictly && g.values_superset_of(f))
            })
        };
        // Of two equal filters, ours gives way.
        let mine: Vec<&Filter> = self
            .filters
            .iter()
            .filter(|f| !implied_by(f, &other.filters, false))
            .collect();
        let theirs: Vec<&Filter> = other
            .filters
            .iter()
            .filter(|f| !implied_by(f, &self.filters, true))
            .collect();
        let mut filters: Vec<Filter> = Vec::with_capacity(mine.len() + theirs.len());
        for m in &mine {
            let mut merged = (*m).clone();
            for t in theirs.iter().filter(|t| t.name() == m.name()) {
                merged = merged.intersect_values(t)?;
            }
            filters.push(merged);
        }
        for t in &theirs {
            // Merged into ours above (and implied by the result) when ours names it too.
            if !mine.iter().any(|m| m.name() == t.name()) {
                filters.push((*t).clone());
            }
        }
        let syntax = if self.syntax == Syntax::V1
            && other.syntax == Syntax::V1
            && filters.is_empty()
            && permissions.v1_word().is_some()
        {
            Syntax::V1
        } else {
            Syntax::V2
        };
        Some(ResourceScope {
            context: self.context,
            resource,
            permissions,
            syntax,
            filters,
        })
    }

    /// The same scope in v2 syntax (`.read` → `.rs`, `.write` → `.cud`, `.*` → `.cruds`).
    #[must_use]
    pub fn to_v2(&self) -> ResourceScope {
        ResourceScope {
            syntax: Syntax::V2,
            ..self.clone()
        }
    }

    /// The same scope in v1 syntax, if v1 can say it: permissions `rs`, `cud` or `cruds`, no
    /// filters, and not a `system/` scope (v1 had only `patient/` and `user/`).
    pub fn to_v1(&self) -> Option<ResourceScope> {
        (self.filters.is_empty()
            && self.permissions.v1_word().is_some()
            && self.context != Context::System)
            .then(|| ResourceScope {
                syntax: Syntax::V1,
                ..self.clone()
            })
    }

    /// The normal form: v2 syntax; each filter's alternatives sorted and deduplicated; filters
    /// sorted, duplicates and filters implied by a narrower one on the same parameter removed.
    /// Two scopes with the same normal form grant the same access.
    #[must_use]
    pub fn normalized(&self) -> ResourceScope {
        let mut filters = self.filters.clone();
        for f in &mut filters {
            f.normalize();
        }
        filters.sort_by(|a, b| {
            a.name()
                .cmp(b.name())
                .then_with(|| a.values().cmp(b.values()))
        });
        filters.dedup();
        let keep: Vec<bool> = filters
            .iter()
            .enumerate()
            .map(|(i, f)| {
                !filters.iter().enumerate().any(|(j, g)| {
                    j != i && g.name() == f.name() && f.values_superset_of(g) && g != f
                })
            })
            .collect();
        let filters = filters
            .into_iter()
            .zip(keep)
            .filter_map(|(f, k)| k.then_some(f))
            .collect();
        ResourceScope {
            context: self.context,
            resource: self.resource,
            permissions: self.permissions,
            syntax: Syntax::V2,
            filters,
        }
    }

    /// Same context, type and filters: the scopes differ at most in permissions (and syntax).
    pub(crate) fn same_target(&self, other: &ResourceScope) -> bool {
        self.context == other.context
            && self.resource == other.resource
            && self.filters == other.filters
    }

    /// This scope with `permissions` in place of its own (v1 kept only if v1 can say it).
    pub(crate) fn with_permissions(&self, permissions: Permissions) -> ResourceScope {
        let syntax = if self.syntax == Syntax::V1 && permissions.v1_word().is_some() {
            Syntax::V1
        } else {
            Syntax::V2
        };
        ResourceScope {
            permissions,
            syntax,
            ..self.clone()
        }
    }

    /// Parses a token that starts with a context (`patient/…`, or the `patient.Type.x` erratum).
    pub(crate) fn parse(s: &str, opts: &ParseOptions) -> Result<ResourceScope, ScopeError> {
        let (main, query) = match s.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (s, None),
        };
        let sep = main.find(['/', '.']).ok_or(ScopeError::BadContext)?;
        let (ctx, rest) = (
            main.get(..sep).unwrap_or(""),
            main.get(sep + 1..).unwrap_or(""),
        );
        let context = Context::from_literal(ctx).ok_or(ScopeError::BadContext)?;
        let (type_name, perms) = rest.split_once('.').ok_or(ScopeError::MissingPermissions)?;
        let resource = if type_name == "*" {
            TypeSelector::Any
        } else {
            TypeSelector::Type(FhirType::from_name(type_name).ok_or_else(|| {
                ScopeError::UnknownResourceType {
                    name: excerpt(type_name),
                }
            })?)
        };
        let (permissions, syntax) = parse_permissions(perms)?;
        if syntax == Syntax::V1 {
            if !opts.accept_v1 {
                return Err(ScopeError::V1NotAccepted);
            }
            if query.is_some() {
                return Err(ScopeError::FilterOnV1);
            }
        }
        let filters = match query {
            Some(q) => parse_query(q, opts)?,
            None => Vec::new(),
        };
        Ok(ResourceScope {
            context,
            resource,
            permissions,
            syntax,
            filters,
        })
    }
}

fn parse_permissions(p: &str) -> Result<(Permissions, Syntax), ScopeError> {
    match p {
        "" => return Err(ScopeError::EmptyPermissions),
        "read" => return Ok((Permissions::READ, Syntax::V1)),
        "write" => return Ok((Permissions::WRITE, Syntax::V1)),
        "*" => return Ok((Permissions::ALL, Syntax::V1)),
        _ => {}
    }
    let mut perms = Permissions::NONE;
    let mut last: Option<Permission> = None;
    for c in p.chars() {
        let perm = Permission::from_letter(c).ok_or(ScopeError::UnknownPermission { found: c })?;
        if perms.contains(perm) {
            return Err(ScopeError::RepeatedPermission { letter: c });
        }
        if last.is_some_and(|l| l > perm) {
            return Err(ScopeError::PermissionsOutOfOrder);
        }
        perms = perms.with(perm);
        last = Some(perm);
    }
    Ok((perms, Syntax::V2))
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}.", self.context, self.resource)?;
        match (self.syntax, self.permissions.v1_word()) {
            (Syntax::V1, Some(word)) => f.write_str(word)?,
            _ => write!(f, "{}", self.permissions)?,
        }
        for (i, filter) in self.filters.iter().enumerate() {
            f.write_str(if i == 0 { "?" } else { "&" })?;
            write!(f, "{filter}")?;
        }
        Ok(())
    }
}
