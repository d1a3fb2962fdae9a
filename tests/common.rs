//! Helpers shared by the integration-test modules.

use std::path::PathBuf;

/// The committed test data of this crate (`tests/data`).
#[allow(dead_code)]
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The two synthetic US Core patients (`tests/fixtures`, Apache-2.0, see its README).
#[allow(dead_code)]
pub fn fixture_path(patient: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("uscore_bundle_patient_{patient}.json"))
}

/// A fixture patient's transaction Bundle, parsed.
#[allow(dead_code)]
pub fn fixture_bundle(patient: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture_path(patient)).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is JSON")
}

#[test]
fn fixtures_are_reachable() {
    for patient in ["355", "85"] {
        let bundle = fixture_bundle(patient);
        assert_eq!(bundle["resourceType"], "Bundle");
        assert!(bundle["entry"].as_array().is_some_and(|e| e.len() > 200));
    }
}
