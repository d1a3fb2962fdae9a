//! Sanitizer configuration: base path, resource-type allow-list, parameter table, operations,
//! limits and lenient handling. Defaults are the safe choice; every widening is explicit.

use std::collections::{BTreeMap, BTreeSet};

use super::methods::AllowedMethods;
use super::table::{ParamDef, ParamTable, ParamType};
use crate::fhir::Interaction;

/// The FHIR R4 (4.0.1) resource types. The allow-list can only ever hold names from here.
pub const R4_RESOURCE_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// Size and count limits. The defaults suit a read-only patient-access API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request target (path + query), bytes. Default 4096.
    pub max_url_len: usize,
    /// Most parameters (query + form), counting every comma alternative. Default 64.
    pub max_params: usize,
    /// Longest single decoded value, bytes. Default 1024.
    pub max_value_len: usize,
    /// Most request headers. Default 64.
    pub max_headers: usize,
    /// Largest total header size (names + values), bytes. Default 16 KiB.
    pub max_header_bytes: usize,
    /// Largest body, bytes. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Deepest JSON nesting (objects + arrays). Default 32.
    pub max_json_depth: usize,
    /// Largest `_count`. Default 500.
    pub max_count: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_url_len: 4096,
            max_params: 64,
            max_value_len: 1024,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            max_json_depth: 32,
            max_count: 500,
        }
    }
}

/// FHIR's `Prefer: handling=` semantics for parameters the server does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handling {
    /// Refuse the request (the default).
    #[default]
    Strict,
    /// Strip unknown parameters and unsupported modifiers, and report them
    /// ([`super::SanitizedRequest::stripped`]) for the audit record. Bad values, duplicates
    /// that contradict and encoding tricks are refused all the same.
    Lenient,
}

/// A FHIR operation the sanitizer recognises, with where it may be invoked and its
/// parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationDef {
    /// Whether `[base]/$name` is allowed.
    pub system: bool,
    /// Types on which `[base]/[type]/$name` is allowed.
    pub type_level: BTreeSet<String>,
    /// Types on which `[base]/[type]/[id]/$name` is allowed.
    pub instance: BTreeSet<String>,
    /// Its parameters (by GET query or form).
    pub params: BTreeMap<String, ParamDef>,
}

impl OperationDef {
    /// An operation allowed nowhere and taking no parameters; widen with the builders.
    pub fn new() -> Self {
        Self {
            system: false,
            type_level: BTreeSet::new(),
            instance: BTreeSet::new(),
            params: BTreeMap::new(),
        }
    }

    /// Allows `[base]/$name`.
    #[must_use]
    pub fn at_system(mut self) -> Self {
        self.system = true;
        self
    }

    /// Allows `[base]/[type]/$name`.
    #[must_use]
    pub fn on_type(mut self, t: &str) -> Self {
        self.type_level.insert(t.to_owned());
        self
    }

    /// Allows `[base]/[type]/[id]/$name`.
    #[must_use]
    pub fn on_instance(mut self, t: &str) -> Self {
        self.instance.insert(t.to_owned());
        self
    }

    /// Declares a parameter.
    #[must_use]
    pub fn param(mut self, name: &str, ty: ParamType) -> Self {
        self.params.insert(
            name.to_owned(),
            ParamDef {
                ty,
                targets: Vec::new(),
            },
        );
        self
    }
}

impl Default for OperationDef {
    fn default() -> Self {
        Self::new()
    }
}

