//! The authorization server's endpoints against the checklist (§3–5, §8, §10 gaps).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use fhirguard::token::{
    AuthorizeError, Client, ClientAuthFailure, OAuthErrorCode, PkceError, RedirectReason,
    RenderReason, TokenFailure, TokenRejection, token_response,
};
use fhirguard::{ClientId, GrantId};
use http::{Request, StatusCode, header};
use ring::hmac;
use time::Duration;

use super::harness::*;
use super::support::*;

fn failure(outcome: fhirguard::token::TokenOutcome) -> fhirguard::token::TokenError {
    outcome.expect_err("the request must fail")
}

// ---------------------------------------------------------------- authorize

#[test]
fn authorize_get_and_post_both_issue_a_code_with_state_echoed() {
    let h = harness();
    let params = authorize_params("public-app", &[]);
    let get = h
        .server
        .authorize_request(&get_authorize(&params), time::OffsetDateTime::now_utc())
        .unwrap();
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let post = h
        .server
        .authorize_request(
            &post_form(&format!("{ISSUER}/authorize"), &pairs),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    assert!(!get.via_post && post.via_post);
    for request in [get, post] {
        let redirect = h
            .server
            .approve(&request, approval("public-app", START), START)
            .unwrap();
        assert!(redirect.location.starts_with(REDIRECT));
        assert_eq!(
            redirect_param(&redirect.location, "state").unwrap(),
            "st-123 &=?"
        );
        assert_eq!(
            redirect_param(&redirect.location, "code").unwrap().len(),
            43
        );
        let response = redirect.to_response();
        assert!(matches!(
            response.status(),
            StatusCode::FOUND | StatusCode::SEE_OTHER
        ));
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }
}

#[test]
fn authorize_unknown_client_and_bad_redirect_render_instead_of_redirecting() {
    let h = harness();
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, RenderReason);
    let cases: [Case<'_>; 4] = [
        (&[], "nobody", RenderReason::UnknownClient),
        (
            &[("client_id", "")],
            "public-app",
            RenderReason::MissingClient,
        ),
        (
            &[("redirect_uri", "https://evil.example/cb")],
            "public-app",
            RenderReason::UnregisteredRedirectUri,
        ),
        (
            &[("redirect_uri", "https://app.example.org/callback/")],
            "public-app",
            RenderReason::UnregisteredRedirectUri,
        ),
    ];
    for (overrides, client, reason) in cases {
        let err = h
            .server
            .authorize_request(
                &get_authorize(&authorize_params(client, overrides)),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap_err();
        assert_eq!(err, AuthorizeError::Render(reason));
        let response = err.to_response();
        assert_eq!(response.status(), 400);
        assert!(response.headers().get(header::LOCATION).is_none());
    }
    // A repeated redirect_uri is not trusted either.
    let mut params = authorize_params("public-app", &[]);
    params.push(("redirect_uri".into(), REDIRECT.into()));
    assert_eq!(
        h.server
            .authorize_request(&get_authorize(&params), time::OffsetDateTime::now_utc())
            .unwrap_err(),
        AuthorizeError::Render(RenderReason::MissingRedirectUri)
    );
}

fn redirect_reason(h: &Harness, overrides: &[(&str, &str)]) -> (RedirectReason, String) {
    match h
        .server
        .authorize_request(
            &get_authorize(&authorize_params("public-app", overrides)),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap_err()
    {
        AuthorizeError::Redirect { redirect, reason } => {
            assert!(redirect.location.starts_with(REDIRECT));
            assert!(
                redirect_param(&redirect.location, "code").is_none(),
                "never a code"
            );
            (reason, redirect.location)
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
}

#[test]
fn authorize_errors_after_the_client_is_trusted_redirect_with_state() {
    let h = harness();
    let (reason, location) = redirect_reason(&h, &[("aud", "https://other.example.org/fhir")]);
    assert_eq!(reason, RedirectReason::WrongAudience);
    assert_eq!(
        redirect_param(&location, "error").unwrap(),
        "invalid_request"
    );
    assert_eq!(redirect_param(&location, "state").unwrap(), "st-123 &=?");

    assert_eq!(
        redirect_reason(&h, &[("aud", "")]).0,
        RedirectReason::Missing("aud")
    );
    assert_eq!(
        redirect_reason(&h, &[("code_challenge", "")]).0,
        RedirectReason::Pkce(PkceError::MissingChallenge)
    );
    assert_eq!(
        redirect_reason(&h, &[("code_challenge_method", "plain")]).0,
        RedirectReason::Pkce(PkceError::UnsupportedMethod)
    );
    assert_eq!(
        redirect_reason(&h, &[("code_challenge_method", "")]).0,
        RedirectReason::Pkce(PkceError::MissingMethod)
    );
    let (reason, location) = redirect_reason(&h, &[("response_type", "token")]);
    assert_eq!(reason, RedirectReason::UnsupportedResponseType);
    assert_eq!(
        redirect_param(&location, "error").unwrap(),
        "unsupported_response_type"
    );
    assert_eq!(
        redirect_reason(&h, &[("state", "")]).0,
        RedirectReason::Missing("state")
    );
    let (reason, location) = redirect_reason(&h, &[("scope", "patient/Observation.dus")]);
    assert_eq!(reason, RedirectReason::InvalidScope);
    assert_eq!(redirect_param(&location, "error").unwrap(), "invalid_scope");
    let mut params = authorize_params("public-app", &[]);
    params.push(("scope".into(), "openid".into()));
    assert!(matches!(
        h.server
            .authorize_request(&get_authorize(&params), time::OffsetDateTime::now_utc())
            .unwrap_err(),
        AuthorizeError::Redirect {
            reason: RedirectReason::Duplicate("scope"),
            ..
        }
    ));
}

#[test]
fn resource_is_accepted_as_a_synonym_of_aud() {
    let h = harness();
    let params = authorize_params("public-app", &[("aud", ""), ("resource", FHIR_BASE)]);
    assert!(
        h.server
            .authorize_request(&get_authorize(&params), time::OffsetDateTime::now_utc())
            .is_ok()
    );
}

#[test]
fn deny_redirects_access_denied_with_state() {
    let h = harness();
    let request = validated_request(&h, "public-app");
    let redirect = h.server.deny(&request);
    assert_eq!(
        redirect_param(&redirect.location, "error").unwrap(),
        "access_denied"
    );
    assert_eq!(
        redirect_param(&redirect.location, "state").unwrap(),
        "st-123 &=?"
    );
}

#[test]
fn approval_needs_an_active_grant_of_this_client_and_a_patient_for_patient_scopes() {
    let h = harness();
    let request = validated_request(&h, "public-app");
    let mut other = approval("public-app", START);
    other.grant_id = GrantId::new("g-secret").unwrap();
    assert!(matches!(
        h.server.approve(&request, other, START).unwrap_err(),
        AuthorizeError::Redirect {
            reason: RedirectReason::GrantNotActive,
            ..
        }
    ));
    let mut no_patient = approval("public-app", START);
    no_patient.patient = None;
    assert!(matches!(
        h.server.approve(&request, no_patient, START).unwrap_err(),
        AuthorizeError::Redirect {
            reason: RedirectReason::MissingPatientContext,
            ..
        }
    ));
}

// ---------------------------------------------------------------- token: code exchange

#[test]
fn code_exchange_returns_every_smart_field_with_no_store_headers() {
    let h = harness();
    let code = code_for(&h, "public-app", START);
    let outcome = exchange(&h, "public-app", &code, START + Duration::seconds(5));
    let response = token_response(&outcome);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(response.headers()[header::PRAGMA], "no-cache");
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let body = json(&response);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["expires_in"].is_number());
    assert_eq!(body["scope"], SCOPE);
    assert_eq!(body["patient"], "355");
    assert_eq!(body["need_patient_banner"], false);
    assert_eq!(
        body["smart_style_url"],
        "https://ehr.example.org/smart-style.json"
    );
    assert!(body["refresh_token"].is_string());
    assert!(body["id_token"].is_string());
    // The access token validates at the resource server and carries the grant.
    let access = body["access_token"].as_str().unwrap();
    let valid = h
        .server
        .validator()
        .validate(access, START + Duration::seconds(6))
        .unwrap();
    assert_eq!(valid.claims.grant_id.as_ref().unwrap().as_str(), "g-public");
}

#[test]
fn pkce_missing_blank_wrong_and_plain_are_refused_at_the_token_step() {
    let h = harness();
    let challenge = fhirguard::token::pkce_s256(VERIFIER);
    let cases: [(Option<&str>, PkceError, u16); 4] = [
        (None, PkceError::MissingVerifier, 400),
        (Some(""), PkceError::MissingVerifier, 400),
        (
            Some("wrong-verifier-wrong-verifier-wrong-verifier-0"),
            PkceError::Mismatch,
            400,
        ),
        (Some(challenge.as_str()), PkceError::Mismatch, 400),
    ];
    for (verifier, expected, status) in cases {
        let code = code_for(&h, "public-app", START);
        let mut pairs = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", "public-app"),
        ];
        if let Some(v) = verifier {
            pairs.push(("code_verifier", v));
        }
        let err = failure(h.server.token(&post_form(&token_url(), &pairs), START));
        assert_eq!(err.reason, TokenFailure::Pkce(expected));
        assert_eq!(err.to_response().status(), status);
    }
}

#[test]
fn code_reuse_is_refused_and_revokes_everything_issued_from_it() {
    let h = harness();
    let code = code_for(&h, "public-app", START);
    let first = exchange(&h, "public-app", &code, START).unwrap();
    let err = failure(exchange(
        &h,
        "public-app",
        &code,
        START + Duration::seconds(2),
    ));
    assert_eq!(err.reason, TokenFailure::CodeReused);
    assert_eq!(err.oauth.error, OAuthErrorCode::InvalidGrant);
    assert_eq!(err.to_response().status(), 400);
    // The access token from the first exchange no longer validates…
    assert_eq!(
        h.server
            .validator()
            .validate(&first.access_token, START + Duration::seconds(3))
            .unwrap_err(),
        TokenRejection::Revoked
    );
    // …and its refresh token is dead.
    let err = failure(refresh(
        &h,
        "public-app",
        first.refresh_token.as_deref().unwrap(),
        None,
        START,
    ));
    assert_eq!(err.reason, TokenFailure::RefreshRevoked);
}

#[test]
fn code_expires_after_60_seconds() {
    let h = harness();
    let code = code_for(&h, "public-app", START);
    let err = failure(exchange(
        &h,
        "public-app",
        &code,
        START + Duration::seconds(60),
    ));
    assert_eq!(err.reason, TokenFailure::CodeExpired);
    assert_eq!(err.to_response().status(), 400);
}

#[test]
fn code_from_another_client_and_redirect_mismatch_are_invalid_grant() {
    let h = harness();
    let code = code_for(&h, "public-app", START);
    let err = failure(exchange(&h, "other-app", &code, START));
    assert_eq!(err.reason, TokenFailure::CodeOtherClient);
    assert_eq!(err.oauth.error, OAuthErrorCode::InvalidGrant);

    let code = code_for(&h, "public-app", START);
    let request = post_form(
        &token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://app.example.org/other"),
            ("code_verifier", VERIFIER),
            ("client_id", "public-app"),
        ],
    );
    let err = failure(h.server.token(&request, START));
    assert_eq!(err.reason, TokenFailure::RedirectMismatch);
    assert_eq!(err.oauth.error, OAuthErrorCode::InvalidGrant);

    let err = failure(exchange(&h, "public-app", "made-up-code", START));
    assert_eq!(err.reason, TokenFailure::CodeUnknown);
    assert_eq!(err.to_response().status(), 400);
}

#[test]
fn access_token_never_outlives_the_grant() {
    let h = harness();
    h.grants.insert(grant(
        "g-public",
        "public-app",
        "355",
        START + Duration::minutes(10),
    ));
    let code = code_for(&h, "public-app", START);
    let ok = exchange(&h, "public-app", &code, START).unwrap();
    assert_eq!(ok.expires_in, 600);
    assert!(
        h.server
            .validator()
            .validate(&ok.access_token, START + Duration::minutes(11))
            .is_err()
    );
}

// ---------------------------------------------------------------- client authentication

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

fn secret_exchange(h: &Harness, authorization: &str, code: &str) -> fhirguard::token::TokenOutcome {
    let mut request = post_form(
        &token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    );
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, authorization.parse().unwrap());
    h.server.token(&request, START)
}

