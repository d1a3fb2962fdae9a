//! `private_key_jwt` clients registered by JWK Set URL (SMART confidential-asymmetric): the
//! server dereferences the URL through the host's fetcher, keeps the set no longer than its
//! `Cache-Control` says, and fetches again for a rotated key — but not for every made-up one.

use std::sync::{Arc, Mutex};

use fhirguard::ClientId;
use fhirguard::token::{
    AssertionError, Client, ClientAuthFailure, ClientJwksError, FetchedJwks, JwksFetchError,
    JwksFetcher, SigningKey, TokenFailure,
};
use time::Duration;

use super::harness::*;
use super::support::*;

const URL: &str = "https://backend.example.org/.well-known/jwks.json";
const BEARER_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client's JWKS endpoint as the host's HTTP client would see it.
#[derive(Default)]
struct Served {
    document: Mutex<Option<(String, Option<String>)>>,
    fetched: Mutex<Vec<String>>,
}

impl Served {
    fn serve(&self, keys: &[&SigningKey], cache_control: Option<&str>) {
        let jwks = serde_json::json!({
            "keys": keys.iter().map(|k| k.verifying_key().to_jwk()).collect::<Vec<_>>()
        });
        *self.document.lock().unwrap() = Some((jwks.to_string(), cache_control.map(str::to_owned)));
    }
    fn fetches(&self) -> usize {
        self.fetched.lock().unwrap().len()
    }
}

impl JwksFetcher for Served {
    fn fetch(&self, url: &str) -> Result<FetchedJwks, JwksFetchError> {
        self.fetched.lock().unwrap().push(url.to_owned());
        match &*self.document.lock().unwrap() {
            Some((body, cache_control)) => Ok(FetchedJwks {
                body: body.clone().into_bytes(),
                cache_control: cache_control.clone(),
            }),
            None => Err(JwksFetchError::Unavailable),
        }
    }
}

fn with_url_client() -> (Harness, Arc<Served>) {
    let mut h = harness();
    let served = Arc::new(Served::default());
    h.server = h
        .server
        .with_jwks_fetcher(Arc::clone(&served) as Arc<dyn JwksFetcher>);
    h.clients.register(Client::backend(
        ClientId::new("url-backend").unwrap(),
        // Registered keys are not used once the set is resolved by URL.
        vec![h.rs384.verifying_key().clone()],
        Some(URL.into()),
        scopes("system/Observation.rs"),
    ));
    (h, served)
}

/// A backend token request of `url-backend`, its assertion signed with `key`.
fn backend_request(
    key: &SigningKey,
    jti: &str,
    at: time::OffsetDateTime,
) -> http::Request<Vec<u8>> {
    let jwt = assertion(key, "url-backend", at, jti, |_| {});
    post_form(
        &token_url(),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/Observation.rs"),
            ("client_assertion_type", BEARER_TYPE),
            ("client_assertion", &jwt),
        ],
    )
}

fn token_with(
    h: &Harness,
    key: &SigningKey,
    jti: &str,
    at: time::OffsetDateTime,
) -> Result<(), TokenFailure> {
    h.server
        .token(&backend_request(key, jti, at), at)
        .map(|_| ())
        .map_err(|e| e.reason)
}

fn assertion_error(failure: TokenFailure) -> AssertionError {
    match failure {
        TokenFailure::ClientAuth(ClientAuthFailure::Assertion(e)) => e,
        other => panic!("expected an assertion failure, got {other:?}"),
    }
}

#[test]
fn the_set_is_fetched_once_and_kept_as_long_as_its_max_age() {
    let (h, served) = with_url_client();
    served.serve(&[&h.es384], Some("public, max-age=60"));
    token_with(&h, &h.es384, "u-1", START).unwrap();
    token_with(&h, &h.es384, "u-2", START + Duration::seconds(59)).unwrap();
    assert_eq!(served.fetches(), 1);
    assert_eq!(served.fetched.lock().unwrap()[0], URL);
    // Past its max-age it is fetched again.
    token_with(&h, &h.es384, "u-3", START + Duration::seconds(61)).unwrap();
    assert_eq!(served.fetches(), 2);
    // The directly registered key is not a key of the URL's set.
    assert_eq!(
        assertion_error(
            token_with(&h, &h.rs384, "u-4", START + Duration::seconds(62)).unwrap_err()
        ),
        AssertionError::UnknownKey
    );
}

#[test]
fn no_store_is_never_cached() {
    let (h, served) = with_url_client();
    served.serve(&[&h.es384], Some("no-store"));
    token_with(&h, &h.es384, "n-1", START).unwrap();
    token_with(&h, &h.es384, "n-2", START).unwrap();
    assert_eq!(served.fetches(), 2);
}

#[test]
fn a_rotated_key_is_fetched_but_made_up_kids_do_not_refetch_each_time() {
    let (h, served) = with_url_client();
    served.serve(&[&h.es384], Some("max-age=3600"));
    token_with(&h, &h.es384, "r-1", START).unwrap();
    // The client rotates to a new key; the cached set lacks it.
    served.serve(&[&h.es384, &h.rs384], Some("max-age=3600"));
    let later = START + fhirguard::token::JWKS_REFETCH_INTERVAL + Duration::seconds(1);
    token_with(&h, &h.rs384, "r-2", later).unwrap();
    assert_eq!(served.fetches(), 2);
    // An unknown kid right after a fetch does not fetch again.
    let stranger = SigningKey::generate_ec(fhirguard::token::Algorithm::ES384, "made-up").unwrap();
    for (i, at) in [later, later + Duration::seconds(5)]
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            assertion_error(token_with(&h, &stranger, &format!("s-{i}"), at).unwrap_err()),
            AssertionError::UnknownKey
        );
    }
    assert_eq!(served.fetches(), 2);
}

#[test]
fn an_unreachable_or_unusable_set_is_invalid_client() {
    let (h, served) = with_url_client();
    let err = token_with(&h, &h.es384, "x-1", START).unwrap_err();
    assert_eq!(
        assertion_error(err),
        AssertionError::KeySetUnavailable(ClientJwksError::Fetch(JwksFetchError::Unavailable))
    );
    *served.document.lock().unwrap() = Some((r#"{"keys":"nope"}"#.into(), None));
    let err = token_with(&h, &h.es384, "x-2", START).unwrap_err();
    assert_eq!(
        assertion_error(err),
        AssertionError::KeySetUnavailable(ClientJwksError::Invalid)
    );
    // On the wire, any of these is `invalid_client` (no detail leaks).
    let response = h
        .server
        .token(&backend_request(&h.es384, "x-3", START), START)
        .unwrap_err()
        .to_response();
    assert_eq!(response.status(), 400);
    assert_eq!(json(&response)["error"], "invalid_client");
}
