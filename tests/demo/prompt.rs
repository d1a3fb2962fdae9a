//! OIDC `prompt` and `max_age` at the portal (OIDC Core §3.1.2.1): `prompt=none` shows no page
//! (`login_required` / `consent_required` at the redirect URI, with `state`); `prompt=login`
//! and `max_age=0` ask a signed-in patient to sign in again.

use super::flows::{REDIRECT, authorize_url, login, pkce};
use super::{demo, query, run};

const SCOPE: &str = "launch/patient openid fhirUser patient/*.rs";

#[test]
fn prompt_none_never_shows_a_page_and_prompt_login_re_authenticates() {
    let d = demo();
    run(async {
        let user = d.user(false);
        let mut b = d.browser();
        let (_, challenge) = pkce();
        let state = "p-<&>\"' 1";
        let url = authorize_url(d, "research-app", SCOPE, state, &challenge);

        // Not signed in: login_required, no login page.
        let reply = b.get(&format!("{url}&prompt=none")).await;
        assert_eq!(reply.status, 302, "{}", reply.text());
        let location = reply.location();
        assert!(location.starts_with(REDIRECT), "{location}");
        let q = query(&location);
        assert_eq!(q.get("error").map(String::as_str), Some("login_required"));
        assert_eq!(q.get("state").map(String::as_str), Some(state));
        assert!(!q.contains_key("code"));

        // Signed in (the approval page is shown without prompt).
        let page = b.get(&url).await;
        let approval = login(d, &mut b, user, page).await;
        assert_eq!(approval.status, 200);
        assert!(approval.text().contains("name=\"category\""));

        // Signed in but consent is needed: consent_required, no approval page.
        let reply = b.get(&format!("{url}&prompt=none")).await;
        assert_eq!(reply.status, 302, "{}", reply.text());
        let q = query(&reply.location());
        assert_eq!(q.get("error").map(String::as_str), Some("consent_required"));
        assert_eq!(q.get("state").map(String::as_str), Some(state));

        // `none` with another value is contradictory.
        let reply = b.get(&format!("{url}&prompt=none%20login")).await;
        assert_eq!(reply.status, 302);
        assert_eq!(
            query(&reply.location()).get("error").map(String::as_str),
            Some("invalid_request")
        );

        // prompt=login and max_age=0: the sign-in page again, despite the session.
        for extra in ["prompt=login", "max_age=0"] {
            let reply = b.get(&format!("{url}&{extra}")).await;
            assert_eq!(reply.status, 200, "{extra}");
            let html = reply.text();
            assert!(html.contains("type=\"password\""), "{extra}: {html}");
            assert!(!html.contains("name=\"category\""), "{extra}");
        }
        // A generous max_age keeps the session.
        let reply = b.get(&format!("{url}&max_age=3600")).await;
        assert_eq!(reply.status, 200);
        assert!(reply.text().contains("name=\"category\""));
        // And signing in again after prompt=login leads to the approval page.
        let page = b.get(&format!("{url}&prompt=login")).await;
        let approval = login(d, &mut b, user, page).await;
        assert_eq!(approval.status, 200);
        assert!(approval.text().contains("name=\"category\""));
    });
}

#[test]
fn a_request_reaching_no_category_goes_back_as_invalid_scope_without_a_page() {
    let d = demo();
    run(async {
        let user = d.user(false);
        let mut b = d.browser();
        let (_, challenge) = pkce();
        // A granular scope whose category code lacks its system reaches no category the
        // registry knows: there is nothing to tick.
        let scope = "launch/patient openid patient/Observation.rs?category=laboratory";
        let url = authorize_url(d, "research-app", scope, "s-1", &challenge);
        let reply = b.get(&url).await;
        assert_eq!(reply.status, 302, "{}", reply.text());
        let location = reply.location();
        assert!(location.starts_with(REDIRECT), "{location}");
        let q = query(&location);
        assert_eq!(q.get("error").map(String::as_str), Some("invalid_scope"));
        assert_eq!(q.get("state").map(String::as_str), Some("s-1"));
        assert!(!q.contains_key("code"));

        // Signed in, the same: no approval page with nothing on it.
        let page = b
            .get(&authorize_url(d, "research-app", SCOPE, "s-2", &challenge))
            .await;
        let approval = login(d, &mut b, user, page).await;
        assert_eq!(approval.status, 200);
        let reply = b.get(&url).await;
        assert_eq!(reply.status, 302, "{}", reply.text());
        assert_eq!(
            query(&reply.location()).get("error").map(String::as_str),
            Some("invalid_scope")
        );
    });
}
