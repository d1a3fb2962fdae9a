//! Data categories finer than a FHIR resource type: a declarative registry of CCDS/USCDI
//! categories mapped to FHIR resource types and category/code constraints, and a classifier.
