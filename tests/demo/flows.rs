//! The stories: standalone launch by hand (login form → approval form → code → token with
//! PKCE), category enforcement, refresh, revocation in the portal, discovery, backend
//! services, the TOTP step, and hostile inputs.

use base64::Engine as _;
use serde_json::{Value, json};

use fhirguard::auth::{TotpParams, TotpSecret, code_at};
use fhirguard::token::{Algorithm, SigningKey};

use super::{Browser, Demo, Reply, demo, form_action, input_value, query, run};

pub(super) const REDIRECT: &str = "http://127.0.0.1:8765/callback";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(super) fn pkce() -> (String, String) {
    let mut raw = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw).unwrap();
    let verifier = b64(&raw);
    let challenge = b64(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
    (verifier, challenge)
}

pub(super) fn authorize_url(
    d: &Demo,
    client_id: &str,
    scope: &str,
    state: &str,
    challenge: &str,
) -> String {
    let q = super::client::form(&[
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", state),
        ("aud", &d.fhir()),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("nonce", "n-0S6_WzA2Mj"),
    ]);
    format!("{}?{q}", d.json["authorization_endpoint"].as_str().unwrap())
}

/// Logs in through the portal's forms (password, and the TOTP step when it is asked for) and
/// returns the approval page.
pub(super) async fn login(d: &Demo, b: &mut Browser, user: &Value, page: Reply) -> Reply {
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    assert!(
        html.contains("type=\"password\""),
        "a password field: {html}"
    );
    let action = form_action(&html, "name=\"password\"").unwrap();
    let mut fields = vec![
        ("csrf".to_owned(), input_value(&html, "csrf").unwrap()),
        (
            "username".to_owned(),
            user["username"].as_str().unwrap().to_owned(),
        ),
        (
            "password".to_owned(),
            user["password"].as_str().unwrap().to_owned(),
        ),
    ];
    if let Some(r) = input_value(&html, "request") {
        fields.push(("request".to_owned(), r));
    }
    let f: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut reply = b.post_form(&action, &f, &[]).await;
    if reply.status == 200 && reply.text().contains("name=\"code\"") {
        // Second factor.
        let html = reply.text();
        let secret = TotpSecret::from_base32(
            user["totp_secret"]
                .as_str()
                .expect("TOTP asked of a user without one"),
        )
        .unwrap();
        let code = code_at(
            &secret,
            &TotpParams::default(),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let mut fields = vec![
            ("csrf".to_owned(), input_value(&html, "csrf").unwrap()),
            ("code".to_owned(), code),
        ];
        if let Some(r) = input_value(&html, "request") {
            fields.push(("request".to_owned(), r));
        }
        let f: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        reply = b
            .post_form(&form_action(&html, "name=\"code\"").unwrap(), &f, &[])
            .await;
    }
    assert_eq!(reply.status, 303, "login redirects: {}", reply.text());
    let next = reply.location();
    let _ = d;
    b.get(&next).await
}

/// What a launch ended with.
pub(super) struct Launch {
    pub(super) token: Value,
    pub(super) browser: Browser,
}

/// The whole standalone launch: authorize → login → approve `categories` → code → token.
pub(super) async fn launch(
    d: &Demo,
    client_id: &str,
    user: &Value,
    categories: &[&str],
    end_date: Option<&str>,
) -> Result<Launch, Reply> {
    launch_scoped(
        d,
        client_id,
        user,
        categories,
        end_date,
        "launch/patient openid fhirUser offline_access patient/*.rs",
    )
    .await
}

/// [`launch`] with the app asking for `scope`: with `patient/*.rs` every category must be
/// offered; with less, the test checks the page itself.
pub(super) async fn launch_scoped(
    d: &Demo,
    client_id: &str,
    user: &Value,
    categories: &[&str],
    end_date: Option<&str>,
    scope: &str,
) -> Result<Launch, Reply> {
    let mut b = d.browser();
    let (verifier, challenge) = pkce();
    let state = "st-<&>\"'ÿ 1";
    let page = b
        .get(&authorize_url(d, client_id, scope, state, &challenge))
        .await;
    let approval = login(d, &mut b, user, page).await;
    assert_eq!(approval.status, 200, "{}", approval.text());
    // No script may run; the form may post here and (through the redirect) to the app only.
    let csp = approval.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:8765;"),
        "{csp}"
    );
    let html = approval.text();
    let every = if scope.split(' ').any(|s| s == "patient/*.rs") {
        d.json["categories"].as_array().unwrap().clone()
    } else {
        Vec::new()
    };
    for c in &every {
        let id = c["id"].as_str().unwrap();
        assert!(
            html.contains(&format!("name=\"category\" value=\"{id}\"")),
            "checkbox for {id}"
        );
        assert!(
            html.contains(&format!("<label for=\"cat-{id}\">")),
            "label for {id}"
        );
    }
    assert!(html.contains("type=\"date\" id=\"end_date\" name=\"end_date\""));
    assert!(html.contains("value=\"approve\">Approve</button>") && html.contains("value=\"deny\""));
    let max = input_attr(&html, "end_date", "max").unwrap();
    let end = end_date.map_or(max, str::to_owned);
    let csrf = input_value(&html, "csrf").unwrap();
    let request = input_value(&html, "request").unwrap();
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("request", request.as_str()),
        ("end_date", end.as_str()),
        ("decision", "approve"),
    ];
    for c in categories {
        fields.push(("category", c));
    }
    let reply = b
        .post_form(
            &form_action(&html, "name=\"category\"").unwrap(),
            &fields,
            &[],
        )
        .await;
    if !reply.status.is_redirection() {
        return Err(reply);
    }
    let location = reply.location();
    assert!(location.starts_with(REDIRECT), "{location}");
    let q = query(&location);
    assert_eq!(
        q.get("state").map(String::as_str),
        Some(state),
        "state echoed byte for byte"
    );
    let code = q
        .get("code")
        .unwrap_or_else(|| panic!("a code: {location}"))
        .clone();
    let token = exchange(d, &mut b, client_id, &code, &verifier).await;
    assert_eq!(token.status, 200, "{}", token.text());
    assert_eq!(token.header("cache-control").as_deref(), Some("no-store"));
    Ok(Launch {
        token: token.json(),
        browser: b,
    })
}

