//! Client authentication at the token, introspection and revocation endpoints: the registered
//! `token_endpoint_auth_method` is the only one accepted, and a request uses exactly one
//! (RFC 6749 §2.3).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fhirguard::ClientId;
use fhirguard::token::{
    Client, ClientAuth, ClientAuthFailure, ClientAuthMethod, ClientRegistry, ClientSecret,
    OAuthErrorCode, SecretHash, SecretMethod, TokenError, TokenFailure, TokenOutcome,
};
use http::{Request, header};

use super::harness::*;
use super::support::*;

const BEARER_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// Registers `post-app`, a shared-secret client registered for `client_secret_post`, with
/// `secret-app`'s grant.
fn with_post_client(h: &Harness) {
    let mut client = Client::confidential(
        ClientId::new("post-app").unwrap(),
        SecretHash::new(&ClientSecret::new(SECRET)).unwrap(),
        vec![REDIRECT.into()],
        scopes(SCOPE),
    );
    client.auth = ClientAuth::Secret {
        hash: SecretHash::new(&ClientSecret::new(SECRET)).unwrap(),
        method: SecretMethod::Post,
    };
    assert_eq!(client.auth.method(), ClientAuthMethod::SecretPost);
    h.clients.register(client);
    h.grants.insert(grant(
        "g-post",
        "post-app",
        "355",
        START + time::Duration::days(365),
    ));
}

/// The harness with `client_secret_post` enabled.
fn post_harness() -> Harness {
    harness_with(|c| c.secret_post_clients = true)
}

fn code_for_post_app(h: &Harness) -> String {
    let request = h
        .server
        .authorize_request(&get_authorize(&authorize_params("post-app", &[])), START)
        .unwrap();
    let mut a = approval("post-app", START);
    a.grant_id = fhirguard::GrantId::new("g-post").unwrap();
    let redirect = h.server.approve(&request, a, START).unwrap();
    redirect_param(&redirect.location, "code").unwrap()
}

/// A code exchange with `form` added to the standard parameters and an optional
/// `Authorization` header.
/// The code exchange of the PKCE flow, with `form` added to its parameters.
fn exchange_request(code: &str, form: &[(&str, &str)]) -> Request<Vec<u8>> {
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    pairs.extend_from_slice(form);
    post_form(&token_url(), &pairs)
}

fn exchange_with(
    h: &Harness,
    code: &str,
    form: &[(&str, &str)],
    authorization: Option<&str>,
) -> TokenOutcome {
    let mut request = exchange_request(code, form);
    if let Some(value) = authorization {
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, value.parse().unwrap());
    }
    h.server.token(&request, START)
}

fn refused(outcome: TokenOutcome) -> TokenError {
    outcome.expect_err("client authentication must fail")
}

fn wrong_method(outcome: TokenOutcome) {
    let err = refused(outcome);
    assert_eq!(
        err.reason,
        TokenFailure::ClientAuth(ClientAuthFailure::WrongMethod)
    );
    assert_eq!(err.oauth.error, OAuthErrorCode::InvalidClient);
    assert_eq!(json(&err.to_response())["error"], "invalid_client");
}

#[test]
fn a_basic_client_may_not_send_its_secret_in_the_form() {
    let h = harness();
    assert_eq!(
        h.clients
            .client(&ClientId::new("secret-app").unwrap())
            .unwrap()
            .auth
            .method(),
        ClientAuthMethod::SecretBasic
    );
    let code = code_for(&h, "secret-app", START);
    // The right secret, the wrong way: refused, and the code is not spent.
    wrong_method(exchange_with(
        &h,
        &code,
        &[("client_id", "secret-app"), ("client_secret", SECRET)],
        None,
    ));
    assert!(exchange_with(&h, &code, &[], Some(&basic("secret-app", SECRET))).is_ok());
}

#[test]
fn client_secret_post_is_refused_and_unadvertised_until_enabled() {
    let h = harness();
    with_post_client(&h);
    let code = code_for_post_app(&h);
    // The right secret, the registered way: still refused, before the secret is looked at.
    for secret in [SECRET, "wrong"] {
        let err = refused(exchange_with(
            &h,
            &code,
            &[("client_id", "post-app"), ("client_secret", secret)],
            None,
        ));
        assert_eq!(
            err.reason,
            TokenFailure::ClientAuth(ClientAuthFailure::SecretPostDisabled)
        );
        let response = err.to_response();
        assert_eq!(response.status(), 400);
        assert_eq!(json(&response)["error"], "invalid_client");
    }
    let methods = |h: &Harness| {
        let doc = serde_json::to_value(h.server.smart_configuration()).unwrap();
        doc["token_endpoint_auth_methods_supported"].clone()
    };
    let advertised = methods(&h);
    assert!(
        advertised
            .as_array()
            .unwrap()
            .contains(&"client_secret_basic".into())
    );
    assert!(
        !advertised
            .as_array()
            .unwrap()
            .contains(&"client_secret_post".into())
    );
    // Enabled, it is advertised and works (the next test).
    let enabled = post_harness();
    assert!(
        methods(&enabled)
            .as_array()
            .unwrap()
            .contains(&"client_secret_post".into())
    );
}

