//! Who may introspect what (RFC 7662 §2.2, SMART "Authorization to perform Token
//! Introspection"): a resource server registered for it sees every client's tokens; any other
//! caller only its own client's, and `{"active":false}` for the rest.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fhirguard::ClientId;
use fhirguard::token::{Client, TokenResponse};
use http::{Request, header};
use serde_json::json;

use super::harness::*;
use super::support::*;

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

fn request(token: &str, authorization: Option<&str>, extra: &[(&str, &str)]) -> Request<Vec<u8>> {
    let mut pairs = vec![("token", token)];
    pairs.extend_from_slice(extra);
    let mut request = post_form(&format!("{ISSUER}/introspect"), &pairs);
    if let Some(value) = authorization {
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, value.parse().unwrap());
    }
    request
}

fn answer(h: &Harness, token: &str, authorization: &str) -> serde_json::Value {
    let response = h
        .server
        .introspect(&request(token, Some(authorization), &[]), START)
        .unwrap()
        .to_response();
    assert_eq!(response.status(), 200);
    json(&response)
}

fn bearer(token: &TokenResponse) -> String {
    format!("Bearer {}", token.access_token)
}

/// A code-flow token for `client` (public clients send `client_id`, secret-app uses Basic).
fn token_for(h: &Harness, client: &str) -> TokenResponse {
    let code = code_for(h, client, START);
    if client == "secret-app" {
        let mut request = post_form(
            &token_url(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        );
        request.headers_mut().insert(
            header::AUTHORIZATION,
            basic("secret-app", SECRET).parse().unwrap(),
        );
        return h.server.token(&request, START).unwrap();
    }
    exchange(h, client, &code, START).unwrap()
}

/// A `client_credentials` token for the backend client.
fn backend_token(h: &Harness, jti: &str) -> TokenResponse {
    let jwt = assertion(&h.es384, "backend", START, jti, |_| {});
    let request = post_form(
        &token_url(),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/Observation.rs"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &jwt),
        ],
    );
    h.server.token(&request, START).unwrap()
}

#[test]
fn a_public_apps_bearer_token_introspects_only_its_own_clients_tokens() {
    let h = harness();
    let mine = token_for(&h, "public-app");
    let theirs = token_for(&h, "other-app");
    let inactive = json!({"active": false});

    // Its own tokens, access and refresh: the whole answer.
    let own = answer(&h, &mine.access_token, &bearer(&mine));
    assert_eq!(own["active"], true);
    assert_eq!(own["client_id"], "public-app");
    let own_refresh = answer(&h, mine.refresh_token.as_deref().unwrap(), &bearer(&mine));
    assert_eq!(own_refresh["active"], true);

    // Another app's live tokens look exactly like tokens that do not exist: no scope, no
    // patient, no client_id — nothing that says they are live.
    assert_eq!(answer(&h, &theirs.access_token, &bearer(&mine)), inactive);
    assert_eq!(
        answer(&h, theirs.refresh_token.as_deref().unwrap(), &bearer(&mine)),
        inactive
    );
    assert_eq!(answer(&h, "no-such-token", &bearer(&mine)), inactive);
    // What the wire cannot tell apart, the caller's code (and its audit trail) can.
    let checked = |token: &str| {
        h.server
            .introspect_checked(&request(token, Some(&bearer(&mine)), &[]), START)
            .unwrap()
    };
    assert_eq!(
        checked(&theirs.access_token),
        fhirguard::token::IntrospectionOutcome::Withheld
    );
    assert_eq!(
        checked("no-such-token"),
        fhirguard::token::IntrospectionOutcome::Answered(
            fhirguard::token::Introspection::inactive()
        )
    );
    let body = h
        .server
        .introspect(
            &request(&theirs.access_token, Some(&bearer(&mine)), &[]),
            START,
        )
        .unwrap()
        .to_response()
        .into_body();
    assert_eq!(body, br#"{"active":false}"#);
}

#[test]
fn a_confidential_client_sees_its_own_tokens_only() {
    let h = harness();
    let own = token_for(&h, "secret-app");
    let other = token_for(&h, "public-app");
    let credentials = basic("secret-app", SECRET);
    let body = answer(&h, &own.access_token, &credentials);
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], "secret-app");
    assert_eq!(body["patient"], "355");
    assert_eq!(
        answer(&h, &other.access_token, &credentials),
        json!({"active": false})
    );
    assert_eq!(
        answer(&h, other.refresh_token.as_deref().unwrap(), &credentials),
        json!({"active": false})
    );
    // With its bearer token instead of its secret: the same entitlement.
    assert_eq!(answer(&h, &own.access_token, &bearer(&own))["active"], true);
    assert_eq!(
        answer(&h, &other.access_token, &bearer(&own)),
        json!({"active": false})
    );
}