/// A FHIR RESTful interaction as a CapabilityStatement names it (`rest.resource.interaction`,
/// `rest.interaction`), without the request's details: what a [`SanitizerConfig`] supports.
///
/// A request for an interaction the configuration does not support is refused with
/// [`SanitizeError::MethodNotAllowed`](super::SanitizeError::MethodNotAllowed) (`405` with
/// `Allow`), before its body is looked at, as FHIR R4 asks of a server that does not offer
/// an interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum InteractionCode {
    /// `read`: `GET [type]/[id]`.
    Read,
    /// `vread`: `GET [type]/[id]/_history/[vid]`.
    Vread,
    /// `history-instance`: `GET [type]/[id]/_history`.
    HistoryInstance,
    /// `history-type`: `GET [type]/_history`.
    HistoryType,
    /// `history-system`: `GET [base]/_history`.
    HistorySystem,
    /// `search-type`: `GET [type]?…`, `POST [type]/_search`, and compartment searches.
    SearchType,
    /// `search-system`: `GET [base]?…`, `POST [base]/_search`.
    SearchSystem,
    /// `capabilities`: `GET [base]/metadata`.
    Capabilities,
    /// The configured operations (each still enabled by name, at its levels and types).
    Operation,
    /// `create`: `POST [type]`. A write.
    Create,
    /// `update`: `PUT [type]/[id]` and conditional update. A write.
    Update,
    /// `patch`: `PATCH [type]/[id]` and conditional patch. A write.
    Patch,
    /// `delete`: `DELETE [type]/[id]` and conditional delete. A write.
    Delete,
    /// `batch` / `transaction`: `POST [base]` with a Bundle. Counted as a write, since its
    /// entries may be.
    BatchOrTransaction,
}

impl InteractionCode {
    /// The interactions that can change data: none is supported unless enabled by name
    /// ([`SanitizerConfig::allow_interaction`]).
    pub const WRITES: [InteractionCode; 5] = [
        InteractionCode::Create,
        InteractionCode::Update,
        InteractionCode::Patch,
        InteractionCode::Delete,
        InteractionCode::BatchOrTransaction,
    ];

    /// The interactions a read-only API supports: the default of every configuration.
    pub const READ_ONLY: [InteractionCode; 9] = [
        InteractionCode::Read,
        InteractionCode::Vread,
        InteractionCode::HistoryInstance,
        InteractionCode::HistoryType,
        InteractionCode::HistorySystem,
        InteractionCode::SearchType,
        InteractionCode::SearchSystem,
        InteractionCode::Capabilities,
        InteractionCode::Operation,
    ];

    /// The code of a typed request's interaction.
    pub fn of(interaction: &Interaction) -> Self {
        match interaction {
            Interaction::Capabilities => InteractionCode::Capabilities,
            Interaction::Read => InteractionCode::Read,
            Interaction::Vread => InteractionCode::Vread,
            Interaction::HistoryInstance => InteractionCode::HistoryInstance,
            Interaction::HistoryType => InteractionCode::HistoryType,
            Interaction::HistorySystem => InteractionCode::HistorySystem,
            Interaction::SearchType | Interaction::SearchCompartment => InteractionCode::SearchType,
            Interaction::SearchSystem => InteractionCode::SearchSystem,
            Interaction::Create => InteractionCode::Create,
            Interaction::Update => InteractionCode::Update,
            Interaction::Patch => InteractionCode::Patch,
            Interaction::Delete => InteractionCode::Delete,
            Interaction::BatchOrTransaction => InteractionCode::BatchOrTransaction,
            Interaction::Operation(_) => InteractionCode::Operation,
        }
    }

