//! Unit tests of the scope language: the guide's edge-case table, round trips, the algebra.

use super::*;

fn s(x: &str) -> Scope {
    x.parse().unwrap_or_else(|e| panic!("{x}: {e}"))
}

fn r(x: &str) -> ResourceScope {
    match s(x) {
        Scope::Resource(r) => r,
        other => panic!("{x} is not a resource scope: {other:?}"),
    }
}

fn set(x: &str) -> ScopeSet {
    x.parse().unwrap_or_else(|e| panic!("{x}: {e}"))
}

fn err(x: &str) -> ScopeError {
    match x.parse::<Scope>() {
        Err(e) => e,
        Ok(ok) => panic!("{x} parsed as {ok:?}"),
    }
}

#[test]
fn accepted_rows_of_the_edge_case_table() {
    for ok in [
        "patient/Observation.rs",
        "patient/Observation.cruds",
        "patient/Observation.c",
        "patient/Observation.s",
        "patient/Observation.cu",
        "patient/Observation.ud",
        "patient/*.rs",
        "user/*.cruds",
        "system/*.rs",
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
        "patient/Observation.rs?category=a&status=final",
        "patient/Observation.c?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
        "launch",
        "launch/patient",
        "launch/encounter",
        "launch/diagnosticreport",
        "launch/list?role=https://example.org/role",
        "openid",
        "fhirUser",
        "profile",
        "offline_access",
        "online_access",
        "__custom",
        "https://ehr.example.org/scopes/x",
        "patient/Observation.read",
        "patient/Observation.write",
        "patient/Observation.*",
        "patient/*.*",
        "user/Patient.read",
    ] {
        assert_eq!(s(ok).to_string(), ok, "round trip of {ok}");
    }
}

#[test]
fn kinds_are_recognised() {
    assert_eq!(s("launch"), Scope::Launch);
    assert_eq!(
        s("launch/patient"),
        Scope::LaunchContext(LaunchScope::patient())
    );
    assert_eq!(s("openid"), Scope::OpenId);
    assert_eq!(s("fhirUser"), Scope::FhirUser);
    assert_eq!(s("offline_access"), Scope::OfflineAccess);
    assert!(matches!(s("__custom"), Scope::Opaque(o) if o.is_extension()));
    assert!(matches!(s("User.Read"), Scope::Opaque(_)));
    assert!(matches!(s("user.read"), Scope::Opaque(_)));
    let g = r("system/Observation.rs?category=a,b&status=final");
    assert_eq!(g.context(), Context::System);
    assert_eq!(g.resource(), TypeSelector::Type(FhirType::OBSERVATION));
    assert_eq!(g.permissions(), Permissions::READ);
    assert_eq!(g.syntax(), Syntax::V2);
    assert_eq!(g.filters().len(), 2);
    let LaunchScope { .. } = LaunchScope::encounter();
    let Scope::LaunchContext(l) = s("launch/list?role=https://example.org/role") else {
        panic!()
    };
    assert_eq!(l.resource().as_str(), "List");
    assert_eq!(l.role(), Some("https://example.org/role"));
}

