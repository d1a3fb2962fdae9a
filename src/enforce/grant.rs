//! The granted resource permissions enforcement works from.
//!
//! Enforcement does not read scope strings: it takes the caller's granted scopes already typed
//! as [`ResourceGrant`]s (one per SMART scope), so the scope language (module `scope`) plugs in
//! through a conversion and enforcement never re-parses anything.

use std::fmt;

use crate::fhir::ResourceType;

/// The SMART context a scope was granted in (`patient/`, `user/`, `system/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScopeContext {
    /// `patient/`: only the compartment of the patient in context.
    Patient,
    /// `user/`: whatever the user may see (the host's own policy); no compartment restriction here.
    User,
    /// `system/`: backend services; no compartment restriction here.
    System,
}

impl ScopeContext {
    /// The scope prefix without the slash.
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeContext::Patient => "patient",
            ScopeContext::User => "user",
            ScopeContext::System => "system",
        }
    }
}

/// SMART v2 permission letters (`c r u d s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions {
    /// `c`: create.
    pub create: bool,
    /// `r`: read (read, vread, instance history).
    pub read: bool,
    /// `u`: update and patch.
    pub update: bool,
    /// `d`: delete.
    pub delete: bool,
    /// `s`: search (type and system search, type history).
    pub search: bool,
}

impl Permissions {
    /// `rs`, what a v1 `.read` scope means.
    pub const READ_SEARCH: Self = Self {
        create: false,
        read: true,
        update: false,
        delete: false,
        search: true,
    };
    /// `cruds`, what a v1 `.*` scope means.
    pub const ALL: Self = Self {
        create: true,
        read: true,
        update: true,
        delete: true,
        search: true,
    };

    /// Whether these permissions include what `need` asks for.
    pub fn allows(self, need: Need) -> bool {
        match need {
            Need::Create => self.create,
            Need::Read => self.read,
            Need::Update => self.update,
            Need::Delete => self.delete,
            Need::Search => self.search,
            Need::ReadOrSearch => self.read || self.search,
        }
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (on, letter) in [
            (self.create, 'c'),
            (self.read, 'r'),
            (self.update, 'u'),
            (self.delete, 'd'),
            (self.search, 's'),
        ] {
            if on {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

/// The permission an interaction needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Need {
    /// `c`.
    Create,
    /// `r`.
    Read,
    /// `u`.
    Update,
    /// `d`.
    Delete,
    /// `s`.
    Search,
    /// `r` or `s`: a resource returned inside a search, history or `$everything` bundle.
    ReadOrSearch,
}

impl Need {
    /// The SMART letter(s) of the permission.
    pub fn letters(self) -> &'static str {
        match self {
            Need::Create => "c",
            Need::Read => "r",
            Need::Update => "u",
            Need::Delete => "d",
            Need::Search => "s",
            Need::ReadOrSearch => "r or s",
        }
    }
}

/// One granted SMART scope in typed form: context, resource type (or `*`), permissions and the
/// granular `param=value` constraints (`category=…|laboratory`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceGrant {
    /// `patient`, `user` or `system`.
    pub context: ScopeContext,
    /// The resource type, `None` for `*`.
    pub resource_type: Option<ResourceType>,
    /// The permission letters.
    pub permissions: Permissions,
    /// Granular constraints (all must hold); a value may list alternatives separated by commas.
    pub constraints: Vec<(String, String)>,
}

impl ResourceGrant {
    /// A grant on one type with no constraints.
    pub fn new(
        context: ScopeContext,
        resource_type: ResourceType,
        permissions: Permissions,
    ) -> Self {
        Self {
            context,
            resource_type: Some(resource_type),
            permissions,
            constraints: Vec::new(),
        }
    }

    /// A `*` grant (every resource type).
    pub fn wildcard(context: ScopeContext, permissions: Permissions) -> Self {
        Self {
            context,
            resource_type: None,
            permissions,
            constraints: Vec::new(),
        }
    }

    /// Adds a granular constraint.
    #[must_use]
    pub fn with_constraint(mut self, param: impl Into<String>, value: impl Into<String>) -> Self {
        self.constraints.push((param.into(), value.into()));
        self
    }

    /// Whether this grant names `resource_type` (or is `*`).
    pub fn names_type(&self, resource_type: &str) -> bool {
        self.resource_type
            .as_ref()
            .is_none_or(|t| t.as_str() == resource_type)
    }
}

impl fmt::Display for ResourceGrant {
    /// Renders the SMART v2 scope string, e.g.
    /// `patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty = self
            .resource_type
            .as_ref()
            .map_or("*", ResourceType::as_str);
        write!(f, "{}/{}.{}", self.context.as_str(), ty, self.permissions)?;
        for (i, (param, value)) in self.constraints.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            write!(f, "{sep}{param}={value}")?;
        }
        Ok(())
    }
}