/// RFC 6749 §3.2: no parameter twice, `token_type_hint` included, at revocation and
/// introspection as at the token endpoint.
#[test]
fn a_repeated_token_type_hint_is_invalid_request() {
    let h = harness();
    let pairs = [
        ("token", "t"),
        ("token_type_hint", "access_token"),
        ("token_type_hint", "refresh_token"),
    ];
    let mut revoke = pairs.to_vec();
    revoke.push(("client_id", "public-app"));
    let response = h
        .server
        .revoke(&post_form(&format!("{ISSUER}/revoke"), &revoke), START)
        .unwrap_err()
        .to_response();
    assert_eq!(response.status(), 400);
    assert_eq!(json(&response)["error"], "invalid_request");
    let mut request = post_form(&format!("{ISSUER}/introspect"), &pairs);
    request.headers_mut().insert(
        header::AUTHORIZATION,
        basic("secret-app", SECRET).parse().unwrap(),
    );
    let response = h
        .server
        .introspect(&request, START)
        .unwrap_err()
        .to_response();
    assert_eq!(response.status(), 400);
    assert_eq!(json(&response)["error"], "invalid_request");
    // Once, it is fine.
    let response = h.server.revoke(
        &post_form(
            &format!("{ISSUER}/revoke"),
            &[
                ("token", "t"),
                ("token_type_hint", "access_token"),
                ("client_id", "public-app"),
            ],
        ),
        START,
    );
    assert!(response.is_ok());
}