#[test]
fn rejected_rows_say_why() {
    assert_eq!(
        err("patient/Observation.sr"),
        ScopeError::PermissionsOutOfOrder
    );
    assert_eq!(
        err("patient/Observation.dus"),
        ScopeError::PermissionsOutOfOrder
    );
    assert_eq!(
        err("patient/Observation.rr"),
        ScopeError::RepeatedPermission { letter: 'r' }
    );
    assert_eq!(
        err("patient/Observation.rsr"),
        ScopeError::RepeatedPermission { letter: 'r' }
    );
    assert_eq!(
        err("patient/Observation.crudsx"),
        ScopeError::UnknownPermission { found: 'x' }
    );
    assert_eq!(err("patient/Observation."), ScopeError::EmptyPermissions);
    assert_eq!(err("patient/Observation"), ScopeError::MissingPermissions);
    assert_eq!(err("Patient/Observation.rs"), ScopeError::BadContext);
    assert_eq!(err("PATIENT/Observation.rs"), ScopeError::BadContext);
    assert_eq!(
        err("patient/observation.rs"),
        ScopeError::UnknownResourceType {
            name: "observation".into()
        }
    );
    assert_eq!(
        err("patient/Foo.rs"),
        ScopeError::UnknownResourceType { name: "Foo".into() }
    );
    assert_eq!(err("patient/Observation.rs?"), QueryError::Empty.into());
    assert_eq!(
        err("patient/Observation.rs?category"),
        QueryError::MissingValue.into()
    );
    assert_eq!(
        err("patient/Observation.rs?=x"),
        QueryError::EmptyName.into()
    );
    assert_eq!(
        err("patient/Observation.rs?code:in=http://x"),
        ScopeError::UnsupportedFilter(ExperimentalFeature::Modifier)
    );
    assert_eq!(
        err("patient/Observation.rs?patient.birthdate=x"),
        ScopeError::UnsupportedFilter(ExperimentalFeature::Chain)
    );
    assert_eq!(
        err("patient/Observation.rs?_filter=x"),
        ScopeError::UnsupportedFilter(ExperimentalFeature::Filter)
    );
    assert_eq!(
        err("patient/Observation.read?category=a"),
        ScopeError::FilterOnV1
    );
    assert_eq!(err("launch/Patient"), ScopeError::BadLaunchType);
    assert_eq!(err("launch/foo"), ScopeError::BadLaunchType);
    assert_eq!(err("launch/list?role=a&role=b"), ScopeError::BadLaunchParam);
    assert_eq!(err("launch/list?x=a"), ScopeError::BadLaunchParam);
    assert_eq!(err(""), ScopeError::Empty);
    assert_eq!(
        err("a\"b"),
        ScopeError::InvalidCharacter {
            found: '"',
            offset: 1
        }
    );
    assert_eq!(
        err("a\\b"),
        ScopeError::InvalidCharacter {
            found: '\\',
            offset: 1
        }
    );
    assert_eq!(
        err("é"),
        ScopeError::InvalidCharacter {
            found: 'é',
            offset: 0
        }
    );
    assert!(matches!(
        err(&"a".repeat(5000)),
        ScopeError::TooLong { len: 5000, .. }
    ));
}

#[test]
fn v1_can_be_refused() {
    let opts = ParseOptions::default().accept_v1(false);
    assert_eq!(
        Scope::parse_with("patient/Observation.read", &opts),
        Err(ScopeError::V1NotAccepted)
    );
    assert!(Scope::parse_with("patient/Observation.rs", &opts).is_ok());
}

#[test]
fn v1_to_v2_matches_the_guides_table() {
    for (v1, v2) in [
        ("patient/Observation.read", "patient/Observation.rs"),
        ("patient/Observation.write", "patient/Observation.cud"),
        ("patient/Observation.*", "patient/Observation.cruds"),
        ("user/*.read", "user/*.rs"),
        ("patient/*.*", "patient/*.cruds"),
    ] {
        let a = r(v1);
        assert_eq!(a.syntax(), Syntax::V1);
        assert_eq!(a.to_v2().to_string(), v2);
        assert_eq!(a.normalized().to_string(), v2);
        assert_eq!(r(v2).to_v1().map(|x| x.to_string()).as_deref(), Some(v1));
        assert!(a.covers(&r(v2)) && r(v2).covers(&a));
    }
    assert!(r("patient/Observation.r").to_v1().is_none());
    assert!(r("system/Observation.rs").to_v1().is_none());
    assert!(r("patient/Observation.rs?category=a").to_v1().is_none());
}

#[test]
fn errata_are_repaired_on_parsing() {
    let typo = "patient/Observation.rs?category=http://terminology.hl7.org//CodeSystem-observation-category|social-history";
    assert_eq!(
        s(typo).to_string(),
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|social-history"
    );
    let quick_start = "patient.Observation.rs?category=http://terminology.hl7.org/3.1.0/CodeSystem-observation-category.html|social-history";
    assert_eq!(
        s(quick_start).to_string(),
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|social-history"
    );
    assert_eq!(s("user.Condition.rs").to_string(), "user/Condition.rs");
}

#[test]
fn covers_follows_the_rules() {
    let any = r("patient/*.cruds");
    let obs = r("patient/Observation.rs");
    let lab = r(
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
    );
    let lab_or_vital = r(
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory,http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
    );
    assert!(any.covers(&obs) && obs.covers(&lab) && any.covers(&lab));
    assert!(!obs.covers(&any) && !lab.covers(&obs));
    assert!(lab_or_vital.covers(&lab) && !lab.covers(&lab_or_vital));
    assert!(!r("user/*.cruds").covers(&obs), "contexts are unordered");
    assert!(!r("patient/Observation.r").covers(&obs));
    assert!(r("patient/Observation.read").covers(&r("patient/Observation.s")));
    let and = r(
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory&status=final",
    );
    assert!(lab.covers(&and) && !and.covers(&lab));
}

