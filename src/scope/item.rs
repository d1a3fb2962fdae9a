//! One scope token of any kind: resource, launch, identity, refresh, or opaque.

use std::fmt;
use std::str::FromStr;

use super::ParseOptions;
use super::error::ScopeError;
use super::resource::{Context, ResourceScope};
use super::types::FhirType;

/// One SMART scope.
///
/// Every token parses: what SMART does not define becomes [`Scope::Opaque`], so a server can
/// echo an extension scope it supports and ignore the rest. Tokens that *claim* to be SMART
/// scopes (a `patient/`, `user/` or `system/` context in any letter case, or `launch/`) must be
/// well-formed, and a malformed one is refused with the reason, never silently reinterpreted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// `patient/…`, `user/…` or `system/…`.
    Resource(ResourceScope),
    /// `launch`: the EHR-launch handle is bound to this authorization.
    Launch,
    /// `launch/patient`, `launch/encounter`, `launch/<type>[?role=…]`: ask for a context.
    LaunchContext(LaunchScope),
    /// `openid`.
    OpenId,
    /// `fhirUser`: the id_token carries the user's FHIR resource URL.
    FhirUser,
    /// `profile`: the OIDC scope (SMART v1's deprecated alias of `fhirUser`).
    Profile,
    /// `offline_access`: a refresh token usable while the user is away.
    OfflineAccess,
    /// `online_access`: a refresh token usable while the user stays online.
    OnlineAccess,
    /// Anything else: an extension (`__custom`, a full URI) or a scope this crate does not know.
    Opaque(OpaqueScope),
}

impl Scope {
    /// Parses one token with the given options.
    pub fn parse_with(s: &str, opts: &ParseOptions) -> Result<Scope, ScopeError> {
        if s.is_empty() {
            return Err(ScopeError::Empty);
        }
        if s.len() > opts.limits.max_scope_len {
            return Err(ScopeError::TooLong {
                len: s.len(),
                max: opts.limits.max_scope_len,
            });
        }
        if let Some(offset) = s
            .bytes()
            .position(|b| !matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
        {
            let found = s
                .get(offset..)
                .and_then(|t| t.chars().next())
                .unwrap_or('\u{FFFD}');
            return Err(ScopeError::InvalidCharacter { found, offset });
        }
        Ok(match s {
            "launch" => Scope::Launch,
            "openid" => Scope::OpenId,
            "fhirUser" => Scope::FhirUser,
            "profile" => Scope::Profile,
            "offline_access" => Scope::OfflineAccess,
            "online_access" => Scope::OnlineAccess,
            _ => {
                if let Some(rest) = s.strip_prefix("launch/") {
                    Scope::LaunchContext(LaunchScope::parse(rest)?)
                } else if looks_like_resource_scope(s) {
                    Scope::Resource(ResourceScope::parse(s, opts)?)
                } else {
                    Scope::Opaque(OpaqueScope(s.to_owned()))
                }
            }
        })
    }

    /// The guide's URI representation: SMART scopes prefixed with
    /// `http://smarthealthit.org/fhir/scopes/`, OpenID Connect ones (`openid`, `profile`,
    /// `offline_access`) with `http://openid.net/specs/openid-connect-core-1_0#`. An opaque
    /// scope that is already a URI is returned as is; other opaque scopes have no URI form.
    pub fn to_uri(&self) -> Option<String> {
        match self {
            Scope::OpenId | Scope::Profile | Scope::OfflineAccess => {
                Some(format!("{OIDC_URI}{self}"))
            }
            Scope::Opaque(o) => o.0.contains(':').then(|| o.0.clone()),
            _ => Some(format!("{SMART_URI}{self}")),
        }
    }

    /// Parses the guide's URI representation (see [`Scope::to_uri`]).
    pub fn from_uri(uri: &str, opts: &ParseOptions) -> Result<Scope, ScopeError> {
        if let Some(rest) = uri.strip_prefix(SMART_URI) {
            let scope = Scope::parse_with(rest, opts)?;
            if matches!(
                scope,
                Scope::Opaque(_) | Scope::OpenId | Scope::Profile | Scope::OfflineAccess
            ) {
                return Ok(Scope::Opaque(OpaqueScope(uri.to_owned())));
            }
            return Ok(scope);
        }
        if let Some(rest) = uri.strip_prefix(OIDC_URI) {
            let scope = Scope::parse_with(rest, opts)?;
            if matches!(scope, Scope::OpenId | Scope::Profile | Scope::OfflineAccess) {
                return Ok(scope);
            }
        }
        Scope::parse_with(uri, opts)
    }

    /// The resource scope, if this is one.
    pub fn as_resource(&self) -> Option<&ResourceScope> {
        match self {
            Scope::Resource(r) => Some(r),
            _ => None,
        }
    }

    /// Whether this scope, granted, allows everything `other` asks for.
    ///
    /// Resource scopes compare by meaning ([`ResourceScope::covers`]); a launch scope without a
    /// role covers the same launch scope with any role; every other scope covers only itself.
    pub fn covers(&self, other: &Scope) -> bool {
        match (self, other) {
            (Scope::Resource(a), Scope::Resource(b)) => a.covers(b),
            (Scope::LaunchContext(a), Scope::LaunchContext(b)) => a.covers(b),
            (a, b) => a == b,
        }
    }

    /// The same scope in v2 syntax (only resource scopes change).
    #[must_use]
    pub fn to_v2(&self) -> Scope {
        match self {
            Scope::Resource(r) => Scope::Resource(r.to_v2()),
            other => other.clone(),
        }
    }

    /// The normal form (see [`ResourceScope::normalized`]; other scopes are already normal).
    #[must_use]
    pub fn normalized(&self) -> Scope {
        match self {
            Scope::Resource(r) => Scope::Resource(r.normalized()),
            other => other.clone(),
        }
    }
}

/// The prefix of SMART scopes in URI form.
const SMART_URI: &str = "http://smarthealthit.org/fhir/scopes/";
/// The prefix of OpenID Connect scopes in URI form.
const OIDC_URI: &str = "http://openid.net/specs/openid-connect-core-1_0#";

/// Only tokens that claim a SMART context are parsed as resource scopes: `<ctx>/…` in any
/// letter case (so `Patient/Observation.rs` is refused, not treated as an extension), or the
/// Quick Start erratum `patient.Type.perm` with a lowercase context and an uppercase type or `*`
/// (so `user.read`-style scopes of other APIs stay opaque).
fn looks_like_resource_scope(s: &str) -> bool {
    if let Some((ctx, _)) = s.split_once('/') {
        if Context::is_literal_any_case(ctx) {
            return true;
        }
    }
    if let Some((ctx, rest)) = s.split_once('.') {
        let ctx_ok = matches!(ctx, "patient" | "user" | "system");
        let type_ok = rest
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_uppercase() || b == b'*');
        return ctx_ok && type_ok && rest.contains('.');
    }
    false
}