#[test]
fn confidential_symmetric_client_with_basic_auth() {
    let h = harness();
    let code = code_for(&h, "secret-app", START);
    assert!(secret_exchange(&h, &basic("secret-app", SECRET), &code).is_ok());

    let code = code_for(&h, "secret-app", START);
    let err = failure(secret_exchange(&h, &basic("secret-app", "wrong"), &code));
    assert_eq!(
        err.reason,
        TokenFailure::ClientAuth(ClientAuthFailure::BadSecret)
    );
    let response = err.to_response();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        "Basic realm=\"token\""
    );
    assert_eq!(json(&response)["error"], "invalid_client");
    // The code survives a failed authentication and still works.
    assert!(secret_exchange(&h, &basic("secret-app", SECRET), &code).is_ok());

    // A confidential client may not pass as public.
    let code = code_for(&h, "secret-app", START);
    let err = failure(exchange(&h, "secret-app", &code, START));
    assert_eq!(
        err.reason,
        TokenFailure::ClientAuth(ClientAuthFailure::MissingCredentials)
    );
    // No Authorization header: RFC 6749 §5.2's default 400, and no challenge.
    let response = err.to_response();
    assert_eq!(response.status(), 400);
    assert_eq!(json(&response)["error"], "invalid_client");
    assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());

    let err = failure(secret_exchange(&h, &basic("nobody", SECRET), &code));
    assert_eq!(
        err.reason,
        TokenFailure::ClientAuth(ClientAuthFailure::UnknownClient)
    );
}

