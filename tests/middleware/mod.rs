//! The guard layer around a small axum app over real loopback sockets.

mod endpoints;
mod limits;
mod support;
mod wire;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use fhirguard::GrantId;
use fhirguard::abuse::{
    EndpointClass, KeyKind, Limit, MemoryRateLimitStore, RateLimitPolicy, RateLimiter,
};
use fhirguard::audit::{DenyReason, EventKind, Outcome, PolicyDecision};
use fhirguard::middleware::CorsPolicy;
use http::{Method, StatusCode, header};
use serde_json::Value;
use time::Duration;

use support::*;

fn entry_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["resource"]["resourceType"].as_str().unwrap(),
                        e["resource"]["id"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn assert_generic_outcome(reply: &Reply) {
    assert_eq!(
        reply.body["resourceType"], "OperationOutcome",
        "{:?}",
        reply.body
    );
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "application/fhir+json; charset=utf-8"
    );
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    let text = String::from_utf8_lossy(&reply.raw);
    assert!(!text.contains("355") && !text.contains("85"), "{text}");
}

fn assert_security_headers(reply: &Reply) {
    assert_eq!(reply.headers["x-content-type-options"], "nosniff");
    assert!(
        reply
            .headers
            .contains_key(header::STRICT_TRANSPORT_SECURITY)
    );
    assert_eq!(reply.headers[header::REFERRER_POLICY], "no-referrer");
    assert!(reply.headers.get(header::SERVER).is_none());
    // `fg-` ‖ instance ‖ `-` ‖ 16 hex digits that are not a visible counter.
    let id = reply.headers["x-request-id"].to_str().unwrap();
    let parts: Vec<&str> = id.split('-').collect();
    assert_eq!(parts.len(), 3, "{id}");
    assert_eq!(parts[0], "fg");
    assert_eq!(parts[1].len(), 12, "{id}");
    assert_eq!(parts[2].len(), 16, "{id}");
    assert!(parts[2].bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_expired_revoked_tokens_get_401() {
    tokens_get_401(Options::default()).await;
}

/// The signature cache changes nothing a client can observe: expiry, token revocation and
/// grant revocation all take effect at the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_validator_still_sees_expiry_and_revocation() {
    tokens_get_401(Options {
        cached_validator: true,
        ..Options::default()
    })
    .await;
}

/// The guard takes the token validator's word on the grant only when the validator asked the
/// guard's own grant source; a guard configured with another source asks that one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guards_own_grant_source_is_asked_when_it_is_not_the_validators() {
    use fhirguard::token::MemoryGrantStatus;
    let path = format!("/fhir/Observation/{VITAL_355}");
    for cached_validator in [false, true] {
        // The guard's source knows nothing of the grant the validator's source holds active.
        let s = TestServer::start(Options {
            cached_validator,
            guard_grants: Some(Arc::new(MemoryGrantStatus::new())),
            ..Options::default()
        })
        .await;
        let refused = s.get(&path, Some(&s.token())).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert!(s.seen().is_empty());
    }
}

