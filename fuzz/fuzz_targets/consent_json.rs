//! FHIR `Consent` import from arbitrary bytes, and the export/import round trip of whatever
//! imports: an accepted resource must export to one that imports to the same grant.
#![no_main]

use std::sync::OnceLock;

use fhirguard::CategoryRegistry;
use fhirguard::consent::Grant;
use libfuzzer_sys::fuzz_target;

fn registry() -> &'static CategoryRegistry {
    static R: OnceLock<CategoryRegistry> = OnceLock::new();
    R.get_or_init(CategoryRegistry::default_registry)
}

fuzz_target!(|data: &[u8]| {
    // Hosts bound the body before parsing; so does the target.
    if data.len() > 64 * 1024 {
        return;
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(grant) = Grant::from_fhir_consent(&value) {
        let exported = grant.to_fhir_consent(registry());
        let again = Grant::from_fhir_consent(&exported).expect("an exported grant imports");
        assert_eq!(again, grant, "round trip changed the grant");
    }
});