fn assertion_exchange(h: &Harness, jwt: &str, code: &str) -> fhirguard::token::TokenOutcome {
    let request = post_form(
        &token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", jwt),
        ],
    );
    h.server.token(&request, START)
}

fn assertion_failure(h: &Harness, jwt: &str) -> fhirguard::token::AssertionError {
    let code = code_for(h, "jwt-app", START);
    let err = failure(assertion_exchange(h, jwt, &code));
    assert_eq!(err.oauth.error, OAuthErrorCode::InvalidClient);
    // The assertion came in the form, not the Authorization header: 400, no challenge.
    let response = err.to_response();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    match err.reason {
        TokenFailure::ClientAuth(ClientAuthFailure::Assertion(e)) => e,
        other => panic!("expected an assertion failure, got {other:?}"),
    }
}

#[test]
fn private_key_jwt_rs384_happy_path_then_replayed_jti_refused() {
    use fhirguard::token::AssertionError as A;
    let h = harness();
    let jwt = assertion(&h.rs384, "jwt-app", START, "jti-1", |_| {});
    let code = code_for(&h, "jwt-app", START);
    let ok = assertion_exchange(&h, &jwt, &code).unwrap();
    assert!(ok.id_token.is_some());
    assert_eq!(assertion_failure(&h, &jwt), A::Replayed);
}

#[test]
fn private_key_jwt_accepts_fractional_numeric_dates() {
    use fhirguard::token::AssertionError as A;
    let h = harness();
    let key = &h.rs384;
    let seconds = |d: Duration| (START + d).unix_timestamp() as f64;
    // RFC 7519 §2: a NumericDate may have a fraction; libraries that write floats interoperate.
    let jwt = assertion(key, "jwt-app", START, "j-frac", |c| {
        c["exp"] = (seconds(Duration::minutes(4)) + 0.5).into();
        c["iat"] = (seconds(Duration::ZERO) - 0.25).into();
    });
    let code = code_for(&h, "jwt-app", START);
    assert!(assertion_exchange(&h, &jwt, &code).is_ok());
    // A fraction cannot stretch the limits: 300.5 s ahead is past the five minutes.
    let far = assertion(key, "jwt-app", START, "j-frac-far", |c| {
        c["exp"] = (seconds(Duration::minutes(5)) + 30.5 + 1.0).into();
    });
    assert_eq!(assertion_failure(&h, &far), A::ExpTooFar);
    // An iat a fraction past the leeway is in the future.
    let early = assertion(key, "jwt-app", START, "j-frac-iat", |c| {
        c["iat"] = (seconds(Duration::seconds(30)) + 0.25).into();
    });
    assert_eq!(assertion_failure(&h, &early), A::NotYetValid);
    let huge = assertion(key, "jwt-app", START, "j-frac-huge", |c| {
        c["exp"] = 1.0e300.into();
    });
    assert_eq!(assertion_failure(&h, &huge), A::Malformed);
}

#[test]
fn private_key_jwt_refusals() {
    use fhirguard::token::AssertionError as A;
    let h = harness();
    let key = &h.rs384;
    let far = assertion(key, "jwt-app", START, "j-far", |c| {
        c["exp"] = (START + Duration::minutes(10)).unix_timestamp().into()
    });
    assert_eq!(assertion_failure(&h, &far), A::ExpTooFar);
    let expired = assertion(key, "jwt-app", START, "j-exp", |c| {
        c["exp"] = (START - Duration::minutes(2)).unix_timestamp().into()
    });
    assert_eq!(assertion_failure(&h, &expired), A::Expired);
    let no_exp = assertion(key, "jwt-app", START, "j-noexp", |c| {
        c.as_object_mut().unwrap().remove("exp");
    });
    assert_eq!(assertion_failure(&h, &no_exp), A::Expired);
    let wrong_aud = assertion(key, "jwt-app", START, "j-aud", |c| {
        c["aud"] = "https://ehr.example.org/other".into()
    });
    assert_eq!(assertion_failure(&h, &wrong_aud), A::WrongAudience);
    let sub_differs = assertion(key, "jwt-app", START, "j-sub", |c| {
        c["sub"] = "someone".into()
    });
    assert_eq!(assertion_failure(&h, &sub_differs), A::IssuerMismatch);
    let no_jti = assertion(key, "jwt-app", START, "", |_| {});
    assert_eq!(assertion_failure(&h, &no_jti), A::MissingJti);

    // Unknown kid: a different key under a name the client never registered.
    let stranger = fhirguard::token::SigningKey::from_pem(
        fhirguard::token::Algorithm::RS384,
        "not-registered",
        &key_pem("client_rs384.pem"),
    )
    .unwrap();
    let jwt = assertion(&stranger, "jwt-app", START, "j-kid", |_| {});
    assert_eq!(assertion_failure(&h, &jwt), A::UnknownKey);
    // Right kid, wrong key type for the algorithm (ES384 header naming the RSA key).
    let ec = fhirguard::token::SigningKey::from_pem(
        fhirguard::token::Algorithm::ES384,
        "jwt-app-1",
        &key_pem("client_es384.pem"),
    )
    .unwrap();
    let jwt = assertion(&ec, "jwt-app", START, "j-kty", |_| {});
    assert_eq!(assertion_failure(&h, &jwt), A::UnknownKey);

    let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
    let claims = serde_json::json!({
        "iss": "jwt-app", "sub": "jwt-app", "aud": token_url(),
        "exp": (START + Duration::minutes(4)).unix_timestamp(), "jti": "j-none"
    });
    let none = format!(
        "{}.{}.",
        b64(serde_json::json!({"alg": "none", "typ": "JWT", "kid": "jwt-app-1"})),
        b64(claims.clone())
    );
    assert_eq!(assertion_failure(&h, &none), A::AlgorithmNotAllowed);
    // HS256 keyed with the client's public key.
    let public = serde_json::to_vec(&h.rs384.verifying_key().to_jwk()).unwrap();
    let input = format!(
        "{}.{}",
        b64(serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": "jwt-app-1"})),
        b64(claims)
    );
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &public),
        input.as_bytes(),
    );
    let hs = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert_eq!(assertion_failure(&h, &hs), A::AlgorithmNotAllowed);

    // jku that is not the registered JWKS URL.
    let header = serde_json::json!({
        "alg": "RS384", "typ": "JWT", "kid": "jwt-app-1", "jku": "https://evil.example/jwks.json"
    });
    let claims = serde_json::json!({
        "iss": "jwt-app", "sub": "jwt-app", "aud": token_url(),
        "exp": (START + Duration::minutes(4)).unix_timestamp(), "jti": "j-jku"
    });
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = h.rs384.sign(input.as_bytes()).unwrap();
    let jku = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(assertion_failure(&h, &jku), A::JkuNotAllowed);

    // An access token presented as an assertion (typ at+jwt) is refused.
    let typed = h
        .rs384
        .sign_jwt(
            "at+jwt",
            &serde_json::json!({"iss": "jwt-app", "sub": "jwt-app", "aud": token_url(),
                "exp": (START + Duration::minutes(4)).unix_timestamp(), "jti": "j-typ"}),
        )
        .unwrap();
    assert_eq!(assertion_failure(&h, &typed), A::WrongType);
}