    /// The methods that can ask for it (`GET` always with `HEAD`).
    pub fn methods(self) -> AllowedMethods {
        match self {
            InteractionCode::Read
            | InteractionCode::Vread
            | InteractionCode::HistoryInstance
            | InteractionCode::HistoryType
            | InteractionCode::HistorySystem
            | InteractionCode::Capabilities => AllowedMethods::GET_HEAD,
            InteractionCode::SearchType
            | InteractionCode::SearchSystem
            | InteractionCode::Operation => AllowedMethods::GET_HEAD | AllowedMethods::POST,
            InteractionCode::Create | InteractionCode::BatchOrTransaction => AllowedMethods::POST,
            InteractionCode::Update => AllowedMethods::PUT,
            InteractionCode::Patch => AllowedMethods::PATCH,
            InteractionCode::Delete => AllowedMethods::DELETE,
        }
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// Why a configuration was refused when built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The base path must be `""` or start with `/`, not end with `/`, and hold only
    /// unreserved characters.
    #[error("base path must be empty or `/segment[/segment…]` of unreserved characters")]
    InvalidBasePath,
    /// A resource type that is not a FHIR R4 resource type.
    #[error("`{0}` is not a FHIR R4 resource type")]
    NotAnR4Type(String),
    /// An operation name outside `[a-zA-Z][a-zA-Z0-9-]{0,63}`.
    #[error("invalid operation name")]
    InvalidOperationName,
    /// A limit of zero (which would refuse everything) or a `_count` maximum above 10 000.
    #[error("limits must be non-zero and `max_count` at most 10000")]
    InvalidLimits,
}

/// The sanitizer's configuration, validated when the [`super::Sanitizer`] is built.
#[derive(Debug, Clone)]
pub struct SanitizerConfig {
    pub(crate) base_path: String,
    pub(crate) allowed_types: BTreeSet<String>,
    pub(crate) compartments: BTreeSet<String>,
    pub(crate) table: ParamTable,
    pub(crate) operations: BTreeMap<String, OperationDef>,
    pub(crate) limits: Limits,
    pub(crate) default_handling: Handling,
    pub(crate) allow_lenient: bool,
    /// The supported [`InteractionCode`]s, one bit each.
    pub(crate) interactions: u16,
}

impl Default for SanitizerConfig {
    fn default() -> Self {
        Self::us_core("")
    }
}

impl SanitizerConfig {
    /// The safe default for a US Core patient-access API under `base_path` (`"/fhir"`, or
    /// `""` for the root): the US Core types, the US Core parameter table, `$everything` on
    /// a Patient, `$docref`, bulk `$export`, strict handling unless the client asks for
    /// lenient, and only the read-only interactions ([`InteractionCode::READ_ONLY`]): a
    /// write is `405` until enabled with [`SanitizerConfig::allow_interaction`].
    pub fn us_core(base_path: &str) -> Self {
        let mut operations = BTreeMap::new();
        operations.insert(
            "everything".to_owned(),
            OperationDef::new()
                .on_instance("Patient")
                .param("start", ParamType::Date)
                .param("end", ParamType::Date)
                .param("_since", ParamType::Instant)
                .param("_type", ParamType::TypeName)
                .param("_count", ParamType::Count),
        );
        operations.insert(
            "docref".to_owned(),
            OperationDef::new()
                .on_type("DocumentReference")
                .param("patient", ParamType::Reference)
                .param("start", ParamType::Date)
                .param("end", ParamType::Date)
                .param("type", ParamType::Token),
        );
        operations.insert(
            "export".to_owned(),
            OperationDef::new()
                .at_system()
                .on_type("Patient")
                .on_instance("Group")
                .param("_outputFormat", ParamType::String)
                .param("_since", ParamType::Instant)
                .param("_type", ParamType::TypeName),
        );
        Self {
            base_path: base_path.to_owned(),
            allowed_types: ParamTable::us_core_types().map(str::to_owned).collect(),
            compartments: BTreeSet::from(["Patient".to_owned()]),
            table: ParamTable::us_core(),
            operations,
            limits: Limits::default(),
            default_handling: Handling::Strict,
            allow_lenient: true,
            interactions: InteractionCode::READ_ONLY
                .iter()
                .fold(0, |bits, code| bits | code.bit()),
        }
    }

    /// Supports `code` too: writes are refused (`405`) until enabled here, one by one
    /// (`allow_interaction(InteractionCode::Create)`).
    #[must_use]
    pub fn allow_interaction(mut self, code: InteractionCode) -> Self {
        self.interactions |= code.bit();
        self
    }

    /// Stops supporting `code` (a server without history, say): its requests become `405`
    /// with the path's remaining methods in `Allow`.
    #[must_use]
    pub fn deny_interaction(mut self, code: InteractionCode) -> Self {
        self.interactions &= !code.bit();
        self
    }