#[test]
fn a_post_client_may_not_send_its_secret_by_basic() {
    let h = post_harness();
    with_post_client(&h);
    let code = code_for_post_app(&h);
    wrong_method(exchange_with(
        &h,
        &code,
        &[],
        Some(&basic("post-app", SECRET)),
    ));
    let ok = exchange_with(
        &h,
        &code,
        &[("client_id", "post-app"), ("client_secret", SECRET)],
        None,
    )
    .unwrap();
    assert_eq!(ok.client_id.unwrap().as_str(), "post-app");
    // A wrong secret the right way is still a bad secret.
    let code = code_for_post_app(&h);
    let err = refused(exchange_with(
        &h,
        &code,
        &[("client_id", "post-app"), ("client_secret", "wrong")],
        None,
    ));
    assert_eq!(
        err.reason,
        TokenFailure::ClientAuth(ClientAuthFailure::BadSecret)
    );
}

#[test]
fn public_and_asymmetric_clients_only_authenticate_their_own_way() {
    let h = harness();
    // A public client sending a secret, by Basic or in the form.
    let code = code_for(&h, "public-app", START);
    wrong_method(exchange_with(
        &h,
        &code,
        &[],
        Some(&basic("public-app", "x")),
    ));
    wrong_method(exchange_with(
        &h,
        &code,
        &[("client_id", "public-app"), ("client_secret", "x")],
        None,
    ));
    // …or an assertion.
    let jwt = assertion(&h.rs384, "public-app", START, "pub-1", |_| {});
    wrong_method(exchange_with(
        &h,
        &code,
        &[
            ("client_assertion_type", BEARER_TYPE),
            ("client_assertion", &jwt),
        ],
        None,
    ));
    assert!(exchange_with(&h, &code, &[("client_id", "public-app")], None).is_ok());

    // A private_key_jwt client sending a secret, or nothing.
    let code = code_for(&h, "jwt-app", START);
    wrong_method(exchange_with(
        &h,
        &code,
        &[],
        Some(&basic("jwt-app", SECRET)),
    ));
    let err = refused(exchange_with(&h, &code, &[("client_id", "jwt-app")], None));
    assert_eq!(
        err.reason,
        TokenFailure::ClientAuth(ClientAuthFailure::MissingCredentials)
    );
    // A secret client sending an assertion (signed with a key it never registered).
    let code = code_for(&h, "secret-app", START);
    let jwt = assertion(&h.rs384, "secret-app", START, "sec-1", |_| {});
    wrong_method(exchange_with(
        &h,
        &code,
        &[
            ("client_assertion_type", BEARER_TYPE),
            ("client_assertion", &jwt),
        ],
        None,
    ));
    // A backend service sending a secret.
    let request = {
        let mut r = post_form(
            &token_url(),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "system/Observation.rs"),
            ],
        );
        r.headers_mut().insert(
            header::AUTHORIZATION,
            basic("backend", SECRET).parse().unwrap(),
        );
        r
    };
    wrong_method(h.server.token(&request, START));
}

#[test]
fn two_methods_in_one_request_are_invalid_request() {
    let h = harness();
    let code = code_for(&h, "jwt-app", START);
    let jwt = assertion(&h.rs384, "jwt-app", START, "two-1", |_| {});
    let assertion_pairs = [
        ("client_assertion_type", BEARER_TYPE),
        ("client_assertion", jwt.as_str()),
    ];
    let mut secret_and_assertion = vec![("client_secret", SECRET)];
    secret_and_assertion.extend_from_slice(&assertion_pairs);
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<String>);
    let cases: [Case<'_>; 3] = [
        // Secret in the form and an assertion.
        (&secret_and_assertion, None),
        // Basic and an assertion.
        (&assertion_pairs, Some(basic("jwt-app", SECRET))),
        // Basic and a secret in the form (the older test covers the token endpoint too).
        (
            &[("client_id", "secret-app"), ("client_secret", SECRET)],
            Some(basic("secret-app", SECRET)),
        ),
    ];
    for (form, authorization) in cases {
        let err = refused(exchange_with(&h, &code, form, authorization.as_deref()));
        assert_eq!(
            err.reason,
            TokenFailure::ClientAuth(ClientAuthFailure::MultipleMethods)
        );
        assert_eq!(err.oauth.error, OAuthErrorCode::InvalidRequest);
        assert_eq!(err.to_response().status(), 400);
    }
    // Two Authorization headers are two credentials too.
    let mut request = exchange_request(&code, &[]);
    for value in [basic("secret-app", SECRET), basic("secret-app", "other")] {
        request
            .headers_mut()
            .append(header::AUTHORIZATION, value.parse().unwrap());
    }
    let err = refused(h.server.token(&request, START));
    assert_eq!(
        err.reason,
        TokenFailure::ClientAuth(ClientAuthFailure::MultipleMethods)
    );
    // None of these spent the code.
    assert!(exchange_with(&h, &code, &assertion_pairs, None).is_ok());
}