#[test]
fn ambiguous_kid_is_refused() {
    use fhirguard::token::{AssertionError as A, Client};
    let h = harness();
    let key = h.rs384.verifying_key().clone();
    h.clients.register(Client::asymmetric(
        fhirguard::ClientId::new("jwt-app").unwrap(),
        vec![key.clone(), key],
        None,
        vec![REDIRECT.into()],
        scopes(SCOPE),
    ));
    let jwt = assertion(&h.rs384, "jwt-app", START, "j-amb", |_| {});
    assert_eq!(assertion_failure(&h, &jwt), A::AmbiguousKey);
}

#[test]
fn multiple_authentication_methods_are_refused() {
    let h = harness();
    let code = code_for(&h, "secret-app", START);
    let mut request = post_form(
        &token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", "secret-app"),
            ("client_secret", SECRET),
        ],
    );
    request.headers_mut().insert(
        header::AUTHORIZATION,
        basic("secret-app", SECRET).parse().unwrap(),
    );
    let err = failure(h.server.token(&request, START));
    assert_eq!(
        err.reason,
        TokenFailure::ClientAuth(ClientAuthFailure::MultipleMethods)
    );
    assert_eq!(err.to_response().status(), 400);
}

// ---------------------------------------------------------------- refresh

#[test]
fn refresh_rotates_keeps_or_narrows_scope_and_stays_bound_to_the_client() {
    let h = harness();
    let code = code_for(&h, "public-app", START);
    let first = exchange(&h, "public-app", &code, START).unwrap();
    let rt1 = first.refresh_token.unwrap();

    // Another client cannot use it.
    let err = failure(refresh(&h, "other-app", &rt1, None, START));
    assert_eq!(err.reason, TokenFailure::RefreshOtherClient);
    assert_eq!(err.to_response().status(), 400);
    // Wider scope is refused.
    let err = failure(refresh(
        &h,
        "public-app",
        &rt1,
        Some("patient/*.cruds offline_access"),
        START,
    ));
    assert_eq!(err.reason, TokenFailure::ScopeWidened);
    assert_eq!(err.oauth.error, OAuthErrorCode::InvalidScope);
    // A fixed, human-readable error_description (RFC 6749 §5.2), no detail of the request.
    assert_eq!(
        json(&err.to_response())["error_description"],
        "the requested scope is invalid or exceeds the grant"
    );

    // Without scope: same scope, new refresh token.
    let later = START + Duration::minutes(50);
    let second = refresh(&h, "public-app", &rt1, None, later).unwrap();
    assert_eq!(second.scope, SCOPE);
    let response = second.to_response();
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(response.headers()[header::PRAGMA], "no-cache");
    assert_eq!(json(&response)["patient"], "355");
    // SMART: the refresh response carries token_type and a numeric expires_in, as the
    // code exchange's does.
    assert_eq!(json(&response)["token_type"], "Bearer");
    assert_eq!(json(&response)["expires_in"], 3600);
    let rt2 = second.refresh_token.clone().unwrap();
    assert_ne!(rt1, rt2);
    assert!(
        h.server
            .validator()
            .validate(&second.access_token, later)
            .is_ok()
    );

    // Narrowing narrows that access token only (RFC 6749 §6): the new refresh token keeps
    // the scope originally granted, so the next refresh without `scope` gets all of it back.
    let third = refresh(
        &h,
        "public-app",
        &rt2,
        Some("patient/Observation.rs offline_access"),
        later,
    )
    .unwrap();
    assert_eq!(third.scope, "patient/Observation.rs offline_access");
    let narrow = h
        .server
        .validator()
        .validate(&third.access_token, later)
        .unwrap();
    assert_eq!(narrow.claims.scope, "patient/Observation.rs offline_access");
    let rt3 = third.refresh_token.unwrap();
    let fourth = refresh(&h, "public-app", &rt3, None, later).unwrap();
    assert_eq!(fourth.scope, SCOPE);
    let rt3 = fourth.refresh_token.unwrap();
    let err = failure(refresh(
        &h,
        "public-app",
        &rt3,
        Some("patient/*.cruds"),
        later,
    ));
    assert_eq!(err.reason, TokenFailure::ScopeWidened);
}