    /// Whether `code` is supported.
    pub fn supports(&self, code: InteractionCode) -> bool {
        self.interactions & code.bit() != 0
    }

    /// Every method some supported interaction accepts (what a CORS preflight may allow).
    pub fn methods(&self) -> AllowedMethods {
        InteractionCode::READ_ONLY
            .into_iter()
            .chain(InteractionCode::WRITES)
            .filter(|code| self.supports(*code))
            .fold(AllowedMethods::NONE, |all, code| all | code.methods())
    }

    /// Sets the base path.
    #[must_use]
    pub fn base_path(mut self, base: &str) -> Self {
        base.clone_into(&mut self.base_path);
        self
    }

    /// Adds a resource type to the allow-list (checked against [`R4_RESOURCE_TYPES`] when
    /// built).
    #[must_use]
    pub fn allow_type(mut self, t: &str) -> Self {
        self.allowed_types.insert(t.to_owned());
        self
    }

    /// Removes a resource type from the allow-list.
    #[must_use]
    pub fn deny_type(mut self, t: &str) -> Self {
        self.allowed_types.remove(t);
        self
    }

    /// Replaces the parameter table.
    #[must_use]
    pub fn table(mut self, table: ParamTable) -> Self {
        self.table = table;
        self
    }

    /// The parameter table, to extend in place.
    pub fn table_mut(&mut self) -> &mut ParamTable {
        &mut self.table
    }

    /// Declares (or replaces) an operation.
    #[must_use]
    pub fn operation(mut self, name: &str, def: OperationDef) -> Self {
        self.operations.insert(name.to_owned(), def);
        self
    }

    /// Withdraws an operation (`"docref"`, `"export"`, …): a request for it is then refused as
    /// [`SanitizeError::UnknownOperation`](super::SanitizeError::UnknownOperation) before it
    /// reaches authorization or the host. A server whose store cannot answer one of the
    /// [`us_core`](Self::us_core) defaults should withdraw it rather than fail behind the guard.
    #[must_use]
    pub fn without_operation(mut self, name: &str) -> Self {
        self.operations.remove(name);
        self
    }

    /// Whether an operation is configured.
    pub fn supports_operation(&self, name: &str) -> bool {
        self.operations.contains_key(name)
    }

    /// Replaces the limits.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The handling used when the client sends no `Prefer: handling=`.
    #[must_use]
    pub fn default_handling(mut self, h: Handling) -> Self {
        self.default_handling = h;
        self
    }

    /// Whether a client may ask for lenient handling (default: yes). When not, a request
    /// for lenient handling is treated as strict, which FHIR allows.
    #[must_use]
    pub fn allow_lenient(mut self, allow: bool) -> Self {
        self.allow_lenient = allow;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let b = &self.base_path;
        let base_ok = b.is_empty()
            || (b.starts_with('/')
                && !b.ends_with('/')
                && b.split('/').skip(1).all(|seg| {
                    !seg.is_empty()
                        && seg != "."
                        && seg != ".."
                        && seg.bytes().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
                        })
                }));
        if !base_ok {
            return Err(ConfigError::InvalidBasePath);
        }
        for t in self.allowed_types.iter().chain(&self.compartments) {
            if !R4_RESOURCE_TYPES.contains(&t.as_str()) {
                return Err(ConfigError::NotAnR4Type(t.clone()));
            }
        }
        for name in self.operations.keys() {
            let mut bytes = name.bytes();
            let ok = name.len() <= 64
                && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ok {
                return Err(ConfigError::InvalidOperationName);
            }
        }
        let l = &self.limits;
        if l.max_url_len == 0
            || l.max_params == 0
            || l.max_value_len == 0
            || l.max_headers == 0
            || l.max_header_bytes == 0
            || l.max_json_depth == 0
            || l.max_count > 10_000
        {
            return Err(ConfigError::InvalidLimits);
        }
        Ok(())
    }
}