async fn tokens_get_401(options: Options) {
    let s = TestServer::start(options).await;
    let path = format!("/fhir/Observation/{VITAL_355}");

    let missing = s.get(&path, None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"fhir\""
    );
    assert_generic_outcome(&missing);
    assert_security_headers(&missing);
    // Without credentials, what else is wrong with the request is not said: 401 first
    // (RFC 6750 §3). A query token is no credential the API accepts.
    for bad in [
        "/fhir/Observation?foo=1".to_owned(),
        "/fhir/Unknown/1".to_owned(),
        format!("{path}?_format=xml"),
        format!("{path}?access_token=x"),
    ] {
        let reply = s.get(&bad, None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(
            reply.headers[header::WWW_AUTHENTICATE],
            "Bearer realm=\"fhir\"",
            "{bad}"
        );
    }

    // Another scheme is no bearer token either: no error code (RFC 6750 §3.1).
    let basic = s
        .send(
            Method::GET,
            &path,
            None,
            &[("authorization", "Basic Zm9vOmJhcg==")],
        )
        .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        basic.headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"fhir\""
    );
    assert_generic_outcome(&basic);

    // A Bearer header without a token is a malformed request: 400 `invalid_request`.
    let empty = s
        .send(Method::GET, &path, None, &[("authorization", "Bearer ")])
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        empty.headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"fhir\", error=\"invalid_request\""
    );
    assert_generic_outcome(&empty);
    assert!(s.seen().is_empty());

    let garbage = s.get(&path, Some("not-a-jwt")).await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        garbage.headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"fhir\", error=\"invalid_token\""
    );

    // Expired: a token issued now, then two hours pass.
    let token = s.token();
    assert_eq!(s.get(&path, Some(&token)).await.status, StatusCode::OK);
    s.clock.advance(Duration::hours(2));
    let expired = s.get(&path, Some(&token)).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        expired.headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"fhir\", error=\"invalid_token\""
    );

    // Revoked token (RFC 7009, through the token store's revocation list).
    let claims = s.claims();
    let token = s.sign(&claims);
    assert_eq!(s.get(&path, Some(&token)).await.status, StatusCode::OK);
    s.revoke_token(&claims);
    assert_eq!(
        s.get(&path, Some(&token)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Revoked grant: every token of it fails at the very next call.
    let token = s.token();
    assert_eq!(s.get(&path, Some(&token)).await.status, StatusCode::OK);
    s.grants.revoke(&GrantId::new(GRANT).unwrap());
    let revoked = s.get(&path, Some(&token)).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    assert_generic_outcome(&revoked);

    // The handler never saw a refused request; every request has its one record.
    assert_eq!(s.seen().len(), 3);
    let records = s.records();
    assert_eq!(records.len(), 14);
    let outcomes: Vec<Outcome> = records.iter().map(|r| r.record().outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            Outcome::Denied(DenyReason::InvalidToken),
            Outcome::Denied(DenyReason::InvalidToken),
            Outcome::Denied(DenyReason::InvalidToken),
            Outcome::Denied(DenyReason::InvalidToken),
            Outcome::Denied(DenyReason::InvalidToken),
            Outcome::Denied(DenyReason::InvalidToken),
            Outcome::Denied(DenyReason::MalformedRequest),
            Outcome::Denied(DenyReason::InvalidToken),
            Outcome::Success,
            Outcome::Denied(DenyReason::ExpiredToken),
            Outcome::Success,
            Outcome::Denied(DenyReason::InvalidToken),
            Outcome::Success,
            Outcome::Denied(DenyReason::GrantRevoked),
        ]
    );
    assert_eq!(records[0].record().event, EventKind::RequestDenied);
    assert_eq!(records[8].record().event, EventKind::RestAccess);
    assert_eq!(records[8].record().client.as_ref().unwrap().as_str(), APP);
    assert_eq!(records[8].record().grant.as_ref().unwrap().as_str(), GRANT);
    assert_eq!(
        records[8].record().patient.as_ref().unwrap().as_str(),
        "355"
    );
    assert!(records[3].record().source.unwrap().is_loopback());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_inside_and_outside_the_grant() {
    let s = TestServer::start(Options::default()).await;
    let token = s.token();

    let ok = s
        .get(&format!("/fhir/Observation/{VITAL_355}"), Some(&token))
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["id"], VITAL_355);
    assert_eq!(ok.headers[header::CACHE_CONTROL], "no-store");
    assert_security_headers(&ok);

    // A lab result: the patient did not approve laboratory → looks like a missing resource.
    let lab = s
        .get(&format!("/fhir/Observation/{LAB_355}"), Some(&token))
        .await;
    assert_eq!(lab.status, StatusCode::NOT_FOUND);
    assert_generic_outcome(&lab);
    // Another patient's vital sign → also 404, indistinguishable from a missing one.
    let other = s
        .get(&format!("/fhir/Observation/{VITAL_85}"), Some(&token))
        .await;
    let missing = s
        .get("/fhir/Observation/does-not-exist", Some(&token))
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(other.raw, missing.raw);
    assert_eq!(other.raw, lab.raw);
    // The handler's leaky 404 text never reached the wire.
    assert!(!String::from_utf8_lossy(&missing.raw).contains("no such resource"));

    // Asking for another patient by id is refused before the handler, and answered as a
    // patient that does not exist.
    let patient85 = s.get("/fhir/Patient/85", Some(&token)).await;
    let nobody = s.get("/fhir/Patient/nobody", Some(&token)).await;
    assert_eq!(patient85.status, StatusCode::NOT_FOUND);
    assert_eq!(patient85.raw, nobody.raw);
    assert!(patient85.headers.get(header::WWW_AUTHENTICATE).is_none());
    assert_generic_outcome(&patient85);
    // A type no scope covers: 403.
    let proc = s.get("/fhir/Procedure?patient=355", Some(&token)).await;
    assert_eq!(proc.status, StatusCode::FORBIDDEN);

    let records = s.records();
    assert_eq!(records.len(), 7);
    let r = records[0].record();
    assert_eq!(r.decision, Some(PolicyDecision::Permit));
    assert!(r.categories.iter().any(|c| c.as_str() == "vital-signs"));
    assert_eq!(
        records[1].record().outcome,
        Outcome::Denied(DenyReason::CategoryNotGranted)
    );
    assert_eq!(
        records[2].record().outcome,
        Outcome::Denied(DenyReason::OutsideCompartment)
    );
    assert_eq!(records[4].record().event, EventKind::RequestDenied);
    // The handler saw the three reads and the missing one, not the refused requests.
    assert_eq!(s.seen().len(), 4);
}