#[test]
fn reusing_a_rotated_refresh_token_revokes_the_family() {
    let h = harness();
    let code = code_for(&h, "public-app", START);
    let first = exchange(&h, "public-app", &code, START).unwrap();
    let rt1 = first.refresh_token.unwrap();
    let second = refresh(&h, "public-app", &rt1, None, START).unwrap();
    let rt2 = second.refresh_token.unwrap();

    let err = failure(refresh(&h, "public-app", &rt1, None, START));
    assert_eq!(err.reason, TokenFailure::RefreshReused);
    assert_eq!(err.oauth.error, OAuthErrorCode::InvalidGrant);
    // The legitimate current token died with the family, and so did its access tokens.
    assert_eq!(
        failure(refresh(&h, "public-app", &rt2, None, START)).reason,
        TokenFailure::RefreshRevoked
    );
    assert_eq!(
        h.server
            .validator()
            .validate(&second.access_token, START)
            .unwrap_err(),
        TokenRejection::Revoked
    );
}

#[test]
fn refresh_fails_once_the_grant_is_revoked_or_over() {
    let h = harness();
    let code = code_for(&h, "public-app", START);
    let first = exchange(&h, "public-app", &code, START).unwrap();
    h.grants.revoke(&GrantId::new("g-public").unwrap());
    let err = failure(refresh(
        &h,
        "public-app",
        first.refresh_token.as_deref().unwrap(),
        None,
        START,
    ));
    assert_eq!(err.reason, TokenFailure::GrantInactive);
    assert!(matches!(
        h.server
            .validator()
            .validate(&first.access_token, START)
            .unwrap_err(),
        TokenRejection::Revoked | TokenRejection::GrantRevoked
    ));

    let h = harness();
    let code = code_for(&h, "public-app", START);
    let first = exchange(&h, "public-app", &code, START).unwrap();
    let after = START + Duration::days(366);
    let err = failure(refresh(
        &h,
        "public-app",
        first.refresh_token.as_deref().unwrap(),
        None,
        after,
    ));
    assert_eq!(err.reason, TokenFailure::RefreshExpired);
    let err = failure(refresh(&h, "public-app", "random-token", None, START));
    assert_eq!(err.reason, TokenFailure::RefreshUnknown);
}

// ---------------------------------------------------------------- backend services

fn backend_request(
    h: &Harness,
    jwt: &str,
    scope: &str,
    grant_type: &str,
    assertion_type: &str,
) -> Request<Vec<u8>> {
    let _ = h;
    post_form(
        &token_url(),
        &[
            ("grant_type", grant_type),
            ("scope", scope),
            ("client_assertion_type", assertion_type),
            ("client_assertion", jwt),
        ],
    )
}

const BEARER_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[test]
fn client_credentials_es384_short_token_no_refresh_scope_within_preauthorisation() {
    let h = harness();
    let jwt = assertion(&h.es384, "backend", START, "b-1", |_| {});
    let ok = h
        .server
        .token(
            &backend_request(
                &h,
                &jwt,
                "system/Observation.rs system/Condition.rs",
                "client_credentials",
                BEARER_TYPE,
            ),
            START,
        )
        .unwrap();
    assert_eq!(ok.expires_in, 300);
    assert!(ok.refresh_token.is_none() && ok.id_token.is_none());
    assert_eq!(ok.scope, "system/Observation.rs");
    let body = json(&ok.to_response());
    assert_eq!(body["token_type"], "Bearer");
    let valid = h
        .server
        .validator()
        .validate(&ok.access_token, START)
        .unwrap();
    assert!(valid.grant.is_none());
    assert_eq!(valid.claims.exp - valid.claims.iat, 300);

    let jwt = assertion(&h.es384, "backend", START, "b-2", |_| {});
    let err = failure(h.server.token(
        &backend_request(
            &h,
            &jwt,
            "system/Condition.rs",
            "client_credentials",
            BEARER_TYPE,
        ),
        START,
    ));
    assert_eq!(err.reason, TokenFailure::NothingGranted);
}

