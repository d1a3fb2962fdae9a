//! Client assertions (`private_key_jwt`) from arbitrary bytes.
#![no_main]

use std::sync::OnceLock;

use fhirguard::token::{
    Algorithm, AssertionPolicy, Client, InMemoryTokenStore, SigningKey, claimed_client,
    verify_assertion,
};
use fhirguard::ClientId;
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let key = SigningKey::generate_ec(Algorithm::ES384, "k1").expect("key");
        Client::backend(
            ClientId::new("backend").expect("id"),
            vec![key.verifying_key().clone()],
            Some("https://backend.example.org/jwks.json".into()),
            "system/*.rs".parse().expect("scope"),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = claimed_client(text);
    let store = InMemoryTokenStore::new();
    let policy = AssertionPolicy::new("https://ehr.example.org/auth/token");
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
    let _ = verify_assertion(text, client(), &policy, &store, now);
});
