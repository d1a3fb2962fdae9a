//! The FHIR R4 resource type names a scope may name, shipped as data.
//!
//! A scope names its resource type by a case-sensitive FHIR name (`Observation`, never
//! `observation`). Rather than keep the name as a `String`, a parsed scope holds a [`FhirType`]:
//! a one-byte index into the sorted table below. That makes scopes cheaper to compare (the covers
//! check compares two bytes instead of two strings) and makes an unknown type impossible to
//! represent once parsing succeeded.

use std::fmt;

/// How many resource types FHIR R4 defines.
const TYPE_COUNT: u8 = 146;

/// Every resource type of FHIR R4 (4.0.1), sorted by byte value so lookups can binary-search.
const R4_TYPES: [&str; TYPE_COUNT as usize] = [
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

/// A resource type of FHIR R4, by name (`Observation`).
///
/// `Copy` and one byte wide: it is an index into the crate's table of the 146 R4 resource type
/// names. Build one with [`FhirType::from_name`] (case-sensitive, as FHIR names are) or use one of
/// the associated constants for the types SMART and US Core talk about most.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FhirType(u8);

impl FhirType {
    /// `AllergyIntolerance`.
    pub const ALLERGY_INTOLERANCE: FhirType = FhirType(3);
    /// `CarePlan`.
    pub const CARE_PLAN: FhirType = FhirType(13);
    /// `CareTeam`.
    pub const CARE_TEAM: FhirType = FhirType(14);
    /// `Condition`.
    pub const CONDITION: FhirType = FhirType(27);
    /// `Device`.
    pub const DEVICE: FhirType = FhirType(34);
    /// `DiagnosticReport`.
    pub const DIAGNOSTIC_REPORT: FhirType = FhirType(39);
    /// `DocumentReference`.
    pub const DOCUMENT_REFERENCE: FhirType = FhirType(41);
    /// `Encounter`.
    pub const ENCOUNTER: FhirType = FhirType(43);
    /// `Goal`.
    pub const GOAL: FhirType = FhirType(55);
    /// `Immunization`.
    pub const IMMUNIZATION: FhirType = FhirType(61);
    /// `Medication`.
    pub const MEDICATION: FhirType = FhirType(74);
    /// `MedicationRequest`.
    pub const MEDICATION_REQUEST: FhirType = FhirType(78);
    /// `Observation`.
    pub const OBSERVATION: FhirType = FhirType(95);
    /// `Patient`.
    pub const PATIENT: FhirType = FhirType(102);
    /// `Practitioner`.
    pub const PRACTITIONER: FhirType = FhirType(107);
    /// `Procedure`.
    pub const PROCEDURE: FhirType = FhirType(109);

    /// The type named `name`, if FHIR R4 defines a resource type of that exact name.
    pub fn from_name(name: &str) -> Option<FhirType> {
        R4_TYPES
            .binary_search(&name)
            .ok()
            .and_then(|i| u8::try_from(i).ok())
            .map(FhirType)
    }

    /// The type whose lowercase name is `name` (`diagnosticreport`), as launch scopes write it.
    ///
    /// Only an all-lowercase `name` matches: `launch/Patient` is not a launch scope.
    pub fn from_lowercase_name(name: &str) -> Option<FhirType> {
        if name.bytes().any(|b| !b.is_ascii_lowercase()) {
            return None;
        }
        // The table's byte order is also its case-insensitive order (a unit test checks), so
        // the lowercase name can be binary-searched too.
        R4_TYPES
            .binary_search_by(|t| cmp_ignore_ascii_case(t, name))
            .ok()
            .and_then(|i| u8::try_from(i).ok())
            .map(FhirType)
    }

    /// The type a shared [`crate::fhir::ResourceType`] names, if it is an R4 resource type.
    pub fn from_resource_type(rt: &crate::fhir::ResourceType) -> Option<FhirType> {
        FhirType::from_name(rt.as_str())
    }

    /// The FHIR name (`Observation`).
    pub fn as_str(self) -> &'static str {
        R4_TYPES.get(usize::from(self.0)).copied().unwrap_or("")
    }

    /// Every R4 resource type, in name order.
    pub fn all() -> impl ExactSizeIterator<Item = FhirType> + Clone {
        (0..TYPE_COUNT).map(FhirType)
    }
}

fn cmp_ignore_ascii_case(a: &str, b: &str) -> std::cmp::Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

impl fmt::Display for FhirType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for FhirType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(R4_TYPES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(FhirType::all().len(), 146);
        assert!(FhirType::all().all(|t| FhirType::from_name(t.as_str()) == Some(t)));
    }

    #[test]
    fn table_order_is_also_case_insensitive_order() {
        assert!(
            R4_TYPES
                .windows(2)
                .all(|w| cmp_ignore_ascii_case(w[0], w[1]) == std::cmp::Ordering::Less)
        );
        for t in FhirType::all() {
            let lower = t.as_str().to_ascii_lowercase();
            assert_eq!(FhirType::from_lowercase_name(&lower), Some(t));
        }
    }

    #[test]
    fn constants_name_their_types() {
        let pairs = [
            (FhirType::ALLERGY_INTOLERANCE, "AllergyIntolerance"),
            (FhirType::CARE_PLAN, "CarePlan"),
            (FhirType::CARE_TEAM, "CareTeam"),
            (FhirType::CONDITION, "Condition"),
            (FhirType::DEVICE, "Device"),
            (FhirType::DIAGNOSTIC_REPORT, "DiagnosticReport"),
            (FhirType::DOCUMENT_REFERENCE, "DocumentReference"),
            (FhirType::ENCOUNTER, "Encounter"),
            (FhirType::GOAL, "Goal"),
            (FhirType::IMMUNIZATION, "Immunization"),
            (FhirType::MEDICATION, "Medication"),
            (FhirType::MEDICATION_REQUEST, "MedicationRequest"),
            (FhirType::OBSERVATION, "Observation"),
            (FhirType::PATIENT, "Patient"),
            (FhirType::PRACTITIONER, "Practitioner"),
            (FhirType::PROCEDURE, "Procedure"),
        ];
        for (t, name) in pairs {
            assert_eq!(t.as_str(), name);
            assert_eq!(FhirType::from_name(name), Some(t));
        }
    }

    #[test]
    fn lookups_are_case_sensitive() {
        assert!(FhirType::from_name("observation").is_none());
        assert!(FhirType::from_name("Foo").is_none());
        assert_eq!(
            FhirType::from_lowercase_name("diagnosticreport"),
            Some(FhirType::DIAGNOSTIC_REPORT)
        );
        assert!(FhirType::from_lowercase_name("Patient").is_none());
    }
}