impl FromStr for Scope {
    type Err = ScopeError;

    /// Parses with [`ParseOptions::default`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::parse_with(s, &ParseOptions::default())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Resource(r) => write!(f, "{r}"),
            Scope::Launch => f.write_str("launch"),
            Scope::LaunchContext(l) => write!(f, "{l}"),
            Scope::OpenId => f.write_str("openid"),
            Scope::FhirUser => f.write_str("fhirUser"),
            Scope::Profile => f.write_str("profile"),
            Scope::OfflineAccess => f.write_str("offline_access"),
            Scope::OnlineAccess => f.write_str("online_access"),
            Scope::Opaque(o) => f.write_str(&o.0),
        }
    }
}

impl From<ResourceScope> for Scope {
    fn from(r: ResourceScope) -> Self {
        Scope::Resource(r)
    }
}

/// A launch-context request: `launch/patient`, `launch/encounter`, `launch/<type>[?role=uri]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LaunchScope {
    resource: FhirType,
    role: Option<String>,
}

impl LaunchScope {
    /// `launch/<type>` without a role.
    pub fn new(resource: FhirType) -> LaunchScope {
        LaunchScope {
            resource,
            role: None,
        }
    }

    /// `launch/patient`.
    pub fn patient() -> LaunchScope {
        LaunchScope::new(FhirType::PATIENT)
    }

    /// `launch/encounter`.
    pub fn encounter() -> LaunchScope {
        LaunchScope::new(FhirType::ENCOUNTER)
    }

    /// The resource type whose context is asked for.
    pub fn resource(&self) -> FhirType {
        self.resource
    }

    /// The `role` asked for, if any (at most one per scope).
    pub fn role(&self) -> Option<&str> {
        self.role.as_deref()
    }

    /// A role-less launch scope covers every role of its type.
    pub fn covers(&self, other: &LaunchScope) -> bool {
        self.resource == other.resource && (self.role.is_none() || self.role == other.role)
    }

    fn parse(rest: &str) -> Result<LaunchScope, ScopeError> {
        let (name, query) = match rest.split_once('?') {
            Some((n, q)) => (n, Some(q)),
            None => (rest, None),
        };
        let resource = FhirType::from_lowercase_name(name).ok_or(ScopeError::BadLaunchType)?;
        let role = match query {
            None => None,
            Some(q) => {
                let role = q.strip_prefix("role=").ok_or(ScopeError::BadLaunchParam)?;
                if role.is_empty() || role.contains('&') {
                    return Err(ScopeError::BadLaunchParam);
                }
                Some(role.to_owned())
            }
        };
        Ok(LaunchScope { resource, role })
    }
}

impl fmt::Display for LaunchScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("launch/")?;
        for c in self.resource.as_str().chars() {
            fmt::Write::write_char(f, c.to_ascii_lowercase())?;
        }
        if let Some(role) = &self.role {
            write!(f, "?role={role}")?;
        }
        Ok(())
    }
}

/// A scope SMART does not define, kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpaqueScope(String);

impl OpaqueScope {
    /// The scope as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it has one of the guide's extension shapes: a `__` prefix or a full URI.
    pub fn is_extension(&self) -> bool {
        self.0.starts_with("__") || self.0.contains("://") || self.0.starts_with("urn:")
    }
}
