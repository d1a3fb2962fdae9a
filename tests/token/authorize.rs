//! The authorization endpoint's answers for requests it cannot serve: nothing to approve
//! (RFC 6749 §4.1.2.1 `invalid_scope`).

use fhirguard::token::{AuthorizeError, RedirectReason};
use http::StatusCode;

use super::harness::*;
use super::support::*;

fn refused(h: &Harness, overrides: &[(&str, &str)]) -> (RedirectReason, String, StatusCode) {
    match h
        .server
        .authorize_request(
            &get_authorize(&authorize_params("public-app", overrides)),
            START,
        )
        .expect_err("the request must be refused")
    {
        AuthorizeError::Redirect { redirect, reason } => {
            assert!(redirect.location.starts_with(REDIRECT));
            assert!(redirect_param(&redirect.location, "code").is_none());
            (reason, redirect.location, redirect.status)
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
}

#[test]
fn a_request_without_a_grantable_resource_scope_is_invalid_scope_with_state() {
    let h = harness();
    for scope in [
        "openid fhirUser",
        "launch/patient openid fhirUser",
        "launch/patient openid fhirUser offline_access",
        "launch",
        // Resource scopes, but none this client may be granted.
        "openid user/*.rs",
        "launch/patient system/Observation.rs",
        // Extension scopes the server does not grant.
        "openid __custom https://example.org/scope",
    ] {
        let (reason, location, status) = refused(&h, &[("scope", scope)]);
        assert_eq!(reason, RedirectReason::NoResourceScope, "{scope}");
        assert_eq!(
            redirect_param(&location, "error").as_deref(),
            Some("invalid_scope"),
            "{scope}"
        );
        assert_eq!(
            redirect_param(&location, "state").as_deref(),
            Some("st-123 &=?")
        );
        assert_eq!(status, StatusCode::FOUND);
    }
    // By POST too (303, so the browser follows with GET).
    let params = authorize_params("public-app", &[("scope", "openid fhirUser")]);
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match h
        .server
        .authorize_request(&post_form(&format!("{ISSUER}/authorize"), &pairs), START)
        .unwrap_err()
    {
        AuthorizeError::Redirect { redirect, reason } => {
            assert_eq!(reason, RedirectReason::NoResourceScope);
            assert_eq!(redirect.status, StatusCode::SEE_OTHER);
            assert_eq!(
                redirect_param(&redirect.location, "error").as_deref(),
                Some("invalid_scope")
            );
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
}

#[test]
fn requests_with_some_grantable_resource_scope_still_reach_the_approval() {
    let h = harness();
    for scope in [
        SCOPE,
        "patient/Observation.rs",
        "openid fhirUser patient/Observation.rs",
        // v1 syntax.
        "launch/patient patient/*.read",
        // Wider than the client's allowance: narrowed later, not refused.
        "patient/*.cruds",
        // Some of it beyond the client: the rest is still worth approving.
        "patient/Observation.rs user/*.rs system/*.rs __custom",
    ] {
        let request = h
            .server
            .authorize_request(
                &get_authorize(&authorize_params("public-app", &[("scope", scope)])),
                START,
            )
            .unwrap_or_else(|e| panic!("{scope}: {e:?}"));
        assert_eq!(request.scope, scopes(scope));
    }
}

#[test]
fn an_approval_that_leaves_no_resource_scope_issues_no_code() {
    let h = harness();
    let request = h
        .server
        .authorize_request(
            &get_authorize(&authorize_params(
                "public-app",
                &[("scope", "openid fhirUser patient/Observation.rs")],
            )),
            START,
        )
        .unwrap();
    // The patient approved data the request did not ask for: identity scopes alone remain.
    let mut approval = approval("public-app", START);
    approval.approved_scope = scopes("patient/Condition.rs");
    match h.server.approve(&request, approval, START).unwrap_err() {
        AuthorizeError::Redirect { redirect, reason } => {
            assert_eq!(reason, RedirectReason::NothingGranted);
            assert_eq!(
                redirect_param(&redirect.location, "error").as_deref(),
                Some("invalid_scope")
            );
            assert!(redirect_param(&redirect.location, "code").is_none());
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
    // The matching approval goes through.
    let redirect = h
        .server
        .approve(
            &request,
            super::harness::approval("public-app", START),
            START,
        )
        .unwrap();
    assert!(redirect_param(&redirect.location, "code").is_some());
}

#[test]
fn only_the_query_response_mode_is_accepted() {
    let h = harness();
    for mode in ["fragment", "form_post", "bogus"] {
        let (reason, location, _) = refused(&h, &[("response_mode", mode)]);
        assert_eq!(reason, RedirectReason::UnsupportedResponseMode, "{mode}");
        // Answered in the query, the one mode there is.
        assert!(!location.contains('#'), "{location}");
        assert_eq!(
            redirect_param(&location, "error").as_deref(),
            Some("invalid_request")
        );
        assert_eq!(
            redirect_param(&location, "state").as_deref(),
            Some("st-123 &=?")
        );
    }
    let params = authorize_params("public-app", &[("response_mode", "query")]);
    assert!(
        h.server
            .authorize_request(&get_authorize(&params), START)
            .is_ok()
    );
    let doc = serde_json::to_value(h.server.smart_configuration()).unwrap();
    assert_eq!(
        doc["response_modes_supported"],
        serde_json::json!(["query"])
    );
    let oidc = serde_json::to_value(h.server.openid_configuration().unwrap()).unwrap();
    assert_eq!(
        oidc["response_modes_supported"],
        serde_json::json!(["query"])
    );
}

#[test]
fn a_state_too_long_to_accept_is_still_echoed_in_the_error() {
    let h = harness();
    let long = "s".repeat(fhirguard::token::MAX_STATE_LEN + 1);
    let (reason, location, _) = refused(&h, &[("state", &long)]);
    assert_eq!(reason, RedirectReason::TooLong);
    assert_eq!(
        redirect_param(&location, "state").as_deref(),
        Some(long.as_str())
    );
}

#[test]
fn a_malformed_state_goes_back_as_invalid_request_with_its_bytes() {
    let h = harness();
    let base = authorize_params("public-app", &[]);
    let pairs: Vec<(&str, &str)> = base
        .iter()
        .filter(|(k, _)| k != "state")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // CR/LF (header splitting) and a byte that is not UTF-8 (RFC 6749 §4.1.2.1: the client and
    // redirect URI are good, so the app hears `invalid_request`, not the user an error page).
    for (raw_state, echoed) in [
        ("a%0D%0ASet-Cookie:x", "a%0D%0ASet-Cookie%3Ax"),
        ("%FF%FE", "%FF%FE"),
    ] {
        let url = format!("{ISSUER}/authorize?{}&state={raw_state}", query(&pairs));
        let request = http::Request::get(url).body(Vec::new()).unwrap();
        match h.server.authorize_request(&request, START) {
            Err(AuthorizeError::Redirect { redirect, reason }) => {
                assert_eq!(reason, RedirectReason::Malformed("state"));
                assert!(redirect.location.starts_with(REDIRECT));
                assert_eq!(
                    redirect_param(&redirect.location, "error").as_deref(),
                    Some("invalid_request")
                );
                assert!(
                    redirect.location.ends_with(&format!("&state={echoed}")),
                    "{}",
                    redirect.location
                );
                let response = AuthorizeError::Redirect { redirect, reason }.to_response();
                let location = response.headers()[http::header::LOCATION].to_str().unwrap();
                assert!(!location.contains('\r') && !location.contains('\n'));
            }
            other => panic!("expected a redirect, got {other:?}"),
        }
    }
    // A malformed client_id cannot be trusted: an error page, never a redirect.
    let pairs: Vec<(&str, &str)> = base
        .iter()
        .filter(|(k, _)| k != "client_id")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let url = format!(
        "{ISSUER}/authorize?{}&client_id=public-app%0A",
        query(&pairs)
    );
    let request = http::Request::get(url).body(Vec::new()).unwrap();
    assert!(matches!(
        h.server.authorize_request(&request, START),
        Err(AuthorizeError::Render(_))
    ));
}

// ---------------------------------------------------------------- request objects (OIDC §6)

#[test]
fn request_and_request_uri_are_answered_not_supported_with_state() {
    let h = harness();
    let object = "eyJhbGciOiJub25lIn0.eyJzY29wZSI6Im9wZW5pZCJ9.";
    let cases = [
        (
            vec![("request", object)],
            RedirectReason::RequestNotSupported,
            "request_not_supported",
        ),
        (
            vec![("request_uri", "https://app.example.org/request.jwt")],
            RedirectReason::RequestUriNotSupported,
            "request_uri_not_supported",
        ),
        (
            vec![("request", object), ("request_uri", "urn:example:r")],
            RedirectReason::RequestNotSupported,
            "request_not_supported",
        ),
    ];
    for (extra, expected, code) in cases {
        let (reason, location, _) = refused(&h, &extra);
        assert_eq!(reason, expected);
        assert_eq!(redirect_param(&location, "error").as_deref(), Some(code));
        assert_eq!(
            redirect_param(&location, "state").as_deref(),
            Some("st-123 &=?")
        );
    }
    // Refused even when the rest of the request is fine without it, and before the missing
    // state is noticed (the error then carries no state).
    let (reason, location, _) = refused(&h, &[("request", object), ("state", "")]);
    assert_eq!(reason, RedirectReason::RequestNotSupported);
    assert!(redirect_param(&location, "state").is_none());
    // Sent without a value, a parameter counts as omitted (RFC 6749 §3.1).
    let mut params = authorize_params("public-app", &[]);
    params.push(("request".into(), String::new()));
    params.push(("request_uri".into(), String::new()));
    assert!(
        h.server
            .authorize_request(&get_authorize(&params), START)
            .is_ok()
    );
    // Until the redirect URI is trusted, nothing is redirected, request object or not.
    let err = h
        .server
        .authorize_request(
            &get_authorize(&authorize_params(
                "public-app",
                &[
                    ("request", object),
                    ("redirect_uri", "https://evil.example/cb"),
                ],
            )),
            START,
        )
        .unwrap_err();
    assert!(matches!(err, AuthorizeError::Render(_)));
}
