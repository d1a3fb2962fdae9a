//! What the guard says on the wire for the cases a strict reader of FHIR R4, RFC 6750 and
//! RFC 9110 checks: `insufficient_scope` challenges, `Allow` on every 405, HEAD as GET without
//! the body, unsupported interactions, capped `_count`, and `_summary`/`_elements`.

use bytes::Bytes;
use fhirguard::audit::{DenyReason, HttpMethod, Outcome};
use fhirguard::enforce::{Concealment, EnforceConfig};
use fhirguard::middleware::CorsPolicy;
use fhirguard::sanitize::{InteractionCode, SanitizerConfig};
use http::{HeaderMap, Method, StatusCode, header};

use super::support::*;

const INSUFFICIENT_SCOPE: &str = r#"Bearer realm="fhir", error="insufficient_scope""#;

/// The headers of a reply without the ones that differ between any two answers.
fn stable(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| *name != "x-request-id" && *name != header::DATE)
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_denials_challenge_with_insufficient_scope() {
    let s = TestServer::start(Options::default()).await;
    let token = s.token();
    // A type no scope names, a search for another patient, a system-level search: 403 and
    // the challenge. (Another patient's record by id is a 404, as if it did not exist.)
    for path in [
        "/fhir/Procedure?patient=355",
        "/fhir/Observation?patient=85",
        "/fhir?_lastUpdated=gt2020",
    ] {
        let reply = s.get(path, Some(&token)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(
            reply.headers[header::WWW_AUTHENTICATE],
            INSUFFICIENT_SCOPE,
            "{path}"
        );
        assert_eq!(reply.body["issue"][0]["code"], "forbidden");
    }
    // A hidden resource (a lab result the patient did not approve) looks exactly like a
    // missing one: 404, no challenge, the same bytes and headers.
    let lab = s
        .get(&format!("/fhir/Observation/{LAB_355}"), Some(&token))
        .await;
    let missing = s
        .get("/fhir/Observation/does-not-exist", Some(&token))
        .await;
    assert_eq!(lab.status, StatusCode::NOT_FOUND);
    assert!(lab.headers.get(header::WWW_AUTHENTICATE).is_none());
    assert_eq!(lab.raw, missing.raw);
    assert_eq!(stable(&lab.headers), stable(&missing.headers));
    // A token problem is still 401 invalid_token, not a scope matter.
    let bad = s.get("/fhir/Patient/355", Some("not-a-jwt")).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        bad.headers[header::WWW_AUTHENTICATE],
        r#"Bearer realm="fhir", error="invalid_token""#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concealed_403s_carry_no_challenge() {
    let s = TestServer::start(Options {
        enforce: EnforceConfig {
            concealment: Concealment::Forbidden,
            ..EnforceConfig::default()
        },
        ..Options::default()
    })
    .await;
    let token = s.token();
    let lab = s
        .get(&format!("/fhir/Observation/{LAB_355}"), Some(&token))
        .await;
    let missing = s
        .get("/fhir/Observation/does-not-exist", Some(&token))
        .await;
    assert_eq!(lab.status, StatusCode::FORBIDDEN);
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(lab.headers.get(header::WWW_AUTHENTICATE).is_none());
    assert_eq!(lab.raw, missing.raw);
    assert_eq!(stable(&lab.headers), stable(&missing.headers));
    // A scope denial under the same concealment still says why it can be fixed.
    let proc = s.get("/fhir/Procedure?patient=355", Some(&token)).await;
    assert_eq!(proc.status, StatusCode::FORBIDDEN);
    assert_eq!(proc.headers[header::WWW_AUTHENTICATE], INSUFFICIENT_SCOPE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_405_lists_what_the_path_allows() {
    let s = TestServer::start(Options::default()).await;
    let token = s.token();
    for (method, path, allow) in [
        // Writes on the read-only default: 405 before the (missing) body is looked at.
        (Method::PUT, "/fhir/Patient", "GET, HEAD"),
        (Method::PUT, "/fhir/Patient/355", "GET, HEAD"),
        (Method::PATCH, "/fhir/Patient/355", "GET, HEAD"),
        (Method::DELETE, "/fhir/Observation/x", "GET, HEAD"),
        (Method::POST, "/fhir/Patient", "GET, HEAD"),
        (Method::POST, "/fhir/Patient/355", "GET, HEAD"),
        (Method::GET, "/fhir/Patient/_search", "POST"),
        (Method::OPTIONS, "/fhir/Patient", "GET, HEAD"),
        (Method::POST, "/fhir/metadata", "GET, HEAD"),
    ] {
        for t in [None, Some(token.as_str())] {
            let reply = s.send(method.clone(), path, t, &[]).await;
            assert_eq!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(reply.headers[header::ALLOW], allow, "{method} {path}");
            assert_eq!(reply.body["issue"][0]["code"], "not-supported");
        }
    }
    assert!(s.seen().is_empty());
    let records = s.records();
    assert_eq!(records.len(), 18);
    assert_eq!(records[0].record().method, Some(HttpMethod::Put));
    assert_eq!(
        records[0].record().outcome,
        Outcome::Denied(DenyReason::MalformedRequest)
    );
}

/// A host that enables writes gets them through the sanitizer; the scopes (read-only here)
/// then decide, with the challenge a scope denial carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabled_writes_reach_enforcement() {
    let s = TestServer::start(Options {
        sanitizer: Some(
            SanitizerConfig::us_core("/fhir").allow_interaction(InteractionCode::Update),
        ),
        cors: Some(CorsPolicy::with_origins(["https://app.example.org"])),
        ..Options::default()
    })
    .await;
    let token = s.token();
    let body = format!(r#"{{"resourceType":"Observation","id":"{VITAL_355}"}}"#);
    let put = s
        .send_body(
            Method::PUT,
            &format!("/fhir/Observation/{VITAL_355}"),
            Some(&token),
            &[("content-type", "application/fhir+json")],
            Bytes::from(body),
        )
        .await;
    assert_eq!(put.status, StatusCode::FORBIDDEN);
    assert_eq!(put.headers[header::WWW_AUTHENTICATE], INSUFFICIENT_SCOPE);
    let delete = s
        .send(Method::DELETE, "/fhir/Observation/x", Some(&token), &[])
        .await;
    assert_eq!(delete.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(delete.headers[header::ALLOW], "GET, HEAD, PUT");
    // The preflight allows what the API accepts, PUT now included.
    let pre = s
        .send(
            Method::OPTIONS,
            "/fhir/Observation/x",
            None,
            &[
                ("origin", "https://app.example.org"),
                ("access-control-request-method", "PUT"),
            ],
        )
        .await;
    assert_eq!(pre.status, StatusCode::NO_CONTENT);
    assert_eq!(
        pre.headers[header::ACCESS_CONTROL_ALLOW_METHODS],
        "GET, HEAD, POST, PUT"
    );
    assert!(s.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_preflights_offer_no_write() {
    let s = TestServer::start(Options {
        cors: Some(CorsPolicy::with_origins(["https://app.example.org"])),
        ..Options::default()
    })
    .await;
    let pre = |m: &'static str| {
        [
            ("origin", "https://app.example.org"),
            ("access-control-request-method", m),
        ]
    };
    let head = s
        .send(Method::OPTIONS, "/fhir/Patient/355", None, &pre("HEAD"))
        .await;
    assert_eq!(head.status, StatusCode::NO_CONTENT);
    assert_eq!(
        head.headers[header::ACCESS_CONTROL_ALLOW_METHODS],
        "GET, HEAD, POST"
    );
    let put = s
        .send(Method::OPTIONS, "/fhir/Patient/355", None, &pre("PUT"))
        .await;
    assert_eq!(put.status, StatusCode::FORBIDDEN);
}

/// HEAD answers with GET's status and headers, `Content-Length` the GET body's length, and
/// no body, over a real socket through axum's `get` routes; the handler runs a GET and the
/// audit record says HEAD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_get_without_the_body() {
    let s = TestServer::start(Options::default()).await;
    let token = s.token();
    let cases = [
        (format!("/fhir/Observation/{VITAL_355}"), Some(&token)),
        (
            "/fhir/Observation?patient=355&_count=5".to_owned(),
            Some(&token),
        ),
        (
            "/fhir/Patient/355/Observation?_count=2".to_owned(),
            Some(&token),
        ),
        ("/fhir/Patient/355/$everything".to_owned(), Some(&token)),
        // Hidden and missing: the same 404 as GET.
        (format!("/fhir/Observation/{LAB_355}"), Some(&token)),
        ("/fhir/Observation/does-not-exist".to_owned(), Some(&token)),
        // Refused: the same 403 and challenge, the same 401.
        ("/fhir/Patient/85".to_owned(), Some(&token)),
        ("/fhir/Patient/355".to_owned(), None),
        ("/fhir/metadata".to_owned(), None),
    ];
    for (path, t) in &cases {
        let t = t.map(String::as_str);
        let get = s.get(path, t).await;
        let head = s.send(Method::HEAD, path, t, &[]).await;
        assert_eq!(head.status, get.status, "{path}");
        assert!(head.raw.is_empty(), "{path}: {:?}", head.raw);
        assert_eq!(
            head.headers[header::CONTENT_LENGTH],
            get.raw.len().to_string(),
            "{path}"
        );
        assert_eq!(stable(&head.headers), stable(&get.headers), "{path}");
    }
    assert_eq!(
        s.get(&format!("/fhir/Observation/{VITAL_355}"), Some(&token))
            .await
            .status,
        StatusCode::OK
    );
    // The handler ran GETs (it saw no HEAD), and each HEAD is audited as HEAD.
    let records = s.records();
    assert_eq!(records.len(), 2 * cases.len() + 1);
    for pair in records[..2 * cases.len()].chunks(2) {
        assert_eq!(pair[0].record().method, Some(HttpMethod::Get));
        assert_eq!(pair[1].record().method, Some(HttpMethod::Head));
        assert_eq!(pair[1].record().outcome, pair[0].record().outcome);
        assert_eq!(pair[1].record().decision, pair[0].record().decision);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_above_the_maximum_is_capped_for_the_handler() {
    let s = TestServer::start(Options::default()).await;
    let token = s.token();
    let reply = s
        .get("/fhir/Observation?patient=355&_count=100000", Some(&token))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let seen = s.seen();
    assert!(seen[0].uri.contains("_count=500"), "{}", seen[0].uri);
    assert!(!seen[0].uri.contains("100000"), "{}", seen[0].uri);
    let context = seen[0].context.as_ref().unwrap();
    let count: Vec<_> = context.request.params_named("_count").collect();
    assert_eq!(count.len(), 1);
    assert_eq!(count[0].values, vec!["500".to_owned()]);
    // Within the maximum, untouched; `_count=0` still answers an empty page.
    let five = s
        .get("/fhir/Observation?patient=355&_count=5", Some(&token))
        .await;
    assert_eq!(five.status, StatusCode::OK);
    assert!(s.seen()[1].uri.contains("_count=5"));
    let none = s
        .get("/fhir/Observation?patient=355&_count=0", Some(&token))
        .await;
    assert_eq!(none.status, StatusCode::OK);
    assert!(none.body.get("entry").is_none(), "{:?}", none.body);
    // A POST search's form is capped the same way.
    let form = s
        .send_body(
            Method::POST,
            "/fhir/Observation/_search",
            Some(&token),
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from_static(b"patient=355&_count=9999"),
        )
        .await;
    assert_eq!(form.status, StatusCode::OK, "{:?}", form.body);
    let context = s.seen()[3].context.clone().unwrap();
    assert_eq!(
        context
            .request
            .params_named("_count")
            .next()
            .unwrap()
            .values,
        vec!["500".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_and_elements_are_400_not_supported() {
    let s = TestServer::start(Options::default()).await;
    let token = s.token();
    for path in [
        "/fhir/Observation?patient=355&_summary=true".to_owned(),
        "/fhir/Observation?patient=355&_summary=count".to_owned(),
        "/fhir/Observation?patient=355&_elements=code".to_owned(),
        format!("/fhir/Observation/{VITAL_355}?_summary=true"),
        format!("/fhir/Observation/{VITAL_355}?_elements=status"),
    ] {
        for prefer in [None, Some("handling=lenient")] {
            let extra: Vec<(&str, &str)> = prefer.iter().map(|p| ("prefer", *p)).collect();
            let reply = s.send(Method::GET, &path, Some(&token), &extra).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(reply.body["issue"][0]["code"], "not-supported", "{path}");
            assert!(reply.headers.get(header::WWW_AUTHENTICATE).is_none());
        }
    }
    assert!(s.seen().is_empty());
    assert!(
        s.records()
            .iter()
            .all(|r| r.record().outcome == Outcome::Denied(DenyReason::UnsupportedParameter))
    );
    // `_summary=false` asks for the whole resource: served as without it.
    let full = s
        .get(
            &format!("/fhir/Observation/{VITAL_355}?_summary=false"),
            Some(&token),
        )
        .await;
    let plain = s
        .get(&format!("/fhir/Observation/{VITAL_355}"), Some(&token))
        .await;
    assert_eq!(full.status, StatusCode::OK);
    assert_eq!(full.raw, plain.raw);
    let search = s
        .get("/fhir/Observation?patient=355&_summary=false", Some(&token))
        .await;
    assert_eq!(search.status, StatusCode::OK);
}