#[test]
fn backend_bad_grant_type_bad_assertion_type_and_bad_iss() {
    let h = harness();
    let jwt = assertion(&h.es384, "backend", START, "b-3", |_| {});
    let err = failure(h.server.token(
        &backend_request(
            &h,
            &jwt,
            "system/Observation.rs",
            "not_a_grant_type",
            BEARER_TYPE,
        ),
        START,
    ));
    assert_eq!(err.reason, TokenFailure::UnsupportedGrantType);
    assert_eq!(err.to_response().status(), 400);
    assert_eq!(json(&err.to_response())["error"], "unsupported_grant_type");

    let err = failure(h.server.token(
        &backend_request(
            &h,
            &jwt,
            "system/Observation.rs",
            "client_credentials",
            "not_an_assertion_type",
        ),
        START,
    ));
    assert_eq!(
        err.reason,
        TokenFailure::ClientAuth(ClientAuthFailure::BadAssertionType)
    );
    // SMART Backend Services: an error in the authentication process is `invalid_client`.
    assert_eq!(err.to_response().status(), 400);
    assert_eq!(json(&err.to_response())["error"], "invalid_client");

    let jwt = assertion(&h.es384, "backend", START, "b-4", |c| {
        c["iss"] = "not_a_valid_iss".into()
    });
    let err = failure(h.server.token(
        &backend_request(
            &h,
            &jwt,
            "system/Observation.rs",
            "client_credentials",
            BEARER_TYPE,
        ),
        START,
    ));
    assert_eq!(err.oauth.error, OAuthErrorCode::InvalidClient);
    assert!(matches!(err.to_response().status().as_u16(), 400 | 401));

    // A public app may not use client_credentials.
    let request = post_form(
        &token_url(),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/Observation.rs"),
            ("client_id", "public-app"),
        ],
    );
    assert_eq!(
        failure(h.server.token(&request, START)).reason,
        TokenFailure::GrantTypeNotAllowed
    );
}

#[test]
fn token_endpoint_refuses_get_and_duplicates() {
    let h = harness();
    let get = Request::get(token_url()).body(Vec::new()).unwrap();
    assert_eq!(
        failure(h.server.token(&get, START)).reason,
        TokenFailure::BadMethod
    );
    let dup = Request::post(token_url())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(b"grant_type=authorization_code&grant_type=refresh_token".to_vec())
        .unwrap();
    let err = failure(h.server.token(&dup, START));
    assert_eq!(err.reason, TokenFailure::Duplicate("grant_type"));
    let response = err.to_response();
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(response.headers()[header::PRAGMA], "no-cache");
}

// ---------------------------------------------------------------- introspection / revocation

/// Introspects `token` as the resource server (entitled to every client's tokens).
fn introspect(h: &Harness, token: &str) -> serde_json::Value {
    let mut request = post_form(&format!("{ISSUER}/introspect"), &[("token", token)]);
    request.headers_mut().insert(
        header::AUTHORIZATION,
        basic("resource-server", SECRET).parse().unwrap(),
    );
    json(&h.server.introspect(&request, START).unwrap().to_response())
}

#[test]
fn introspection_reports_active_tokens_with_smart_fields_and_nothing_else_for_the_rest() {
    let h = harness();
    let code = code_for(&h, "public-app", START);
    let ok = exchange(&h, "public-app", &code, START).unwrap();
    let body = introspect(&h, &ok.access_token);
    assert_eq!(body["active"], true);
    assert_eq!(body["scope"], SCOPE);
    assert_eq!(body["client_id"], "public-app");
    assert_eq!(body["exp"], (START + Duration::hours(1)).unix_timestamp());
    assert_eq!(body["patient"], "355");
    assert_eq!(body["iss"], ISSUER);
    assert_eq!(body["sub"], "user-355");
    assert_eq!(body["fhirUser"], format!("{FHIR_BASE}/Patient/355"));
    // RFC 7662 §2.2: the access token's type as RFC 6749 §7.1 names it.
    assert_eq!(body["token_type"], "Bearer");
    // Every launch-context parameter of the token response comes back (SMART 2.2).
    assert_eq!(body["need_patient_banner"], false);
    assert_eq!(
        body["smart_style_url"],
        "https://ehr.example.org/smart-style.json"
    );
    let body = introspect(&h, ok.refresh_token.as_deref().unwrap());
    assert_eq!(body["active"], true);
    // A refresh token has no RFC 6749 §7.1 type: `refresh_token` is only a hint value.
    assert!(body.get("token_type").is_none(), "{body}");
    assert_eq!(body["need_patient_banner"], false);
    // The server's own tokens get no clock-skew allowance: expired is inactive at once.
    let mut request = post_form(
        &format!("{ISSUER}/introspect"),
        &[("token", ok.access_token.as_str())],
    );
    request.headers_mut().insert(
        header::AUTHORIZATION,
        basic("resource-server", SECRET).parse().unwrap(),
    );
    let late = START + Duration::hours(1) + Duration::seconds(1);
    assert!(!h.server.introspect(&request, late).unwrap().active);

    for junk in ["nope", "a.b.c", &"x".repeat(5000)] {
        assert_eq!(introspect(&h, junk), serde_json::json!({"active": false}));
    }
    // Unauthenticated callers are refused; a bearer token is accepted as caller credential
    // (here the app's own, for its own token: `introspection.rs` has who may see what).
    let request = post_form(
        &format!("{ISSUER}/introspect"),
        &[("token", ok.access_token.as_str())],
    );
    assert_eq!(
        h.server
            .introspect(&request, START)
            .unwrap_err()
            .to_response()
            .status(),
        401
    );
    let mut request = post_form(
        &format!("{ISSUER}/introspect"),
        &[("token", ok.access_token.as_str())],
    );
    request.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {}", ok.access_token).parse().unwrap(),
    );
    assert!(h.server.introspect(&request, START).unwrap().active);
}

