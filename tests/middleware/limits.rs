//! Body and concurrency limits, fail-closed audit, anomaly signals, grantless tokens,
//! `$everything` filtering.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fhirguard::abuse::{AnomalyConfig, AnomalyDetector, AnomalyHook, AnomalyKind, AnomalySignal};
use fhirguard::audit::{AuditError, AuditRecord, DenyReason, Outcome, SinkError};
use fhirguard::middleware::AuditRecorder;
use http::{Method, StatusCode, header};
use time::Duration;

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413() {
    let s = TestServer::start(Options::default()).await;
    let token = s.token();
    let big = "patient=355&".repeat(100_000);
    let reply = s
        .send_body(
            Method::POST,
            "/fhir/Observation/_search",
            Some(&token),
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from(big),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.body["resourceType"], "OperationOutcome");
    assert_eq!(
        s.records()[0].record().outcome,
        Outcome::Denied(DenyReason::TooLarge)
    );
    assert!(s.seen().is_empty());

    // A POST _search of normal size is served, narrowed like a GET.
    let reply = s
        .send_body(
            Method::POST,
            "/fhir/Observation/_search",
            Some(&token),
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from_static(b"patient=355&_count=200"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["total"], 27);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_sheds_with_503() {
    let s = Arc::new(
        TestServer::start(Options {
            max_concurrency: Some(1),
            ..Options::default()
        })
        .await,
    );
    s.set_slow(true);
    let token = s.token();
    let path = format!("/fhir/Observation/{VITAL_355}");
    let first = {
        let s = s.clone();
        let (path, token) = (path.clone(), token.clone());
        tokio::spawn(async move { s.get(&path, Some(&token)).await.status })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let second = s.get(&path, Some(&token)).await;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    s.set_slow(false);
    assert_eq!(s.get(&path, Some(&token)).await.status, StatusCode::OK);
    assert_eq!(s.records().len(), 3);
}

struct BrokenAudit;

impl AuditRecorder for BrokenAudit {
    fn record(&self, _record: AuditRecord) -> Result<(), AuditError> {
        Err(AuditError::Sink(SinkError::Disconnected))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauditable_requests_are_not_served() {
    let s = TestServer::start(Options {
        audit: Some(Arc::new(BrokenAudit)),
        ..Options::default()
    })
    .await;
    let token = s.token();
    let reply = s
        .get(&format!("/fhir/Observation/{VITAL_355}"), Some(&token))
        .await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.body["resourceType"], "OperationOutcome");
    assert!(!String::from_utf8_lossy(&reply.raw).contains(VITAL_355));
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
}

#[derive(Default)]
struct Signals(Mutex<Vec<AnomalySignal>>);

impl AnomalyHook for Signals {
    fn on_anomaly(&self, signal: &AnomalySignal) {
        self.0.lock().unwrap().push(signal.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_hose_raises_an_anomaly_signal() {
    let detector = Arc::new(AnomalyDetector::new(AnomalyConfig {
        window: Duration::minutes(1),
        alpha: 0.5,
        warmup_windows: 2,
        rate_factor: 3.0,
        min_requests: 5,
        ..AnomalyConfig::default()
    }));
    let signals = Arc::new(Signals::default());
    let s = TestServer::start(Options {
        anomaly: Some((detector, signals.clone())),
        ..Options::default()
    })
    .await;
    let path = format!("/fhir/Observation/{VITAL_355}");
    for _ in 0..3 {
        for _ in 0..2 {
            let token = s.token();
            assert_eq!(s.get(&path, Some(&token)).await.status, StatusCode::OK);
        }
        s.clock.advance(Duration::minutes(1));
    }
    assert!(signals.0.lock().unwrap().is_empty());
    for _ in 0..10 {
        let token = s.token();
        assert_eq!(s.get(&path, Some(&token)).await.status, StatusCode::OK);
    }
    let got = signals.0.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].grant.as_str(), GRANT);
    assert!(matches!(got[0].kind, AnomalyKind::RateSpike { .. }));
    // The spike is also a security event in the audit log, beside the 16 request records.
    let records = s.records();
    let anomalies: Vec<_> = records
        .iter()
        .filter(|r| r.record().event == fhirguard::audit::EventKind::AnomalyDetected)
        .collect();
    assert_eq!(anomalies.len(), 1);
    assert_eq!(
        anomalies[0].record().grant.as_ref().map(|g| g.as_str()),
        Some(GRANT)
    );
    assert!(anomalies[0].record().client.is_some());
    assert_eq!(records.len(), 16 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grantless_tokens_are_refused_by_default() {
    let s = TestServer::start(Options::default()).await;
    let mut claims = s.claims();
    claims.grant_id = None;
    let token = s.sign(&claims);
    let reply = s
        .get(&format!("/fhir/Observation/{VITAL_355}"), Some(&token))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.records()[0].record().outcome,
        Outcome::Denied(DenyReason::GrantUnknown)
    );

    // Allowed by name: scopes alone bound the token (here patient/ scopes and patient 355).
    let s = TestServer::start(Options {
        allow_grantless: true,
        ..Options::default()
    })
    .await;
    let token = s.sign(&claims);
    let lab = s
        .get(&format!("/fhir/Observation/{LAB_355}"), Some(&token))
        .await;
    assert_eq!(lab.status, StatusCode::OK);
    let other = s
        .get(&format!("/fhir/Observation/{VITAL_85}"), Some(&token))
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_is_filtered_to_the_grant() {
    let s = TestServer::start(Options::default()).await;
    let token = s.token();
    let reply = s.get("/fhir/Patient/355/$everything", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let entries = reply.body["entry"].as_array().unwrap();
    assert!(!entries.is_empty());
    for entry in entries {
        let resource = &entry["resource"];
        let ty = resource["resourceType"].as_str().unwrap();
        assert!(
            matches!(ty, "Patient" | "Observation") || entry["search"]["mode"] == "include",
            "{ty} leaked"
        );
        if ty == "Observation" {
            let text = resource["category"].to_string();
            assert!(text.contains("vital-signs"), "{text}");
        }
    }
    let total_obs = entries
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Observation")
        .count();
    assert_eq!(total_obs, 27);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_signatures_never_outlive_expiry_or_revocation() {
    use fhirguard::middleware::{CachedTokenValidator, TokenValidation};
    use fhirguard::token::TokenRejection;

    let s = TestServer::start(Options::default()).await;
    let v = CachedTokenValidator::new(s.server.clone()).ttl(Duration::minutes(5));
    let mut claims = s.claims();
    claims.exp = (START + Duration::seconds(10)).unix_timestamp();
    let token = s.sign(&claims);
    let headers = |t: &str| {
        let mut h = http::HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
        h
    };
    let ok = v.validate_headers(&headers(&token), START).unwrap();
    assert_eq!(ok.claims.jti, claims.jti);
    assert!(ok.grant.is_some());
    assert_eq!(v.len(), 1);
    // Still cached 50 s later, but past exp + 30 s leeway.
    assert_eq!(
        v.validate_headers(&headers(&token), START + Duration::seconds(50))
            .unwrap_err(),
        TokenRejection::Expired
    );
    // A tampered token never matches the cached entry.
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(v.validate_headers(&headers(&tampered), START).is_err());
    assert_eq!(v.len(), 1);
    // Nor does the cached signature under other claims (the cache hashes the signature only).
    let mut other = claims.clone();
    other.patient = Some(fhirguard::ids::PatientId::new("someone-else").unwrap());
    let forged = {
        let theirs = s.sign(&other);
        let (signed, _) = theirs.rsplit_once('.').unwrap();
        let (_, signature) = token.rsplit_once('.').unwrap();
        format!("{signed}.{signature}")
    };
    assert_eq!(
        v.validate_headers(&headers(&forged), START).unwrap_err(),
        TokenRejection::BadSignature
    );
    assert_eq!(v.len(), 1);
    // Revocation is seen although the signature is cached.
    assert!(v.validate_headers(&headers(&token), START).is_ok());
    s.revoke_token(&claims);
    assert_eq!(
        v.validate_headers(&headers(&token), START).unwrap_err(),
        TokenRejection::Revoked
    );
}
