//! Fuzzes enforcement over (scope set, request) pairs: never panics, and never allows a request
//! (or a returned resource) for a resource type no granted scope names.

#![no_main]

use arbitrary::Arbitrary;
use fhirguard::category::CategoryRegistry;
use fhirguard::enforce::{
    Decision, EnforceConfig, Enforcer, Permissions, ResourceGrant, ScopeContext,
};
use fhirguard::{CategoryId, FhirRequest, Interaction, PatientId, ResourceType, SearchParam};
use libfuzzer_sys::fuzz_target;

const TYPES: &[&str] = &[
    "Patient", "Observation", "Condition", "DiagnosticReport", "DocumentReference", "CarePlan",
    "CareTeam", "MedicationRequest", "Medication", "Encounter", "Practitioner", "Provenance",
    "Coverage", "Binary",
];
const PARAMS: &[&str] = &[
    "patient", "subject", "_id", "category", "code", "_include", "_revinclude", "_has",
    "_has:Observation:patient:code", "subject.name", "subject:Patient.name", "patient.name",
    "_summary", "_elements", "_filter", "_type", "_count", "beneficiary", "a.b.c",
];
const VALUES: &[&str] = &[
    "355", "85", "Patient/355", "Patient/85", "http://loinc.org|72166-2", "laboratory",
    "vital-signs", "Observation,Condition", "false", "count", "", "https://x/Patient/355",
];
const CATEGORIES: &[&str] = &[
    "demographics", "smoking-status", "laboratory", "vital-signs", "social-history", "problems",
    "health-concerns", "medications", "clinical-notes", "other-observation", "other-coverage",
];

#[derive(Debug, Arbitrary)]
struct Grant {
    context: u8,
    ty: Option<u8>,
    letters: u8,
    constraint: Option<(u8, u8)>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    grants: Vec<Grant>,
    categories: u16,
    read_only: bool,
    interaction: u8,
    ty: Option<u8>,
    id: Option<u8>,
    params: Vec<(u8, Option<u8>, Vec<u8>)>,
    free_param: Option<String>,
    resource_subject: u8,
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

fuzz_target!(|input: Input| {
    let registry = CategoryRegistry::default_registry();
    let grants: Vec<ResourceGrant> = input
        .grants
        .iter()
        .take(8)
        .map(|g| {
            let context = match g.context % 3 {
                0 => ScopeContext::Patient,
                1 => ScopeContext::User,
                _ => ScopeContext::System,
            };
            let permissions = Permissions {
                create: g.letters & 1 != 0,
                read: g.letters & 2 != 0,
                update: g.letters & 4 != 0,
                delete: g.letters & 8 != 0,
                search: g.letters & 16 != 0,
            };
            let mut grant = match g.ty {
                Some(t) => ResourceGrant::new(context, ResourceType::new(pick(TYPES, t)).unwrap(), permissions),
                None => ResourceGrant::wildcard(context, permissions),
            };
            if let Some((p, v)) = g.constraint {
                grant = grant.with_constraint(pick(PARAMS, p), pick(VALUES, v));
            }
            grant
        })
        .collect();
    let categories: Vec<CategoryId> = CATEGORIES
        .iter()
        .enumerate()
        .filter(|(i, _)| input.categories & (1 << i) != 0)
        .map(|(_, c)| CategoryId::new(*c).unwrap())
        .collect();
    let enforcer = Enforcer::new(
        &registry,
        grants.clone(),
        PatientId::new("355").ok(),
        categories,
        EnforceConfig { read_only: input.read_only, ..EnforceConfig::default() },
    );

    let interaction = match input.interaction % 16 {
        0 => Interaction::Capabilities,
        1 => Interaction::Read,
        2 => Interaction::Vread,
        3 => Interaction::HistoryInstance,
        4 => Interaction::HistoryType,
        5 => Interaction::HistorySystem,
        6 => Interaction::SearchType,
        7 => Interaction::SearchSystem,
        8 => Interaction::SearchCompartment,
        9 => Interaction::Create,
        10 => Interaction::Update,
        11 => Interaction::Patch,
        12 => Interaction::Delete,
        13 => Interaction::BatchOrTransaction,
        14 => Interaction::Operation("everything".into()),
        _ => Interaction::Operation("lastn".into()),
    };
    let mut request = FhirRequest::new(interaction);
    request.resource_type = input.ty.map(|t| ResourceType::new(pick(TYPES, t)).unwrap());
    request.id = input.id.map(|i| pick(VALUES, i).to_owned());
    if matches!(request.interaction, Interaction::SearchCompartment) {
        request.compartment = Some((ResourceType::new("Patient").unwrap(), request.id.clone().unwrap_or_default()));
    }
    for (name, modifier, values) in input.params.iter().take(8) {
        request.params.push(SearchParam {
            name: pick(PARAMS, *name).to_owned(),
            modifier: modifier.map(|m| pick(&["missing", "Patient", "Patient.name", "not", "iterate"], m).to_owned()),
            values: values.iter().take(4).map(|v| pick(VALUES, *v).to_owned()).collect(),
        });
    }
    if let Some(free) = &input.free_param {
        request.params.push(SearchParam { name: free.chars().take(64).collect(), modifier: None, values: vec![free.chars().take(64).collect()] });
    }

    let decision = enforcer.decide(&request);
    let named = |t: &str| grants.iter().any(|g| g.names_type(t));
    if decision.is_allowed() {
        match &request.interaction {
            Interaction::Capabilities => {}
            Interaction::SearchSystem | Interaction::HistorySystem => {
                let types: Vec<&str> = request.params_named("_type").flat_map(|p| p.values.iter()).flat_map(|v| v.split(',')).collect();
                if types.is_empty() {
                    assert!(grants.iter().any(|g| g.resource_type.is_none()));
                } else {
                    assert!(types.iter().all(|t| named(t)));
                }
            }
            Interaction::Operation(_) => assert!(request.resource_type.as_ref().is_some_and(|t| named(t.as_str()))),
            _ => {
                let t = request.resource_type.as_ref().expect("allowed typed request has a type");
                assert!(named(t.as_str()), "allowed {t} without a covering scope");
            }
        }
        if input.read_only {
            assert!(!request.interaction.is_write());
        }
    }
    if let Decision::Narrow { add, .. } = &decision {
        assert!(!add.is_empty());
    }

    // Resources: a returned resource of a type no scope names is never visible.
    let ty = request.resource_type.as_ref().map_or("Observation", |t| t.as_str());
    let subject = pick(VALUES, input.resource_subject);
    let resource = serde_json::json!({
        "resourceType": ty, "id": "355",
        "subject": {"reference": subject},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": pick(VALUES, input.resource_subject.wrapping_add(3))}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]}
    });
    if enforcer.check_resource(&resource).is_ok() {
        assert!(named(ty));
    }
    let mut bundle = serde_json::json!({"resourceType": "Bundle", "type": "searchset", "total": 9,
        "entry": [{"resource": resource}, {"search": {"mode": "outcome"}, "resource": {"resourceType": "OperationOutcome"}}]});
    let report = enforcer.filter_bundle(&mut bundle);
    assert!(report.kept <= 1);
    let _ = enforcer.decide_batch(&[request.clone(), request], true);
});