pub(super) fn input_attr(html: &str, id: &str, attr: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let start = html[..at].rfind('<')?;
    let end = start + html[start..].find('>')?;
    let tag = &html[start..end];
    let needle = format!("{attr}=\"");
    let a = tag.find(&needle)? + needle.len();
    Some(tag[a..a + tag[a..].find('"')?].to_owned())
}

pub(super) async fn exchange(
    d: &Demo,
    b: &mut Browser,
    client_id: &str,
    code: &str,
    verifier: &str,
) -> Reply {
    let token_url = d.json["token_endpoint"].as_str().unwrap().to_owned();
    let client = d.client_by_id(client_id);
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ];
    match client["type"].as_str().unwrap() {
        "confidential-symmetric" => {
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!(
                    "{client_id}:{}",
                    client["client_secret"].as_str().unwrap()
                ))
            );
            b.post_form(&token_url, &fields, &[("authorization", &basic)])
                .await
        }
        "confidential-asymmetric" | "backend" => {
            let assertion = client_assertion(d, client);
            let mut f = fields.to_vec();
            f.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
            f.push(("client_assertion", &assertion));
            b.post_form(&token_url, &f, &[]).await
        }
        _ => {
            let mut f = fields.to_vec();
            f.push(("client_id", client_id));
            b.post_form(&token_url, &f, &[]).await
        }
    }
}

pub(super) fn client_assertion(d: &Demo, client: &Value) -> String {
    let pem = std::fs::read_to_string(client["private_key_pem"].as_str().unwrap()).unwrap();
    let alg = Algorithm::from_name(client["alg"].as_str().unwrap()).unwrap();
    let key = SigningKey::from_pem(alg, client["kid"].as_str().unwrap(), &pem).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let id = client["client_id"].as_str().unwrap();
    let claims = json!({
        "iss": id, "sub": id, "aud": d.json["token_endpoint"], "exp": now + 240,
        "jti": b64(&rand_bytes()),
    });
    key.sign_jwt("JWT", &claims).unwrap()
}

fn rand_bytes() -> [u8; 16] {
    let mut raw = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw).unwrap();
    raw
}

pub(super) fn bearer(token: &Value) -> String {
    format!("Bearer {}", token["access_token"].as_str().unwrap())
}

pub(super) fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

