//! The scope language against the guide's and US Core's published scopes, and its algebra's
//! laws as properties.

use fhirguard::scope::{
    Context, FhirType, Filter, LaunchScope, ParseOptions, Permission, Permissions, QueryError,
    ResourceScope, Scope, ScopeError, ScopeSet, ScopeSetError, TypeSelector, negotiate,
};
use proptest::prelude::*;

const OBS_CAT: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// Every scope string printed in SMART App Launch 1.0/2.x and US Core 6.1–9.0 (with `patient/`,
/// `user/` and `system/` for US Core's context-free tables).
fn published_scopes() -> Vec<String> {
    let mut v: Vec<String> = [
        // SMART App Launch (v2 and v1 examples, launch, identity, refresh)
        "patient/Observation.rs",
        "patient/Observation.cu",
        "patient/Observation.r",
        "patient/Observation.s",
        "patient/Patient.r",
        "patient/Patient.rs",
        "patient/*.rs",
        "patient/*.cruds",
        "user/*.cruds",
        "user/*.rs",
        "system/*.rs",
        "system/*.read",
        "patient/AllergyIntolerance.cruds",
        "patient/AllergyIntolerance.rs",
        "patient/AllergyIntolerance.cud",
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
        "patient/*.read",
        "user/*.read",
        "patient/Patient.read",
        "patient/Patient.*",
        "patient/*.*",
        "user/Appointment.read",
        "user/Appointment.write",
        "user/Observation.write",
        "launch",
        "launch/patient",
        "launch/encounter",
        "launch/diagnosticreport",
        "launch/imagingstudy",
        "launch/list?role=https://example.org/med-list-at-home",
        "openid",
        "fhirUser",
        "profile",
        "offline_access",
        "online_access",
        "__profilePhoto.manage",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let granular = [
        "Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|encounter-diagnosis",
        "Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item",
        "Condition.rs?category=http://hl7.org/fhir/us/core/CodeSystem/condition-category|health-concern",
        "Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
        "Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
        "Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|social-history",
        "Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|survey",
        "Observation.rs?category=http://hl7.org/fhir/us/core/CodeSystem/us-core-category|sdoh",
        "DocumentReference.rs?category=http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category|clinical-note",
        "DiagnosticReport.rs?category=http://terminology.hl7.org/CodeSystem/v2-0074|LAB",
        "DiagnosticReport.rs?category=http://loinc.org|LP29684-5",
        "DiagnosticReport.rs?category=http://loinc.org|LP29708-2",
        "DiagnosticReport.rs?category=http://loinc.org|LP7839-6",
        "Observation.rs?category=http://hl7.org/fhir/us/core/CodeSystem/us-core-category|functional-status",
        "Observation.rs?category=http://hl7.org/fhir/us/core/CodeSystem/us-core-category|disability-status",
        "Observation.rs?category=http://hl7.org/fhir/us/core/CodeSystem/us-core-category|cognitive-status",
        "ServiceRequest.rs?category=http://hl7.org/fhir/us/core/CodeSystem/us-core-category|sdoh",
        "Observation.rs?code=http://loinc.org|72166-2",
        "CarePlan.rs?category=http://hl7.org/fhir/us/core/CodeSystem/careplan-category|assess-plan",
    ];
    for ctx in ["patient", "user", "system"] {
        for g in granular {
            v.push(format!("{ctx}/{g}"));
        }
    }
    for t in [
        "AllergyIntolerance",
        "CarePlan",
        "CareTeam",
        "Condition",
        "Coverage",
        "Device",
        "DiagnosticReport",
        "DocumentReference",
        "Encounter",
        "Goal",
        "Immunization",
        "Location",
        "Medication",
        "MedicationDispense",
        "MedicationRequest",
        "Observation",
        "Organization",
        "Patient",
        "Practitioner",
        "PractitionerRole",
        "Procedure",
        "Provenance",
        "QuestionnaireResponse",
        "RelatedPerson",
        "ServiceRequest",
        "Specimen",
    ] {
        v.push(format!("patient/{t}.rs"));
        v.push(format!("user/{t}.read"));
    }
    v
}

#[test]
fn every_published_scope_parses_and_round_trips() {
    for text in published_scopes() {
        let scope: Scope = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(scope.to_string(), text);
        assert!(
            !matches!(scope, Scope::Opaque(_)) || text.starts_with("__"),
            "{text}"
        );
    }
    let mut unique = published_scopes();
    let mut seen = std::collections::HashSet::new();
    unique.retain(|s| seen.insert(s.clone()));
    let whole = unique.join(" ");
    let set: ScopeSet = whole.parse().unwrap();
    assert_eq!(set.to_string(), whole);
}

#[test]
fn inferno_request_strings_parse() {
    for text in [
        "launch openid fhirUser offline_access patient/*.rs",
        "launch/patient openid fhirUser offline_access patient/*.read",
        "launch openid fhirUser offline_access user/*.read",
        "patient/*.read launch/patient offline_access",
        "launch/patient openid fhirUser offline_access patient/Medication.rs patient/AllergyIntolerance.rs patient/CarePlan.rs patient/CareTeam.rs patient/Condition.rs patient/Device.rs patient/DiagnosticReport.rs patient/DocumentReference.rs patient/Encounter.rs patient/Goal.rs patient/Immunization.rs patient/Location.rs patient/MedicationRequest.rs patient/Observation.rs patient/Organization.rs patient/Patient.rs patient/Practitioner.rs patient/Procedure.rs patient/Provenance.rs patient/PractitionerRole.rs",
    ] {
        let set: ScopeSet = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(set.to_string(), text);
    }
}

#[test]
fn us_core_errata_come_out_canonical() {
    let fixed = format!("patient/Observation.rs?category={OBS_CAT}|social-history");
    for typo in [
        "patient/Observation.rs?category=http://terminology.hl7.org//CodeSystem-observation-category|social-history",
        "patient/Observation.rs?category=http://terminology.hl7.org/3.1.0/CodeSystem-observation-category.html|social-history",
        "patient.Observation.rs?category=http://terminology.hl7.org//CodeSystem-observation-category|social-history",
        "patient/Observation.rs?category=http%3A%2F%2Fterminology.hl7.org%2F%2FCodeSystem-observation-category%7Csocial-history",
    ] {
        assert_eq!(typo.parse::<Scope>().unwrap().to_string(), fixed, "{typo}");
    }
    // A server that copied the typo into its allowed set still grants the canonical scope.
    let allowed: ScopeSet =
        "user/Observation.rs?category=http://terminology.hl7.org//CodeSystem-observation-category|social-history"
            .parse()
            .unwrap();
    let wanted: Scope = format!("user/Observation.rs?category={OBS_CAT}|social-history")
        .parse()
        .unwrap();
    assert!(allowed.covers(&wanted));
}

#[test]
fn rejected_inputs_give_the_right_error_kind() {
    let cases: &[(&str, ScopeError)] = &[
        ("patient/Observation.dus", ScopeError::PermissionsOutOfOrder),
        ("patient/Observation.sr", ScopeError::PermissionsOutOfOrder),
        (
            "patient/Observation.rr",
            ScopeError::RepeatedPermission { letter: 'r' },
        ),
        (
            "patient/Observation.crudsx",
            ScopeError::UnknownPermission { found: 'x' },
        ),
        ("patient/Observation.", ScopeError::EmptyPermissions),
        ("Patient/Observation.rs", ScopeError::BadContext),
        (
            "patient/observation.rs",
            ScopeError::UnknownResourceType {
                name: "observation".into(),
            },
        ),
        (
            "patient/Observation.rs?",
            ScopeError::MalformedQuery(QueryError::Empty),
        ),
        (
            "patient/Observation.rs?category",
            ScopeError::MalformedQuery(QueryError::MissingValue),
        ),
        (
            "patient/Observation.rs?=x",
            ScopeError::MalformedQuery(QueryError::EmptyName),
        ),
        (
            "patient/Observation.rs?category=%G1",
            ScopeError::MalformedQuery(QueryError::BadPercentEncoding),
        ),
        ("launch/Patient", ScopeError::BadLaunchType),
        ("launch/list?role=a&role=b", ScopeError::BadLaunchParam),
    ];
    for (text, want) in cases {
        assert_eq!(text.parse::<Scope>().as_ref(), Err(want), "{text}");
        let in_set = format!("openid {text}");
        assert_eq!(
            in_set.parse::<ScopeSet>(),
            Err(ScopeSetError::Invalid {
                position: 1,
                error: want.clone()
            })
        );
    }
    // Errors never echo more than a short excerpt of hostile input.
    let long_type = format!("patient/{}.rs", "A".repeat(1500));
    let e = long_type.parse::<Scope>().unwrap_err();
    assert!(e.to_string().len() < 120, "{e}");
}

#[test]
fn a_twelve_scope_request_negotiates_end_to_end() {
    let requested: ScopeSet = format!(
        "launch/patient openid fhirUser offline_access patient/Patient.rs patient/Condition.rs \
         patient/Observation.rs?category={OBS_CAT}|laboratory \
         patient/Observation.rs?category={OBS_CAT}|vital-signs patient/MedicationRequest.rs \
         patient/AllergyIntolerance.rs patient/Immunization.rs patient/Procedure.rs"
    )
    .parse()
    .unwrap();
    assert_eq!(requested.len(), 12);
    let client: ScopeSet = "launch/patient openid fhirUser offline_access patient/*.rs"
        .parse()
        .unwrap();
    let patient: ScopeSet = format!(
        "patient/Patient.rs patient/Observation.rs?category={OBS_CAT}|laboratory patient/Immunization.rs"
    )
    .parse()
    .unwrap();
    let n = negotiate(&requested, &client, &patient);
    assert_eq!(
        n.granted.to_string(),
        format!(
            "launch/patient openid fhirUser offline_access patient/Patient.rs \
             patient/Observation.rs?category={OBS_CAT}|laboratory patient/Immunization.rs"
        )
    );
    assert_eq!(n.dropped.len(), 5);
    assert!(n.granted.has_context(Context::Patient));
    assert!(
        n.granted
            .permits(Context::Patient, FhirType::OBSERVATION, Permission::Search)
    );
    assert!(
        !n.granted
            .permits(Context::Patient, FhirType::CONDITION, Permission::Search)
    );
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

fn context() -> impl Strategy<Value = Context> {
    prop_oneof![
        Just(Context::Patient),
        Just(Context::User),
        Just(Context::System)
    ]
}

fn type_selector() -> impl Strategy<Value = TypeSelector> {
    let all: Vec<FhirType> = FhirType::all().collect();
    prop_oneof![
        1 => Just(TypeSelector::Any),
        2 => prop::sample::select(vec![FhirType::OBSERVATION, FhirType::CONDITION, FhirType::PATIENT]).prop_map(TypeSelector::Type),
        1 => prop::sample::select(all).prop_map(TypeSelector::Type),
    ]
}

fn permissions() -> impl Strategy<Value = Permissions> {
    (1u8..32).prop_map(Permissions::from_bits)
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(format!("{OBS_CAT}|laboratory")),
        Just(format!("{OBS_CAT}|vital-signs")),
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("final".to_owned()),
        // characters that need percent-encoding or FHIR escaping
        Just("x y&z=%é".to_owned()),
        Just("a\\,b".to_owned()),
        Just("q?r#s+t".to_owned()),
    ]
}

fn filter() -> impl Strategy<Value = Filter> {
    (
        prop::sample::select(vec!["category", "status", "code", "_security"]),
        prop::collection::vec(value(), 1..3),
    )
        .prop_map(|(name, values)| Filter::new(name, values).unwrap())
}

fn resource_scope() -> impl Strategy<Value = ResourceScope> {
    (
        context(),
        type_selector(),
        permissions(),
        prop::collection::vec(filter(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(c, t, p, filters, v1)| {
            let mut r = ResourceScope::new(c, t, p).unwrap();
            for f in filters {
                r = r.with_filter(f);
            }
            if v1 { r.to_v1().unwrap_or(r) } else { r }
        })
}

fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        6 => resource_scope().prop_map(Scope::Resource),
        1 => prop_oneof![
            Just(Scope::Launch),
            Just(Scope::OpenId),
            Just(Scope::FhirUser),
            Just(Scope::Profile),
            Just(Scope::OfflineAccess),
            Just(Scope::OnlineAccess),
            Just(Scope::LaunchContext(LaunchScope::patient())),
            Just(Scope::LaunchContext(LaunchScope::encounter())),
        ],
        1 => "__[a-z]{1,8}".prop_map(|s| s.parse::<Scope>().unwrap()),
    ]
}

fn scope_set() -> impl Strategy<Value = ScopeSet> {
    prop::collection::vec(scope(), 0..8).prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn print_then_parse_is_identity(s in scope()) {
        let text = s.to_string();
        let back: Scope = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(&back, &s);
        prop_assert_eq!(back.to_string(), text);
    }

    #[test]
    fn sets_round_trip(set in scope_set()) {
        let text = set.to_string();
        let back: ScopeSet = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(back.to_string(), text);
    }

    #[test]
    fn normal_form_is_idempotent_and_keeps_meaning(set in scope_set()) {
        let n = set.normalized();
        prop_assert_eq!(n.normalized().to_string(), n.to_string());
        prop_assert!(set.covers_all(&n), "{} does not cover {}", set, n);
        prop_assert!(n.covers_all(&set), "{} does not cover {}", n, set);
        prop_assert!(n.len() <= set.len());
    }

    #[test]
    fn covers_is_reflexive(s in scope()) {
        prop_assert!(s.covers(&s));
        let set: ScopeSet = std::iter::once(s.clone()).collect();
        prop_assert!(set.covers(&s));
    }

    #[test]
    fn covers_is_transitive(a in resource_scope(), x in resource_scope(), y in resource_scope()) {
        // b and c are built below a, so the premises hold often; also test the raw triple.
        if let Some(b) = a.intersect(&x) {
            prop_assert!(a.covers(&b));
            if let Some(c) = b.intersect(&y) {
                prop_assert!(b.covers(&c));
                prop_assert!(a.covers(&c));
            }
        }
        if a.covers(&x) && x.covers(&y) {
            prop_assert!(a.covers(&y));
        }
    }

    #[test]
    fn intersection_is_below_both(a in resource_scope(), b in resource_scope()) {
        if let Some(i) = a.intersect(&b) {
            prop_assert!(a.covers(&i), "{} ∩ {} = {}", a, b, i);
            prop_assert!(b.covers(&i), "{} ∩ {} = {}", a, b, i);
        }
        if a.covers(&b) {
            let i = a.intersect(&b);
            prop_assert!(i.as_ref().is_some_and(|i| i.covers(&b) && b.covers(i)), "{} ⊇ {}", a, b);
        }
    }

    #[test]
    fn set_intersection_is_below_both(a in scope_set(), b in scope_set()) {
        let i = a.intersect(&b);
        prop_assert!(a.covers_all(&i), "{} ∩ {} = {}", a, b, i);
        prop_assert!(b.covers_all(&i), "{} ∩ {} = {}", a, b, i);
    }

    #[test]
    fn negotiation_never_grants_more(req in scope_set(), client in scope_set(), patient in scope_set()) {
        let n = negotiate(&req, &client, &patient);
        prop_assert!(client.covers_all(&n.granted), "client {} granted {}", client, n.granted);
        prop_assert!(req.covers_all(&n.granted), "requested {} granted {}", req, n.granted);
        for r in n.granted.resource_scopes() {
            prop_assert!(patient.covers(&Scope::Resource(r.clone())), "patient {} granted {}", patient, r);
        }
    }

    #[test]
    fn v1_and_v2_forms_mean_the_same(r in resource_scope()) {
        let v2 = r.to_v2();
        prop_assert!(r.covers(&v2) && v2.covers(&r));
        if let Some(v1) = r.to_v1() {
            prop_assert!(v1.covers(&v2) && v2.covers(&v1));
            let text = v1.to_string();
            prop_assert!(text.ends_with(".read") || text.ends_with(".write") || text.ends_with(".*"));
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(text in "\\PC{0,200}") {
        let _ = text.parse::<Scope>();
        let _ = text.parse::<ScopeSet>();
        let _ = ScopeSet::parse_lenient(&text, &ParseOptions::default().experimental_filters(true));
    }

    #[test]
    fn mutated_scopes_never_panic(s in scope(), at in any::<prop::sample::Index>(), junk in "[%?&=,./|:\\\\*a-zA-Z]{1,4}") {
        let text = s.to_string();
        let mut cut = at.index(text.len() + 1);
        while !text.is_char_boundary(cut) { cut -= 1; }
        let mutated = format!("{}{}{}", &text[..cut], junk, &text[cut..]);
        if let Ok(parsed) = mutated.parse::<Scope>() {
            // whatever parses prints to something that parses to the same scope
            let again: Scope = parsed.to_string().parse().unwrap();
            prop_assert_eq!(again, parsed);
        }
    }
}
