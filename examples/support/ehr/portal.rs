//! The patient portal: sign-in (password, then TOTP where the risk policy asks for it), the
//! approval page of the authorization flow, and the connected-apps page with revocation.
//!
//! Sessions are server-side, keyed by a random 256-bit id in a `__Host-` cookie (`HttpOnly;
//! Secure; SameSite=Lax; Path=/`), renewed at sign-in (no fixation). Every form carries the
//! session's CSRF token, compared in constant time. Logins go through `LoginThrottle`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use subtle::ConstantTimeEq as _;
use time::{Date, Duration, OffsetDateTime, Time};

use axum::body::Bytes;
use fhirguard::audit::{
    AccessHistory as _, AccessQuery, Actor, ActorRole, AuditRecord, DenyReason as AuditDeny,
    EventKind, FhirUser, FhirUserType, Outcome, ResourceId, UserId,
};
use fhirguard::auth::{
    FailureKind, LoginAttempt, Password, Prompt, RiskContext, RiskPolicy as _, RiskRequest,
    UserType,
};
use fhirguard::enforce::{Permissions, ResourceGrant, ScopeContext};
use fhirguard::middleware::AuthorizeHost;
use fhirguard::sanitize::ResponseKind;
use fhirguard::scope::{Context, Permission, ScopeSet, TypeSelector};
use fhirguard::token::{Approval, AuthorizationServer, AuthorizeRequest};
use fhirguard::{CategoryId, GrantId, ResourceType};

use super::pages::{self, Chrome};
use super::{Ehr, Peer, Req, Resp, setup};
use fhirguard::consent::{
    Approver, ConsentError, ConsentStore as _, Disclosure, GrantState, RightOfAccessRequest,
};

const COOKIE: &str = "__Host-fg_session";
const SESSION_IDLE: Duration = Duration::minutes(30);
const PENDING_TTL: Duration = Duration::minutes(10);
const MAX_SESSIONS: usize = 10_000;
const MAX_PENDING: usize = 10_000;
const MAX_FORM_FIELDS: usize = 128;

/// A browser session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub csrf: String,
    /// Index into `Ehr::users` once signed in.
    pub user: Option<usize>,
    /// Password checked, waiting for the second factor.
    pub awaiting_totp: Option<usize>,
    pub aal2: bool,
    pub auth_time: OffsetDateTime,
    pub last_seen: OffsetDateTime,
}

/// An authorization request waiting for sign-in and approval.
#[derive(Clone)]
pub(crate) struct Pending {
    pub request: AuthorizeRequest,
    pub session: String,
    pub created: OffsetDateTime,
}

fn cookie_session<B>(req: &http::Request<B>) -> Option<String> {
    for value in req.headers().get_all(header::COOKIE) {
        let Ok(s) = value.to_str() else { continue };
        for part in s.split(';') {
            if let Some(v) = part
                .trim()
                .strip_prefix(COOKIE)
                .and_then(|r| r.strip_prefix('='))
            {
                if v.len() == 43
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Some(v.to_owned());
                }
            }
        }
    }
    None
}

fn set_cookie(r: &mut Resp, id: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Lax"
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn clear_cookie(r: &mut Resp) {
    r.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-fg_session=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0",
        ),
    );
}

/// The current session (touching it), or a fresh anonymous one. Returns (id, session, new?).
fn session_for<B>(ehr: &Ehr, req: &http::Request<B>) -> Option<(String, Session, bool)> {
    let now = Ehr::now();
    let mut sessions = ehr.sessions.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(id) = cookie_session(req) {
        if let Some(s) = sessions.get_mut(&id) {
            if now - s.last_seen <= SESSION_IDLE {
                s.last_seen = now;
                return Some((id, s.clone(), false));
            }
            sessions.remove(&id);
        }
    }
    if sessions.len() >= MAX_SESSIONS {
        sessions.retain(|_, s| now - s.last_seen <= SESSION_IDLE);
        if sessions.len() >= MAX_SESSIONS {
            return None;
        }
    }
    let id = setup::random_token().ok()?;
    let session = Session {
        csrf: setup::random_token().ok()?,
        user: None,
        awaiting_totp: None,
        aal2: false,
        auth_time: now,
        last_seen: now,
    };
    sessions.insert(id.clone(), session.clone());
    Some((id, session, true))
}

fn existing_session(ehr: &Ehr, req: &Req) -> Option<(String, Session)> {
    let id = cookie_session(req)?;
    let now = Ehr::now();
    let mut sessions = ehr.sessions.lock().unwrap_or_else(|p| p.into_inner());
    let s = sessions.get_mut(&id)?;
    if now - s.last_seen > SESSION_IDLE {
        sessions.remove(&id);
        return None;
    }
    s.last_seen = now;
    Some((id, s.clone()))
}

/// Replaces the session id (at every privilege change) and moves its pending requests along.
fn renew_session(
    ehr: &Ehr,
    old: &str,
    update: impl FnOnce(&mut Session),
) -> Option<(String, Session)> {
    let new_id = setup::random_token().ok()?;
    let csrf = setup::random_token().ok()?;
    let mut sessions = ehr.sessions.lock().unwrap_or_else(|p| p.into_inner());
    let mut session = sessions.remove(old)?;
    update(&mut session);
    session.csrf = csrf;
    session.last_seen = Ehr::now();
    sessions.insert(new_id.clone(), session.clone());
    drop(sessions);
    let mut pending = ehr.pending.lock().unwrap_or_else(|p| p.into_inner());
    for p in pending.values_mut() {
        if p.session == old {
            p.session = new_id.clone();
        }
    }
    Some((new_id, session))
}

fn parse_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    let fields: Vec<(String, String)> = form_urlencoded::parse(body)
        .take(MAX_FORM_FIELDS + 1)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (fields.len() <= MAX_FORM_FIELDS).then_some(fields)
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut values = form
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    let first = values.next()?;
    // A repeated single-valued field is refused, not guessed at.
    values.next().is_none().then_some(first)
}

/// A posted form's fields, in order.
type Form = Vec<(String, String)>;

/// A form this portal served, posted back: the fields, the session id and the session;
/// `None` when the form, the session or its CSRF token is not right (answer `expired`).
fn posted_form(ehr: &Ehr, req: &Req) -> Option<(Form, String, Session)> {
    if cross_site(req) {
        return None;
    }
    let form = parse_form(req.body())?;
    let (sid, session) = existing_session(ehr, req)?;
    csrf_ok(&session, &form).then_some((form, sid, session))
}

