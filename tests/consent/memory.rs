use fhirguard::consent::MemoryConsentStore;

use super::suite::consent_suite;

#[test]
fn memory_store_passes_the_suite() {
    consent_suite(&MemoryConsentStore::new());
}
