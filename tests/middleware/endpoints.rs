//! The authorization-server endpoints over loopback: discovery, JWKS, authorize with the host's
//! login, token, then the guarded FHIR API with that token, revocation, CORS and rate limits.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use fhirguard::abuse::{
    EndpointClass, KeyKind, Limit, MemoryRateLimitStore, RateLimitPolicy, RateLimiter,
};
use fhirguard::audit::{DenyReason, EventKind, Outcome, Route};
use fhirguard::middleware::CorsPolicy;
use fhirguard::token::pkce_s256;
use http::{Method, StatusCode, header};

use super::support::*;

fn authorize_query(redirect: &str) -> String {
    let challenge = pkce_s256(VERIFIER);
    form(&[
        ("response_type", "code"),
        ("client_id", APP),
        ("redirect_uri", redirect),
        ("scope", SCOPE),
        ("state", "st-123"),
        ("aud", FHIR_BASE),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ])
}

fn query_param(location: &str, name: &str) -> Option<String> {
    let query = location.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_jwks_are_public() {
    let s = TestServer::start(Options::default()).await;
    let evil = [("origin", "https://evil.example")];
    let smart = s
        .send(
            Method::GET,
            "/fhir/.well-known/smart-configuration",
            None,
            &evil,
        )
        .await;
    assert_eq!(smart.status, StatusCode::OK);
    assert_eq!(smart.body["token_endpoint"], format!("{ISSUER}/token"));
    assert_eq!(smart.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert_eq!(smart.headers["x-content-type-options"], "nosniff");
    let oidc = s.get("/auth/.well-known/openid-configuration", None).await;
    assert_eq!(oidc.status, StatusCode::OK);
    assert_eq!(oidc.body["issuer"], ISSUER);
    let jwks = s
        .send(Method::GET, "/auth/.well-known/jwks.json", None, &evil)
        .await;
    assert_eq!(jwks.status, StatusCode::OK);
    assert!(jwks.body["keys"].as_array().unwrap().len() >= 2);
    assert_eq!(jwks.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    // Preflight of a public document: open to any origin, without a CORS policy.
    let pre = s
        .send(
            Method::OPTIONS,
            "/auth/.well-known/jwks.json",
            None,
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
        )
        .await;
    assert_eq!(pre.status, StatusCode::NO_CONTENT);
    // The token endpoint only takes POST.
    let get_token = s.get("/auth/token", None).await;
    assert_eq!(get_token.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get_token.body["error"], "invalid_request");
    assert_eq!(get_token.headers[http::header::ALLOW], "POST");
    // Every endpoint answers a method it does not take in OAuth's JSON, not FHIR's.
    for (method, path, allow) in [
        (Method::DELETE, "/auth/.well-known/jwks.json", "GET, HEAD"),
        (
            Method::PUT,
            "/auth/.well-known/openid-configuration",
            "GET, HEAD",
        ),
        (Method::PATCH, "/auth/authorize", "GET, POST"),
    ] {
        let reply = s.send(method.clone(), path, None, &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(reply.headers[http::header::ALLOW], allow, "{method} {path}");
        assert_eq!(reply.body["error"], "invalid_request", "{method} {path}");
        assert!(
            reply.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{method} {path}"
        );
        assert_eq!(reply.headers["x-content-type-options"], "nosniff");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_to_fhir_read_and_revocation() {
    let s = TestServer::start(Options::default()).await;

    // Not signed in: the host's login page, with the HTML security headers.
    let path = format!("/auth/authorize?{}", authorize_query(REDIRECT));
    let login = s.get(&path, None).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&login.raw).contains("Sign in"));
    assert!(
        login.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(login.headers[header::X_FRAME_OPTIONS], "DENY");

    // Signed in: approved, redirected with a code and the state.
    let approved = s
        .send(
            Method::GET,
            &path,
            None,
            &[("cookie", "session=patient-355")],
        )
        .await;
    assert_eq!(approved.status, StatusCode::FOUND);
    let location = approved.headers[header::LOCATION].to_str().unwrap();
    assert!(location.starts_with(REDIRECT));
    assert_eq!(query_param(location, "state").as_deref(), Some("st-123"));
    let code = query_param(location, "code").unwrap();

    let token = s
        .post_form(
            "/auth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("client_id", APP),
                ("code_verifier", VERIFIER),
            ],
            &[],
        )
        .await;
    assert_eq!(token.status, StatusCode::OK, "{:?}", token.body);
    assert_eq!(token.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(token.body["patient"], "355");
    let access = token.body["access_token"].as_str().unwrap().to_owned();

    // The token works on the guarded API.
    let read = s
        .get(&format!("/fhir/Observation/{VITAL_355}"), Some(&access))
        .await;
    assert_eq!(read.status, StatusCode::OK);

    // Revoked (RFC 7009) → the next FHIR call fails.
    let revoke = s
        .post_form(
            "/auth/revoke",
            &[("token", &access), ("client_id", APP)],
            &[],
        )
        .await;
    assert_eq!(revoke.status, StatusCode::OK);
    let after = s
        .get(&format!("/fhir/Observation/{VITAL_355}"), Some(&access))
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);

    // A second redemption of the code is refused.
    let replay = s
        .post_form(
            "/auth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("client_id", APP),
                ("code_verifier", VERIFIER),
            ],
            &[],
        )
        .await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay.body["error"], "invalid_grant");

    // Audit: authorize ×2, token, FHIR read, revoke, FHIR read (denied), token (reuse).
    let records = s.records();
    let summary: Vec<(EventKind, Option<Route>, Outcome)> = records
        .iter()
        .map(|r| {
            let r = r.record();
            (r.event, r.endpoint.as_ref().map(|e| e.route), r.outcome)
        })
        .collect();
    assert_eq!(summary.len(), 7, "{summary:?}");
    assert_eq!(
        summary[2],
        (
            EventKind::AuthorizationServer,
            Some(Route::Token),
            Outcome::Success
        )
    );
    assert_eq!(summary[3].0, EventKind::RestAccess);
    assert_eq!(summary[4].1, Some(Route::Revoke));
    assert_eq!(summary[5].2, Outcome::Denied(DenyReason::InvalidToken));
    assert_eq!(summary[6].2, Outcome::Denied(DenyReason::TokenReuse));
    assert!(records.iter().all(|r| r.record().source.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_redirect_renders_a_generic_page() {
    let s = TestServer::start(Options::default()).await;
    let path = format!(
        "/auth/authorize?{}",
        authorize_query("https://evil.example/steal")
    );
    let page = s
        .send(
            Method::GET,
            &path,
            None,
            &[("cookie", "session=patient-355")],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.headers.get(header::LOCATION).is_none());
    assert!(!String::from_utf8_lossy(&page.raw).contains("evil"));
    assert_eq!(s.records().len(), 1);
    assert_eq!(
        s.records()[0].record().outcome,
        Outcome::Denied(DenyReason::MalformedRequest)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_cors_and_rate_limit() {
    let policy = RateLimitPolicy::empty().with_limit(
        EndpointClass::Token,
        KeyKind::Client,
        Limit::per(2, StdDuration::from_secs(10)).unwrap(),
    );
    let s = TestServer::start(Options {
        cors: Some(CorsPolicy::with_origins(["https://app.example.org"])),
        endpoint_limiter: Some(Arc::new(RateLimiter::new(
            policy,
            MemoryRateLimitStore::default(),
        ))),
        ..Options::default()
    })
    .await;
    let preflight = |origin: &'static str| {
        [
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ]
    };
    let ok = s
        .send(
            Method::OPTIONS,
            "/auth/token",
            None,
            &preflight("https://app.example.org"),
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    assert_eq!(
        ok.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.org"
    );
    let refused = s
        .send(
            Method::OPTIONS,
            "/auth/token",
            None,
            &preflight("https://evil.example"),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused
            .headers
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );

    let bad_code = [
        ("grant_type", "authorization_code"),
        ("code", "nope"),
        ("redirect_uri", REDIRECT),
        ("client_id", APP),
        ("code_verifier", VERIFIER),
    ];
    let origin = [("origin", "https://app.example.org")];
    for _ in 0..2 {
        let r = s.post_form("/auth/token", &bad_code, &origin).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            r.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.org"
        );
    }
    let limited = s.post_form("/auth/token", &bad_code, &origin).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers.contains_key(header::RETRY_AFTER));
    assert_eq!(limited.body["error"], "invalid_request");
    s.clock.advance(time::Duration::seconds(6));
    let again = s.post_form("/auth/token", &bad_code, &origin).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    let events: Vec<EventKind> = s.records().iter().map(|r| r.record().event).collect();
    assert_eq!(
        events,
        vec![
            EventKind::RequestDenied,
            EventKind::RequestDenied,
            EventKind::RateLimited,
            EventKind::RequestDenied
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_authentication_failures_carry_the_challenge_of_the_scheme_used() {
    use base64::Engine as _;
    let s = TestServer::start(Options::default()).await;
    let code_request = [
        ("grant_type", "authorization_code"),
        ("code", "nope"),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    // HTTP Basic attempted (for a public client: not its method) → 401, Basic challenge.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{APP}:guess"))
    );
    let r = s
        .post_form("/auth/token", &code_request, &[("authorization", &basic)])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Basic realm=\"token\"");
    assert_eq!(r.body["error"], "invalid_client");
    let r = s
        .post_form(
            "/auth/revoke",
            &[("token", "t")],
            &[("authorization", &basic)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Basic realm=\"token\"");

    // No Authorization header → 400 invalid_client, and never a Bearer challenge.
    let mut unknown = code_request.to_vec();
    unknown.push(("client_id", "nobody"));
    let r = s.post_form("/auth/token", &unknown, &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"], "invalid_client");
    assert!(r.headers.get(header::WWW_AUTHENTICATE).is_none());
    let r = s
        .post_form(
            "/auth/introspect",
            &[("token", "t"), ("client_id", APP)],
            &[],
        )
        .await;
    // Introspection: 401 however the caller tried (RFC 7662 §2.3).
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Basic realm=\"token\"");

    // A bearer token authorizing introspection: refused → 401 invalid_token, Bearer challenge;
    // valid → the app's own token is answered.
    let r = s
        .post_form(
            "/auth/introspect",
            &[("token", "t")],
            &[("authorization", "Bearer not-a-token")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"token\", error=\"invalid_token\""
    );
    assert_eq!(r.body["error"], "invalid_token");
    let token = s.token();
    let bearer = format!("Bearer {token}");
    let r = s
        .post_form(
            "/auth/introspect",
            &[("token", &token)],
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["client_id"], APP);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspecting_another_apps_live_token_is_answered_inactive_and_audited_as_denied() {
    let s = TestServer::start(Options::default()).await;
    let mut theirs = s.claims();
    theirs.client_id = fhirguard::ClientId::new("other-app").unwrap();
    theirs.grant_id = None;
    theirs.patient = None;
    theirs.fhir_user = None;
    let theirs = s.sign(&theirs);
    let bearer = format!("Bearer {}", s.token());
    let probe = |token: String| {
        let s = &s;
        let bearer = bearer.clone();
        async move {
            s.post_form(
                "/auth/introspect",
                &[("token", &token)],
                &[("authorization", &bearer)],
            )
            .await
        }
    };
    // Another app's live token and a token that does not exist look the same on the wire.
    let other = probe(theirs).await;
    let unknown = probe("no-such-token".to_owned()).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(&other.raw[..], br#"{"active":false}"#);
    assert_eq!(unknown.raw, other.raw);
    // The trail tells them apart: the probe of a live token is a refusal.
    let outcomes: Vec<Outcome> = s.records().iter().map(|r| r.record().outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Denied(DenyReason::NotEntitled), Outcome::Success]
    );
}

/// A body over the endpoints' limit: the OAuth endpoints answer in OAuth's JSON, with their
/// CORS and security headers, and the refusal is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_form_is_an_oauth_error_with_the_endpoints_headers() {
    let s = TestServer::start(Options {
        cors: Some(CorsPolicy::with_origins(["https://app.example.org"])),
        ..Options::default()
    })
    .await;
    let big = format!(
        "grant_type=authorization_code&x={}",
        "a".repeat(fhirguard::token::MAX_FORM_LEN)
    );
    for path in ["/auth/token", "/auth/revoke", "/auth/introspect"] {
        let reply = s
            .send_body(
                Method::POST,
                path,
                None,
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("origin", "https://app.example.org"),
                ],
                bytes::Bytes::from(big.clone()),
            )
            .await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert_eq!(reply.body["error"], "invalid_request", "{path}");
        assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            reply.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.org"
        );
        assert_eq!(reply.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    let records = s.records();
    assert_eq!(records.len(), 3);
    assert!(
        records
            .iter()
            .all(|r| r.record().outcome == Outcome::Denied(DenyReason::TooLarge))
    );
}