/// A second line of defence behind the CSRF token (OWASP: verify the origin with standard
/// headers): a browser that says the form came from another site (`Sec-Fetch-Site`), or an
/// `Origin` that is not this server's, is refused. A request without either (a script, an
/// older browser) and `Origin: null` (what browsers send under `Referrer-Policy:
/// no-referrer`, which these pages set) rest on the token alone.
fn cross_site(req: &Req) -> bool {
    let headers = req.headers();
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| matches!(site, "cross-site" | "same-site"))
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if origin == "null" {
        return false;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    !host.is_some_and(|host| origin.eq_ignore_ascii_case(&format!("https://{host}")))
}

fn csrf_ok(session: &Session, form: &[(String, String)]) -> bool {
    match field(form, "csrf") {
        Some(token) => bool::from(token.as_bytes().ct_eq(session.csrf.as_bytes())),
        None => false,
    }
}

fn html(ehr: &Ehr, status: StatusCode, body: String) -> Resp {
    let mut r = Response::new(body.into_bytes());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    ehr.headers.apply(r.headers_mut(), ResponseKind::Html);
    r
}

fn see_other(ehr: &Ehr, location: &str) -> Resp {
    let mut r = super::redirect_see_other(location);
    ehr.headers.apply(r.headers_mut(), ResponseKind::Html);
    r
}

pub(crate) fn problem_page(
    ehr: &Ehr,
    status: StatusCode,
    csrf: &str,
    title: &str,
    message: &str,
) -> Resp {
    let chrome = Chrome {
        csrf,
        signed_in_as: None,
    };
    html(ehr, status, pages::problem(&chrome, title, message))
}

fn source_of(req: &Req) -> IpAddr {
    req.extensions()
        .get::<Peer>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.ip())
}

fn pending_for(ehr: &Ehr, id: &str, session: &str) -> Option<Pending> {
    let now = Ehr::now();
    let mut pending = ehr.pending.lock().unwrap_or_else(|p| p.into_inner());
    pending.retain(|_, p| now - p.created <= PENDING_TTL);
    pending.get(id).filter(|p| p.session == session).cloned()
}

/// "1 second", "30 seconds".
fn seconds(n: i64) -> String {
    if n == 1 {
        "1 second".to_owned()
    } else {
        format!("{n} seconds")
    }
}

/// Takes the pending request out, if this session still holds it: of two submissions of one
/// approval form (a double click, a replay racing the first), exactly one gets it.
fn claim_pending(ehr: &Ehr, id: &str, session: &str) -> Option<Pending> {
    let mut pending = ehr.pending.lock().unwrap_or_else(|p| p.into_inner());
    if pending.get(id).is_some_and(|p| p.session == session) {
        pending.remove(id)
    } else {
        None
    }
}

/// Puts a claimed request back (its approval could not be saved: she may try again).
fn restore_pending(ehr: &Ehr, id: String, claimed: Pending) {
    ehr.pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, claimed);
}

fn user_name(ehr: &Ehr, session: &Session) -> Option<String> {
    session
        .user
        .and_then(|i| ehr.users.get(i))
        .map(|u| u.display_name.clone())
}

/// The categories an authorization request could reach: the only ones the approval page
/// offers, the disclosure names and a POST may choose (the authorization server issues no
/// scope outside the request, so any other category would be shown as shared but grant
/// nothing). Also what the risk policy weighs.
fn requested_categories(ehr: &Ehr, scope: &ScopeSet) -> Vec<CategoryId> {
    let grants = resource_grants(scope);
    ehr.registry
        .reachable_categories(&grants)
        .into_iter()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// /auth/authorize
// ---------------------------------------------------------------------------------------------

/// The portal's part of `GET|POST /auth/authorize` for `fhirguard::middleware::SmartEndpoints`:
/// the endpoint validated the request (and answered the invalid ones); the portal signs the
/// patient in and shows the approval page.
pub(crate) struct PortalHost(pub(crate) std::sync::Weak<Ehr>);

impl AuthorizeHost for PortalHost {
    fn authorize(
        &self,
        _server: &AuthorizationServer,
        request: AuthorizeRequest,
        raw: &http::Request<Bytes>,
        _now: OffsetDateTime,
    ) -> Resp {
        match self.0.upgrade() {
            Some(ehr) => authorize(&ehr, request, raw),
            // The server is shutting down.
            None => super::text_response(StatusCode::SERVICE_UNAVAILABLE, "Unavailable\n"),
        }
    }
}

/// A validated authorization request: sign-in, then approval.
fn authorize(ehr: &Ehr, request: AuthorizeRequest, req: &http::Request<Bytes>) -> Resp {
    let Some((sid, session, new)) = session_for(ehr, req) else {
        return problem_page(
            ehr,
            StatusCode::SERVICE_UNAVAILABLE,
            "",
            "Busy",
            "The portal is busy; try again shortly.",
        );
    };
    // The endpoint checked that some resource scope may be granted; whether any of them
    // reaches a data category is the registry's call (a granular scope naming a category code
    // without its system, say, reaches none). An approval page with nothing to tick would
    // ask the patient to approve nothing: `invalid_scope` back to the app (RFC 6749 §4.1.2.1).
    if requested_categories(ehr, &request.scope).is_empty() {
        return no_ui_redirect(ehr, &request, "invalid_scope");
    }
    // OIDC Core §3.1.2.1: `prompt=login` and an exceeded `max_age` re-authenticate even a
    // signed-in user; `prompt=none` shows no page at all.
    let prompt = AuthPrompt::of(req);
    let reauthenticate = prompt.login
        || prompt
            .max_age
            .is_some_and(|max| (Ehr::now() - session.auth_time).whole_seconds() >= max);
    let approve_now =
        session.user.is_some() && !reauthenticate && session_suffices(ehr, &session, &request);
    if prompt.none {
        let error = if prompt.login {
            // `none` with any other value is contradictory.
            "invalid_request"
        } else if approve_now {
            "consent_required"
        } else {
            "login_required"
        };
        return no_ui_redirect(ehr, &request, error);
    }
    let Ok(pending_id) = setup::random_token() else {
        return problem_page(
            ehr,
            StatusCode::INTERNAL_SERVER_ERROR,
            "",
            "Error",
            "Something went wrong.",
        );
    };
    {
        let now = Ehr::now();
        let mut pending = ehr.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, p| now - p.created <= PENDING_TTL);
        if pending.len() >= MAX_PENDING {
            return problem_page(
                ehr,
                StatusCode::SERVICE_UNAVAILABLE,
                "",
                "Busy",
                "The portal is busy; try again shortly.",
            );
        }
        pending.insert(
            pending_id.clone(),
            Pending {
                request: request.clone(),
                session: sid.clone(),
                created: now,
            },
        );
    }
    let mut r = if approve_now {
        approval_page(
            ehr,
            &session,
            &pending_id,
            &request,
            None,
            None,
            StatusCode::OK,
        )
    } else {
        let chrome = Chrome {
            csrf: &session.csrf,
            signed_in_as: None,
        };
        let app = ehr.client_name(&request.client.id);
        html(
            ehr,
            StatusCode::OK,
            pages::login(&chrome, Some(&pending_id), Some(&app), None),
        )
    };
    if new {
        set_cookie(&mut r, &sid);
    }
    r
}