fn observation_categories(r: &Value) -> Vec<String> {
    r["category"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["coding"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["code"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn discovery_metadata_and_unauthenticated_access() {
    let d = demo();
    run(async {
        let mut b = d.browser();
        let fhir = d.fhir();
        let sc = b
            .get_with(
                &format!("{fhir}/.well-known/smart-configuration"),
                &[("origin", "https://app.example")],
            )
            .await;
        assert_eq!(sc.status, 200);
        assert!(
            sc.header("content-type")
                .unwrap()
                .starts_with("application/json")
        );
        assert_eq!(
            sc.header("access-control-allow-origin").as_deref(),
            Some("*")
        );
        let sc = sc.json();
        assert_eq!(sc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(sc["issuer"], d.json["issuer"]);
        for cap in [
            "launch-standalone",
            "client-public",
            "client-confidential-symmetric",
            "client-confidential-asymmetric",
            "sso-openid-connect",
            "permission-v2",
        ] {
            assert!(
                sc["capabilities"].as_array().unwrap().contains(&json!(cap)),
                "{cap}"
            );
        }
        let oidc = b
            .get(&format!(
                "{}/.well-known/openid-configuration",
                d.json["issuer"].as_str().unwrap()
            ))
            .await
            .json();
        assert_eq!(oidc["issuer"], d.json["issuer"]);
        assert!(
            oidc["id_token_signing_alg_values_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("RS256"))
        );
        let jwks = b.get(oidc["jwks_uri"].as_str().unwrap()).await.json();
        assert!(
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kty"] == "RSA")
        );

        let meta = b.get(&format!("{fhir}/metadata")).await;
        assert_eq!(meta.status, 200);
        assert!(
            meta.header("content-type")
                .unwrap()
                .starts_with("application/fhir+json")
        );
        assert_eq!(
            meta.header("access-control-allow-origin").as_deref(),
            Some("*")
        );
        let meta = meta.json();
        assert_eq!(meta["resourceType"], "CapabilityStatement");
        assert_eq!(meta["fhirVersion"], "4.0.1");
        let security = &meta["rest"][0]["security"];
        assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
        let uris = &security["extension"][0];
        assert_eq!(
            uris["url"],
            "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
        );
        let find = |name: &str| {
            uris["extension"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["url"] == name)
                .unwrap()["valueUri"]
                .clone()
        };
        assert_eq!(find("authorize"), sc["authorization_endpoint"]);
        assert_eq!(find("token"), sc["token_endpoint"]);
        let types: Vec<&str> = meta["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["type"].as_str().unwrap())
            .collect();
        assert!(types.contains(&"Observation") && types.contains(&"Patient"));

        // HEAD answers like GET, without the body.
        for path in ["metadata", ".well-known/smart-configuration"] {
            let head = b
                .send(
                    http::Method::HEAD,
                    &format!("{fhir}/{path}"),
                    &[],
                    Vec::new(),
                )
                .await;
            assert_eq!(head.status, 200, "HEAD {path}");
            assert!(head.body.is_empty(), "HEAD {path} has no body");
        }

        let no_token = b.get(&format!("{fhir}/Patient/355")).await;
        assert_eq!(no_token.status, 401);
        assert_eq!(
            no_token.header("www-authenticate").as_deref(),
            Some("Bearer realm=\"fhir\"")
        );
        assert_eq!(no_token.json()["resourceType"], "OperationOutcome");
        let bad = b
            .get_with(
                &format!("{fhir}/Patient/355"),
                &[("authorization", "Bearer not.a.token")],
            )
            .await;
        assert_eq!(bad.status, 401);
        assert!(
            bad.header("www-authenticate")
                .unwrap()
                .contains("invalid_token")
        );
        // Hostile input is refused before anything else, as an OperationOutcome.
        let hostile = b
            .get(&format!("{fhir}/Observation?patient=355&code=%252e%252e"))
            .await;
        assert!(
            hostile.status == 400 || hostile.status == 401,
            "{}",
            hostile.status
        );
    });
}

#[test]
fn approve_two_categories_read_them_refresh_revoke() {
    const APP: &str = "hostile-name-app";
    let d = demo();
    run(async {
        let user = d.user(false);
        let patient = user["patient_id"].as_str().unwrap();
        // An app no other test of this binary launches: its Revoke ends every grant of it.
        let Launch { token, mut browser } =
            launch(d, APP, user, &["vital-signs", "laboratory"], None)
                .await
                .unwrap();
        assert_eq!(token["token_type"], "Bearer");
        assert!(token["expires_in"].is_i64());
        assert_eq!(token["patient"], patient);
        assert!(token["id_token"].is_string() && token["refresh_token"].is_string());
        let scope = token["scope"].as_str().unwrap();
        assert!(
            scope.contains("openid") && scope.contains("offline_access"),
            "{scope}"
        );
        assert!(
            scope.contains("patient/Observation.rs?category="),
            "granular scopes: {scope}"
        );
        assert!(
            !scope.contains("patient/*.rs"),
            "never the whole record: {scope}"
        );

        let fhir = d.fhir();
        let auth = bearer(&token);
        let h = [("authorization", auth.as_str())];
        // Approved: vital signs and labs.
        let vitals = browser
            .get_with(
                &format!("{fhir}/Observation?patient={patient}&category=vital-signs"),
                &h,
            )
            .await;
        assert_eq!(vitals.status, 200, "{}", vitals.text());
        assert!(!entries(&vitals.json()).is_empty());
        // A read carries the version as a weak ETag and Last-Modified (FHIR R4 http.html#read).
        let first = &entries(&vitals.json())[0];
        let read = browser
            .get_with(
                &format!("{fhir}/Observation/{}", first["id"].as_str().unwrap()),
                &h,
            )
            .await;
        assert_eq!(read.status, 200, "{}", read.text());
        let version = read.json()["meta"]["versionId"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(read.header("etag"), Some(format!("W/\"{version}\"")));
        let modified = read.header("last-modified").unwrap();
        assert!(
            modified.ends_with(" GMT") && modified.len() == 29,
            "{modified}"
        );
        let all = browser
            .get_with(
                &format!("{fhir}/Observation?patient={patient}&_count=200"),
                &h,
            )
            .await;
        assert_eq!(all.status, 200, "{}", all.text());
        // `_count=0`: no entries (a page never holds more than asked), and no total, which
        // would count what the grant hides.
        let none = browser
            .get_with(
                &format!("{fhir}/Observation?patient={patient}&_count=0"),
                &h,
            )
            .await;
        assert_eq!(none.status, 200, "{}", none.text());
        assert_eq!(none.json()["resourceType"], "Bundle");
        assert!(entries(&none.json()).is_empty(), "{}", none.text());
        assert!(none.json().get("total").is_none(), "{}", none.text());
        let all = entries(&all.json());
        assert!(!all.is_empty());
        for o in &all {
            let cats = observation_categories(o);
            assert!(
                cats.iter().any(|c| c == "vital-signs" || c == "laboratory"),
                "only approved categories: {cats:?}"
            );
        }
        // Denied: smoking status comes back without data; problems are refused.
        let smoking = browser
            .get_with(
                &format!("{fhir}/Observation?patient={patient}&code=http://loinc.org|72166-2"),
                &h,
            )
            .await;
        assert!(
            smoking.status == 200 || smoking.status == 403,
            "{}",
            smoking.status
        );
        if smoking.status == 200 {
            assert!(
                entries(&smoking.json()).is_empty(),
                "no smoking status leaks"
            );
        }
        let problems = browser
            .get_with(&format!("{fhir}/Condition?patient={patient}"), &h)
            .await;
        if problems.status == 200 {
            assert!(
                entries(&problems.json()).is_empty(),
                "no problems leak: {}",
                problems.text()
            );
        } else {
            assert!(
                problems.status == 403 || problems.status == 401,
                "{}",
                problems.status
            );
        }
        // Another patient's data looks like nothing at all.
        let other = if patient == "355" { "85" } else { "355" };
        let other_read = browser
            .get_with(&format!("{fhir}/Patient/{other}"), &h)
            .await;
        assert!(
            other_read.status == 404 || other_read.status == 403,
            "{}",
            other_read.status
        );
        assert_eq!(other_read.json()["resourceType"], "OperationOutcome");
        let other_search = browser
            .get_with(&format!("{fhir}/Observation?patient={other}"), &h)
            .await;
        assert_ne!(other_search.status, 200, "{}", other_search.text());

        // Leak probes: totals count only what may be seen, includes bring nothing of another
        // patient or of a denied category, and a search by the other patient's id is refused.
        let counted = browser
            .get_with(
                &format!("{fhir}/Observation?patient={patient}&_summary=count"),
                &h,
            )
            .await;
        if counted.status == 200 {
            let total = counted.json()["total"].as_u64().unwrap_or(0);
            assert!(
                total <= all.len() as u64,
                "total {total} reveals more than the {} visible",
                all.len()
            );
        }
        let included = browser
            .get_with(&format!("{fhir}/Observation?patient={patient}&_include=Observation:subject&_revinclude=Provenance:target"), &h)
            .await;
        if included.status == 200 {
            for r in entries(&included.json()) {
                assert_ne!(r["id"].as_str(), Some(other), "another patient included");
                if r["resourceType"] == "Observation" {
                    let cats = observation_categories(&r);
                    assert!(
                        cats.iter().any(|c| c == "vital-signs" || c == "laboratory"),
                        "{cats:?}"
                    );
                }
            }
        }
        let by_id = browser
            .get_with(&format!("{fhir}/Patient?_id={other}"), &h)
            .await;
        if by_id.status == 200 {
            assert!(entries(&by_id.json()).is_empty(), "another patient by _id");
        }
        let subject = browser
            .get_with(&format!("{fhir}/Observation?subject=Patient/{other}"), &h)
            .await;
        if subject.status == 200 {
            assert!(
                entries(&subject.json()).is_empty(),
                "another patient by subject"
            );
        }

        // Refresh works.
        let token_url = d.json["token_endpoint"].as_str().unwrap().to_owned();
        let refresh = token["refresh_token"].as_str().unwrap().to_owned();
        let refreshed = browser
            .post_form(
                &token_url,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &refresh),
                    ("client_id", APP),
                ],
                &[],
            )
            .await;
        assert_eq!(refreshed.status, 200, "{}", refreshed.text());
        let refreshed = refreshed.json();
        let new_auth = bearer(&refreshed);
        let ok = browser
            .get_with(
                &format!("{fhir}/Observation?patient={patient}&category=laboratory"),
                &[("authorization", &new_auth)],
            )
            .await;
        assert_eq!(ok.status, 200);

        // A second approval of the same app (another grant): listed under the same app, and
        // cut off by the same Revoke.
        let second = launch(d, APP, user, &["demographics"], None).await.unwrap();
        let second_auth = bearer(&second.token);

        // The connected-apps page shows the app, its categories and its history; revoke it.
        let apps = browser.get("/portal/apps").await;
        assert_eq!(apps.status, 200);
        let html = apps.text();
        assert!(
            html.contains("&lt;script&gt;alert(&quot;xss&quot;)&lt;/script&gt;")
                && html.contains("Vital signs")
                && html.contains("Lab results"),
            "{html}"
        );
        assert!(html.contains("Access history"));
        assert!(
            apps.header("content-security-policy")
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        // The app has one Revoke button beside its name, for all of its grants.
        assert_eq!(
            html.matches(&format!("name=\"client\" value=\"{APP}\""))
                .count(),
            1,
            "one Revoke button for the app"
        );
        let csrf = input_value(&html, "csrf").unwrap();
        let revoked = browser
            .post_form(
                "/portal/apps/revoke",
                &[("csrf", &csrf), ("client", APP)],
                &[],
            )
            .await;
        assert_eq!(revoked.status, 303, "{}", revoked.text());
        assert!(
            browser
                .get("/portal/apps")
                .await
                .text()
                .contains("Revoked on")
        );

        // The next read and the refresh are refused, for both grants of the app.
        let after = browser
            .get_with(
                &format!("{fhir}/Observation?patient={patient}&category=laboratory"),
                &[("authorization", &new_auth)],
            )
            .await;
        assert_eq!(after.status, 401);
        let after = browser
            .get_with(
                &format!("{fhir}/Patient/{patient}"),
                &[("authorization", &second_auth)],
            )
            .await;
        assert_eq!(after.status, 401, "the second grant is revoked too");
        let r2 = refreshed["refresh_token"].as_str().unwrap();
        let refused = browser
            .post_form(
                &token_url,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", r2),
                    ("client_id", APP),
                ],
                &[],
            )
            .await;
        assert_eq!(refused.status, 400, "{}", refused.text());
        assert_eq!(refused.json()["error"], "invalid_grant");
        // Introspection of the old token now says inactive.
        let intro = browser
            .post_form(
                d.json["issuer"]
                    .as_str()
                    .map(|i| format!("{i}/introspect"))
                    .unwrap()
                    .as_str(),
                &[("token", token["access_token"].as_str().unwrap())],
                &[("authorization", &bearer(&token))],
            )
            .await;
        assert!(
            intro.status == 200 || intro.status == 401,
            "{}",
            intro.status
        );
        if intro.status == 200 {
            assert_eq!(intro.json(), json!({"active": false}));
        }
    });
}

#[test]
fn totp_user_symmetric_client_and_deny() {
    let d = demo();
    run(async {
        let user = d.user(true);
        // Confidential client with a shared secret, TOTP step on sign-in.
        let Launch { token, mut browser } = launch(
            d,
            "clinic-companion",
            user,
            &["demographics", "immunizations"],
            None,
        )
        .await
        .unwrap();
        assert_eq!(token["patient"], user["patient_id"]);
        let fhir = d.fhir();
        let me = browser
            .get_with(
                &format!("{fhir}/Patient/{}", user["patient_id"].as_str().unwrap()),
                &[("authorization", &bearer(&token))],
            )
            .await;
        assert_eq!(me.status, 200, "{}", me.text());
        assert_eq!(me.json()["id"], user["patient_id"]);
        assert_eq!(
            me.header("content-type").as_deref(),
            Some("application/fhir+json; charset=utf-8")
        );

        // Deny: access_denied with the state, no code.
        let mut b = d.browser();
        let (_, challenge) = pkce();
        let page = b
            .get(&authorize_url(
                d,
                "research-app",
                "launch/patient patient/*.rs",
                "deny-state",
                &challenge,
            ))
            .await;
        // (A TOTP code works once, so the deny story signs in the account without one.)
        let approval = login(d, &mut b, d.user(false), page).await;
        let html = approval.text();
        let fields = [
            ("csrf", input_value(&html, "csrf").unwrap()),
            ("request", input_value(&html, "request").unwrap()),
            ("decision", "deny".to_owned()),
        ];
        let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let denied = b.post_form("/portal/consent", &f, &[]).await;
        assert!(denied.status.is_redirection());
        let q = query(&denied.location());
        assert_eq!(q.get("error").map(String::as_str), Some("access_denied"));
        assert_eq!(q.get("state").map(String::as_str), Some("deny-state"));
        assert!(!q.contains_key("code"));
    });
}

#[test]
fn asymmetric_and_backend_clients() {
    let d = demo();
    run(async {
        let user = d.user(false);
        let Launch { token, mut browser } =
            launch(d, "wellness-tracker", user, &["vital-signs"], None)
                .await
                .unwrap();
        assert!(token["access_token"].is_string());
        // Backend services: client_credentials with an RS384 assertion.
        let backend = d.client("backend");
        let assertion = client_assertion(d, backend);
        let token_url = d.json["token_endpoint"].as_str().unwrap().to_owned();
        let reply = browser
            .post_form(
                &token_url,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "system/Patient.rs"),
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
        let t = reply.json();
        assert!(t["expires_in"].as_i64().unwrap() <= 300);
        assert!(t.get("refresh_token").is_none());
        let patients = browser
            .get_with(
                &format!("{}/Patient", d.fhir()),
                &[("authorization", &bearer(&t))],
            )
            .await;
        assert_eq!(patients.status, 200, "{}", patients.text());
        assert_eq!(entries(&patients.json()).len(), 2);
        // The same assertion twice is a replay.
        let again = browser
            .post_form(
                &token_url,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "system/Patient.rs"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &assertion),
                ],
                &[],
            )
            .await;
        // invalid_client; 400 because the assertion was in the form, not an Authorization
        // header (RFC 6749 §5.2).
        assert_eq!(again.status, 400, "{}", again.text());
        assert_eq!(again.json()["error"], "invalid_client");
        assert!(again.header("www-authenticate").is_none());
    });
}

#[test]
fn hostile_inputs_in_the_portal() {
    let d = demo();
    run(async {
        let mut b = d.browser();
        let (_, challenge) = pkce();
        // A hostile app name is shown as text.
        let page = b
            .get(&authorize_url(
                d,
                "hostile-name-app",
                "launch/patient patient/*.rs",
                "s",
                &challenge,
            ))
            .await;
        assert_eq!(page.status, 200);
        let html = page.text();
        assert!(
            !html.contains("<script>") && !html.contains("<img"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(
            !page
                .header("content-security-policy")
                .unwrap()
                .contains("unsafe-inline")
        );
        // A login without the form's CSRF token is refused.
        let user = d.user(false);
        let forged = b
            .post_form(
                "/portal/login",
                &[
                    ("username", user["username"].as_str().unwrap()),
                    ("password", user["password"].as_str().unwrap()),
                ],
                &[],
            )
            .await;
        assert_eq!(forged.status, 400);
        // Wrong password: no session.
        let csrf = input_value(&html, "csrf").unwrap();
        let wrong = b
            .post_form(
                "/portal/login",
                &[
                    ("csrf", &csrf),
                    ("username", "dustin"),
                    ("password", "nope"),
                ],
                &[],
            )
            .await;
        assert_eq!(wrong.status, 200);
        assert!(wrong.text().contains("not correct"));
        let apps = b.get("/portal/apps").await.text();
        assert!(!apps.contains("Apps connected to"), "not signed in");

        // An end date more than a year ahead is refused with a clear error.
        let err = launch(
            d,
            "research-app",
            user,
            &["vital-signs"],
            Some("2099-01-01"),
        )
        .await
        .err()
        .expect("refused");
        assert_eq!(err.status, 400);
        assert!(err.text().contains("at most one year"), "{}", err.text());
        // Unregistered redirect URI: an error page, no redirect.
        let bad = b
            .get(
                &authorize_url(d, "research-app", "patient/*.rs", "s", &challenge)
                    .replace("127.0.0.1%3A8765", "evil.example"),
            )
            .await;
        assert_eq!(bad.status, 400);
        assert!(bad.header("location").is_none());
    });
}

#[test]
fn audit_log_verifies_and_records_accesses() {
    use fhirguard::audit::{EventKind, KeyId, KeyRing, Verifier, read_log_dir, verify_log_dir};
    let d = demo();
    run(async {
        let mut b = d.browser();
        let backend = d.client("backend");
        let assertion = client_assertion(d, backend);
        let token_url = d.json["token_endpoint"].as_str().unwrap().to_owned();
        let t = b
            .post_form(
                &token_url,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "system/Observation.rs"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &assertion),
                ],
                &[],
            )
            .await
            .json();
        let read = b
            .get_with(
                &format!("{}/Observation?_count=5", d.fhir()),
                &[("authorization", &bearer(&t))],
            )
            .await;
        assert_eq!(read.status, 200, "{}", read.text());
    });
    let secrets: Value =
        serde_json::from_slice(&std::fs::read(d.dir.join("secrets.json")).unwrap()).unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secrets["audit_key_b64"].as_str().unwrap())
        .unwrap();
    let keys = KeyRing::new(KeyId::new("demo-1").unwrap(), &key).unwrap();
    let audit = d.dir.join("audit");
    let verified = verify_log_dir(Verifier::new(&keys), &audit, "audit").unwrap();
    assert!(verified.records > 0);
    let records = read_log_dir(&audit, "audit").unwrap();
    assert!(records.iter().any(|r| {
        let rec = r.record();
        rec.event == EventKind::RestAccess
            && rec
                .client
                .as_ref()
                .is_some_and(|c| c.as_str() == "population-health")
    }));
    // A wrong key does not verify the same log.
    let wrong = KeyRing::new(KeyId::new("demo-1").unwrap(), &[0u8; 32]).unwrap();
    assert!(verify_log_dir(Verifier::new(&wrong), &audit, "audit").is_err());
}

#[test]
fn restart_reuses_certificates_keys_and_secrets() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let config = || crate::ehr::EhrConfig {
            data_dir: dir.path().to_owned(),
            addr: "127.0.0.1:0".parse().unwrap(),
            dangerous_weak_password_hashing: true,
            request_timeout: crate::ehr::DEFAULT_REQUEST_TIMEOUT,
        };
        let first = crate::ehr::start(config()).await.unwrap();
        let before = first.demo.clone();
        let ca_before = std::fs::read(before["ca_cert"].as_str().unwrap()).unwrap();
        first.stop().await;
        let second = crate::ehr::start(config()).await.unwrap();
        let after = second.demo.clone();
        let ca_after = std::fs::read(after["ca_cert"].as_str().unwrap()).unwrap();
        assert_eq!(
            ca_before, ca_after,
            "the CA is generated once per data directory"
        );
        let creds = |doc: &Value| -> Vec<(Value, Value, Value)> {
            doc["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| {
                    (
                        u["username"].clone(),
                        u["password"].clone(),
                        u["totp_secret"].clone(),
                    )
                })
                .collect()
        };
        assert_eq!(
            creds(&before),
            creds(&after),
            "passwords and TOTP secrets are kept"
        );
        for kind in [
            "confidential-symmetric",
            "confidential-asymmetric",
            "backend",
        ] {
            let find = |doc: &Value| {
                doc["clients"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["type"] == kind)
                    .unwrap()
                    .clone()
            };
            let (b, a) = (find(&before), find(&after));
            assert_eq!(b["client_secret"], a["client_secret"]);
            assert_eq!(b["private_key_pem"], a["private_key_pem"]);
            assert_eq!(b["kid"], a["kid"]);
        }
        // demo.json on disk describes the running server.
        let on_disk: Value =
            serde_json::from_slice(&std::fs::read(&second.demo_json).unwrap()).unwrap();
        assert_eq!(
            on_disk["fhir_base_url"],
            json!(format!("{}/fhir", second.base_url))
        );
        second.stop().await;
    });
}

