//! The EHR launch: handles are single use, short-lived, bound to one client, and carry the
//! EHR's context into the token response.

use std::sync::Arc;

use fhirguard::scope::Scope;
use fhirguard::token::{
    AuthorizationServer, AuthorizeError, Client, ConfigError, InMemoryLaunchStore, LAUNCH_TTL,
    LaunchContext, LaunchError, RedirectReason, ServerConfig, token_response,
};
use fhirguard::{ClientId, PatientId};
use time::Duration;

use super::harness::*;
use super::support::*;

const LAUNCH_URI: &str = "https://app.example.org/launch";
const EHR_SCOPE: &str = "launch openid fhirUser offline_access patient/*.rs";

struct Launching {
    h: Harness,
    server: AuthorizationServer,
}

/// The harness's parts behind a second server that has the EHR launch enabled, with
/// `public-app` registered with a launch URL.
fn launching() -> Launching {
    let h = harness();
    let mut app = Client::public(
        ClientId::new("public-app").unwrap(),
        vec![REDIRECT.into()],
        scopes("launch launch/patient openid fhirUser offline_access patient/*.rs"),
    );
    app.launch_uri = Some(LAUNCH_URI.into());
    h.clients.register(app);
    let server = AuthorizationServer::new(
        ServerConfig::new(ISSUER, FHIR_BASE),
        h.keys.clone(),
        h.clients.clone(),
        h.store.clone(),
        h.grants.clone(),
    )
    .unwrap()
    .with_launch_store(Arc::new(InMemoryLaunchStore::new()));
    Launching { h, server }
}

fn context_for(client: &str, patient: &str) -> LaunchContext {
    let mut c = LaunchContext::new(ClientId::new(client).unwrap())
        .with_patient(PatientId::new(patient).unwrap())
        .with_subject(format!("user-{patient}"));
    c.encounter = Some("enc-1".into());
    c.need_patient_banner = Some(true);
    c.smart_style_url = Some("https://ehr.example.org/smart-style.json".into());
    c
}

/// `public-app`'s code exchange at the launching server.
fn redeem(l: &Launching, code: &str, at: time::OffsetDateTime) -> fhirguard::token::TokenOutcome {
    l.server.token(
        &post_form(
            &token_url(),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("client_id", "public-app"),
                ("code_verifier", VERIFIER),
            ],
        ),
        at,
    )
}

fn launch_param(url: &str, name: &str) -> String {
    redirect_param(url, name).unwrap()
}

fn authorize_with_launch(
    l: &Launching,
    client: &str,
    handle: &str,
    at: time::OffsetDateTime,
) -> Result<fhirguard::token::AuthorizeRequest, AuthorizeError> {
    let params = authorize_params(client, &[("scope", EHR_SCOPE), ("launch", handle)]);
    l.server.authorize_request(&get_authorize(&params), at)
}

fn redirect_reason(err: AuthorizeError) -> (RedirectReason, String) {
    match err {
        AuthorizeError::Redirect { redirect, reason } => (reason, redirect.location),
        other => panic!("expected a redirect, got {other:?}"),
    }
}

#[test]
fn launch_url_carries_exact_iss_and_an_opaque_handle() {
    let l = launching();
    let launch = l
        .server
        .ehr_launch(context_for("public-app", "355"), START)
        .unwrap();
    assert!(launch.url.starts_with(&format!("{LAUNCH_URI}?iss=")));
    assert_eq!(launch_param(&launch.url, "iss"), FHIR_BASE);
    let handle = launch_param(&launch.url, "launch");
    assert_eq!(handle, launch.handle);
    assert_eq!(handle.len(), 43, "256 random bits, base64url");
    assert!(
        !handle.contains("355"),
        "the handle says nothing about the patient"
    );
    assert!(
        !format!("{launch:?}").contains(&handle),
        "Debug is redacted"
    );
}

#[test]
fn ehr_launch_returns_the_launch_context_with_the_tokens() {
    let l = launching();
    let launch = l
        .server
        .ehr_launch(context_for("public-app", "355"), START)
        .unwrap();
    let request = authorize_with_launch(&l, "public-app", &launch.handle, START).unwrap();
    assert!(request.launch_context.is_some());
    // The approval names no patient of its own: the launch supplies it.
    let mut approval = approval("public-app", START);
    approval.approved_scope = scopes(EHR_SCOPE);
    approval.patient = None;
    approval.need_patient_banner = None;
    approval.smart_style_url = None;
    let redirect = l.server.approve(&request, approval, START).unwrap();
    let code = redirect_param(&redirect.location, "code").unwrap();
    let outcome = redeem(&l, &code, START + Duration::seconds(5));
    assert!(outcome.is_ok(), "token request refused");
    let body = json(&token_response(&outcome));
    assert_eq!(body["patient"], "355");
    assert_eq!(body["encounter"], "enc-1");
    assert_eq!(body["need_patient_banner"], true);
    assert_eq!(
        body["smart_style_url"],
        "https://ehr.example.org/smart-style.json"
    );
    let granted: Vec<&str> = body["scope"].as_str().unwrap().split(' ').collect();
    assert!(granted.contains(&"launch"), "{granted:?}");
}

