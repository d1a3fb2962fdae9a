//! Keys, grants and clocks shared by the token tests.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use fhirguard::consent::ActiveGrant;
use fhirguard::token::{Algorithm, InMemoryKeySource, MemoryGrantStatus, SigningKey};
use fhirguard::{ClientId, GrantId, PatientId};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

pub const ISSUER: &str = "https://ehr.example.org/auth";
pub const FHIR_BASE: &str = "https://ehr.example.org/fhir";
pub const START: OffsetDateTime = datetime!(2026-11-24 12:00 UTC);

pub fn key_pem(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/token")
        .join(name);
    std::fs::read_to_string(path).expect("key fixture")
}

pub fn as_es256() -> SigningKey {
    SigningKey::from_pem(Algorithm::ES256, "es-1", &key_pem("as_es256.pem")).unwrap()
}

pub fn as_rs256() -> SigningKey {
    SigningKey::from_pem(Algorithm::RS256, "rs-1", &key_pem("as_rs256.pem")).unwrap()
}

pub fn key_source() -> Arc<InMemoryKeySource> {
    Arc::new(InMemoryKeySource::with_keys(Duration::hours(2), [as_es256(), as_rs256()]).unwrap())
}

pub fn grant(id: &str, client: &str, patient: &str, ends_at: OffsetDateTime) -> ActiveGrant {
    ActiveGrant {
        grant_id: GrantId::new(id).unwrap(),
        patient: PatientId::new(patient).unwrap(),
        client_id: ClientId::new(client).unwrap(),
        categories: BTreeSet::new(),
        ends_at,
    }
}

pub fn grants_with(list: impl IntoIterator<Item = ActiveGrant>) -> Arc<MemoryGrantStatus> {
    let grants = MemoryGrantStatus::new();
    for g in list {
        grants.insert(g);
    }
    Arc::new(grants)
}