fn introspect(form: &[(&str, &str)], authorization: Option<&str>) -> Request<Vec<u8>> {
    let mut request = post_form(&format!("{ISSUER}/introspect"), form);
    if let Some(value) = authorization {
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, value.parse().unwrap());
    }
    request
}

#[test]
fn introspection_and_revocation_enforce_the_registered_method_too() {
    let h = harness();
    let code = code_for(&h, "public-app", START);
    let token = exchange(&h, "public-app", &code, START).unwrap();
    let access = token.access_token.as_str();

    // The resource server is registered for Basic: its secret in the form is refused.
    let err = h
        .server
        .introspect(
            &introspect(
                &[
                    ("token", access),
                    ("client_id", "resource-server"),
                    ("client_secret", SECRET),
                ],
                None,
            ),
            START,
        )
        .unwrap_err();
    assert_eq!(
        err.reason,
        TokenFailure::ClientAuth(ClientAuthFailure::WrongMethod)
    );
    assert!(
        h.server
            .introspect(
                &introspect(
                    &[("token", access)],
                    Some(&basic("resource-server", SECRET))
                ),
                START,
            )
            .unwrap()
            .active
    );
    // A bearer token and client credentials at once: two methods.
    let err = h
        .server
        .introspect(
            &introspect(
                &[
                    ("token", access),
                    ("client_id", "resource-server"),
                    ("client_secret", SECRET),
                ],
                Some(&format!("Bearer {access}")),
            ),
            START,
        )
        .unwrap_err();
    assert_eq!(
        err.reason,
        TokenFailure::ClientAuth(ClientAuthFailure::MultipleMethods)
    );

    // Revocation: a public client's made-up secret is refused, and nothing is revoked.
    let mut request = post_form(
        &format!("{ISSUER}/revoke"),
        &[
            ("token", access),
            ("client_id", "public-app"),
            ("client_secret", "x"),
        ],
    );
    let err = h.server.revoke(&request, START).unwrap_err();
    assert_eq!(
        err.reason,
        TokenFailure::ClientAuth(ClientAuthFailure::WrongMethod)
    );
    assert!(h.server.validator().validate(access, START).is_ok());
    request = post_form(
        &format!("{ISSUER}/revoke"),
        &[("token", access), ("client_id", "public-app")],
    );
    assert!(h.server.revoke(&request, START).is_ok());
    assert!(h.server.validator().validate(access, START).is_err());
}

#[test]
fn an_authorization_header_of_another_scheme_is_not_ignored() {
    let h = harness();
    // A public client's `client_id` in the form would pass on its own; a header it cannot
    // check must not be dropped silently beside it.
    let code = code_for(&h, "public-app", START);
    for authorization in [
        "Bearer eyJhbGciOiJub25lIn0.e30.",
        "Digest username=\"public-app\"",
        "Basicfoo",
        "Negotiate",
    ] {
        let err = refused(exchange_with(
            &h,
            &code,
            &[("client_id", "public-app")],
            Some(authorization),
        ));
        assert_eq!(
            err.reason,
            TokenFailure::ClientAuth(ClientAuthFailure::UnsupportedScheme),
            "{authorization}"
        );
        let response = err.to_response();
        assert_eq!(response.status(), 401, "{authorization}");
        assert_eq!(json(&response)["error"], "invalid_client");
        assert_eq!(challenge(&response), Some("Basic realm=\"token\""));
    }
    // A header value that is not text at all is refused the same way.
    let mut request = exchange_request(&code, &[("client_id", "public-app")]);
    request.headers_mut().insert(
        header::AUTHORIZATION,
        http::HeaderValue::from_bytes(b"Basic \xff\xfe").unwrap(),
    );
    assert_eq!(
        refused(h.server.token(&request, START)).reason,
        TokenFailure::ClientAuth(ClientAuthFailure::UnsupportedScheme)
    );
    // Revocation authenticates the same way (introspection's Bearer is its own credential).
    let mut revoke = post_form(
        &format!("{ISSUER}/revoke"),
        &[("token", "t"), ("client_id", "public-app")],
    );
    revoke
        .headers_mut()
        .insert(header::AUTHORIZATION, "Digest x".parse().unwrap());
    assert_eq!(
        h.server
            .revoke(&revoke, START)
            .unwrap_err()
            .to_response()
            .status(),
        401
    );
    // None of these spent the code.
    assert!(exchange_with(&h, &code, &[("client_id", "public-app")], None).is_ok());
}