#[test]
fn a_registered_resource_server_introspects_any_clients_tokens() {
    let h = harness();
    let public = token_for(&h, "public-app");
    let secret = token_for(&h, "secret-app");
    let credentials = basic("resource-server", SECRET);
    for token in [&public, &secret] {
        let body = answer(&h, &token.access_token, &credentials);
        assert_eq!(body["active"], true);
        assert!(body["scope"].is_string() && body["exp"].is_number());
        let refresh = answer(&h, token.refresh_token.as_deref().unwrap(), &credentials);
        assert_eq!(refresh["active"], true);
    }
    assert_eq!(
        answer(&h, &public.access_token, &credentials)["client_id"],
        "public-app"
    );
    // A wrong secret is refused outright, not answered inactive.
    let err = h
        .server
        .introspect(
            &request(
                &public.access_token,
                Some(&basic("resource-server", "x")),
                &[],
            ),
            START,
        )
        .unwrap_err();
    assert_eq!(
        err.oauth.error,
        fhirguard::token::OAuthErrorCode::InvalidClient
    );
}

#[test]
fn a_bearer_token_sees_other_clients_tokens_only_if_its_client_is_registered_for_it() {
    let h = harness();
    let patient_token = token_for(&h, "public-app");

    // A backend service's token, before it is registered as a resource server: own tokens only.
    let service = backend_token(&h, "intro-1");
    assert_eq!(
        answer(&h, &patient_token.access_token, &bearer(&service)),
        json!({"active": false})
    );
    assert_eq!(
        answer(&h, &service.access_token, &bearer(&service))["active"],
        true
    );

    // Registered for introspection: the same token now sees every client's tokens, because
    // the registration is read at each call.
    let mut backend = Client::backend(
        ClientId::new("backend").unwrap(),
        vec![h.es384.verifying_key().clone()],
        None,
        scopes("system/Observation.rs system/Patient.rs"),
    );
    backend.introspect_any_token = true;
    h.clients.register(backend.clone());
    let body = answer(&h, &patient_token.access_token, &bearer(&service));
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], "public-app");
    assert_eq!(body["patient"], "355");

    // Withdrawn again: back to its own tokens.
    backend.introspect_any_token = false;
    h.clients.register(backend);
    assert_eq!(
        answer(&h, &patient_token.access_token, &bearer(&service)),
        json!({"active": false})
    );
}

#[test]
fn the_permission_is_ignored_on_a_public_client() {
    let h = harness();
    let mut public = Client::public(
        ClientId::new("public-app").unwrap(),
        vec![REDIRECT.into()],
        scopes(SCOPE),
    );
    public.introspect_any_token = true;
    assert!(!public.may_introspect_any_token());
    h.clients.register(public);
    let mine = token_for(&h, "public-app");
    let theirs = token_for(&h, "other-app");
    assert_eq!(
        answer(&h, &theirs.access_token, &bearer(&mine)),
        json!({"active": false})
    );
    // And `client_id` alone is no credential at all.
    let err = h
        .server
        .introspect(
            &request(&theirs.access_token, None, &[("client_id", "public-app")]),
            START,
        )
        .unwrap_err();
    assert_eq!(
        err.oauth.error,
        fhirguard::token::OAuthErrorCode::InvalidClient
    );
}
