//! Discovery documents, JWKS and the id_token (checklist §2, §6).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fhirguard::token::{
    Algorithm, AuthorizationServer, ConfigError, InMemoryClientRegistry, InMemoryKeySource,
    InMemoryTokenStore, ServerConfig, VerifyingKey,
};
use http::header;
use std::sync::Arc;
use time::Duration;

use super::harness::*;
use super::support::*;

#[test]
fn smart_configuration_has_required_and_recommended_fields() {
    let h = harness();
    let response = h.server.smart_configuration().to_response();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let doc = json(&response);
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let grants = doc["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&"authorization_code".into()));
    assert!(grants.contains(&"client_credentials".into()));
    assert_eq!(doc["issuer"], ISSUER);
    for field in [
        "jwks_uri",
        "authorization_endpoint",
        "token_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
    ] {
        let url = doc[field].as_str().unwrap_or_else(|| panic!("{field}"));
        assert!(url.starts_with("https://"), "{field} absolute");
    }
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    assert!(doc["scopes_supported"].as_array().unwrap().len() > 3);
    let caps: Vec<&str> = doc["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for cap in [
        "launch-standalone",
        "authorize-post",
        "client-public",
        "client-confidential-symmetric",
        "client-confidential-asymmetric",
        "sso-openid-connect",
        "context-standalone-patient",
        "permission-offline",
        "permission-patient",
        "permission-v2",
    ] {
        assert!(caps.contains(&cap), "{cap}");
    }
    assert!(!caps.contains(&"launch-ehr"));
    let methods = doc["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    assert!(methods.contains(&"private_key_jwt".into()));
    let algs = doc["token_endpoint_auth_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(algs.contains(&"RS384".into()) && algs.contains(&"ES384".into()));
}

fn server_with(config: ServerConfig) -> Result<AuthorizationServer, ConfigError> {
    AuthorizationServer::new(
        config,
        key_source(),
        Arc::new(InMemoryClientRegistry::new()),
        Arc::new(InMemoryTokenStore::new()),
        grants_with([]),
    )
}

#[test]
fn capabilities_follow_the_configuration() {
    let mut config = ServerConfig::new(ISSUER, FHIR_BASE);
    config.id_token_alg = None;
    config.backend_services = false;
    config.asymmetric_clients = false;
    config.permission_user = false;
    let server = server_with(config)
        .unwrap()
        .with_launch_store(Arc::new(fhirguard::token::InMemoryLaunchStore::new()));
    let doc = serde_json::to_value(server.smart_configuration()).unwrap();
    assert!(
        doc.get("issuer").is_none(),
        "issuer only with sso-openid-connect"
    );
    let caps = doc["capabilities"].as_array().unwrap();
    assert!(!caps.contains(&"sso-openid-connect".into()));
    assert!(!caps.contains(&"client-confidential-asymmetric".into()));
    assert!(!caps.contains(&"permission-user".into()));
    assert!(caps.contains(&"launch-ehr".into()) && caps.contains(&"context-ehr-patient".into()));
    assert!(
        !doc["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&"client_credentials".into())
    );
    assert!(server.openid_configuration().is_none());
}

#[test]
fn online_and_user_level_access_are_not_advertised_by_default() {
    let doc = serde_json::to_value(harness().server.smart_configuration()).unwrap();
    let caps = doc["capabilities"].as_array().unwrap();
    assert!(!caps.contains(&"permission-online".into()));
    assert!(!caps.contains(&"permission-user".into()));
    assert!(caps.contains(&"permission-offline".into()));
    let scopes = doc["scopes_supported"].as_array().unwrap();
    assert!(!scopes.contains(&"online_access".into()));
    assert!(
        !scopes
            .iter()
            .any(|s| s.as_str().unwrap().starts_with("user/"))
    );
    // A host with practitioner users and a policy of its own asks for it by name.
    let mut config = ServerConfig::new(ISSUER, FHIR_BASE);
    config.permission_user = true;
    let doc = serde_json::to_value(server_with(config).unwrap().smart_configuration()).unwrap();
    assert!(
        doc["capabilities"]
            .as_array()
            .unwrap()
            .contains(&"permission-user".into())
    );
}

#[test]
fn configuration_is_validated() {
    let bad = |edit: fn(&mut ServerConfig)| {
        let mut config = ServerConfig::new(ISSUER, FHIR_BASE);
        edit(&mut config);
        server_with(config).unwrap_err()
    };
    assert_eq!(
        bad(|c| c.token_endpoint = "/token".into()),
        ConfigError::NotAbsolute("token_endpoint")
    );
    assert_eq!(
        bad(|c| c.issuer = "http://ehr.example.org".into()),
        ConfigError::NotAbsolute("issuer")
    );
    assert_eq!(
        bad(|c| c.fhir_base_url = format!("{FHIR_BASE}/")),
        ConfigError::UnnormalisedUrl("fhir_base_url")
    );
    assert_eq!(
        bad(|c| c.access_token_ttl = Duration::minutes(61)),
        ConfigError::AccessTokenTooLong
    );
    assert_eq!(
        bad(|c| c.backend_token_ttl = Duration::seconds(301)),
        ConfigError::BackendTokenTooLong
    );
    assert_eq!(
        bad(|c| c.code_ttl = Duration::seconds(61)),
        ConfigError::CodeTooLong
    );
    assert_eq!(
        bad(|c| c.id_token_alg = Some(Algorithm::ES384)),
        ConfigError::MissingKey(Algorithm::ES384)
    );
    let mut local = ServerConfig::new("http://localhost:8080/auth", "http://localhost:8080/fhir");
    local.id_token_alg = None;
    assert!(server_with(local).is_ok());
}

#[test]
fn openid_configuration_and_jwks() {
    let h = harness();
    let response = h.server.openid_configuration().unwrap().to_response();
    assert_eq!(response.status(), 200);
    let doc = json(&response);
    assert_eq!(doc["issuer"], ISSUER);
    for field in [
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
    ] {
        assert!(doc.get(field).is_some(), "{field}");
    }
    assert!(
        doc["id_token_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&"RS256".into())
    );

    let jwks = json(&h.server.jwks_response(START));
    let keys = jwks["keys"].as_array().unwrap();
    let rsa = keys.iter().find(|k| k["kty"] == "RSA").expect("an RSA key");
    assert!(
        rsa.get("d").is_none() && rsa.get("p").is_none(),
        "public only"
    );
    assert!(rsa["n"].is_string() && rsa["e"].is_string() && rsa["kid"].is_string());
    for key in keys {
        let jwk: fhirguard::token::Jwk = serde_json::from_value(key.clone()).unwrap();
        VerifyingKey::from_jwk(&jwk).unwrap();
    }
}

#[test]
fn openid_configuration_says_request_objects_are_not_supported() {
    let h = harness();
    let doc = json(&h.server.openid_configuration().unwrap().to_response());
    // Both written out: `request_uri_parameter_supported` defaults to true when omitted.
    assert_eq!(doc["request_parameter_supported"], serde_json::json!(false));
    assert_eq!(
        doc["request_uri_parameter_supported"],
        serde_json::json!(false)
    );
}

#[test]
fn openid_configuration_lists_the_client_assertion_algorithms() {
    let h = harness();
    let doc = json(&h.server.openid_configuration().unwrap().to_response());
    assert!(
        doc["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&"private_key_jwt".into())
    );
    // Exactly what the token endpoint verifies assertions with (SMART: RS384 and ES384).
    assert_eq!(
        doc["token_endpoint_auth_signing_alg_values_supported"],
        serde_json::json!(["RS384", "ES384", "RS256", "ES256"])
    );
    // No UserInfo endpoint exists, so none is advertised.
    assert!(doc.get("userinfo_endpoint").is_none());
    // Revocation takes what the token endpoint takes; introspection a confidential client's
    // methods only (RFC 8414 §2: absent, both would mean client_secret_basic alone).
    for doc in [
        &doc,
        &serde_json::to_value(h.server.smart_configuration()).unwrap(),
    ] {
        assert_eq!(
            doc["revocation_endpoint_auth_methods_supported"],
            doc["token_endpoint_auth_methods_supported"]
        );
        let introspection = doc["introspection_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap();
        assert!(introspection.contains(&"private_key_jwt".into()));
        assert!(introspection.contains(&"client_secret_basic".into()));
        assert!(!introspection.contains(&"none".into()));
        for endpoint in ["revocation", "introspection"] {
            assert_eq!(
                doc[format!("{endpoint}_endpoint_auth_signing_alg_values_supported")],
                doc["token_endpoint_auth_signing_alg_values_supported"],
                "{endpoint}"
            );
        }
    }

    // Narrowed in the configuration, narrowed in both documents.
    let mut config = ServerConfig::new(ISSUER, FHIR_BASE);
    config.assertion_algs = vec![Algorithm::ES384];
    let server = server_with(config).unwrap();
    let oidc = serde_json::to_value(server.openid_configuration().unwrap()).unwrap();
    let smart = serde_json::to_value(server.smart_configuration()).unwrap();
    for doc in [&oidc, &smart] {
        assert_eq!(
            doc["token_endpoint_auth_signing_alg_values_supported"],
            serde_json::json!(["ES384"])
        );
    }
    // Without private_key_jwt clients the entry is left out with the method.
    let mut config = ServerConfig::new(ISSUER, FHIR_BASE);
    config.asymmetric_clients = false;
    config.backend_services = false;
    let server = server_with(config).unwrap();
    let oidc = serde_json::to_value(server.openid_configuration().unwrap()).unwrap();
    assert!(
        !oidc["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&"private_key_jwt".into())
    );
    assert!(
        oidc.get("token_endpoint_auth_signing_alg_values_supported")
            .is_none()
    );
}

#[test]
fn id_token_claims_and_rs256_signature_against_the_jwks() {
    let h = harness();
    let code = code_for(&h, "public-app", START);
    let ok = exchange(&h, "public-app", &code, START).unwrap();
    let id_token = ok.id_token.unwrap();
    let mut parts = id_token.split('.');
    let decode = |s: &str| -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap()
    };
    let header = decode(parts.next().unwrap());
    let claims = decode(parts.next().unwrap());
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], "rs-1");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], "public-app");
    assert_eq!(claims["sub"], "user-355");
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["fhirUser"], format!("{FHIR_BASE}/Patient/355"));
    assert_eq!(claims["iat"], START.unix_timestamp());
    assert_eq!(claims["exp"], (START + Duration::hours(1)).unix_timestamp());
    // Verify with the published key.
    let jwks: fhirguard::token::Jwks =
        serde_json::from_slice(h.server.jwks_response(START).body()).unwrap();
    let jwk = jwks
        .keys
        .iter()
        .find(|k| k.kid.as_deref() == Some("rs-1"))
        .unwrap();
    let key = VerifyingKey::from_jwk(jwk).unwrap();
    let (input, sig) = id_token.rsplit_once('.').unwrap();
    assert!(key.verify(
        Algorithm::RS256,
        input.as_bytes(),
        &URL_SAFE_NO_PAD.decode(sig).unwrap()
    ));
    // And the id_token is not accepted as an access token.
    assert!(h.server.validator().validate(&id_token, START).is_err());
}

#[test]
fn no_id_token_without_openid() {
    let h = harness();
    let params = authorize_params("public-app", &[("scope", "launch/patient patient/*.rs")]);
    let request = h
        .server
        .authorize_request(&get_authorize(&params), time::OffsetDateTime::now_utc())
        .unwrap();
    let redirect = h
        .server
        .approve(&request, approval("public-app", START), START)
        .unwrap();
    let code = redirect_param(&redirect.location, "code").unwrap();
    let ok = exchange(&h, "public-app", &code, START).unwrap();
    assert!(ok.id_token.is_none() && ok.refresh_token.is_none());
    assert_eq!(ok.scope, "launch/patient patient/*.rs");
    let _ = InMemoryKeySource::new(Duration::hours(1));
}
