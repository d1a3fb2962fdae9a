//! Sanitizer integration tests: the hostile corpus, valid requests, lenient handling,
//! injection strings as typed values, error-body hygiene, redirect URIs and HTML encoding.

use std::panic::{AssertUnwindSafe, catch_unwind};

use fhirguard::fhir::{PublicProblem, RejectionReason, error_response, problem_response};
use fhirguard::sanitize::{
    Handling, InteractionCode, Limits, OperationDef, ParamTable, ParamType, RedirectUri,
    ResponseKind, SanitizeError, Sanitizer, SanitizerConfig, SecurityHeaders, TypedValue, html,
};
use fhirguard::{Interaction, ResourceType};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};

use crate::common::data_dir;

/// The US Core default with every write enabled: the corpora check how writes' bodies are
/// refused, which a read-only configuration never looks at (`read_only_by_default`).
fn sanitizer() -> Sanitizer {
    let config = InteractionCode::WRITES.into_iter().fold(
        SanitizerConfig::us_core("/fhir"),
        SanitizerConfig::allow_interaction,
    );
    Sanitizer::new(config).unwrap()
}

/// Expands `{{N*text}}` and the backslash escapes of the corpus format into bytes.
fn expand(field: &str, bytes_mode: bool) -> Vec<u8> {
    let mut s = String::new();
    let mut rest = field;
    while let Some(start) = rest.find("{{") {
        s.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("closing }}") + start;
        let inner = &rest[start + 2..end];
        let (n, text) = inner.split_once('*').expect("N*text");
        s.push_str(&text.repeat(n.parse().expect("repeat count")));
        rest = &rest[end + 2..];
    }
    s.push_str(rest);
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'0' => out.push(0),
                b't' => out.push(b'\t'),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    let v = u8::from_str_radix(&s[i + 2..i + 4], 16).expect("\\xHH");
                    if bytes_mode {
                        out.push(v);
                    } else {
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(char::from(v).encode_utf8(&mut buf).as_bytes());
                    }
                    i += 4;
                    continue;
                }
                other => panic!("unknown escape \\{}", other as char),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

struct Case {
    line: usize,
    expected: String,
    method: Method,
    target: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn load_corpus(file: &str) -> Vec<Case> {
    let text = std::fs::read_to_string(data_dir().join(file)).unwrap();
    let mut cases = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert!(f.len() >= 4, "line {}: needs 4+ fields", n + 1);
        let mut headers = HeaderMap::new();
        if f[3] != "-" {
            let expanded = String::from_utf8(expand(f[3], false)).unwrap();
            for h in expanded.split(" ;; ") {
                let (name, value) = h.split_once(": ").expect("Name: value");
                headers.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
        }
        cases.push(Case {
            line: n + 1,
            expected: f[0].to_owned(),
            method: Method::from_bytes(f[1].as_bytes()).unwrap(),
            target: String::from_utf8(expand(f[2], false)).unwrap(),
            headers,
            body: f.get(4).map(|b| expand(b, true)).unwrap_or_default(),
        });
    }
    cases
}

/// Strings that must never appear in anything the library sends to a client.
const INTERNAL_DETAIL: &[&str] = &[
    "fhirguard",
    "sanitize",
    "src/",
    ".rs",
    "panicked",
    "thread",
    "serde",
    "thiserror",
    "ring",
    "rustc",
    "/home",
    "/root",
    "/work",
    "/usr",
    "stack",
    "backtrace",
    "SELECT",
    "INSERT",
    "DROP",
    "UNION",
    "sqlite",
    "postgres",
    "0.1.0",
    "line ",
    "unwrap",
    "Error(",
    "parameter `",
];

fn assert_no_internal_detail(resp: &http::Response<Vec<u8>>, context: &str) {
    let body = String::from_utf8(resp.body().clone()).unwrap();
    let mut wire = body.clone();
    for (name, value) in resp.headers() {
        wire.push_str(name.as_str());
        wire.push(':');
        wire.push_str(value.to_str().unwrap());
        wire.push('\n');
    }
    let lower = wire.to_ascii_lowercase();
    for bad in INTERNAL_DETAIL {
        assert!(
            !lower.contains(&bad.to_ascii_lowercase()),
            "{context}: wire response contains `{bad}`: {wire}"
        );
    }
    assert!(resp.headers().get("server").is_none());
    assert!(resp.headers().get("x-powered-by").is_none());
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["resourceType"], "OperationOutcome");
}