// ---------------------------------------------------------------- challenges (RFC 6749 §5.2)

fn challenge(response: &http::Response<Vec<u8>>) -> Option<&str> {
    response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap())
}

#[test]
fn failed_basic_authentication_is_401_with_a_basic_challenge_at_every_endpoint() {
    let h = harness();
    let code = code_for(&h, "secret-app", START);
    let malformed = "Basic not-base64!".to_owned();
    for authorization in [
        basic("secret-app", "wrong"),
        basic("nobody", SECRET),
        // A public client trying Basic: the wrong method, attempted in the header.
        basic("public-app", "x"),
        malformed,
    ] {
        let err = refused(exchange_with(&h, &code, &[], Some(&authorization)));
        let response = err.to_response();
        assert_eq!(response.status(), 401, "{authorization}");
        assert_eq!(challenge(&response), Some("Basic realm=\"token\""));
        assert_eq!(json(&response)["error"], "invalid_client");
    }
    let bad = basic("resource-server", "wrong");
    let response = h
        .server
        .introspect(&introspect(&[("token", "t")], Some(&bad)), START)
        .unwrap_err()
        .to_response();
    assert_eq!(response.status(), 401);
    assert_eq!(challenge(&response), Some("Basic realm=\"token\""));
    let mut revoke = post_form(&format!("{ISSUER}/revoke"), &[("token", "t")]);
    revoke
        .headers_mut()
        .insert(header::AUTHORIZATION, bad.parse().unwrap());
    let response = h.server.revoke(&revoke, START).unwrap_err().to_response();
    assert_eq!(response.status(), 401);
    assert_eq!(challenge(&response), Some("Basic realm=\"token\""));
}

#[test]
fn failed_authentication_without_the_header_is_400_invalid_client_with_no_challenge() {
    let h = post_harness();
    with_post_client(&h);
    let code = code_for_post_app(&h);
    let jwt = assertion(&h.rs384, "jwt-app", START, "hdr-1", |c| {
        c["aud"] = "https://elsewhere.example/token".into()
    });
    let forms: [&[(&str, &str)]; 5] = [
        // A wrong secret in the form.
        &[("client_id", "post-app"), ("client_secret", "wrong")],
        // A secret in the form for a Basic client.
        &[("client_id", "secret-app"), ("client_secret", SECRET)],
        // An unknown client, a confidential client without credentials.
        &[("client_id", "nobody")],
        &[("client_id", "jwt-app")],
        // A refused assertion.
        &[
            ("client_assertion_type", BEARER_TYPE),
            ("client_assertion", jwt.as_str()),
        ],
    ];
    for form in forms {
        let response = refused(exchange_with(&h, &code, form, None)).to_response();
        assert_eq!(response.status(), 400, "{form:?}");
        assert_eq!(json(&response)["error"], "invalid_client");
        assert_eq!(challenge(&response), None, "{form:?}");
    }
    let response = h
        .server
        .introspect(
            &introspect(&[("token", "t"), ("client_id", "nobody")], None),
            START,
        )
        .unwrap_err()
        .to_response();
    // Introspection is the exception: invalid caller credentials are a 401 however they were
    // sent (RFC 7662 §2.3), with the Basic challenge the endpoint accepts.
    assert_eq!(response.status(), 401);
    assert_eq!(json(&response)["error"], "invalid_client");
    assert_eq!(challenge(&response), Some("Basic realm=\"token\""));
}

#[test]
fn a_refused_bearer_token_at_introspection_is_401_invalid_token_with_a_bearer_challenge() {
    let h = harness();
    let code = code_for(&h, "public-app", START);
    let token = exchange(&h, "public-app", &code, START).unwrap();
    for bearer in [
        "Bearer not-a-token".to_owned(),
        format!("Bearer {}x", token.access_token),
    ] {
        let err = h
            .server
            .introspect(
                &introspect(&[("token", token.access_token.as_str())], Some(&bearer)),
                START,
            )
            .unwrap_err();
        assert!(matches!(
            err.reason,
            TokenFailure::ClientAuth(ClientAuthFailure::BearerRejected(_))
        ));
        let response = err.to_response();
        assert_eq!(response.status(), 401);
        assert_eq!(
            challenge(&response),
            Some("Bearer realm=\"token\", error=\"invalid_token\"")
        );
        assert_eq!(json(&response)["error"], "invalid_token");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }
}
