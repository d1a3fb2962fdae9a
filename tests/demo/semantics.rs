//! The portal and the OAuth endpoints as RFC 9110 and RFC 6749 see them: HEAD is GET without
//! the body, a 405 names what is allowed, every answer (redirects too) carries the security
//! headers, and a body over the limit is refused in the endpoint's own language.

use http::Method;

use super::{Reply, assert_head_is_get_without_body, demo, run};

fn assert_security_headers(reply: &Reply, what: &str) {
    assert!(
        reply.header("strict-transport-security").is_some(),
        "{what}: {reply:?}"
    );
    assert_eq!(
        reply.header("x-content-type-options").as_deref(),
        Some("nosniff"),
        "{what}"
    );
    assert!(reply.header("referrer-policy").is_some(), "{what}");
}

#[test]
fn portal_pages_answer_head_and_name_their_methods() {
    let d = demo();
    run(async {
        let mut b = d.browser();
        for path in [
            "/portal",
            "/portal/login",
            "/portal/smart-style.json",
            // The authorization server's documents, an endpoint that takes no GET, no page.
            "/auth/.well-known/jwks.json",
            "/auth/.well-known/openid-configuration",
            "/auth/token",
            "/auth/nope",
        ] {
            let get = b.get(path).await;
            let head = b.send(Method::HEAD, path, &[], Vec::new()).await;
            assert_head_is_get_without_body(&head, &get, path, &["content-type"]);
            assert_security_headers(&head, path);
        }
        for (method, path, allow) in [
            (Method::PUT, "/portal/login", "GET, HEAD, POST"),
            (Method::DELETE, "/portal/apps", "GET, HEAD"),
            (Method::GET, "/portal/logout", "POST"),
            (Method::GET, "/portal/apps/revoke", "POST"),
        ] {
            let reply = b.send(method.clone(), path, &[], Vec::new()).await;
            assert_eq!(reply.status, 405, "{method} {path}");
            assert_eq!(
                reply.header("allow").as_deref(),
                Some(allow),
                "{method} {path}"
            );
            assert_security_headers(&reply, path);
        }
        // The root's redirect to the portal is an answer like any other.
        let root = b.get("/").await;
        assert_eq!(root.status, 303);
        assert_eq!(root.header("location").as_deref(), Some("/portal"));
        assert_security_headers(&root, "/");
    });
}

#[test]
fn a_body_over_the_limit_is_refused_in_the_endpoints_language() {
    let d = demo();
    run(async {
        let mut b = d.browser();
        let big = format!("grant_type=authorization_code&x={}", "a".repeat(300 * 1024));
        let form = [("content-type", "application/x-www-form-urlencoded")];
        let token = d.json["token_endpoint"].as_str().unwrap();
        let reply = b
            .send(Method::POST, token, &form, big.clone().into_bytes())
            .await;
        assert_eq!(reply.status, 413, "{reply:?}");
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{reply:?}"
        );
        assert_eq!(reply.json()["error"], "invalid_request");
        assert_eq!(reply.header("cache-control").as_deref(), Some("no-store"));
        assert_security_headers(&reply, "token");
        let login = b
            .send(Method::POST, "/portal/login", &form, big.into_bytes())
            .await;
        assert_eq!(login.status, 413);
        assert!(
            login
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{login:?}"
        );
        assert_security_headers(&login, "portal");
    });
}

#[test]
fn smart_configuration_is_json_whatever_the_accept_header_says() {
    // SMART App Launch: the discovery document is JSON, and is served as such even to a
    // client asking for something else.
    let d = demo();
    run(async {
        let mut b = d.browser();
        let url = format!("{}/.well-known/smart-configuration", d.fhir());
        for accept in [
            "text/html",
            "application/fhir+xml",
            "*/*",
            "application/json",
        ] {
            let reply = b.get_with(&url, &[("accept", accept)]).await;
            assert_eq!(reply.status, 200, "{accept}: {reply:?}");
            assert!(
                reply
                    .header("content-type")
                    .is_some_and(|t| t.starts_with("application/json")),
                "{accept}"
            );
            let caps = reply.json()["capabilities"].clone();
            for cap in ["permission-v1", "permission-v2", "permission-offline"] {
                assert!(
                    caps.as_array().unwrap().contains(&cap.into()),
                    "{cap} in {caps}"
                );
            }
            assert!(
                !caps
                    .as_array()
                    .unwrap()
                    .contains(&"permission-online".into())
            );
        }
    });
}
