//! The demo's FHIR API as a strict reader of FHIR R4, RFC 6750 and RFC 9110 sees it: scope
//! denials challenge with `insufficient_scope`, every 405 carries `Allow`, HEAD is GET without
//! the body, writes and history (which the demo does not offer) are 405, `_count` above the
//! maximum is capped, `_summary`/`_elements` are 400 `not-supported`, search inputs the store
//! cannot apply are 400 rather than ignored.

use serde_json::Value;

use super::flows::{bearer, client_assertion, entries};
use super::{Browser, Demo, assert_head_is_get_without_body, demo, run};

/// A backend-services token for `scope` (client_credentials with the demo's RS384 key).
async fn backend_token(d: &Demo, b: &mut Browser, scope: &str) -> String {
    let assertion = client_assertion(d, d.client("backend"));
    let reply = b
        .post_form(
            d.json["token_endpoint"].as_str().unwrap(),
            &[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &assertion),
            ],
            &[],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    bearer(&reply.json())
}

fn issue_code(body: &Value) -> &str {
    body["issue"][0]["code"].as_str().unwrap_or("")
}

#[test]
fn the_fhir_api_on_the_wire() {
    let d = demo();
    run(async {
        let mut b = d.browser();
        let fhir = d.fhir();
        let auth = backend_token(d, &mut b, "system/Patient.rs").await;
        let h = [("authorization", auth.as_str())];

        // RFC 6750 §3.1: a valid token without the scope → 403 insufficient_scope.
        let obs = b.get_with(&format!("{fhir}/Observation"), &h).await;
        assert_eq!(obs.status, 403, "{}", obs.text());
        assert_eq!(
            obs.header("www-authenticate").as_deref(),
            Some(r#"Bearer realm="fhir", error="insufficient_scope""#)
        );

        // HEAD: GET's status and headers, the GET body's length, no body.
        for path in [
            "Patient/355",
            "Patient?_count=1",
            "Patient/nope",
            "Observation",
        ] {
            let get = b.get_with(&format!("{fhir}/{path}"), &h).await;
            let head = b
                .send(
                    http::Method::HEAD,
                    &format!("{fhir}/{path}"),
                    &h,
                    Vec::new(),
                )
                .await;
            assert_head_is_get_without_body(
                &head,
                &get,
                path,
                &["content-type", "etag", "last-modified", "www-authenticate"],
            );
        }

        // Writes (read-only API) and history (not offered): 405 with Allow, before any body
        // or token is looked at.
        for (method, path, allow) in [
            (http::Method::PUT, "Patient", "GET, HEAD"),
            (http::Method::PUT, "Patient/355", "GET, HEAD"),
            (http::Method::PATCH, "Patient/355", "GET, HEAD"),
            (http::Method::DELETE, "Patient/355", "GET, HEAD"),
            (http::Method::POST, "Patient", "GET, HEAD"),
            (http::Method::GET, "Patient/_history", ""),
            (http::Method::GET, "Patient/355/_history", ""),
        ] {
            for headers in [&h[..], &[]] {
                let reply = b
                    .send(
                        method.clone(),
                        &format!("{fhir}/{path}"),
                        headers,
                        Vec::new(),
                    )
                    .await;
                assert_eq!(reply.status, 405, "{method} {path}: {}", reply.text());
                assert_eq!(
                    reply.header("allow").as_deref(),
                    Some(allow),
                    "{method} {path}"
                );
                assert_eq!(issue_code(&reply.json()), "not-supported");
            }
        }
        // The vread the CapabilityStatement declares still works.
        let vread = b
            .get_with(&format!("{fhir}/Patient/355/_history/1"), &h)
            .await;
        assert_eq!(vread.status, 200, "{}", vread.text());

        // `_count` above the maximum: a page of what there is, not a 400.
        let many = b.get_with(&format!("{fhir}/Patient?_count=1000"), &h).await;
        assert_eq!(many.status, 200, "{}", many.text());
        assert_eq!(entries(&many.json()).len(), 2);
        let zero = b.get_with(&format!("{fhir}/Patient?_count=0"), &h).await;
        assert_eq!(zero.status, 200, "{}", zero.text());
        assert!(entries(&zero.json()).is_empty());

        // Operations the CapabilityStatement does not declare (the store answers only
        // `$everything`): refused by the guard as not supported; without a token, the 401
        // comes first (RFC 6750 §3).
        for q in [
            "DocumentReference/$docref?patient=355",
            "$export",
            "Patient/$export",
            "Group/1/$export",
        ] {
            let reply = b.get_with(&format!("{fhir}/{q}"), &h).await;
            assert_eq!(reply.status, 400, "{q}: {}", reply.text());
            assert_eq!(issue_code(&reply.json()), "not-supported", "{q}");
            let anonymous = b.get_with(&format!("{fhir}/{q}"), &[]).await;
            assert_eq!(anonymous.status, 401, "{q}: {}", anonymous.text());
            assert_eq!(
                anonymous.header("www-authenticate").as_deref(),
                Some("Bearer realm=\"fhir\""),
                "{q}"
            );
        }

        // `_summary`/`_elements`: 400 not-supported (strict), `_summary=false` the whole thing.
        for q in [
            "Patient?_summary=true",
            "Patient?_summary=count",
            "Patient?_elements=id",
            "Patient/355?_summary=true",
            "Patient/355?_elements=name",
        ] {
            let reply = b.get_with(&format!("{fhir}/{q}"), &h).await;
            assert_eq!(reply.status, 400, "{q}: {}", reply.text());
            assert_eq!(issue_code(&reply.json()), "not-supported", "{q}");
        }
        let full = b
            .get_with(&format!("{fhir}/Patient/355?_summary=false"), &h)
            .await;
        let plain = b.get_with(&format!("{fhir}/Patient/355"), &h).await;
        assert_eq!(full.status, 200, "{}", full.text());
        assert_eq!(full.body, plain.body);

        // Search inputs are applied or refused, never ignored, and the `self` link names
        // only what was applied (R4 search.html).
        let auth = backend_token(d, &mut b, "system/Patient.rs system/Observation.rs").await;
        let h = [("authorization", auth.as_str())];
        let sorted = b
            .get_with(
                &format!("{fhir}/Observation?patient=355&category=vital-signs&_sort=-date"),
                &h,
            )
            .await;
        assert_eq!(sorted.status, 200, "{}", sorted.text());
        let sorted = sorted.json();
        let latest: Vec<String> = entries(&sorted)
            .iter()
            .map(|r| {
                r["effectiveDateTime"]
                    .as_str()
                    .or_else(|| r["effectivePeriod"]["start"].as_str())
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(latest.len(), 27);
        // The 2013 vitals first (the 1994 period ends in 1994).
        assert!(latest[0].starts_with("2013-09-05"), "{latest:?}");
        assert!(latest[26].starts_with("1940-09-05"), "{latest:?}");
        let self_link = sorted["link"][0]["url"].as_str().unwrap();
        assert_eq!(sorted["link"][0]["relation"], "self");
        assert!(self_link.contains("_sort=-date"), "{self_link}");
        for (q, count) in [
            ("category=vital-signs&category:missing=false", 27),
            ("category:missing=true", 0),
            ("category:text=vital", 27),
        ] {
            let reply = b
                .get_with(&format!("{fhir}/Observation?patient=355&{q}"), &h)
                .await;
            assert_eq!(reply.status, 200, "{q}: {}", reply.text());
            assert_eq!(entries(&reply.json()).len(), count, "{q}");
        }
        for q in [
            "Observation?patient=355&code:in=http://x",
            "Observation?patient=355&_sort=code",
            "Patient/355/$everything?_count=10",
            "Patient/355/$everything?start=2020-01-01",
        ] {
            let reply = b.get_with(&format!("{fhir}/{q}"), &h).await;
            assert_eq!(reply.status, 400, "{q}: {}", reply.text());
            assert_eq!(issue_code(&reply.json()), "invalid", "{q}");
        }
        let everything = b
            .get_with(
                &format!("{fhir}/Patient/355/$everything?_type=Observation"),
                &h,
            )
            .await;
        assert_eq!(everything.status, 200, "{}", everything.text());
        let everything = everything.json();
        let members = entries(&everything);
        assert_eq!(members.len(), 140);
        assert!(members.iter().all(|r| r["resourceType"] == "Observation"));
        assert!(
            everything["link"][0]["url"]
                .as_str()
                .unwrap()
                .ends_with("/Patient/355/$everything?_type=Observation")
        );

        // The CapabilityStatement has an ETag (R4 http.html#capabilities) that stays while
        // the statement does, and HEAD says the same.
        let first = b.get(&format!("{fhir}/metadata")).await;
        let etag = first.header("etag").expect("metadata ETag");
        assert!(etag.starts_with("W/\"") && etag.ends_with('"'), "{etag}");
        let again = b.get(&format!("{fhir}/metadata")).await;
        assert_eq!(again.header("etag"), Some(etag.clone()));
        let head = b
            .send(
                http::Method::HEAD,
                &format!("{fhir}/metadata"),
                &[],
                Vec::new(),
            )
            .await;
        assert_head_is_get_without_body(&head, &first, "metadata", &["content-type", "etag"]);

        // The CapabilityStatement offers neither `_summary`/`_elements` nor history.
        let meta = first.json();
        let text = meta.to_string();
        assert!(!text.contains("_summary") && !text.contains("_elements"));
        for r in meta["rest"][0]["resource"].as_array().unwrap() {
            let codes: Vec<&str> = r["interaction"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["code"].as_str().unwrap())
                .collect();
            assert_eq!(codes, ["read", "vread", "search-type"], "{}", r["type"]);
        }
    });
}