#[test]
fn a_launch_handle_is_single_use() {
    let l = launching();
    let launch = l
        .server
        .ehr_launch(context_for("public-app", "355"), START)
        .unwrap();
    let first = authorize_with_launch(&l, "public-app", &launch.handle, START).unwrap();
    // Checking a request does not consume the handle (the user has not approved yet) ...
    let second = authorize_with_launch(&l, "public-app", &launch.handle, START).unwrap();
    l.server
        .approve(&first, approval("public-app", START), START)
        .unwrap();
    // ... approving does: the other pending request and any new one are refused.
    let err = l
        .server
        .approve(&second, approval("public-app", START), START)
        .unwrap_err();
    let (reason, location) = redirect_reason(err);
    assert_eq!(reason, RedirectReason::InvalidLaunch);
    assert!(!location.contains("code="));
    let err = authorize_with_launch(&l, "public-app", &launch.handle, START).unwrap_err();
    let (reason, location) = redirect_reason(err);
    assert_eq!(reason, RedirectReason::InvalidLaunch);
    assert!(location.contains("error=invalid_request"), "{location}");
    assert!(location.contains("state="), "{location}");
}

#[test]
fn unknown_expired_and_foreign_handles_are_refused() {
    let l = launching();
    let launch = l
        .server
        .ehr_launch(context_for("public-app", "355"), START)
        .unwrap();
    for (client, handle, at) in [
        ("public-app", "made-up-handle", START),
        ("public-app", launch.handle.as_str(), START + LAUNCH_TTL),
        ("other-app", launch.handle.as_str(), START),
        ("public-app", &"x".repeat(300), START),
    ] {
        let err = authorize_with_launch(&l, client, handle, at).unwrap_err();
        assert_eq!(
            redirect_reason(err).0,
            RedirectReason::InvalidLaunch,
            "{client}"
        );
    }
    // The handle survived the refused attempts and still works for its own app, in time.
    assert!(authorize_with_launch(&l, "public-app", &launch.handle, START).is_ok());
}

#[test]
fn the_approval_must_be_for_the_launched_patient_and_user() {
    let l = launching();
    for (patient, subject) in [("85", "user-355"), ("355", "user-85")] {
        let launch = l
            .server
            .ehr_launch(context_for("public-app", "355"), START)
            .unwrap();
        let request = authorize_with_launch(&l, "public-app", &launch.handle, START).unwrap();
        let mut approval = approval("public-app", START);
        approval.patient = Some(PatientId::new(patient).unwrap());
        approval.subject = subject.into();
        let err = l.server.approve(&request, approval, START).unwrap_err();
        let (reason, location) = redirect_reason(err);
        assert_eq!(reason, RedirectReason::LaunchMismatch);
        assert!(location.contains("error=access_denied"), "{location}");
    }
}

#[test]
fn standalone_requests_do_not_get_the_launch_scope() {
    let l = launching();
    let params = authorize_params("public-app", &[("scope", EHR_SCOPE)]);
    let request = l
        .server
        .authorize_request(&get_authorize(&params), START)
        .unwrap();
    assert!(request.launch_context.is_none());
    let mut approval = approval("public-app", START);
    approval.approved_scope = scopes(EHR_SCOPE);
    let redirect = l.server.approve(&request, approval, START).unwrap();
    let code = redirect_param(&redirect.location, "code").unwrap();
    let outcome = exchange(&l.h, "public-app", &code, START);
    let body = json(&token_response(&outcome));
    let granted = scopes(body["scope"].as_str().unwrap());
    assert!(!granted.contains(&Scope::Launch), "{granted}");
}

#[test]
fn a_server_without_a_launch_store_refuses_launches() {
    let h = harness();
    let err = h
        .server
        .ehr_launch(context_for("public-app", "355"), START)
        .unwrap_err();
    assert_eq!(err, LaunchError::NotEnabled);
    let params = authorize_params("public-app", &[("launch", "anything")]);
    let err = h
        .server
        .authorize_request(&get_authorize(&params), START)
        .unwrap_err();
    assert_eq!(redirect_reason(err).0, RedirectReason::InvalidLaunch);
    let mut config = ServerConfig::new(ISSUER, FHIR_BASE);
    config.ehr_launch = true;
    let err = AuthorizationServer::new(
        config,
        h.keys.clone(),
        h.clients.clone(),
        h.store.clone(),
        h.grants.clone(),
    )
    .unwrap_err();
    assert_eq!(err, ConfigError::EhrLaunchWithoutStore);
}