/// The OIDC `prompt` and `max_age` of an authorization request (query for GET, form for POST;
/// the endpoint has already validated the rest).
#[derive(Debug, Default)]
struct AuthPrompt {
    none: bool,
    login: bool,
    max_age: Option<i64>,
}

impl AuthPrompt {
    fn of(req: &http::Request<Bytes>) -> Self {
        let raw: &[u8] = if req.method() == http::Method::POST {
            req.body()
        } else {
            req.uri().query().unwrap_or("").as_bytes()
        };
        let mut out = Self::default();
        for (k, v) in form_urlencoded::parse(raw).take(MAX_FORM_FIELDS) {
            match k.as_ref() {
                "prompt" => {
                    for value in v.split(' ') {
                        match value {
                            "none" => out.none = true,
                            // `consent` and `select_account`: the portal always asks for
                            // consent and has one account per session.
                            "login" => out.login = true,
                            _ => {}
                        }
                    }
                }
                "max_age" => out.max_age = v.parse::<i64>().ok().filter(|m| *m >= 0),
                _ => {}
            }
        }
        out
    }
}

/// An error the portal finds (`prompt=none` when it would have to show a page, or a request
/// that reaches no category): `error` (with `state`) at the registered redirect URI the
/// endpoint validated, without any UI.
fn no_ui_redirect(ehr: &Ehr, request: &AuthorizeRequest, error: &str) -> Resp {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("error", error);
    query.append_pair("state", &request.state);
    let sep = if request.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    let redirect = fhirguard::token::AuthorizeRedirect {
        // Spaces as %20, as the library's own redirects write them (a literal `+` is %2B).
        location: format!(
            "{}{sep}{}",
            request.redirect_uri,
            query.finish().replace('+', "%20")
        ),
        status: if request.via_post {
            StatusCode::SEE_OTHER
        } else {
            StatusCode::FOUND
        },
    };
    let mut r = redirect.to_response();
    ehr.headers.apply(r.headers_mut(), ResponseKind::Html);
    r
}