/// The EHR launch: the patient opens an app from the portal; the app comes back with the
/// launch handle, she approves, and the token response carries her record as the context.
#[test]
fn ehr_launch_from_the_portal() {
    let d = demo();
    run(async {
        let user = d.user(false);
        let patient = user["patient_id"].as_str().unwrap();
        let config = d
            .browser()
            .get(&format!("{}/.well-known/smart-configuration", d.fhir()))
            .await
            .json();
        let caps = config["capabilities"].as_array().unwrap();
        for cap in [
            "launch-ehr",
            "context-ehr-patient",
            "context-banner",
            "context-style",
        ] {
            assert!(caps.contains(&cap.into()), "{cap}");
        }
        assert!(
            !caps.contains(&"permission-user".into()),
            "no practitioner users"
        );
        let supported = config["scopes_supported"].as_array().unwrap();
        assert!(
            !supported
                .iter()
                .any(|s| s.as_str().unwrap().starts_with("user/"))
        );
        let client = d.client_by_id("research-app");
        let launch_uri = client["launch_uri"].as_str().unwrap();

        let mut b = d.browser();
        let page = b.get(&format!("{}/portal/login", d.base)).await;
        let apps = login(d, &mut b, user, page).await;
        assert_eq!(apps.status, 200);
        let page = b.get(&format!("{}/portal/launch", d.base)).await;
        assert_eq!(page.status, 200);
        let html = page.text();
        assert!(
            html.contains("aria-label=\"Open S4S Research App\""),
            "{html}"
        );
        assert!(
            !html.contains("Population Health"),
            "backends are not opened"
        );
        let csp = page.header("content-security-policy").unwrap();
        assert!(
            csp.contains("form-action 'self' http://127.0.0.1:8765;"),
            "{csp}"
        );
        let csrf = input_value(&html, "csrf").unwrap();
        let opened = b
            .post_form(
                &format!("{}/portal/launch", d.base),
                &[("csrf", &csrf), ("client_id", "research-app")],
                &[],
            )
            .await;
        assert_eq!(opened.status, 303, "{}", opened.text());
        let location = opened.location();
        assert!(
            location.starts_with(&format!("{launch_uri}?")),
            "{location}"
        );
        let q = query(&location);
        assert_eq!(q["iss"], d.fhir(), "iss is exactly the FHIR base URL");
        let handle = q["launch"].clone();
        assert!(!handle.contains(patient));

        // The app, launched: authorize with the handle and the `launch` scope.
        let (verifier, challenge) = pkce();
        let url = format!(
            "{}&launch={}",
            authorize_url(
                d,
                "research-app",
                "launch openid fhirUser offline_access patient/*.rs",
                "ehr-1",
                &challenge
            ),
            super::client::form(&[("x", &handle)]).trim_start_matches("x=")
        );
        let approval = b.get(&url).await;
        assert_eq!(approval.status, 200, "{}", approval.text());
        let html = approval.text();
        let fields = [
            ("csrf", input_value(&html, "csrf").unwrap()),
            ("request", input_value(&html, "request").unwrap()),
            ("end_date", input_attr(&html, "end_date", "max").unwrap()),
            ("decision", "approve".to_owned()),
            ("category", "vital-signs".to_owned()),
        ];
        let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = b
            .post_form(&form_action(&html, "name=\"category\"").unwrap(), &f, &[])
            .await;
        assert!(reply.status.is_redirection(), "{}", reply.text());
        let q = query(&reply.location());
        assert_eq!(q["state"], "ehr-1");
        let token = exchange(d, &mut b, "research-app", &q["code"], &verifier).await;
        assert_eq!(token.status, 200, "{}", token.text());
        let token = token.json();
        assert_eq!(token["patient"], patient, "the launch's patient");
        assert_eq!(token["need_patient_banner"], true);
        let scope = token["scope"].as_str().unwrap();
        assert!(scope.split(' ').any(|s| s == "launch"), "{scope}");
        let style_url = token["smart_style_url"].as_str().unwrap();
        let style = d.browser().get(style_url).await;
        assert_eq!(style.status, 200);
        assert!(
            style
                .header("content-type")
                .unwrap()
                .starts_with("application/json")
        );
        assert!(style.json()["color_background"].is_string());

        // The handle was used up by the approval: a replay gets an error, never a page.
        let (_, challenge) = pkce();
        let replay = b
            .get(&format!(
                "{}&launch={}",
                authorize_url(
                    d,
                    "research-app",
                    "launch openid patient/*.rs",
                    "ehr-2",
                    &challenge
                ),
                super::client::form(&[("x", &handle)]).trim_start_matches("x=")
            ))
            .await;
        assert!(replay.status.is_redirection(), "{}", replay.status);
        let q = query(&replay.location());
        assert_eq!(q["error"], "invalid_request");
        assert_eq!(q["state"], "ehr-2");
        assert!(!q.contains_key("code"));

        // Another app may not present it, and an unknown client cannot be opened.
        let refused = b
            .post_form(
                &format!("{}/portal/launch", d.base),
                &[("csrf", &csrf), ("client_id", "population-health")],
                &[],
            )
            .await;
        assert_eq!(refused.status, 200);
        assert!(refused.text().contains("cannot be opened"));
        // Without the session's CSRF token nothing is launched.
        let forged = b
            .post_form(
                &format!("{}/portal/launch", d.base),
                &[("csrf", "forged"), ("client_id", "research-app")],
                &[],
            )
            .await;
        assert_eq!(forged.status, 400);
    });
}