#[test]
fn only_clients_with_a_launch_url_can_be_launched() {
    let l = launching();
    for (client, expected) in [
        ("secret-app", LaunchError::NotLaunchable),
        ("backend", LaunchError::NotLaunchable),
        ("nobody", LaunchError::UnknownClient),
    ] {
        let err = l
            .server
            .ehr_launch(LaunchContext::new(ClientId::new(client).unwrap()), START)
            .unwrap_err();
        assert_eq!(err, expected, "{client}");
    }
}

#[test]
fn discovery_advertises_the_ehr_launch_only_with_a_store() {
    let l = launching();
    let doc = serde_json::to_value(l.server.smart_configuration()).unwrap();
    let caps = doc["capabilities"].as_array().unwrap();
    for cap in ["launch-ehr", "context-ehr-patient"] {
        assert!(caps.contains(&cap.into()), "{cap}");
    }
    // Encounter context is the host's to claim: its launches must carry one.
    assert!(!caps.contains(&"context-ehr-encounter".into()));
    let doc = serde_json::to_value(l.h.server.smart_configuration()).unwrap();
    assert!(
        !doc["capabilities"]
            .as_array()
            .unwrap()
            .contains(&"launch-ehr".into())
    );
}

#[test]
fn fhir_context_intent_and_tenant_reach_the_token_response_and_bad_context_is_refused() {
    let l = launching();
    let good = vec![
        serde_json::json!({"reference": "DiagnosticReport/dr-1"}),
        serde_json::json!({"canonical": "https://ehr.example.org/Questionnaire/q|2"}),
        serde_json::json!({"identifier": {"system": "urn:x", "value": "1"}, "type": "ServiceRequest"}),
        // A Patient other than the one in context may appear in a role of its own.
        serde_json::json!({"reference": "Patient/85", "role": "https://example.org/roles/sibling"}),
    ];
    let mut context = context_for("public-app", "355");
    context.fhir_context = good.clone();
    context.intent = Some("reconcile-medications".into());
    context.tenant = Some("clinic-a".into());
    let launch = l.server.ehr_launch(context, START).unwrap();
    let request = authorize_with_launch(&l, "public-app", &launch.handle, START).unwrap();
    let mut approved = approval("public-app", START);
    approved.approved_scope = scopes(EHR_SCOPE);
    let redirect = l.server.approve(&request, approved, START).unwrap();
    let code = redirect_param(&redirect.location, "code").unwrap();
    let outcome = redeem(&l, &code, START);
    let body = json(&token_response(&outcome));
    assert_eq!(body["fhirContext"], serde_json::Value::Array(good));
    assert_eq!(body["intent"], "reconcile-medications");
    assert_eq!(body["tenant"], "clinic-a");

    use fhirguard::token::FhirContextError as E;
    for (entry, expected) in [
        (
            serde_json::json!("DiagnosticReport/dr-1"),
            E::NotAnObject(0),
        ),
        (
            serde_json::json!({"type": "Observation"}),
            E::NothingReferenced(0),
        ),
        (
            serde_json::json!({"reference": ""}),
            E::NothingReferenced(0),
        ),
        (
            serde_json::json!({"reference": "Observation/1", "role": ""}),
            E::BadRole(0),
        ),
        (
            serde_json::json!({"reference": "Observation/1", "role": "sibling"}),
            E::BadRole(0),
        ),
        (
            serde_json::json!({"reference": "Patient/85"}),
            E::PatientOrEncounterInLaunchRole(0),
        ),
        (
            serde_json::json!({"reference": "https://ehr.example.org/fhir/Encounter/e/_history/2", "role": "launch"}),
            E::PatientOrEncounterInLaunchRole(0),
        ),
        (
            serde_json::json!({"identifier": {"value": "1"}, "type": "Patient"}),
            E::PatientOrEncounterInLaunchRole(0),
        ),
    ] {
        let mut context = context_for("public-app", "355");
        context.fhir_context = vec![entry.clone()];
        assert_eq!(
            l.server.ehr_launch(context, START).unwrap_err(),
            LaunchError::FhirContext(expected.clone()),
            "{entry}"
        );
        // The host's approval is checked the same way; the app only hears server_error.
        let request = validated_request(&l.h, "public-app");
        let mut approval = approval("public-app", START);
        approval.fhir_context = vec![entry.clone()];
        let (reason, location) =
            redirect_reason(l.h.server.approve(&request, approval, START).unwrap_err());
        assert!(
            matches!(reason, RedirectReason::Server(_)),
            "{entry}: {reason:?}"
        );
        assert_eq!(
            redirect_param(&location, "error").as_deref(),
            Some("server_error")
        );
    }
}