#[test]
fn revocation_of_refresh_and_access_tokens() {
    let h = harness();
    let code = code_for(&h, "public-app", START);
    let ok = exchange(&h, "public-app", &code, START).unwrap();
    let revoke = |token: &str, client: &str| {
        h.server.revoke(
            &post_form(
                &format!("{ISSUER}/revoke"),
                &[("token", token), ("client_id", client)],
            ),
            START,
        )
    };
    // Another client's live tokens are refused (RFC 7009 §2.1) and left alone.
    for token in [
        ok.refresh_token.as_deref().unwrap(),
        ok.access_token.as_str(),
    ] {
        let err = revoke(token, "other-app").unwrap_err();
        assert_eq!(err.reason, TokenFailure::RevokeOtherClient);
        let response = err.to_response();
        assert_eq!(response.status(), 400);
        assert_eq!(json(&response)["error"], "invalid_grant");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }
    assert!(
        h.server
            .validator()
            .validate(&ok.access_token, START)
            .is_ok()
    );
    // Revoking the refresh token ends the family, access tokens included.
    revoke(ok.refresh_token.as_deref().unwrap(), "public-app").unwrap();
    assert_eq!(
        h.server
            .validator()
            .validate(&ok.access_token, START)
            .unwrap_err(),
        TokenRejection::Revoked
    );
    assert_eq!(
        introspect(&h, &ok.access_token),
        serde_json::json!({"active": false})
    );
    assert_eq!(
        failure(refresh(
            &h,
            "public-app",
            ok.refresh_token.as_deref().unwrap(),
            None,
            START
        ))
        .reason,
        TokenFailure::RefreshRevoked
    );
    // An access token alone.
    let code = code_for(&h, "public-app", START);
    let ok = exchange(&h, "public-app", &code, START).unwrap();
    revoke(&ok.access_token, "public-app").unwrap();
    assert_eq!(
        h.server
            .validator()
            .validate(&ok.access_token, START)
            .unwrap_err(),
        TokenRejection::Revoked
    );
    // Unknown tokens: still 200.
    assert_eq!(
        revoke("unknown", "public-app")
            .unwrap()
            .to_response()
            .status(),
        200
    );
    // Unauthenticated (an unknown client_id, no Authorization header): 400 invalid_client.
    let response = revoke("unknown", "nobody").unwrap_err().to_response();
    assert_eq!(response.status(), 400);
    assert_eq!(json(&response)["error"], "invalid_client");
}

#[test]
fn online_access_is_never_granted_and_brings_no_refresh_token() {
    let h = harness();
    h.clients.register(Client::public(
        ClientId::new("online-app").unwrap(),
        vec![REDIRECT.into()],
        scopes("launch/patient openid online_access patient/*.rs"),
    ));
    h.grants.insert(grant(
        "g-online",
        "online-app",
        "355",
        START + Duration::days(365),
    ));
    let scope = "launch/patient openid online_access patient/Observation.rs";
    let request = h
        .server
        .authorize_request(
            &get_authorize(&authorize_params("online-app", &[("scope", scope)])),
            START,
        )
        .unwrap();
    let mut approval = approval("online-app", START);
    approval.grant_id = GrantId::new("g-online").unwrap();
    approval.approved_scope = scopes(scope);
    let redirect = h.server.approve(&request, approval, START).unwrap();
    let code = redirect_param(&redirect.location, "code").unwrap();
    let response = exchange(&h, "online-app", &code, START).unwrap();
    assert!(response.refresh_token.is_none());
    assert!(!response.scope.split(' ').any(|s| s == "online_access"));
    assert!(
        response
            .scope
            .split(' ')
            .any(|s| s == "patient/Observation.rs")
    );
}

#[test]
fn a_shared_secret_client_gets_no_backend_token_even_if_registered_for_it() {
    // SMART Backend Services: client_credentials only with asymmetric authentication.
    let h = harness();
    let mut client = Client::confidential(
        ClientId::new("secret-backend").unwrap(),
        fhirguard::token::SecretHash::new(&fhirguard::token::ClientSecret::new(SECRET)).unwrap(),
        Vec::new(),
        scopes("system/Observation.rs"),
    );
    client.authorization_code = false;
    client.client_credentials = true;
    h.clients.register(client);
    let mut request = post_form(
        &token_url(),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/Observation.rs"),
        ],
    );
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("secret-backend:{SECRET}"))
    );
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, basic.parse().unwrap());
    let err = failure(h.server.token(&request, START));
    assert_eq!(err.reason, TokenFailure::GrantTypeNotAllowed);
    assert_eq!(json(&err.to_response())["error"], "unauthorized_client");
}