/// A consent grant is one patient's request: a token bound to it reads that patient only,
/// even when the host's approval minted `user/` or `system/` scopes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_bound_token_reads_its_patient_only_whatever_its_scope_context() {
    let s = TestServer::start(Options::default()).await;
    for scope in [
        "openid fhirUser user/Observation.rs user/Patient.rs",
        "system/Observation.rs system/Patient.rs",
        "user/*.rs",
    ] {
        let mut claims = s.claims();
        claims.scope = scope.into();
        let token = s.sign(&claims);
        let own = s
            .get(&format!("/fhir/Observation/{VITAL_355}"), Some(&token))
            .await;
        assert_eq!(own.status, StatusCode::OK, "{scope}");
        let other = s
            .get(&format!("/fhir/Observation/{VITAL_85}"), Some(&token))
            .await;
        assert_eq!(other.status, StatusCode::NOT_FOUND, "{scope}");
        let patient85 = s.get("/fhir/Patient/85", Some(&token)).await;
        assert_eq!(patient85.status, StatusCode::NOT_FOUND, "{scope}");
        // A search is narrowed to her before the handler, and filtered after it.
        s.set_careless(true);
        let search = s.get("/fhir/Observation?_count=200", Some(&token)).await;
        s.set_careless(false);
        assert_eq!(search.status, StatusCode::OK, "{scope}");
        assert!(
            s.seen()
                .last()
                .unwrap()
                .uri
                .contains("patient=Patient%2F355"),
            "{scope}"
        );
        assert_eq!(entry_ids(&search.body).len(), 27, "{scope}");
        assert!(
            !search
                .raw
                .windows(VITAL_85.len())
                .any(|w| w == VITAL_85.as_bytes()),
            "{scope}"
        );
    }
}