#[test]
fn hostile_corpus_is_refused_with_the_expected_typed_error() {
    let s = sanitizer();
    let cases = load_corpus("hostile_requests.txt");
    assert!(cases.len() >= 300, "corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let result = catch_unwind(AssertUnwindSafe(|| {
            s.parse_parts(&c.method, &c.target, &c.headers, &c.body)
        }));
        match result {
            Err(_) => failures.push(format!("line {}: PANICKED", c.line)),
            Ok(Ok(accepted)) => failures.push(format!(
                "line {}: ACCEPTED as {:?}",
                c.line, accepted.request.interaction
            )),
            Ok(Err(e)) => {
                if e.code() != c.expected {
                    failures.push(format!(
                        "line {}: expected {}, got {} ({e})",
                        c.line,
                        c.expected,
                        e.code()
                    ));
                }
                let resp = error_response(&e);
                assert_no_internal_detail(&resp, &format!("line {}", c.line));
                // The typed reason is there for the audit record, and only there.
                let reason = resp.extensions().get::<RejectionReason>().unwrap();
                assert_eq!(reason.code, e.code());
                assert_eq!(reason.component, "sanitize");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn hostile_corpus_covers_every_error_kind_family() {
    let cases = load_corpus("hostile_requests.txt");
    for code in [
        "url_too_long",
        "too_many_parameters",
        "headers_too_large",
        "body_too_large",
        "json_too_deep",
        "invalid_json",
        "illegal_character",
        "invalid_percent_encoding",
        "double_encoding",
        "control_character",
        "invalid_utf8",
        "dot_segment",
        "encoded_path",
        "unknown_resource_type",
        "invalid_id",
        "unknown_parameter",
        "invalid_modifier",
        "invalid_value",
        "unsupported_parameter",
        "contradicting_duplicate",
        "chain_not_supported",
        "parameters_not_allowed",
        "method_not_allowed",
        "unknown_operation",
    ] {
        assert!(
            cases.iter().any(|c| c.expected == code),
            "no case for {code}"
        );
    }
}

#[test]
fn valid_requests_are_accepted() {
    let s = sanitizer();
    let cases = load_corpus("valid_requests.txt");
    assert!(cases.len() >= 30);
    for c in &cases {
        let got = s.parse_parts(&c.method, &c.target, &c.headers, &c.body);
        let r = got.unwrap_or_else(|e| panic!("line {}: {} refused: {e}", c.line, c.target));
        assert_eq!(
            format!("{:?}", r.request.interaction)
                .split('(')
                .next()
                .unwrap(),
            c.expected,
            "line {}",
            c.line
        );
        assert_eq!(r.typed.len(), r.request.params.len());
    }
}

/// The default configuration is read-only: every write of the valid corpus is refused with
/// `405` and the path's read methods in `Allow`, before its body is looked at; every read is
/// typed exactly as with writes enabled.
#[test]
fn read_only_by_default() {
    let read_only = Sanitizer::new(SanitizerConfig::us_core("/fhir")).unwrap();
    let writable = sanitizer();
    let cases = load_corpus("valid_requests.txt");
    let mut refused = 0;
    for c in &cases {
        let all = writable
            .parse_parts(&c.method, &c.target, &c.headers, &c.body)
            .unwrap();
        let got = read_only.parse_parts(&c.method, &c.target, &c.headers, &c.body);
        if all.request.interaction.is_write()
            || all.request.interaction == Interaction::BatchOrTransaction
        {
            let e = got.unwrap_err();
            assert_eq!(e.code(), "method_not_allowed", "line {}", c.line);
            let response = error_response(&e);
            assert_eq!(response.status(), 405);
            let allow = response.headers()[http::header::ALLOW].to_str().unwrap();
            assert!(allow.starts_with("GET, HEAD"), "line {}: {allow}", c.line);
            assert!(
                !allow.contains("PUT") && !allow.contains("DELETE"),
                "{allow}"
            );
            refused += 1;
        } else {
            assert_eq!(got.unwrap(), all, "line {}", c.line);
        }
    }
    assert!(refused >= 6, "{refused}");
}

#[test]
fn http_request_entry_point_and_typed_output() {
    let s = sanitizer();
    let req = Request::get(
        "/fhir/Observation?patient=Patient/123&category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs&date=ge2024-01-01T00:00:00Z&_sort=-date&_include=Observation:patient",
    )
    .body(Vec::<u8>::new())
    .unwrap();
    let r = s.parse(&req).unwrap();
    assert_eq!(r.request.interaction, Interaction::SearchType);
    assert_eq!(r.request.resource_type, ResourceType::new("Observation"));
    assert_eq!(
        r.typed[0].values[0],
        TypedValue::Reference {
            resource_type: ResourceType::new("Patient"),
            id: "123".into(),
            version: None
        }
    );
    assert_eq!(
        r.typed[1].values[0],
        TypedValue::Token {
            system: Some("http://terminology.hl7.org/CodeSystem/observation-category".into()),
            code: Some("vital-signs".into())
        }
    );
    assert!(matches!(
        r.typed[2].values[0],
        TypedValue::Date(fhirguard::sanitize::Prefix::Ge, _)
    ));
    assert!(
        matches!(&r.typed[3].values[0], TypedValue::Sort(k) if k.descending && k.name == "date")
    );
    assert!(
        matches!(&r.typed[4].values[0], TypedValue::Include { param, .. } if param == "patient")
    );
}

#[test]
fn injection_strings_in_free_text_become_inert_typed_values() {
    let s = sanitizer();
    for (raw, want) in [
        (
            "O%27Brien%27%3B%20DROP%20TABLE%20patients--",
            "O'Brien'; DROP TABLE patients--",
        ),
        (
            "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            "<script>alert(1)</script>",
        ),
        ("*)(uid%3D*", "*)(uid=*"),
    ] {
        let r = s
            .parse_parts(
                &Method::GET,
                &format!("/fhir/Patient?family={raw}"),
                &HeaderMap::new(),
                b"",
            )
            .unwrap();
        assert_eq!(r.typed[0].ty, ParamType::String);
        assert_eq!(r.typed[0].values, vec![TypedValue::String(want.into())]);
    }
    // A token code is FHIR free text too: it stays a code, bound by the host as a value.
    let r = s
        .parse_parts(
            &Method::GET,
            "/fhir/Observation?code=1%27%20OR%201%3D1",
            &HeaderMap::new(),
            b"",
        )
        .unwrap();
    assert_eq!(
        r.typed[0].values,
        vec![TypedValue::Token {
            system: None,
            code: Some("1' OR 1=1".into())
        }]
    );
}

#[test]
fn lenient_handling_strips_unknown_parameters_and_reports_them() {
    let s = sanitizer();
    let mut h = HeaderMap::new();
    h.insert("prefer", HeaderValue::from_static("handling=lenient"));
    let r = s
        .parse_parts(
            &Method::GET,
            "/fhir/Observation?patient=1&foo=bar&code:bogus=x&subject.name=y",
            &h,
            b"",
        )
        .unwrap();
    assert_eq!(r.handling, Handling::Lenient);
    assert_eq!(r.request.params.len(), 1);
    let codes: Vec<_> = r.stripped.iter().map(SanitizeError::code).collect();
    assert_eq!(
        codes,
        [
            "unknown_parameter",
            "invalid_modifier",
            "chain_not_supported"
        ]
    );
    // Bad values, pollution and encoding tricks are refused even under lenient handling.
    for t in [
        "/fhir/Observation?patient=1%27",
        "/fhir/Observation?patient=1&patient=2",
        "/fhir/Observation?foo=%252e",
    ] {
        assert!(s.parse_parts(&Method::GET, t, &h, b"").is_err(), "{t}");
    }
    // A host may refuse lenient handling: the request is then judged strictly.
    let strict_only =
        Sanitizer::new(SanitizerConfig::us_core("/fhir").allow_lenient(false)).unwrap();
    assert_eq!(
        strict_only
            .parse_parts(&Method::GET, "/fhir/Observation?foo=bar", &h, b"")
            .unwrap_err()
            .code(),
        "unknown_parameter"
    );
    // And may make lenient the default.
    let lenient =
        Sanitizer::new(SanitizerConfig::us_core("/fhir").default_handling(Handling::Lenient))
            .unwrap();
    let r = lenient
        .parse_parts(
            &Method::GET,
            "/fhir/Observation?foo=bar",
            &HeaderMap::new(),
            b"",
        )
        .unwrap();
    assert_eq!(r.stripped.len(), 1);
}

#[test]
fn hosts_extend_the_table_types_operations_and_limits() {
    let mut config = SanitizerConfig::us_core("/r4")
        .allow_type("Appointment")
        .operation(
            "lastn",
            OperationDef::new()
                .on_type("Observation")
                .param("max", ParamType::Number)
                .param("patient", ParamType::Reference),
        )
        .limits(Limits {
            max_count: 50,
            ..Limits::default()
        });
    config
        .table_mut()
        .add("Appointment", "date", ParamType::Date)
        .add_reference(
            "Appointment",
            "patient",
            &[ResourceType::new("Patient").unwrap()],
        );
    config.table_mut().remove(None, "_has");
    let s = Sanitizer::new(config).unwrap();
    let g = |t: &str| s.parse_parts(&Method::GET, t, &HeaderMap::new(), b"");
    assert!(g("/r4/Appointment?date=2024&patient=Patient/1").is_ok());
    assert!(g("/r4/Observation/$lastn?max=3&patient=1").is_ok());
    // Above the maximum, `_count` is capped to it (a server may return fewer than asked).
    let capped = g("/r4/Observation?_count=51").unwrap();
    assert_eq!(capped.typed[0].values, vec![TypedValue::Count(50)]);
    assert_eq!(capped.request.params[0].values, vec!["50".to_owned()]);
    assert_eq!(
        g("/r4/Patient?_has:Observation:patient:code=x")
            .unwrap_err()
            .code(),
        "unknown_parameter"
    );
    assert_eq!(g("/fhir/Patient").unwrap_err().code(), "not_under_base");
    // Only FHIR R4 types can be allowed; bad base paths are refused when built.
    assert!(Sanitizer::new(SanitizerConfig::us_core("/fhir").allow_type("Hacker")).is_err());
    assert!(Sanitizer::new(SanitizerConfig::us_core("/fhir/")).is_err());
    assert!(Sanitizer::new(SanitizerConfig::us_core("/f%2e")).is_err());
    // An empty table accepts no parameter at all.
    let bare =
        Sanitizer::new(SanitizerConfig::us_core("/fhir").table(ParamTable::empty())).unwrap();
    assert_eq!(
        bare.parse_parts(
            &Method::GET,
            "/fhir/Observation?_count=1",
            &HeaderMap::new(),
            b""
        )
        .unwrap_err()
        .code(),
        "unknown_parameter"
    );
    assert!(
        bare.parse_parts(&Method::GET, "/fhir/Observation", &HeaderMap::new(), b"")
            .is_ok()
    );
    // A default operation the host's store cannot answer is withdrawn by name.
    let withdrawn = SanitizerConfig::us_core("/fhir")
        .without_operation("docref")
        .without_operation("export");
    assert!(!withdrawn.supports_operation("docref"));
    assert!(withdrawn.supports_operation("everything"));
    let s = Sanitizer::new(withdrawn).unwrap();
    let g = |t: &str| s.parse_parts(&Method::GET, t, &HeaderMap::new(), b"");
    for target in [
        "/fhir/DocumentReference/$docref?patient=123",
        "/fhir/$export",
        "/fhir/Patient/$export",
        "/fhir/Group/1/$export",
    ] {
        assert_eq!(
            g(target).unwrap_err().code(),
            "unknown_operation",
            "{target}"
        );
    }
    assert!(g("/fhir/Patient/123/$everything").is_ok());
}

#[test]
fn every_public_problem_is_generic() {
    for p in [
        PublicProblem::BadRequest,
        PublicProblem::Unauthorized,
        PublicProblem::Forbidden,
        PublicProblem::NotFound,
        PublicProblem::MethodNotAllowed,
        PublicProblem::NotSupported,
        PublicProblem::NotAcceptable,
        PublicProblem::RequestTimeout,
        PublicProblem::PayloadTooLarge,
        PublicProblem::UriTooLong,
        PublicProblem::UnsupportedMediaType,
        PublicProblem::TooManyRequests,
        PublicProblem::HeadersTooLarge,
        PublicProblem::Internal,
        PublicProblem::Unavailable,
    ] {
        let resp = problem_response(p);
        assert_eq!(resp.status(), p.status());
        assert_no_internal_detail(&resp, &format!("{p:?}"));
    }
}

#[test]
fn html_pages_get_strict_headers() {
    let mut h = HeaderMap::new();
    h.insert("server", HeaderValue::from_static("Apache/2.4.1 (Unix)"));
    h.insert("x-aspnet-version", HeaderValue::from_static("4.0.30319"));
    SecurityHeaders::default().apply(&mut h, ResponseKind::Html);
    assert!(h.get("server").is_none() && h.get("x-aspnet-version").is_none());
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(
        h["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );
}

#[test]
fn portal_output_is_contextually_encoded() {
    let app = r#"Evil App"><img src=x onerror=alert(1)>"#;
    let page = format!(
        r#"<p>{}</p><a title="{}" href="{}">x</a>"#,
        html::text(app),
        html::attr(app),
        html::url_attr(&format!(
            "https://app.example/?name={}",
            html::url_component(app)
        ))
        .unwrap()
    );
    assert!(!page.contains("<img"));
    assert!(!page.contains(r#""><"#));
    assert!(html::url_attr("javascript:alert(1)").is_err());
    assert!(html::url_attr(" javascript:alert(1)").is_err());
    assert!(html::url_attr("vbscript:x").is_err());
}

#[test]
fn redirect_uris_register_and_match_exactly() {
    let ok = [
        "https://app.example.org/callback",
        "https://app.example.org:8443/cb?x=1",
        "http://127.0.0.1:51004/cb",
        "http://[::1]/cb",
    ];
    for u in ok {
        let r = RedirectUri::register(u).unwrap();
        assert!(r.matches(u));
    }
    let bad = [
        "http://app.example.org/cb",
        "https://app.example.org/cb#frag",
        "https://*.example.org/cb",
        "https://app.example.org/*",
        "https://user:pw@app.example.org/cb",
        "app.example.org/cb",
        "com.example.app:/cb",
        "javascript:alert(1)",
        "data:text/html,x",
        "https:///cb",
        "https://app.example.org/../cb",
        "https://app.example.org/%zz",
        "http://localhost/cb",
        "http://127.0.0.2.evil.example/cb",
        "https://app.example.org:99999/cb",
        "",
        "https://app.example.org/c\u{0000}b",
        "https://APP.example.org/cb",
    ];
    for u in bad {
        assert!(RedirectUri::register(u).is_err(), "{u}");
    }
    // A loopback IP redirect matches on any port (RFC 8252 §7.3), and on nothing else.
    let native = RedirectUri::register("http://127.0.0.1:51004/cb").unwrap();
    assert!(native.matches("http://127.0.0.1:6000/cb"));
    assert!(native.matches("http://127.0.0.1/cb"));
    assert!(!native.matches("http://127.0.0.1:6000/cb2"));
    assert!(!native.matches("http://127.0.0.1:6000@evil.example/cb"));
    let r = RedirectUri::register("https://app.example.org/cb").unwrap();
    assert!(!r.matches("https://app.example.org:8443/cb"));
    for near in [
        "https://app.example.org/cb/",
        "https://app.example.org/cb?",
        "https://app.example.org/cb2",
        "https://app.example.org/Cb",
        "https://app.example.org/cb#",
        " https://app.example.org/cb",
    ] {
        assert!(!r.matches(near), "{near}");
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Random queries over a hostile alphabet never panic, and whatever is accepted is
        /// typed one-to-one and free of control characters.
        #[test]
        fn random_queries_are_typed_or_refused(
            q in "[a-z_:.=&%0-9A-F|,<>'\"\\\\ \\-+/]{0,80}",
            ty in prop::sample::select(vec!["Observation", "Patient", "Condition", "Encounter"]),
        ) {
            let s = sanitizer();
            let target = format!("/fhir/{ty}?{q}");
            if let Ok(ok) = s.parse_parts(&Method::GET, &target, &HeaderMap::new(), b"") {
                prop_assert_eq!(ok.typed.len(), ok.request.params.len());
                for p in &ok.request.params {
                    for v in &p.values {
                        prop_assert!(!v.chars().any(char::is_control));
                        let b = v.as_bytes();
                        let escape_left = b.windows(3).any(|w| {
                            w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit()
                        });
                        prop_assert!(!escape_left, "double-encoded survivor {}", v);
                    }
                }
            }
        }

        /// Random paths never panic and never route outside the base.
        #[test]
        fn random_paths_are_routed_or_refused(p in "[A-Za-z0-9_.$%/\\-]{0,40}") {
            let s = sanitizer();
            let target = format!("/fhir/{p}");
            if let Ok(ok) = s.parse_parts(&Method::GET, &target, &HeaderMap::new(), b"") {
                prop_assert!(!target.contains("/../") && !target.contains('%'));
                if let Some(id) = &ok.request.id {
                    prop_assert!(fhirguard::sanitize::is_valid_id(id));
                }
            }
        }
    }
}
