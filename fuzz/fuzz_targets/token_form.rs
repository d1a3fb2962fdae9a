//! The token endpoint's form parser and request handling, on arbitrary bodies.
#![no_main]

use std::sync::{Arc, OnceLock};

use fhirguard::token::{
    AuthorizationServer, Client, FormParams, InMemoryClientRegistry, InMemoryKeySource,
    InMemoryTokenStore, MemoryGrantStatus, ServerConfig, SigningKey, Algorithm,
};
use fhirguard::ClientId;
use libfuzzer_sys::fuzz_target;
use time::{Duration, OffsetDateTime};

fn server() -> &'static AuthorizationServer {
    static SERVER: OnceLock<AuthorizationServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let es = SigningKey::generate_ec(Algorithm::ES256, "es").expect("key");
        let mut config = ServerConfig::new("https://ehr.example.org/auth", "https://ehr.example.org/fhir");
        config.id_token_alg = None;
        let keys = Arc::new(InMemoryKeySource::with_keys(Duration::hours(2), [es]).expect("keys"));
        let clients = Arc::new(InMemoryClientRegistry::new());
        clients.register(Client::public(
            ClientId::new("app").expect("id"),
            vec!["https://app.example.org/cb".into()],
            "patient/*.rs offline_access".parse().expect("scope"),
        ));
        AuthorizationServer::new(
            config,
            keys,
            clients,
            Arc::new(InMemoryTokenStore::new()),
            Arc::new(MemoryGrantStatus::new()),
        )
        .expect("server")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(form) = FormParams::parse(data) {
        for name in ["grant_type", "code", "client_id", "scope", "refresh_token"] {
            let _ = form.get(name);
        }
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let outcome = server().token_form(&http::HeaderMap::new(), &form, now);
        let _ = fhirguard::token::token_response(&outcome);
    }
});