/// Whether a signed-in session is strong enough for this request under the risk policy.
fn session_suffices(ehr: &Ehr, session: &Session, request: &AuthorizeRequest) -> bool {
    let Some(user) = session.user.and_then(|i| ehr.users.get(i)) else {
        return false;
    };
    let categories = requested_categories(ehr, &request.scope);
    let step = ehr.risk.assess(&RiskRequest {
        user_type: UserType::Patient,
        categories: &categories,
        context: RiskContext {
            new_device: false,
            new_address: false,
            session: Some(fhirguard::auth::Session {
                achieved: if session.aal2 {
                    fhirguard::auth::Aal::Aal2
                } else {
                    fhirguard::auth::Aal::Aal1
                },
                authenticated_ago: Ehr::now() - session.auth_time,
            }),
        },
    });
    match step.prompt {
        Prompt::Nothing => true,
        // Accounts without an enrolled second factor can only reach AAL1.
        _ => {
            user.totp.is_none()
                && !matches!(
                    step.prompt,
                    Prompt::Password | Prompt::PasswordAndSecondFactor
                )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /portal/*
// ---------------------------------------------------------------------------------------------

/// The methods each portal path answers (the `Allow` of its 405); `None` for no such page.
fn allowed_methods(path: &str) -> Option<&'static str> {
    Some(match path {
        "/portal" | "/portal/" | "/portal/apps" | "/portal/smart-style.json" => "GET, HEAD",
        "/portal/login" | "/portal/consent" | "/portal/launch" => "GET, HEAD, POST",
        "/portal/totp" | "/portal/apps/revoke" | "/portal/logout" => "POST",
        _ => return None,
    })
}

pub(crate) async fn handle(ehr: &Arc<Ehr>, req: &Req) -> Resp {
    // HEAD is GET without the body (RFC 9110 §9.3.2): same status and headers, the GET
    // body's length.
    if req.method() == Method::HEAD {
        let mut get = Request::new(req.body().clone());
        *get.method_mut() = Method::GET;
        *get.uri_mut() = req.uri().clone();
        *get.headers_mut() = req.headers().clone();
        *get.extensions_mut() = req.extensions().clone();
        let mut response = Box::pin(handle(ehr, &get)).await;
        let len = response.body().len();
        response.body_mut().clear();
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        return response;
    }
    let path = req.uri().path();
    match (req.method().clone(), path) {
        (Method::GET, "/portal" | "/portal/" | "/portal/login") => login_page(ehr, req),
        (Method::POST, "/portal/login") => login_post(ehr, req).await,
        (Method::POST, "/portal/totp") => totp_post(ehr, req),
        (Method::GET, "/portal/consent") => consent_get(ehr, req),
        (Method::POST, "/portal/consent") => consent_post(ehr, req),
        (Method::GET, "/portal/apps") => apps_page(ehr, req, None),
        (Method::POST, "/portal/apps/revoke") => revoke_post(ehr, req),
        (Method::POST, "/portal/logout") => logout_post(ehr, req),
        (Method::GET, "/portal/launch") => launch_page(ehr, req, None),
        (Method::POST, "/portal/launch") => launch_post(ehr, req),
        (Method::GET, "/portal/smart-style.json") => smart_style(ehr),
        (_, path) if allowed_methods(path).is_some() => {
            let mut r =
                super::text_response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed\n");
            ehr.headers.apply(r.headers_mut(), ResponseKind::Html);
            if let Some(allow) = allowed_methods(path) {
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            r
        }
        _ => {
            let mut r = super::text_response(StatusCode::NOT_FOUND, "Not found\n");
            ehr.headers.apply(r.headers_mut(), ResponseKind::Html);
            r
        }
    }
}

fn login_page(ehr: &Ehr, req: &Req) -> Resp {
    let Some((sid, session, new)) = session_for(ehr, req) else {
        return problem_page(
            ehr,
            StatusCode::SERVICE_UNAVAILABLE,
            "",
            "Busy",
            "The portal is busy; try again shortly.",
        );
    };
    if session.user.is_some() {
        return see_other(ehr, "/portal/apps");
    }
    let chrome = Chrome {
        csrf: &session.csrf,
        signed_in_as: None,
    };
    let mut r = html(ehr, StatusCode::OK, pages::login(&chrome, None, None, None));
    if new {
        set_cookie(&mut r, &sid);
    }
    r
}

fn expired(ehr: &Ehr, req: &Req) -> Resp {
    // A fresh session so the visitor can start again.
    let (sid, csrf, new) = match session_for(ehr, req) {
        Some((sid, s, new)) => (sid, s.csrf, new),
        None => (String::new(), String::new(), false),
    };
    let mut r = problem_page(
        ehr,
        StatusCode::BAD_REQUEST,
        &csrf,
        "Please start again",
        "This form has expired or was not sent by this portal. Go back to the app and start the connection again.",
    );
    if new {
        set_cookie(&mut r, &sid);
    }
    r
}

async fn login_post(ehr: &Arc<Ehr>, req: &Req) -> Resp {
    let Some((form, sid, session)) = posted_form(ehr, req) else {
        return expired(ehr, req);
    };
    let request_id = field(&form, "request").map(str::to_owned);
    let pending = match &request_id {
        Some(id) => match pending_for(ehr, id, &sid) {
            Some(p) => Some(p),
            None => return expired(ehr, req),
        },
        None => None,
    };
    let app_name = pending
        .as_ref()
        .map(|p| ehr.client_name(&p.request.client.id));
    let username = field(&form, "username").unwrap_or("").trim().to_lowercase();
    let password = field(&form, "password").unwrap_or("").to_owned();
    let source = source_of(req);
    let rerender = |status: StatusCode, error: &str| {
        let chrome = Chrome {
            csrf: &session.csrf,
            signed_in_as: None,
        };
        html(
            ehr,
            status,
            pages::login(
                &chrome,
                request_id.as_deref(),
                app_name.as_deref(),
                Some(error),
            ),
        )
    };
    if username.is_empty() || username.len() > 128 || password.is_empty() || password.len() > 1024 {
        return rerender(StatusCode::OK, "Enter your user name and password.");
    }
    let attempt = LoginAttempt {
        account: &username,
        source,
        known_device: false,
    };
    if let Err(throttled) = ehr.throttle.check(&attempt) {
        if let Some(t) = Ehr::audit_time() {
            let mut rec = AuditRecord::new(
                t,
                EventKind::LoginFailed,
                Outcome::Denied(AuditDeny::AccountLocked),
            );
            rec.source = Some(source);
            ehr.record(rec);
        }
        let secs = throttled.retry_after.whole_seconds().max(1);
        let mut r = rerender(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "Too many failed sign-ins. Wait {} and try again.",
                seconds(secs)
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    // PBKDF2 off the async workers.
    let user_index = ehr.users.iter().position(|u| u.username == username);
    let ehr2 = Arc::clone(ehr);
    let matched = tokio::task::spawn_blocking(move || {
        let password = Password::new(password);
        match user_index.and_then(|i| ehr2.users.get(i)) {
            Some(user) => ehr2
                .hasher
                .verify(&password, &user.hash)
                .is_ok_and(|c| c.is_match()),
            None => {
                let _ = ehr2.hasher.verify_unknown_user(&password);
                false
            }
        }
    })
    .await
    .unwrap_or(false);
    let Some(index) = user_index.filter(|_| matched) else {
        let kind = if user_index.is_some() {
            FailureKind::WrongPassword
        } else {
            FailureKind::UnknownAccount
        };
        let _ = ehr.throttle.record_failure(&attempt, kind);
        if let Some(t) = Ehr::audit_time() {
            let mut rec = AuditRecord::new(
                t,
                EventKind::LoginFailed,
                Outcome::Denied(AuditDeny::BadCredentials),
            );
            rec.source = Some(source);
            ehr.record(rec);
        }
        return rerender(StatusCode::OK, "The user name or password is not correct.");
    };
    let user = &ehr.users[index];
    // What does the risk policy ask for, given the data this request could reach?
    let categories: Vec<CategoryId> = match &pending {
        Some(p) => requested_categories(ehr, &p.request.scope),
        None => ehr.registry.ids().cloned().collect(),
    };
    let step = ehr.risk.assess(&RiskRequest {
        user_type: UserType::Patient,
        categories: &categories,
        context: RiskContext::default(),
    });
    let needs_totp = matches!(
        step.prompt,
        Prompt::PasswordAndSecondFactor | Prompt::SecondFactor
    ) && user.totp.is_some();
    if needs_totp {
        let Some((new_sid, new_session)) = renew_session(ehr, &sid, |s| {
            s.awaiting_totp = Some(index);
            s.user = None;
            s.aal2 = false;
        }) else {
            return expired(ehr, req);
        };
        let chrome = Chrome {
            csrf: &new_session.csrf,
            signed_in_as: None,
        };
        let why = "Because the app may see sensitive data, this sign-in needs a second step.";
        let mut r = html(
            ehr,
            StatusCode::OK,
            pages::totp(&chrome, request_id.as_deref(), why, None),
        );
        set_cookie(&mut r, &new_sid);
        return r;
    }
    complete_login(ehr, req, &sid, index, false, request_id.as_deref())
}

fn complete_login(
    ehr: &Ehr,
    req: &Req,
    sid: &str,
    index: usize,
    aal2: bool,
    request_id: Option<&str>,
) -> Resp {
    let user = &ehr.users[index];
    let attempt = LoginAttempt {
        account: &user.username,
        source: source_of(req),
        known_device: false,
    };
    let _ = ehr.throttle.record_success(&attempt);
    let now = Ehr::now();
    let Some((new_sid, _)) = renew_session(ehr, sid, |s| {
        s.user = Some(index);
        s.awaiting_totp = None;
        s.aal2 = aal2;
        s.auth_time = now;
    }) else {
        return expired(ehr, req);
    };
    if let Some(t) = Ehr::audit_time() {
        let mut rec = AuditRecord::new(t, EventKind::LoginSucceeded, Outcome::Success);
        rec.source = Some(source_of(req));
        rec.patient = Some(user.patient.clone());
        rec.actor = Some(patient_actor(user));
        ehr.record(rec);
    }
    let location = match request_id {
        Some(id) => format!(
            "/portal/consent?request={}",
            fhirguard::sanitize::html::url_component(id)
        ),
        None => "/portal/apps".to_owned(),
    };
    let mut r = see_other(ehr, &location);
    set_cookie(&mut r, &new_sid);
    r
}

fn patient_actor(user: &super::User) -> Actor {
    let mut actor = Actor::new(ActorRole::Patient);
    actor.user = UserId::new(user.username.as_str()).ok();
    actor.fhir_user = ResourceId::new(user.patient.as_str())
        .ok()
        .map(|id| FhirUser::new(FhirUserType::Patient, id));
    actor
}

fn totp_post(ehr: &Ehr, req: &Req) -> Resp {
    let Some((form, sid, session)) = posted_form(ehr, req) else {
        return expired(ehr, req);
    };
    let Some(index) = session.awaiting_totp else {
        return expired(ehr, req);
    };
    let request_id = field(&form, "request").map(str::to_owned);
    if let Some(id) = &request_id {
        if pending_for(ehr, id, &sid).is_none() {
            return expired(ehr, req);
        }
    }
    let user = &ehr.users[index];
    let source = source_of(req);
    let attempt = LoginAttempt {
        account: &user.username,
        source,
        known_device: false,
    };
    let chrome = Chrome {
        csrf: &session.csrf,
        signed_in_as: None,
    };
    let why = "Because the app may see sensitive data, this sign-in needs a second step.";
    if let Err(throttled) = ehr.throttle.check(&attempt) {
        let secs = throttled.retry_after.whole_seconds().max(1);
        let mut r = html(
            ehr,
            StatusCode::TOO_MANY_REQUESTS,
            pages::totp(
                &chrome,
                request_id.as_deref(),
                why,
                Some(&format!("Too many attempts. Wait {}.", seconds(secs))),
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let code = field(&form, "code").unwrap_or("");
    let verified = match &user.totp {
        Some(cred) => {
            let mut cred = cred.lock().unwrap_or_else(|p| p.into_inner());
            cred.verify(code, Ehr::now())
        }
        None => return expired(ehr, req),
    };
    match verified {
        Ok(_) => complete_login(ehr, req, &sid, index, true, request_id.as_deref()),
        Err(err) => {
            let kind = if matches!(err, fhirguard::auth::TotpError::Replayed) {
                FailureKind::ReplayedSecondFactor
            } else {
                FailureKind::WrongSecondFactor
            };
            let _ = ehr.throttle.record_failure(&attempt, kind);
            if let Some(t) = Ehr::audit_time() {
                let mut rec = AuditRecord::new(
                    t,
                    EventKind::MfaFailed,
                    Outcome::Denied(AuditDeny::MfaInvalid),
                );
                rec.source = Some(source);
                rec.patient = Some(user.patient.clone());
                ehr.record(rec);
            }
            html(
                ehr,
                StatusCode::OK,
                pages::totp(
                    &chrome,
                    request_id.as_deref(),
                    why,
                    Some("That code is not correct (or was already used). Try the next one."),
                ),
            )
        }
    }
}

fn query_param(req: &Req, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    let mut found = None;
    for (k, v) in form_urlencoded::parse(q.as_bytes()).take(MAX_FORM_FIELDS) {
        if k == name {
            if found.is_some() {
                return None;
            }
            found = Some(v.into_owned());
        }
    }
    found
}

fn consent_get(ehr: &Ehr, req: &Req) -> Resp {
    let Some((sid, session)) = existing_session(ehr, req) else {
        return expired(ehr, req);
    };
    let Some(id) = query_param(req, "request") else {
        return expired(ehr, req);
    };
    let Some(pending) = pending_for(ehr, &id, &sid) else {
        return expired(ehr, req);
    };
    if session.user.is_none() {
        let chrome = Chrome {
            csrf: &session.csrf,
            signed_in_as: None,
        };
        let app = ehr.client_name(&pending.request.client.id);
        return html(
            ehr,
            StatusCode::OK,
            pages::login(&chrome, Some(&id), Some(&app), None),
        );
    }
    approval_page(
        ehr,
        &session,
        &id,
        &pending.request,
        None,
        None,
        StatusCode::OK,
    )
}

fn today() -> Date {
    Ehr::now().date()
}

fn one_year_after(d: Date) -> Date {
    let year = d.year() + 1;
    Date::from_calendar_date(year, d.month(), d.day())
        .or_else(|_| Date::from_calendar_date(year, d.month(), d.day() - 1))
        .unwrap_or(d)
}

fn iso(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn parse_iso(s: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    if s.len() != 10 {
        return None;
    }
    Date::parse(s, &format).ok()
}

/// The provider's name in the disclosure text.
const PROVIDER: &str = "the fhirguard demo EHR";

/// The disclosure shown for a request: the consent component's right-of-access text for the
/// categories the app asked for (the patient may tick fewer; only ticked ones are sent).
fn shown_disclosure(ehr: &Ehr, request: &AuthorizeRequest) -> Disclosure {
    let categories = requested_categories(ehr, &request.scope);
    let app = ehr.client_name(&request.client.id);
    Disclosure::for_categories(
        PROVIDER,
        &app,
        &request.client.id,
        &ehr.registry,
        categories.iter(),
    )
}

#[allow(clippy::too_many_arguments)]
fn approval_page(
    ehr: &Ehr,
    session: &Session,
    request_id: &str,
    request: &AuthorizeRequest,
    error: Option<&str>,
    chosen: Option<(&BTreeSet<String>, &str)>,
    status: StatusCode,
) -> Resp {
    let Some(user) = session.user.and_then(|i| ehr.users.get(i)) else {
        return expired_plain(ehr);
    };
    let app = ehr.client_name(&request.client.id);
    let disclosure = shown_disclosure(ehr, request);
    let paragraphs: Vec<String> = disclosure.text.split("\n\n").map(str::to_owned).collect();
    let disclosure_ref = disclosure.reference().sha256_hex();
    let scope = request.scope.to_string();
    let today = today();
    let max = iso(one_year_after(today));
    let min = iso(today);
    let offered = requested_categories(ehr, &request.scope);
    let categories = ehr
        .registry
        .categories()
        .iter()
        .filter(|c| offered.contains(&c.id))
        .map(|c| pages::CategoryRow {
            id: c.id.as_str(),
            label: &c.label,
            description: &c.description,
            checked: chosen.is_some_and(|(set, _)| set.contains(c.id.as_str())),
        })
        .collect();
    let end_date = chosen.map_or(max.clone(), |(_, d)| d.to_owned());
    let chrome = Chrome {
        csrf: &session.csrf,
        signed_in_as: Some(&user.display_name),
    };
    let page = pages::approval(
        &chrome,
        &pages::Approval {
            request: request_id,
            app_name: &app,
            disclosure: &paragraphs,
            disclosure_sha256: &disclosure_ref,
            requested_scope: &scope,
            categories,
            min_date: &min,
            max_date: &max,
            end_date: &end_date,
            error,
        },
    );
    let mut r = html(ehr, status, page);
    // Approve and Deny end in a redirect to the app: allow its origin as a form target.
    let targets: Vec<String> = super::origin_of(&request.redirect_uri)
        .into_iter()
        .collect();
    r.headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, super::portal_csp(&targets));
    r
}

fn expired_plain(ehr: &Ehr) -> Resp {
    problem_page(
        ehr,
        StatusCode::BAD_REQUEST,
        "",
        "Please start again",
        "This page has expired. Go back to the app and start again.",
    )
}

fn consent_post(ehr: &Ehr, req: &Req) -> Resp {
    let Some((form, sid, session)) = posted_form(ehr, req) else {
        return expired(ehr, req);
    };
    let Some(request_id) = field(&form, "request").map(str::to_owned) else {
        return expired(ehr, req);
    };
    let Some(pending) = pending_for(ehr, &request_id, &sid) else {
        return expired(ehr, req);
    };
    let Some(index) = session.user else {
        return expired(ehr, req);
    };
    let user = &ehr.users[index];
    let request = &pending.request;
    match field(&form, "decision") {
        Some("deny") => {
            if claim_pending(ehr, &request_id, &sid).is_none() {
                return expired(ehr, req);
            }
            let mut r = ehr.server.deny(request).to_response();
            ehr.headers.apply(r.headers_mut(), ResponseKind::Html);
            return r;
        }
        Some("approve") => {}
        _ => {
            return approval_page(
                ehr,
                &session,
                &request_id,
                request,
                Some("Choose Approve or Deny."),
                None,
                StatusCode::BAD_REQUEST,
            );
        }
    }
    let chosen: BTreeSet<String> = form
        .iter()
        .filter(|(k, _)| k == "category")
        .map(|(_, v)| v.clone())
        .collect();
    let end_raw = field(&form, "end_date").unwrap_or("").trim().to_owned();
    let fail = |msg: &str| {
        approval_page(
            ehr,
            &session,
            &request_id,
            request,
            Some(msg),
            Some((&chosen, &end_raw)),
            StatusCode::BAD_REQUEST,
        )
    };
    // Only what the page offered: a category the request cannot reach would be recorded as
    // shared while the token carries nothing for it.
    let offered = requested_categories(ehr, &request.scope);
    let mut categories = BTreeSet::new();
    for c in &chosen {
        match CategoryId::new(c.as_str()) {
            Ok(id) if offered.contains(&id) => {
                categories.insert(id);
            }
            _ => return fail("One of the chosen categories is not offered for this app."),
        }
    }
    if categories.is_empty() {
        return fail("Tick at least one category to share, or choose Deny.");
    }
    let today = today();
    let max = one_year_after(today);
    let Some(end) = parse_iso(&end_raw) else {
        return fail("Enter the end date as a date (YYYY-MM-DD).");
    };
    if end < today {
        return fail("The end date cannot be in the past.");
    }
    if end > max {
        return fail(&format!(
            "The end date can be at most one year from today (on or before {}).",
            iso(max)
        ));
    }
    let now = Ehr::now();
    // The disclosure she saw is the one we record: the page carries its digest, and a
    // digest that no longer matches (the app's registration changed meanwhile) is refused.
    let disclosure = shown_disclosure(ehr, request);
    // At most one digest, and the current one: two are refused, not guessed between. (A
    // client that sends none agrees to the terms as they are now, which are the ones recorded.)
    let digests: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == "disclosure")
        .map(|(_, v)| v.as_str())
        .collect();
    let current = disclosure.reference().sha256_hex();
    if digests.len() > 1 || digests.first().is_some_and(|d| *d != current) {
        return fail(
            "The sharing terms changed while you were reading them. Please review them again.",
        );
    }
    // min(approval + one year, the end of the chosen day).
    let cap = fhirguard::consent::one_year_after(now);
    let chosen_end = end
        .next_day()
        .map_or(cap, |d| d.with_time(Time::MIDNIGHT).assume_utc())
        .min(cap);
    let client_name = ehr.client_name(&request.client.id);
    let roa = RightOfAccessRequest::new(
        user.patient.clone(),
        Approver::Patient,
        request.client.id.clone(),
        client_name,
        categories.clone(),
        disclosure.reference(),
        now,
    )
    .with_address(source_of(req))
    .with_chosen_end(chosen_end);
    let roa = match req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        Some(ua) => roa.with_user_agent(ua),
        None => roa,
    };
    // From here on the request is this submission's alone.
    let Some(claimed) = claim_pending(ehr, &request_id, &sid) else {
        return expired(ehr, req);
    };
    let grant = match ehr.consent.approve(roa, now) {
        Ok(g) => g,
        Err(e) => {
            restore_pending(ehr, request_id.clone(), claimed);
            return match e {
                ConsentError::EndDateBeyondOneYear { .. } => {
                    fail("The end date can be at most one year from today.")
                }
                ConsentError::EndDateInPast { .. } => fail("The end date cannot be in the past."),
                ConsentError::NoCategories => {
                    fail("Tick at least one category to share, or choose Deny.")
                }
                _ => fail("Your approval could not be saved. Please try again."),
            };
        }
    };
    let grant_id = grant.id.clone();
    // The patient's approval, as SMART scopes derived from the chosen categories.
    let approved: ScopeSet = ehr
        .registry
        .scopes_for(categories.iter(), ScopeContext::Patient)
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
        .parse()
        .unwrap_or_default();
    if let Some(t) = Ehr::audit_time() {
        let mut rec = AuditRecord::new(t, EventKind::ConsentApproved, Outcome::Success);
        rec.source = Some(source_of(req));
        rec.patient = Some(user.patient.clone());
        rec.client = Some(request.client.id.clone());
        rec.grant = Some(grant_id.clone());
        rec.categories = categories.clone();
        rec.actor = Some(patient_actor(user));
        ehr.record(rec);
    }
    let mut approval = Approval::new(
        grant_id,
        approved,
        subject_of(user),
        Some(user.patient.clone()),
        session.auth_time,
    );
    approval.fhir_user = Some(format!("Patient/{}", user.patient.as_str()));
    // A standalone app opened by the patient herself; an EHR launch sets its own value.
    if request.launch_context.is_none() {
        approval.need_patient_banner = Some(false);
    }
    approval.smart_style_url = Some(ehr.smart_style_url.clone());
    let mut r = match ehr.server.approve(request, approval, now) {
        Ok(redirect) => redirect.to_response(),
        Err(err) => err.to_response(),
    };
    ehr.headers.apply(r.headers_mut(), ResponseKind::Html);
    r
}

/// A page for a signed-in patient: `render` draws it for her session; a visitor who is not
/// signed in gets the sign-in page instead, and a new session its cookie either way.
fn signed_in_page(
    ehr: &Ehr,
    req: &Req,
    render: impl FnOnce(&Session, &super::User) -> Resp,
) -> Resp {
    let Some((sid, session, new)) = session_for(ehr, req) else {
        return problem_page(
            ehr,
            StatusCode::SERVICE_UNAVAILABLE,
            "",
            "Busy",
            "The portal is busy; try again shortly.",
        );
    };
    let Some(user) = session.user.and_then(|i| ehr.users.get(i)) else {
        let chrome = Chrome {
            csrf: &session.csrf,
            signed_in_as: None,
        };
        let mut r = html(ehr, StatusCode::OK, pages::login(&chrome, None, None, None));
        if new {
            set_cookie(&mut r, &sid);
        }
        return r;
    };
    let mut r = render(&session, user);
    if new {
        set_cookie(&mut r, &sid);
    }
    r
}

fn apps_page(ehr: &Ehr, req: &Req, notice: Option<&str>) -> Resp {
    signed_in_page(ehr, req, |session, user| {
        let now = Ehr::now();
        let label_of = |id: &CategoryId| {
            ehr.registry
                .get(id)
                .map_or_else(|| id.to_string(), |c| c.label.clone())
        };
        let approvals: Vec<(fhirguard::ClientId, bool, pages::GrantCard)> = ehr
            .consent
            .grants_of(&user.patient)
            .unwrap_or_default()
            .into_iter()
            .map(|g| {
                let state = g.status_at(now);
                let active = matches!(state, GrantState::Active);
                let status = match &state {
                    GrantState::Revoked { at, .. } => format!("Revoked on {}", iso(at.date())),
                    GrantState::Active => "Active".to_owned(),
                    _ => "Ended".to_owned(),
                };
                let history = ehr
                    .access
                    .access_history(&AccessQuery::for_grant(user.patient.clone(), g.id.clone()))
                    .into_iter()
                    .take(25)
                    .map(|e| {
                        let when = e.time.get();
                        pages::HistoryRow {
                            when: format!(
                                "{} {:02}:{:02}:{:02}",
                                iso(when.date()),
                                when.hour(),
                                when.minute(),
                                when.second()
                            ),
                            what: format!(
                                "{} {}",
                                e.interaction.as_ref().map_or_else(
                                    || "access".to_owned(),
                                    |i| format!("{i:?}").to_lowercase()
                                ),
                                e.resource_type.as_ref().map_or("", |t| t.as_str())
                            ),
                            categories: e
                                .categories
                                .iter()
                                .map(&label_of)
                                .collect::<Vec<_>>()
                                .join(", "),
                            outcome: match e.outcome {
                                Outcome::Success => "shared".to_owned(),
                                Outcome::Denied(_) => "refused".to_owned(),
                                _ => "error".to_owned(),
                            },
                        }
                    })
                    .collect();
                let card = pages::GrantCard {
                    grant_id: g.id.to_string(),
                    categories: g.categories.iter().map(&label_of).collect(),
                    approved: iso(g.approved_at().date()),
                    ends: iso((g.ends_at - Duration::seconds(1)).date()),
                    status,
                    history,
                };
                (g.client_id().clone(), active, card)
            })
            .collect();
        // One card per app: a second approval of the same app is listed under it, and its
        // Revoke ends them all.
        let mut cards: Vec<pages::AppCard> = Vec::new();
        for (client, active, grant) in approvals {
            match cards.iter_mut().find(|c| c.client_id == client.as_str()) {
                Some(card) => {
                    card.active |= active;
                    card.grants.push(grant);
                }
                None => cards.push(pages::AppCard {
                    client_id: client.to_string(),
                    app_name: ehr.client_name(&client),
                    active,
                    grants: vec![grant],
                }),
            }
        }
        // Apps that can still read first.
        cards.sort_by_key(|c| !c.active);
        let chrome = Chrome {
            csrf: &session.csrf,
            signed_in_as: Some(&user.display_name),
        };
        html(
            ehr,
            StatusCode::OK,
            pages::apps(&chrome, &user.display_name, &cards, notice),
        )
    })
}

fn revoke_post(ehr: &Ehr, req: &Req) -> Resp {
    let Some((form, _, session)) = posted_form(ehr, req) else {
        return expired(ehr, req);
    };
    let Some(user) = session.user.and_then(|i| ehr.users.get(i)) else {
        return expired(ehr, req);
    };
    let now = Ehr::now();
    let unknown = || apps_page(ehr, req, Some("Nothing was revoked: unknown app."));
    // Only her own grants: anyone else's id is "unknown", exactly like a made-up one. The
    // Revoke beside an app's name ends every active grant of that app (`client`); a single
    // grant can still be named (`grant`).
    let mine = ehr.consent.grants_of(&user.patient).unwrap_or_default();
    let targets: Vec<GrantId> = match (field(&form, "client"), field(&form, "grant")) {
        (Some(client), None) => {
            let of_app: Vec<_> = mine
                .iter()
                .filter(|g| g.client_id().as_str() == client)
                .collect();
            if of_app.is_empty() {
                return unknown();
            }
            of_app
                .into_iter()
                .filter(|g| matches!(g.status_at(now), GrantState::Active))
                .map(|g| g.id.clone())
                .collect()
        }
        (None, Some(grant)) => match GrantId::new(grant) {
            Ok(id) if mine.iter().any(|g| g.id == id) => vec![id],
            _ => return unknown(),
        },
        _ => return unknown(),
    };
    let mut revoked = 0;
    for grant in targets {
        if let Ok(record) = ehr.consent.revoke(
            &grant,
            Approver::Patient,
            "revoked in the patient portal",
            now,
        ) {
            revoked += 1;
            if let Some(t) = Ehr::audit_time() {
                let mut rec = AuditRecord::new(t, EventKind::ConsentRevoked, Outcome::Success);
                rec.source = Some(source_of(req));
                rec.patient = Some(user.patient.clone());
                rec.client = Some(record.client_id().clone());
                rec.grant = Some(grant);
                rec.actor = Some(patient_actor(user));
                ehr.record(rec);
            }
        }
    }
    if revoked == 0 {
        // Already revoked or ended: nothing left to do.
        return apps_page(ehr, req, Some("That app no longer had access."));
    }
    see_other(ehr, "/portal/apps")
}

fn logout_post(ehr: &Ehr, req: &Req) -> Resp {
    if cross_site(req) {
        return expired(ehr, req);
    }
    let Some(form) = parse_form(req.body()) else {
        return expired(ehr, req);
    };
    let Some((sid, session)) = existing_session(ehr, req) else {
        return see_other(ehr, "/portal/login");
    };
    if !csrf_ok(&session, &form) {
        return expired(ehr, req);
    }
    ehr.sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&sid);
    let mut r = see_other(ehr, "/portal/login");
    clear_cookie(&mut r);
    r
}

/// The apps the portal can open: registered with a launch URL, allowed the code flow.
fn launchable_apps(ehr: &Ehr) -> Vec<pages::LaunchableApp> {
    let mut apps: Vec<pages::LaunchableApp> = ehr
        .client_names
        .iter()
        .filter_map(|(id, name)| {
            let client = fhirguard::token::ClientRegistry::client(ehr.clients.as_ref(), id)?;
            (client.launch_uri.is_some() && client.authorization_code).then(|| {
                pages::LaunchableApp {
                    client_id: id.to_string(),
                    app_name: name.clone(),
                }
            })
        })
        .collect();
    apps.sort_by(|a, b| a.app_name.cmp(&b.app_name));
    apps
}

fn launch_page(ehr: &Ehr, req: &Req, notice: Option<&str>) -> Resp {
    signed_in_page(ehr, req, |session, user| {
        let chrome = Chrome {
            csrf: &session.csrf,
            signed_in_as: Some(&user.display_name),
        };
        let apps = launchable_apps(ehr);
        let mut r = html(ehr, StatusCode::OK, pages::launch(&chrome, &apps, notice));
        // Each Open button ends in a redirect to that app's launch URL.
        let targets: BTreeSet<String> = apps
            .iter()
            .filter_map(|a| {
                let id = fhirguard::ClientId::new(a.client_id.as_str()).ok()?;
                let client = fhirguard::token::ClientRegistry::client(ehr.clients.as_ref(), &id)?;
                super::origin_of(client.launch_uri.as_deref()?)
            })
            .collect();
        let targets: Vec<String> = targets.into_iter().collect();
        r.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, super::portal_csp(&targets));
        r
    })
}

/// The EHR launch: a single-use handle bound to this app, this patient and this user, and a
/// redirect to the app's registered launch URL with `iss` and `launch`.
fn launch_post(ehr: &Ehr, req: &Req) -> Resp {
    let Some((form, _, session)) = posted_form(ehr, req) else {
        return expired(ehr, req);
    };
    let Some(user) = session.user.and_then(|i| ehr.users.get(i)) else {
        return expired(ehr, req);
    };
    let Some(client_id) = field(&form, "client_id").and_then(|c| fhirguard::ClientId::new(c).ok())
    else {
        return launch_page(ehr, req, Some("That app cannot be opened from the portal."));
    };
    let mut context = fhirguard::token::LaunchContext::new(client_id)
        .with_patient(user.patient.clone())
        .with_subject(subject_of(user));
    // The app runs outside the portal, so it shows whose record it has open.
    context.need_patient_banner = Some(true);
    context.smart_style_url = Some(ehr.smart_style_url.clone());
    match ehr.server.ehr_launch(context, Ehr::now()) {
        Ok(launch) => see_other(ehr, &launch.url),
        Err(_) => launch_page(ehr, req, Some("That app cannot be opened from the portal.")),
    }
}

/// The portal's SMART style document (`smart_style_url`): colours and fonts an embedded app
/// may adopt. Public, like discovery.
fn smart_style(ehr: &Ehr) -> Resp {
    let body = serde_json::to_vec(&serde_json::json!({
        "color_background": "#fdfdfb",
        "color_error": "#a4161a",
        "color_highlight": "#1d4e89",
        "color_modal_backdrop": "rgba(0, 0, 0, 0.4)",
        "color_success": "#2d6a4f",
        "color_text": "#1b1b1b",
        "dim_border_radius": "6px",
        "dim_font_size": "16px",
        "dim_spacing_size": "16px",
        "font_family_body": "system-ui, sans-serif",
        "font_family_heading": "system-ui, sans-serif"
    }))
    .unwrap_or_default();
    let mut r = fhirguard::token::public_json_response(body);
    ehr.headers.apply(r.headers_mut(), ResponseKind::Public);
    r
}

/// The id_token `sub` of a portal user (and the subject an EHR launch binds).
fn subject_of(user: &super::User) -> String {
    format!("user-{}", user.username)
}

/// The caller's scopes as enforcement's typed grants (v1 scopes mean their v2 letters).
fn resource_grants(scope: &ScopeSet) -> Vec<ResourceGrant> {
    scope
        .to_v2()
        .resource_scopes()
        .filter_map(|rs| {
            let context = match rs.context() {
                Context::Patient => ScopeContext::Patient,
                Context::User => ScopeContext::User,
                Context::System => ScopeContext::System,
            };
            let p = rs.permissions();
            let permissions = Permissions {
                create: p.contains(Permission::Create),
                read: p.contains(Permission::Read),
                update: p.contains(Permission::Update),
                delete: p.contains(Permission::Delete),
                search: p.contains(Permission::Search),
            };
            let mut grant = match rs.resource() {
                TypeSelector::Any => ResourceGrant::wildcard(context, permissions),
                TypeSelector::Type(t) => {
                    ResourceGrant::new(context, ResourceType::new(t.as_str())?, permissions)
                }
            };
            for filter in rs.filters() {
                let values: Vec<&str> = filter.values().collect();
                grant = grant.with_constraint(filter.name(), values.join(","));
            }
            Some(grant)
        })
        .collect()
}