#[test]
fn set_parsing_dedupes_and_keeps_order() {
    let x = set(
        "openid  fhirUser launch/patient openid patient/Observation.rs patient/Observation.rs ",
    );
    assert_eq!(
        x.to_string(),
        "openid fhirUser launch/patient patient/Observation.rs"
    );
    assert_eq!(x.len(), 4);
    assert!(set("").is_empty());
    assert_eq!(
        "openid patient/Observation.dus".parse::<ScopeSet>(),
        Err(ScopeSetError::Invalid {
            position: 1,
            error: ScopeError::PermissionsOutOfOrder
        })
    );
    let (ok, bad) = ScopeSet::parse_lenient(
        "openid patient/Observation.dus launch",
        &ParseOptions::default(),
    )
    .unwrap();
    assert_eq!(ok.to_string(), "openid launch");
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].text, "patient/Observation.dus");
    assert_eq!(bad[0].position, 1);
    let long = "openid ".repeat(3000);
    assert!(matches!(
        long.parse::<ScopeSet>(),
        Err(ScopeSetError::TooLong { .. })
    ));
    let many = "openid ".repeat(300);
    assert!(matches!(
        many.parse::<ScopeSet>(),
        Err(ScopeSetError::TooManyScopes { .. })
    ));
    assert_eq!(set("openid fhirUser"), set("fhirUser openid"));
}

#[test]
fn set_covers_unions_permissions() {
    let g = set("patient/Observation.r patient/Observation.s");
    assert!(g.covers(&s("patient/Observation.rs")));
    assert!(!g.covers(&s("patient/Observation.c")));
    assert!(set("launch/patient").covers(&s("launch/patient?role=x")));
    assert!(!set("launch/patient?role=x").covers(&s("launch/patient")));
    assert!(set("patient/*.read openid").covers_all(&set("patient/Condition.rs openid")));
}

#[test]
fn normal_form_merges_and_drops_covered() {
    let n = set("patient/Observation.r openid patient/Observation.s patient/Observation.rs?category=a user/Patient.read").normalized();
    assert_eq!(
        n.to_string(),
        "patient/Observation.rs openid user/Patient.rs"
    );
    let n2 = set("patient/Observation.rs?status=final&category=b,a&category=a").normalized();
    assert_eq!(
        n2.to_string(),
        "patient/Observation.rs?category=a&status=final"
    );
    assert_eq!(n.normalized(), n);
}

#[test]
fn intersection_is_below_both() {
    let a = r("patient/*.rs?category=a,b");
    let b = r("patient/Observation.cruds?category=b,c&status=final");
    let i = a.intersect(&b).unwrap();
    assert_eq!(
        i.to_string(),
        "patient/Observation.rs?category=b&status=final"
    );
    assert!(a.covers(&i) && b.covers(&i));
    assert!(
        r("patient/Observation.rs")
            .intersect(&r("patient/Condition.rs"))
            .is_none()
    );
    assert!(
        r("patient/Observation.rs")
            .intersect(&r("patient/Observation.cud"))
            .is_none()
    );
    assert!(
        r("patient/*.rs?category=a")
            .intersect(&r("patient/*.rs?category=b"))
            .is_none()
    );
    assert!(r("patient/*.rs").intersect(&r("user/*.rs")).is_none());
    assert_eq!(
        r("patient/*.*")
            .intersect(&r("patient/Observation.read"))
            .unwrap()
            .to_string(),
        "patient/Observation.read"
    );
    let si =
        set("openid patient/*.read launch").intersect(&set("patient/Observation.cruds openid"));
    assert_eq!(si.to_string(), "openid patient/Observation.rs");
}

#[test]
fn access_reports_filters_for_enforcement() {
    let lab = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
    let vs = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs";
    let g = set(&format!(
        "patient/Patient.read patient/Observation.rs?category={lab} patient/Observation.rs?category={vs}"
    ));
    assert!(matches!(
        g.access(Context::Patient, FhirType::PATIENT, Permission::Read),
        Access::Full
    ));
    assert!(matches!(
        g.access(Context::Patient, FhirType::CONDITION, Permission::Read),
        Access::Denied
    ));
    assert!(matches!(
        g.access(Context::User, FhirType::PATIENT, Permission::Read),
        Access::Denied
    ));
    assert!(!g.permits(Context::Patient, FhirType::OBSERVATION, Permission::Create));
    let Access::Filtered(f) = g.access(Context::Patient, FhirType::OBSERVATION, Permission::Search)
    else {
        panic!("filtered")
    };
    assert_eq!(f.allowed_values("category"), Some(vec![lab, vs]));
    assert_eq!(f.allowed_values("status"), None);
    assert_eq!(f.alternatives().count(), 2);
    assert!(f.allows(|name, value| name == "category" && value == vs));
    assert!(!f.allows(|name, value| name == "category" && value.ends_with("|survey")));
}

