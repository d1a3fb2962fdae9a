//! The token's scope string, typed for enforcement.

use crate::enforce::{Permissions, ResourceGrant, ScopeContext};
use crate::fhir::ResourceType;
use crate::scope::{Context, ParseOptions, Permission, ScopeSet, TypeSelector};

/// The resource scopes of a token's `scope` claim as enforcement's [`ResourceGrant`]s.
///
/// Malformed scope tokens are set aside (the guide lets a server ignore them); they grant
/// nothing. Launch, OpenID and opaque scopes grant no resource access and are skipped.
/// Returns the grants and the parsed set (for the handler's [`super::GuardContext`]).
pub(crate) fn resource_grants(scope: &str) -> (Vec<ResourceGrant>, ScopeSet) {
    let set = match ScopeSet::parse_lenient(scope, &ParseOptions::default()) {
        Ok((set, _rejected)) => set,
        // Over the length or count limits: nothing is granted.
        Err(_) => ScopeSet::new(),
    };
    let mut grants = Vec::with_capacity(set.len());
    for rs in set.resource_scopes() {
        let context = match rs.context() {
            Context::Patient => ScopeContext::Patient,
            Context::User => ScopeContext::User,
            Context::System => ScopeContext::System,
        };
        let resource_type = match rs.resource() {
            TypeSelector::Any => None,
            TypeSelector::Type(t) => match ResourceType::new(t.as_str()) {
                Some(t) => Some(t),
                None => continue,
            },
        };
        let mut permissions = Permissions::default();
        for p in rs.permissions().iter() {
            match p {
                Permission::Create => permissions.create = true,
                Permission::Read => permissions.read = true,
                Permission::Update => permissions.update = true,
                Permission::Delete => permissions.delete = true,
                Permission::Search => permissions.search = true,
            }
        }
        let constraints = rs
            .filters()
            .iter()
            .map(|f| {
                (
                    f.name().to_owned(),
                    f.values().collect::<Vec<_>>().join(","),
                )
            })
            .collect();
        grants.push(ResourceGrant {
            context,
            resource_type,
            permissions,
            constraints,
        });
    }
    (grants, set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_scopes_become_grants() {
        let (grants, set) = resource_grants(
            "launch/patient openid patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory user/*.read bogus//scope",
        );
        assert_eq!(set.len(), 5, "bogus//scope is kept as an opaque scope");
        assert_eq!(grants.len(), 2);
        assert_eq!(
            grants[0].to_string(),
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
        );
        assert_eq!(grants[1].context, ScopeContext::User);
        assert_eq!(grants[1].resource_type, None);
        assert_eq!(grants[1].permissions, Permissions::READ_SEARCH);
    }

    #[test]
    fn oversized_scope_grants_nothing() {
        let (grants, set) = resource_grants(&"patient/Observation.rs ".repeat(10_000));
        assert!(grants.is_empty());
        assert!(set.is_empty());
    }
}
