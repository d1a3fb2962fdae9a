//! Translation between category sets and SMART v2 granular scopes (`ccds-fhir-mapping.md` §4.4).
//!
//! Both directions work on [`ResourceGrant`], the typed scope enforcement consumes; a grant
//! renders as its SMART scope string with `Display`, so the consent screen, the token's scope
//! string and enforcement all derive from the one registry.

use std::collections::BTreeSet;

use super::registry::{CategoryKind, CategoryRegistry, ScopeTemplate};
use crate::enforce::{Permissions, ResourceGrant, ScopeContext};
use crate::fhir::ResourceType;
use crate::ids::CategoryId;

impl CategoryRegistry {
    /// The SMART v2 scopes (`rs`) an app needs to read `categories` in `context`: each
    /// category's declared scopes, a whole-type scope for an uncategorised bucket (no search
    /// parameter can express "everything else"), and a whole-type scope for every supporting
    /// type whose rule the set satisfies. Duplicates removed, registry order kept.
    pub fn scopes_for<'a>(
        &self,
        categories: impl IntoIterator<Item = &'a CategoryId>,
        context: ScopeContext,
    ) -> Vec<ResourceGrant> {
        let wanted: BTreeSet<&CategoryId> = categories.into_iter().collect();
        let mut out: Vec<ResourceGrant> = Vec::new();
        let mut push = |grant: ResourceGrant| {
            if !out.contains(&grant) {
                out.push(grant);
            }
        };
        for category in &self.categories {
            if !wanted.contains(&category.id) {
                continue;
            }
            match &category.kind {
                CategoryKind::Uncategorised { resource_type } => {
                    if let Some(t) = ResourceType::new(resource_type) {
                        push(ResourceGrant::new(context, t, Permissions::READ_SEARCH));
                    }
                }
                _ => {
                    for template in &category.scopes {
                        if let Some(grant) = template_grant(template, context) {
                            push(grant);
                        }
                    }
                }
            }
        }
        // Implicit buckets of undeclared types.
        for id in &wanted {
            if self.by_id.contains_key(*id) {
                continue;
            }
            if let Some(lower) = id.as_str().strip_prefix(self.bucket_prefix.as_str()) {
                if let Some(t) = self
                    .types
                    .keys()
                    .find(|t| t.to_ascii_lowercase() == lower)
                    .and_then(|t| ResourceType::new(t))
                {
                    push(ResourceGrant::new(context, t, Permissions::READ_SEARCH));
                }
            }
        }
        if !wanted.is_empty() {
            for support in &self.supporting {
                let met = support
                    .with
                    .iter()
                    .any(|w| w == "*" || wanted.iter().any(|id| id.as_str() == w));
                if met {
                    if let Some(t) = ResourceType::new(&support.resource_type) {
                        push(ResourceGrant::new(context, t, Permissions::READ_SEARCH));
                    }
                }
            }
        }
        out
    }

    /// The categories a set of granted scopes fully expresses: those every one of whose
    /// scopes is covered by a granted scope with `r` and `s` (a whole-type scope covers every
    /// granular scope of that type; a granular one covers the same `param=value`). An
    /// uncategorised bucket needs a whole-type scope. A category with no declared scope is
    /// never implied by scopes.
    pub fn categories_for(&self, grants: &[ResourceGrant]) -> BTreeSet<CategoryId> {
        let mut out = BTreeSet::new();
        for category in &self.categories {
            let covered = match &category.kind {
                CategoryKind::Uncategorised { resource_type } => {
                    grants.iter().any(|g| covers_whole(g, resource_type))
                }
                _ => {
                    !category.scopes.is_empty()
                        && category
                            .scopes
                            .iter()
                            .all(|t| grants.iter().any(|g| self.covers_template(g, t)))
                }
            };
            if covered {
                out.insert(category.id.clone());
            }
        }
        out
    }

    /// The categories a set of *requested* scopes can reach: those at least one of whose
    /// scopes is covered by a requested scope with `r` (an uncategorised bucket needs its
    /// whole-type scope; `s` is not required, since a read by id alone discloses data). A consent screen offers exactly these: ticking any other category
    /// could grant nothing, since the authorization server issues only scopes within the
    /// request. Every category [`categories_for`](Self::categories_for) returns is reachable;
    /// a reachable category may be only partly expressed (lab results when only the
    /// Observation half of its scopes was requested).
    pub fn reachable_categories(&self, requested: &[ResourceGrant]) -> BTreeSet<CategoryId> {
        let mut out = BTreeSet::new();
        for category in &self.categories {
            let reachable = match &category.kind {
                CategoryKind::Uncategorised { resource_type } => requested.iter().any(|g| {
                    g.names_type(resource_type) && g.permissions.read && g.constraints.is_empty()
                }),
                _ => category.scopes.iter().any(|t| {
                    requested
                        .iter()
                        .any(|g| g.permissions.read && self.constraints_cover(g, t))
                }),
            };
            if reachable {
                out.insert(category.id.clone());
            }
        }
        out
    }

    fn covers_template(&self, grant: &ResourceGrant, template: &ScopeTemplate) -> bool {
        grant.permissions.read
            && grant.permissions.search
            && self.constraints_cover(grant, template)
    }

    /// Whether `grant` names the template's type and each of its constraints is the template's
    /// own `param=value` (whatever its permissions).
    fn constraints_cover(&self, grant: &ResourceGrant, template: &ScopeTemplate) -> bool {
        if !grant.names_type(&template.resource_type) {
            return false;
        }
        grant
            .constraints
            .iter()
            .all(|(param, value)| match (&template.param, &template.value) {
                (Some(tp), Some(tv)) if tp == param => {
                    value.split(',').any(|alt| self.same_token(alt, tv))
                }
                _ => false,
            })
    }

    /// Whether two `system|code` tokens name the same coding (systems canonicalised).
    pub(crate) fn same_token(&self, a: &str, b: &str) -> bool {
        match (a.split_once('|'), b.split_once('|')) {
            (Some((sa, ca)), Some((sb, cb))) => {
                ca == cb && self.canonical_system(sa) == self.canonical_system(sb)
            }
            (None, None) => a == b,
            _ => false,
        }
    }
}

fn covers_whole(grant: &ResourceGrant, resource_type: &str) -> bool {
    grant.names_type(resource_type)
        && grant.permissions.read
        && grant.permissions.search
        && grant.constraints.is_empty()
}

fn template_grant(template: &ScopeTemplate, context: ScopeContext) -> Option<ResourceGrant> {
    let t = ResourceType::new(&template.resource_type)?;
    let grant = ResourceGrant::new(context, t, Permissions::READ_SEARCH);
    Some(match (&template.param, &template.value) {
        (Some(p), Some(v)) => grant.with_constraint(p.clone(), v.clone()),
        _ => grant,
    })
}