/// A handler answering with `FhirJson` is checked on the value it handed over, and what is sent
/// is written from that value, whatever the body held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_json_answers_are_checked_and_sent_from_the_value() {
    let s = TestServer::start(Options::default()).await;
    let token = s.token();
    let bytes = s
        .get(&format!("/fhir/Observation/{VITAL_355}"), Some(&token))
        .await;
    assert_eq!(bytes.status, StatusCode::OK);

    s.set_answer(Answer::FhirJson);
    let typed = s
        .get(&format!("/fhir/Observation/{VITAL_355}"), Some(&token))
        .await;
    assert_eq!(typed.status, StatusCode::OK);
    assert_eq!(typed.body, bytes.body);
    assert_eq!(
        typed.headers[header::CONTENT_TYPE],
        "application/fhir+json; charset=utf-8"
    );
    assert_eq!(
        typed.headers[header::CONTENT_LENGTH],
        typed.raw.len().to_string()
    );
    assert_security_headers(&typed);
    // Out of the grant (a lab result; another patient's vital sign): refused as before.
    let lab = s
        .get(&format!("/fhir/Observation/{LAB_355}"), Some(&token))
        .await;
    let other = s
        .get(&format!("/fhir/Observation/{VITAL_85}"), Some(&token))
        .await;
    assert_eq!(lab.status, StatusCode::NOT_FOUND);
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(lab.raw, other.raw);
    assert_generic_outcome(&lab);
    // A search Bundle handed over as a value is filtered like one sent as bytes.
    s.set_careless(true);
    let bundle = s
        .get("/fhir/Observation?patient=355&_count=200", Some(&token))
        .await;
    assert_eq!(bundle.status, StatusCode::OK);
    assert_eq!(entry_ids(&bundle.body).len(), 27);
    assert!(
        !bundle
            .raw
            .windows(LAB_355.len())
            .any(|w| w == LAB_355.as_bytes())
    );
    s.set_careless(false);

    // The body swapped for another patient's resource: the guard sends the value it checked.
    s.set_answer(Answer::FhirJsonDecoyBody);
    let decoy = s
        .get(&format!("/fhir/Observation/{VITAL_355}"), Some(&token))
        .await;
    assert_eq!(decoy.status, StatusCode::OK);
    assert_eq!(decoy.body, bytes.body);
    assert!(
        !decoy
            .raw
            .windows(VITAL_85.len())
            .any(|w| w == VITAL_85.as_bytes())
    );
    // A body re-encoded after the value was put in: refused, not sent under a wrong encoding.
    s.set_answer(Answer::FhirJsonEncoded);
    let encoded = s
        .get(&format!("/fhir/Observation/{VITAL_355}"), Some(&token))
        .await;
    assert_eq!(encoded.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(encoded.headers.get(header::CONTENT_ENCODING).is_none());
    assert_generic_outcome(&encoded);

    // One record per request; the typed read is audited with its category.
    let records = s.records();
    assert_eq!(records.len(), 7);
    let r = records[1].record();
    assert_eq!(r.decision, Some(PolicyDecision::Permit));
    assert!(r.categories.iter().any(|c| c.as_str() == "vital-signs"));
    assert_eq!(
        records[2].record().outcome,
        Outcome::Denied(DenyReason::CategoryNotGranted)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_is_narrowed_for_the_handler_and_filtered_after() {
    let s = TestServer::start(Options::default()).await;
    let token = s.token();

    let reply = s.get("/fhir/Observation?_count=500", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = s.seen();
    let context = seen[0].context.as_ref().unwrap();
    assert_eq!(context.patient.as_ref().unwrap().as_str(), "355");
    assert_eq!(context.client_id.as_str(), APP);
    assert_eq!(context.grant_id.as_ref().unwrap().as_str(), GRANT);
    assert!(
        context
            .categories
            .iter()
            .any(|c| c.as_str() == "vital-signs")
    );
    assert!(context.scopes.len() >= 5);
    assert!(!context.narrowing.is_empty());
    assert!(context.narrowing.iter().any(|p| p.name == "patient"));
    assert_eq!(
        context.request.params.len(),
        1 + context.narrowing.len(),
        "{:?}",
        context.request
    );
    // The rewritten URI carries the same narrowing.
    assert!(
        seen[0].uri.contains("patient=Patient%2F355"),
        "{}",
        seen[0].uri
    );
    // The search's visibility rule, for a handler that pages over matches itself: her vital
    // signs, not her lab results, nothing of patient 85.
    let visibility = seen[0]
        .visibility
        .as_ref()
        .expect("a search carries Visibility");
    assert!(visibility.shows(&s.resource("Observation", VITAL_355)));
    assert!(!visibility.shows(&s.resource("Observation", LAB_355)));
    assert!(!visibility.shows(&s.resource("Observation", VITAL_85)));

    let ids = entry_ids(&reply.body);
    assert_eq!(ids.len(), 27, "{ids:?}");
    assert_eq!(reply.body["total"], 27);

    // A careless handler ignores the narrowing: the guard still drops what is not granted.
    s.set_careless(true);
    let reply = s
        .get("/fhir/Observation?patient=355&_count=200", Some(&token))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let ids = entry_ids(&reply.body);
    assert_eq!(ids.len(), 27, "{ids:?}");
    assert_eq!(reply.body["total"], 27);
    let records = s.records();
    assert_eq!(records.len(), 2);
    match records[1].record().decision {
        Some(PolicyDecision::Narrowed { withheld }) => assert_eq!(withheld, 140 - 27),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        records[1]
            .record()
            .params
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>(),
        vec!["patient", "_count"]
    );
    // Nothing of patient 85 and no lab result in either answer.
    assert!(
        !reply
            .raw
            .windows(VITAL_85.len())
            .any(|w| w == VITAL_85.as_bytes())
    );
    assert!(
        !reply
            .raw
            .windows(LAB_355.len())
            .any(|w| w == LAB_355.as_bytes())
    );
    // A read needs no rule for paging.
    let read = s
        .get(&format!("/fhir/Observation/{VITAL_355}"), Some(&token))
        .await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(s.seen().last().unwrap().visibility.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_paths_pass_without_a_token() {
    let s = TestServer::start(Options::default()).await;
    let meta = s.get("/fhir/metadata", None).await;
    assert_eq!(meta.status, StatusCode::OK);
    assert_eq!(meta.body["resourceType"], "CapabilityStatement");
    assert!(meta.headers.get(header::CACHE_CONTROL).is_none());
    assert_security_headers(&meta);
    // Only GET/HEAD there.
    let post = s.send(Method::POST, "/fhir/metadata", None, &[]).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers[header::ALLOW], "GET, HEAD");
    assert_eq!(s.records().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_and_audited() {
    let s = TestServer::start(Options::default()).await;
    let token = s.token();
    let bad = s
        .get(
            "/fhir/Observation?patient=355%27%20OR%20%271%27=%271",
            Some(&token),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_generic_outcome(&bad);
    let unknown = s.get("/fhir/Observation?bogus=1", Some(&token)).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    let records = s.records();
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0].record().outcome,
        Outcome::Denied(DenyReason::MalformedRequest)
    );
    assert_eq!(
        records[1].record().outcome,
        Outcome::Denied(DenyReason::UnsupportedParameter)
    );
    assert!(s.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_then_recovery() {
    let policy = RateLimitPolicy::empty().with_limit(
        EndpointClass::FhirRead,
        KeyKind::Grant,
        Limit::per(3, StdDuration::from_secs(3)).unwrap(),
    );
    let limiter = Arc::new(RateLimiter::new(policy, MemoryRateLimitStore::default()));
    let s = TestServer::start(Options {
        rate_limiter: Some(limiter),
        ..Options::default()
    })
    .await;
    let token = s.token();
    let path = format!("/fhir/Observation/{VITAL_355}");
    for _ in 0..3 {
        assert_eq!(s.get(&path, Some(&token)).await.status, StatusCode::OK);
    }
    let limited = s.get(&path, Some(&token)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers[header::RETRY_AFTER], "1");
    assert_generic_outcome(&limited);
    s.clock.advance(Duration::seconds(1));
    assert_eq!(s.get(&path, Some(&token)).await.status, StatusCode::OK);
    let records = s.records();
    assert_eq!(records.len(), 5);
    assert_eq!(records[3].record().event, EventKind::RateLimited);
    assert_eq!(
        records[3].record().outcome,
        Outcome::Denied(DenyReason::RateLimited)
    );
    assert_eq!(s.seen().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_public_open_api_registered_only() {
    let s = TestServer::start(Options {
        cors: Some(CorsPolicy::with_origins(["https://app.example.org"])),
        ..Options::default()
    })
    .await;
    let token = s.token();
    let evil = [("origin", "https://evil.example")];
    let good = [("origin", "https://app.example.org")];

    let meta = s.send(Method::GET, "/fhir/metadata", None, &evil).await;
    assert_eq!(meta.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");

    let path = format!("/fhir/Observation/{VITAL_355}");
    let api_good = s.send(Method::GET, &path, Some(&token), &good).await;
    assert_eq!(api_good.status, StatusCode::OK);
    assert_eq!(
        api_good.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.org"
    );
    assert_eq!(api_good.headers[header::VARY], "Origin");
    let api_evil = s.send(Method::GET, &path, Some(&token), &evil).await;
    assert!(
        api_evil
            .headers
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );

    let pre = [
        ("origin", "https://app.example.org"),
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "authorization"),
    ];
    let ok = s.send(Method::OPTIONS, &path, None, &pre).await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    assert!(
        ok.headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let pre_evil = [
        ("origin", "https://evil.example"),
        ("access-control-request-method", "GET"),
    ];
    let refused = s.send(Method::OPTIONS, &path, None, &pre_evil).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused
            .headers
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
    let pre_meta = s
        .send(
            Method::OPTIONS,
            "/fhir/metadata",
            None,
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
        )
        .await;
    assert_eq!(pre_meta.status, StatusCode::NO_CONTENT);
    assert_eq!(pre_meta.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    // Preflights are audited too, and never reach the handler.
    assert_eq!(s.records().len(), 6);
    assert_eq!(s.seen().len(), 2);
}