#[test]
fn negotiation_downscopes_and_reports() {
    let requested =
        set("launch/patient openid fhirUser offline_access patient/*.read patient/Condition.write");
    let client = set("launch/patient openid fhirUser patient/*.read");
    let patient = set(
        "patient/Patient.rs patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
    );
    let n = negotiate(&requested, &client, &patient);
    assert_eq!(
        n.granted.to_string(),
        "launch/patient openid fhirUser patient/Patient.read patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    );
    assert!(n.is_downscoped());
    assert_eq!(n.dropped.len(), 2);
    assert_eq!(n.dropped[0].scope, s("offline_access"));
    assert_eq!(n.dropped[0].by, Limit::Client);
    assert_eq!(n.dropped[1].scope, s("patient/Condition.write"));
    assert_eq!(n.narrowed.len(), 1);
    assert_eq!(n.narrowed[0].by, Limit::Patient);
    assert!(requested.covers_all(&n.granted));
    assert!(client.covers_all(&n.granted));

    let v2 = negotiate(
        &set("patient/Observation.rs"),
        &set("patient/*.read"),
        &set("patient/*.cruds"),
    );
    assert_eq!(v2.granted.to_string(), "patient/Observation.rs");
    assert!(!v2.is_downscoped());
    let all = set("patient/Observation.cruds").restrict_to(&set("patient/*.rs"));
    assert_eq!(all.granted.to_string(), "patient/Observation.rs");
}

#[test]
fn serde_uses_the_string_form() {
    let g = set("openid patient/Observation.rs");
    let json = serde_json::to_string(&g).unwrap();
    assert_eq!(json, "\"openid patient/Observation.rs\"");
    let back: ScopeSet = serde_json::from_str(&json).unwrap();
    assert_eq!(back, g);
    assert!(serde_json::from_str::<ScopeSet>("\"patient/Foo.rs\"").is_err());
}

#[test]
fn uri_representation_round_trips() {
    let opts = ParseOptions::default();
    for (plain, uri) in [
        (
            "patient/*.r",
            "http://smarthealthit.org/fhir/scopes/patient/*.r",
        ),
        (
            "launch/patient",
            "http://smarthealthit.org/fhir/scopes/launch/patient",
        ),
        ("fhirUser", "http://smarthealthit.org/fhir/scopes/fhirUser"),
        (
            "openid",
            "http://openid.net/specs/openid-connect-core-1_0#openid",
        ),
        (
            "offline_access",
            "http://openid.net/specs/openid-connect-core-1_0#offline_access",
        ),
    ] {
        let scope = s(plain);
        assert_eq!(scope.to_uri().as_deref(), Some(uri));
        assert_eq!(Scope::from_uri(uri, &opts), Ok(scope));
    }
    assert_eq!(s("__x").to_uri(), None);
    assert_eq!(s("urn:x:y").to_uri().as_deref(), Some("urn:x:y"));
    assert_eq!(
        Scope::from_uri(
            "http://smarthealthit.org/fhir/scopes/patient/Observation.sr",
            &opts
        ),
        Err(ScopeError::PermissionsOutOfOrder)
    );
}

#[test]
fn intersection_with_a_covered_scope_is_that_scope() {
    // Two filters on one parameter are an AND of their own; a wider filter of the other side
    // gives way instead of emptying them (a proptest found `category=b` meeting
    // `category=b&category=final` as nothing).
    let a = r("system/*.rud?category=b");
    let b = r("system/*.ru?category=b&category=final");
    assert!(a.covers(&b));
    let i = a.intersect(&b).unwrap();
    assert!(i.covers(&b) && b.covers(&i), "{i}");
    assert_eq!(
        r("patient/*.rs?category=a,b")
            .intersect(&r("patient/Observation.rs?category=b&status=final"))
            .unwrap()
            .to_string(),
        "patient/Observation.rs?category=b&status=final"
    );
}
