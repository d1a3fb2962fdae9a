//! Interop: the `oauth2` and `openidconnect` crates, as an app would use them, complete the
//! standalone launch with PKCE against the server, and verify the id_token against the
//! published JWKS. Their HTTP requests go straight into the server's handlers (no sockets).

use std::convert::Infallible;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, Request, Response};
use time::OffsetDateTime;

use super::harness::*;
use super::support::*;

/// The server as an HTTP client sees it: discovery, JWKS and the token endpoint.
fn route(h: &Harness, request: Request<Vec<u8>>, now: OffsetDateTime) -> Response<Vec<u8>> {
    let url = request.uri().to_string();
    let config = h.server.config();
    match (request.method().clone(), url.as_str()) {
        (Method::GET, u) if u == format!("{ISSUER}/.well-known/openid-configuration") => h
            .server
            .openid_configuration()
            .expect("oidc on")
            .to_response(),
        (Method::GET, u) if u == format!("{FHIR_BASE}/.well-known/smart-configuration") => {
            h.server.smart_configuration().to_response()
        }
        (Method::GET, u) if u == config.jwks_uri => h.server.jwks_response(now),
        (Method::POST, u) if u == config.token_endpoint => {
            fhirguard::token::token_response(&h.server.token(&request, now))
        }
        _ => {
            let mut response = Response::new(Vec::new());
            *response.status_mut() = http::StatusCode::NOT_FOUND;
            response
        }
    }
}

/// Plays the browser: sends the authorization URL to the server, approves as the patient and
/// returns the redirect's `code` and `state`.
fn browser(h: &Harness, url: &str, now: OffsetDateTime) -> (String, String) {
    let request = Request::get(url).body(Vec::new()).unwrap();
    let validated = h
        .server
        .authorize_request(&request, time::OffsetDateTime::now_utc())
        .expect("authorize request valid");
    let redirect = h
        .server
        .approve(&validated, approval("public-app", now), now)
        .expect("approved");
    (
        redirect_param(&redirect.location, "code").unwrap(),
        redirect_param(&redirect.location, "state").unwrap(),
    )
}

#[test]
fn oauth2_crate_completes_the_standalone_launch_with_pkce() {
    use oauth2::basic::BasicClient;
    use oauth2::{
        AuthUrl, AuthorizationCode, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope,
        TokenResponse, TokenUrl,
    };
    let h = harness();
    let now = OffsetDateTime::now_utc();
    let http_client = |request: oauth2::HttpRequest| -> Result<oauth2::HttpResponse, Infallible> {
        Ok(route(&h, request, now))
    };
    let client = BasicClient::new(ClientId::new("public-app".into()))
        .set_auth_uri(AuthUrl::new(h.server.config().authorization_endpoint.clone()).unwrap())
        .set_token_uri(TokenUrl::new(h.server.config().token_endpoint.clone()).unwrap())
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .add_extra_param("aud", FHIR_BASE);
    for scope in SCOPE.split(' ') {
        request = request.add_scope(Scope::new(scope.into()));
    }
    let (url, csrf) = request.url();
    let (code, state) = browser(&h, url.as_str(), now);
    assert_eq!(&state, csrf.secret());
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request(&http_client)
        .expect("token exchange");
    assert!(token.expires_in().is_some_and(|d| d.as_secs() == 3600));
    let refresh = token
        .refresh_token()
        .expect("offline_access granted")
        .clone();
    let valid = h
        .server
        .validator()
        .validate(token.access_token().secret(), now)
        .unwrap();
    assert_eq!(valid.claims.patient.as_ref().unwrap().as_str(), "355");

    // Refresh through the crate too, then replay the rotated-out token.
    let second = client
        .exchange_refresh_token(&refresh)
        .request(&http_client)
        .expect("refresh");
    assert!(second.refresh_token().is_some());
    let replay = client
        .exchange_refresh_token(&refresh)
        .request(&http_client);
    assert!(replay.is_err(), "rotated-out refresh token must fail");
}

#[test]
fn openidconnect_crate_discovers_exchanges_and_verifies_the_id_token() {
    use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
    use openidconnect::{
        AuthorizationCode, ClientId, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
        PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
    };
    let h = harness();
    let now = OffsetDateTime::now_utc();
    let http_client =
        |request: openidconnect::HttpRequest| -> Result<openidconnect::HttpResponse, Infallible> {
            Ok(route(&h, request, now))
        };
    let metadata =
        CoreProviderMetadata::discover(&IssuerUrl::new(ISSUER.into()).unwrap(), &http_client)
            .expect("discovery");
    let client =
        CoreClient::from_provider_metadata(metadata, ClientId::new("public-app".into()), None)
            .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .add_extra_param("aud", FHIR_BASE);
    for scope in [
        "launch/patient",
        "fhirUser",
        "offline_access",
        "patient/*.rs",
    ] {
        request = request.add_scope(Scope::new(scope.into()));
    }
    let (url, csrf, nonce) = request.url();
    let (code, state) = browser(&h, url.as_str(), now);
    assert_eq!(&state, csrf.secret());
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint known")
        .set_pkce_verifier(verifier)
        .request(&http_client)
        .expect("token exchange");
    assert!(
        token
            .scopes()
            .is_some_and(|s| s.iter().any(|s| s.as_str() == "openid"))
    );
    let id_token = token.id_token().expect("openid granted");
    // Signature (RS256, against the JWKS fetched at discovery), iss, aud, exp and nonce.
    let claims = id_token
        .claims(&client.id_token_verifier(), &nonce)
        .expect("id_token verifies");
    assert_eq!(claims.subject().as_str(), "user-355");
    assert_eq!(claims.issuer().as_str(), ISSUER);
    // fhirUser is a SMART claim the core types do not model: read it from the verified token.
    let payload = id_token.to_string();
    let body = payload.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
    assert_eq!(claims["fhirUser"], format!("{FHIR_BASE}/Patient/355"));
    assert_eq!(claims["aud"], "public-app");
    assert!(claims["iat"].is_number() && claims["exp"].is_number());
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(payload.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256");
}