/// FHIR's general parameters: `_format` with a JSON type and `_pretty` work on every path;
/// other formats are refused with a 406 OperationOutcome.
#[test]
fn format_and_pretty_are_general_parameters() {
    let d = demo();
    run(async {
        let mut b = d.browser();
        let fhir = d.fhir();
        for q in [
            "_format=json",
            "_format=application/fhir%2Bjson",
            "_pretty=true",
        ] {
            let meta = b.get(&format!("{fhir}/metadata?{q}")).await;
            assert_eq!(meta.status, 200, "{q}: {}", meta.text());
            assert_eq!(meta.json()["resourceType"], "CapabilityStatement");
        }
        let xml = b.get(&format!("{fhir}/metadata?_format=xml")).await;
        assert_eq!(xml.status, 406);
        assert_eq!(xml.json()["resourceType"], "OperationOutcome");
    });
}

/// One approval form is used up once: of two submissions racing each other (a double click),
/// exactly one gets a code. Before that, a submission another site made, or with two
/// disclosure digests, is refused and leaves the request to the real one.
#[test]
fn an_approval_form_gives_one_code_and_refuses_cross_site_and_doubled_fields() {
    let d = demo();
    run(async {
        let user = d.user(false);
        let mut b = d.browser();
        let (_verifier, challenge) = pkce();
        let scope = "launch/patient openid fhirUser patient/*.rs";
        let page = b
            .get(&authorize_url(d, "research-app", scope, "race", &challenge))
            .await;
        let approval = login(d, &mut b, user, page).await;
        assert_eq!(approval.status, 200, "{}", approval.text());
        let html = approval.text();
        let action = form_action(&html, "name=\"category\"").unwrap();
        let csrf = input_value(&html, "csrf").unwrap();
        let request = input_value(&html, "request").unwrap();
        let disclosure = input_value(&html, "disclosure").unwrap();
        let end = input_attr(&html, "end_date", "max").unwrap();
        let fields = vec![
            ("csrf", csrf.as_str()),
            ("request", request.as_str()),
            ("disclosure", disclosure.as_str()),
            ("end_date", end.as_str()),
            ("decision", "approve"),
            ("category", "vital-signs"),
        ];
        for headers in [
            &[("origin", "https://evil.example")][..],
            &[("sec-fetch-site", "cross-site")][..],
        ] {
            let reply = b.post_form(&action, &fields, headers).await;
            assert_eq!(reply.status, 400, "{headers:?}: {}", reply.text());
        }
        let mut doubled = fields.clone();
        doubled.push(("disclosure", "0000"));
        let reply = b.post_form(&action, &doubled, &[]).await;
        assert_eq!(reply.status, 400, "{}", reply.text());

        let mut twin = b.twin();
        let own_origin = b.base.clone();
        let headers = [("origin", own_origin.as_str())];
        let (one, other) = tokio::join!(
            b.post_form(&action, &fields, &headers),
            twin.post_form(&action, &fields, &headers)
        );
        let codes = [&one, &other]
            .iter()
            .filter(|r| r.status.is_redirection() && r.location().contains("code="))
            .count();
        assert_eq!(codes, 1, "{} / {}", one.status, other.status);
        assert!(
            [&one, &other].iter().any(|r| r.status == 400),
            "{} / {}",
            one.status,
            other.status
        );
    });
}
