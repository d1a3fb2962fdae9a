//! The authorization endpoint: request validation, approval, denial and the code.
//!
//! Which errors are redirected (RFC 6749 §4.1.2.1): until the client and its redirect URI are
//! trusted, nothing is redirected — a missing, repeated or unknown `client_id` and a missing,
//! repeated or unregistered `redirect_uri` produce an error page ([`AuthorizeError::Render`]).
//! Every later problem goes back to the app's redirect URI with `error` and the app's `state`
//! ([`AuthorizeError::Redirect`]), and never with a code.

use std::fmt;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode, utf8_percent_encode};
use time::OffsetDateTime;

use super::clients::Client;
use super::error::OAuthErrorCode;
use super::form::{FormError, FormParams};
use super::launch::{LaunchContext, MAX_LAUNCH_LEN};
use super::pkce::{self, PkceError};
use super::server::{AuthorizationServer, ServerFailure};
use super::store::{CodeRecord, GrantContext, TokenHash};
use crate::consent::GrantStatus;
use crate::ids::{ClientId, GrantId, PatientId};
use crate::scope::{Context, Scope, ScopeSet, negotiate};

/// Longest `state` / `nonce` accepted (they are echoed, so bounded).
pub const MAX_STATE_LEN: usize = 2048;

/// Why the request cannot even be redirected: an error page is shown instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderReason {
    /// The method was neither GET nor POST, or a POST was not form-encoded.
    #[error("the authorization request must be a GET or a form POST")]
    BadMethod,
    /// The query or form could not be parsed.
    #[error("the authorization request could not be parsed: {0}")]
    Form(FormError),
    /// `client_id` missing, repeated or malformed.
    #[error("client_id is missing or invalid")]
    MissingClient,
    /// No client with that id.
    #[error("the client is unknown")]
    UnknownClient,
    /// `redirect_uri` missing or repeated.
    #[error("redirect_uri is missing or repeated")]
    MissingRedirectUri,
    /// `redirect_uri` does not exactly equal one registered for the client.
    #[error("redirect_uri is not registered for this client")]
    UnregisteredRedirectUri,
}

/// Why a trusted request was refused (sent back to the app as `error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedirectReason {
    /// A parameter was sent twice.
    #[error("parameter {0} was repeated")]
    Duplicate(&'static str),
    /// A parameter's value is not UTF-8 or holds a control character.
    #[error("parameter {0} is malformed")]
    Malformed(&'static str),
    /// A required parameter is missing.
    #[error("parameter {0} is missing")]
    Missing(&'static str),
    /// `response_type` is not `code`.
    #[error("response_type is not code")]
    UnsupportedResponseType,
    /// The request carries a `request` object, which this server does not support.
    #[error("request objects are not supported")]
    RequestNotSupported,
    /// The request carries a `request_uri`, which this server does not support.
    #[error("request_uri is not supported")]
    RequestUriNotSupported,
    /// `response_mode` is not `query` (the only mode: `response_modes_supported`).
    #[error("response_mode is not supported")]
    UnsupportedResponseMode,
    /// The client may not use the authorization-code flow.
    #[error("the client may not use the authorization-code flow")]
    UnauthorizedClient,
    /// The scope string is malformed.
    #[error("the scope is malformed")]
    InvalidScope,
    /// No requested resource scope is one the client may be granted (only `openid fhirUser`,
    /// say, or only scopes beyond its registration): there is no data to approve.
    #[error("no requested resource scope may be granted to this client")]
    NoResourceScope,
    /// `aud` (or `resource`) is not this server's FHIR base URL.
    #[error("aud is not the FHIR base URL")]
    WrongAudience,
    /// `state` or `nonce` too long.
    #[error("state or nonce is too long")]
    TooLong,
    /// PKCE problems (missing, `plain`, malformed).
    #[error("PKCE: {0}")]
    Pkce(PkceError),
    /// The user or policy denied the request.
    #[error("access denied")]
    Denied,
    /// Patient-level scopes were granted without a patient in context.
    #[error("patient scopes granted without a patient in context")]
    MissingPatientContext,
    /// The approval named a grant that is not active for this client and patient.
    #[error("the approval's grant is not active for this client")]
    GrantNotActive,
    /// The negotiation left no resource scope to grant.
    #[error("no requested resource scope could be granted")]
    NothingGranted,
    /// The `launch` handle is unknown, expired, already used, issued to another client, or
    /// the EHR launch is not enabled.
    #[error("the launch handle is not valid for this client")]
    InvalidLaunch,
    /// The approval is for another patient or user than the EHR launched the app for.
    #[error("the approval does not match the launch context")]
    LaunchMismatch,
    /// The server failed.
    #[error("server failure: {0}")]
    Server(ServerFailure),
}

impl RedirectReason {
    fn code(&self) -> OAuthErrorCode {
        match self {
            RedirectReason::UnsupportedResponseType => OAuthErrorCode::UnsupportedResponseType,
            RedirectReason::RequestNotSupported => OAuthErrorCode::RequestNotSupported,
            RedirectReason::RequestUriNotSupported => OAuthErrorCode::RequestUriNotSupported,
            RedirectReason::UnauthorizedClient => OAuthErrorCode::UnauthorizedClient,
            RedirectReason::InvalidScope
            | RedirectReason::NoResourceScope
            | RedirectReason::NothingGranted => OAuthErrorCode::InvalidScope,
            RedirectReason::Denied
            | RedirectReason::GrantNotActive
            | RedirectReason::MissingPatientContext
            | RedirectReason::LaunchMismatch => OAuthErrorCode::AccessDenied,
            RedirectReason::Server(_) => OAuthErrorCode::ServerError,
            _ => OAuthErrorCode::InvalidRequest,
        }
    }
}

/// A redirect back to the app.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizeRedirect {
    /// The full `Location`.
    pub location: String,
    /// 302 for GET, 303 for POST (so the browser follows with GET).
    pub status: StatusCode,
}

impl fmt::Debug for AuthorizeRedirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The location may carry a code.
        f.debug_struct("AuthorizeRedirect")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl AuthorizeRedirect {
    /// The redirect response, `Cache-Control: no-store`.
    pub fn to_response(&self) -> Response<Vec<u8>> {
        let mut response = Response::new(Vec::new());
        *response.status_mut() = self.status;
        if let Ok(location) = HeaderValue::from_str(&self.location) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// A refused authorization request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorizeError {
    /// Show an error page; do not redirect (the redirect URI is not trusted).
    #[error("{0}")]
    Render(RenderReason),
    /// Send the app an error at its redirect URI.
    #[error("{reason}")]
    Redirect {
        /// The redirect carrying `error` and `state`.
        redirect: AuthorizeRedirect,
        /// The precise reason, for the audit log.
        reason: RedirectReason,
    },
}

impl AuthorizeError {
    /// A 400 plain-text error page (nothing from the request reflected), or the redirect.
    pub fn to_response(&self) -> Response<Vec<u8>> {
        match self {
            AuthorizeError::Redirect { redirect, .. } => redirect.to_response(),
            AuthorizeError::Render(_) => {
                let mut response = Response::new(
                    b"The authorization request is invalid: the application is not registered \
                      or its redirect address does not match its registration."
                        .to_vec(),
                );
                *response.status_mut() = StatusCode::BAD_REQUEST;
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
        }
    }
}

/// A validated authorization request, waiting for the host to authenticate the user and ask
/// for approval.
#[derive(Clone)]
pub struct AuthorizeRequest {
    /// The client.
    pub client: Arc<Client>,
    /// The exact registered redirect URI.
    pub redirect_uri: String,
    /// The requested scopes.
    pub scope: ScopeSet,
    /// The app's `state`, echoed byte for byte.
    pub state: String,
    /// The S256 PKCE challenge.
    pub code_challenge: String,
    /// OIDC `nonce`, if sent.
    pub nonce: Option<String>,
    /// The EHR-launch handle, if sent; validated against the launch store.
    pub launch: Option<String>,
    /// The context the EHR established when it launched the app (with `launch`).
    pub launch_context: Option<LaunchContext>,
    /// Whether the request came by POST.
    pub via_post: bool,
}

impl fmt::Debug for AuthorizeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeRequest")
            .field("client", &self.client.id)
            .field("redirect_uri", &self.redirect_uri)
            .field("scope", &self.scope.to_string())
            .finish_non_exhaustive()
    }
}

/// What the user (through the host's approval page) decided, and the context the host
/// established.
#[derive(Debug, Clone)]
pub struct Approval {
    /// The consent grant the host stored for this approval.
    pub grant_id: GrantId,
    /// What the patient approved (granted = requested ∩ client's allowance ∩ this).
    pub approved_scope: ScopeSet,
    /// The user's stable subject id (id_token `sub`).
    pub subject: String,
    /// Patient in context (required when any `patient/` scope is granted).
    pub patient: Option<PatientId>,
    /// Encounter in context.
    pub encounter: Option<String>,
    /// The user as a FHIR resource URL (`Patient/355`).
    pub fhir_user: Option<String>,
    /// Additional `fhirContext` entries.
    pub fhir_context: Vec<serde_json::Value>,
    /// `need_patient_banner`.
    pub need_patient_banner: Option<bool>,
    /// `smart_style_url`.
    pub smart_style_url: Option<String>,
    /// `intent`.
    pub intent: Option<String>,
    /// `tenant`.
    pub tenant: Option<String>,
    /// When the user authenticated.
    pub auth_time: OffsetDateTime,
}

impl Approval {
    /// An approval of `approved_scope` under `grant_id` by `subject`, for `patient`.
    pub fn new(
        grant_id: GrantId,
        approved_scope: ScopeSet,
        subject: impl Into<String>,
        patient: Option<PatientId>,
        auth_time: OffsetDateTime,
    ) -> Self {
        Self {
            grant_id,
            approved_scope,
            subject: subject.into(),
            patient,
            encounter: None,
            fhir_user: None,
            fhir_context: Vec::new(),
            need_patient_banner: None,
            smart_style_url: None,
            intent: None,
            tenant: None,
            auth_time,
        }
    }
}

/// Characters left unescaped in redirect query values: RFC 3986 unreserved.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `base` with `params` appended to its query, each value percent-encoded.
pub(crate) fn append_query(base: &str, params: &[(&str, &str)]) -> String {
    let mut location = base.to_owned();
    let mut sep = if base.contains('?') { '&' } else { '?' };
    for (name, value) in params {
        location.push(sep);
        location.push_str(name);
        location.push('=');
        location.extend(utf8_percent_encode(value, QUERY_VALUE));
        sep = '&';
    }
    location
}

fn redirect_to(base: &str, params: &[(&str, &str)], via_post: bool) -> AuthorizeRedirect {
    AuthorizeRedirect {
        location: append_query(base, params),
        status: if via_post {
            StatusCode::SEE_OTHER
        } else {
            StatusCode::FOUND
        },
    }
}

fn redirect_error(
    redirect_uri: &str,
    state: Option<&[u8]>,
    reason: RedirectReason,
    via_post: bool,
) -> AuthorizeError {
    let mut redirect = redirect_to(redirect_uri, &[("error", reason.code().as_str())], via_post);
    if let Some(state) = state {
        redirect.location.push_str("&state=");
        redirect.location.extend(percent_encode(state, QUERY_VALUE));
    }
    AuthorizeError::Redirect { redirect, reason }
}

/// The name of a parameter the authorization endpoint knows, for an error reason (which
/// carries only static names, so nothing the request sent is kept in it).
fn known_param(name: &str) -> &'static str {
    match name {
        "state" => "state",
        "scope" => "scope",
        "aud" => "aud",
        "client_id" => "client_id",
        "redirect_uri" => "redirect_uri",
        "code_challenge" => "code_challenge",
        "code_challenge_method" => "code_challenge_method",
        "response_type" => "response_type",
        "nonce" => "nonce",
        "launch" => "launch",
        _ => "parameter",
    }
}

impl AuthorizationServer {
    /// Validates an authorization request arriving as GET (query) or POST (form body) at
    /// `now` (which decides whether a `launch` handle is still valid).
    pub fn authorize_request<B: AsRef<[u8]>>(
        &self,
        request: &Request<B>,
        now: OffsetDateTime,
    ) -> Result<AuthorizeRequest, AuthorizeError> {
        let via_post = match *request.method() {
            Method::GET => false,
            Method::POST => true,
            _ => return Err(AuthorizeError::Render(RenderReason::BadMethod)),
        };
        let params = if via_post {
            let form_encoded = request
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.split(';').next().is_some_and(|t| {
                        t.trim()
                            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                    })
                });
            if !form_encoded {
                return Err(AuthorizeError::Render(RenderReason::BadMethod));
            }
            FormParams::parse_setting_aside_malformed(request.body().as_ref())
        } else {
            FormParams::parse_setting_aside_malformed(
                request.uri().query().unwrap_or("").as_bytes(),
            )
        }
        .map_err(|e| AuthorizeError::Render(RenderReason::Form(e)))?;
        self.authorize_params(&params, via_post, now)
    }

    /// Validates already-parsed authorization parameters at `now`.
    pub fn authorize_params(
        &self,
        params: &FormParams,
        via_post: bool,
        now: OffsetDateTime,
    ) -> Result<AuthorizeRequest, AuthorizeError> {
        let render = |r| AuthorizeError::Render(r);
        // 1. The client and its redirect URI: errors are rendered, never redirected.
        let client_id = params
            .get("client_id")
            .ok()
            .flatten()
            .and_then(|id| ClientId::new(id).ok())
            .ok_or(render(RenderReason::MissingClient))?;
        let client = self
            .clients
            .client(&client_id)
            .ok_or(render(RenderReason::UnknownClient))?;
        let redirect_uri = params
            .get("redirect_uri")
            .ok()
            .flatten()
            .ok_or(render(RenderReason::MissingRedirectUri))?;
        if !client.has_redirect_uri(redirect_uri) {
            return Err(render(RenderReason::UnregisteredRedirectUri));
        }
        // 2. From here on, errors go back to the app with its state.
        // Echoed even when too long to accept (RFC 6749 §4.1.2.1: REQUIRED if the request had
        // one): it came in the request's own URL, so its size is already bounded.
        // A malformed state (CR/LF, not UTF-8) is echoed too, as the percent-encoded bytes it
        // arrived as: the app still matches it, and nothing raw reaches the header.
        let state = params
            .get("state")
            .ok()
            .flatten()
            .map(str::as_bytes)
            .or_else(|| params.malformed_value("state"));
        let fail = |reason| redirect_error(redirect_uri, state, reason, via_post);
        if let Some(name) = params.first_malformed() {
            return Err(fail(RedirectReason::Malformed(known_param(name))));
        }
        if let Some(name) = params.first_duplicate() {
            return Err(fail(RedirectReason::Duplicate(known_param(name))));
        }
        let get = |name: &'static str| params.get(name).ok().flatten();
        // Ignoring a request object would answer the query's parameters while the app believes
        // its signed ones were used: say it is not supported (OIDC Core §6, §3.1.2.6).
        if get("request").is_some() {
            return Err(fail(RedirectReason::RequestNotSupported));
        }
        if get("request_uri").is_some() {
            return Err(fail(RedirectReason::RequestUriNotSupported));
        }
        // The response is always in the query (`response_modes_supported: ["query"]`): a
        // fragment or form_post the app expects would otherwise never arrive where it looks.
        match get("response_mode") {
            None | Some("query") => {}
            Some(_) => return Err(fail(RedirectReason::UnsupportedResponseMode)),
        }
        match get("response_type") {
            None => return Err(fail(RedirectReason::Missing("response_type"))),
            Some("code") => {}
            Some(_) => return Err(fail(RedirectReason::UnsupportedResponseType)),
        }
        if !client.authorization_code {
            return Err(fail(RedirectReason::UnauthorizedClient));
        }
        let state = match get("state") {
            None => return Err(fail(RedirectReason::Missing("state"))),
            Some(s) if s.len() > MAX_STATE_LEN => return Err(fail(RedirectReason::TooLong)),
            Some(s) => s.to_owned(),
        };
        let scope: ScopeSet = get("scope")
            .ok_or_else(|| fail(RedirectReason::Missing("scope")))?
            .parse()
            .map_err(|_| fail(RedirectReason::InvalidScope))?;
        // The patient's approval is about data: a request that can reach none (identity,
        // launch and refresh scopes only, or resource scopes beyond the client's registration)
        // would put an approval page with nothing to tick in front of her. RFC 6749 §4.1.2.1:
        // `invalid_scope` back to the app instead.
        if scope
            .restrict_to(&client.allowed_scopes)
            .granted
            .resource_scopes()
            .next()
            .is_none()
        {
            return Err(fail(RedirectReason::NoResourceScope));
        }
        let audience = get("aud").or_else(|| get("resource"));
        match audience {
            None => return Err(fail(RedirectReason::Missing("aud"))),
            Some(aud) if aud != self.config.fhir_base_url => {
                return Err(fail(RedirectReason::WrongAudience));
            }
            Some(_) => {}
        }
        let challenge = get("code_challenge");
        pkce::check_challenge(challenge, get("code_challenge_method"))
            .map_err(|e| fail(RedirectReason::Pkce(e)))?;
        let nonce = get("nonce");
        if nonce.is_some_and(|n| n.len() > MAX_STATE_LEN) {
            return Err(fail(RedirectReason::TooLong));
        }
        let launch = get("launch");
        let launch_context = match launch {
            None => None,
            Some(handle) => {
                let store = self
                    .launches
                    .as_ref()
                    .filter(|_| handle.len() <= MAX_LAUNCH_LEN)
                    .ok_or_else(|| fail(RedirectReason::InvalidLaunch))?;
                let context = store
                    .launch(&TokenHash::of(handle), now)
                    .filter(|c| c.client_id == client.id)
                    .ok_or_else(|| fail(RedirectReason::InvalidLaunch))?;
                Some(context)
            }
        };
        Ok(AuthorizeRequest {
            client,
            redirect_uri: redirect_uri.to_owned(),
            scope,
            state,
            code_challenge: challenge.unwrap_or_default().to_owned(),
            nonce: nonce.map(str::to_owned),
            launch: launch.map(str::to_owned),
            launch_context,
            via_post,
        })
    }

    /// The user denied (or policy refused): `access_denied` back to the app.
    ///
    /// A pending EHR launch stays unused until it expires; the app may not retry with it
    /// after [`LAUNCH_TTL`](super::LAUNCH_TTL).
    pub fn deny(&self, request: &AuthorizeRequest) -> AuthorizeRedirect {
        let params = [
            ("error", "access_denied"),
            ("state", request.state.as_str()),
        ];
        redirect_to(&request.redirect_uri, &params, request.via_post)
    }

    /// The user approved: negotiates the scopes, checks the grant, issues a code and returns
    /// the redirect carrying it and the app's `state`.
    pub fn approve(
        &self,
        request: &AuthorizeRequest,
        approval: Approval,
        now: OffsetDateTime,
    ) -> Result<AuthorizeRedirect, AuthorizeError> {
        let fail = |reason| {
            redirect_error(
                &request.redirect_uri,
                Some(request.state.as_bytes()),
                reason,
                request.via_post,
            )
        };
        let mut approval = approval;
        let mut granted = negotiate(
            &request.scope,
            &request.client.allowed_scopes,
            &approval.approved_scope,
        )
        .granted;
        // Online access lasts "as long as the end-user remains online", which only the host's
        // sessions know; no refresh token here is tied to one, so none is granted for it (the
        // token response's `scope` says so). `offline_access` is the refresh scope offered.
        granted.remove(&Scope::OnlineAccess);
        match (&request.launch, &request.launch_context) {
            (Some(handle), Some(launched)) => {
                // Single use: a second approval of the same launch finds nothing.
                let store = self
                    .launches
                    .as_ref()
                    .ok_or_else(|| fail(RedirectReason::InvalidLaunch))?;
                let context = store
                    .take_launch(&TokenHash::of(handle), now)
                    .filter(|c| c == launched && c.client_id == request.client.id)
                    .ok_or_else(|| fail(RedirectReason::InvalidLaunch))?;
                apply_launch(&mut approval, context).map_err(fail)?;
            }
            // The `launch` scope asks for the EHR's context; a standalone launch has none.
            _ => {
                granted.remove(&Scope::Launch);
            }
        }
        // The same rule as for the request: a code for identity or refresh scopes alone would
        // carry no data the patient approved.
        if granted.resource_scopes().next().is_none() {
            return Err(fail(RedirectReason::NothingGranted));
        }
        if granted.has_context(Context::Patient) && approval.patient.is_none() {
            return Err(fail(RedirectReason::MissingPatientContext));
        }
        match self.grants.grant_status(&approval.grant_id, now) {
            GrantStatus::Active(grant)
                if grant.client_id == request.client.id
                    && approval
                        .patient
                        .as_ref()
                        .is_none_or(|p| *p == grant.patient) => {}
            _ => return Err(fail(RedirectReason::GrantNotActive)),
        }
        let server = |e| fail(RedirectReason::Server(e));
        // The host's to get right; the app is only told the server failed.
        super::launch::check_fhir_context(&approval.fhir_context)
            .map_err(|e| server(ServerFailure::FhirContext(e)))?;
        let code = self.random().map_err(server)?;
        let family_id = self.random().map_err(server)?;
        let record = CodeRecord {
            client_id: request.client.id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            code_challenge: request.code_challenge.clone(),
            family_id,
            context: GrantContext {
                grant_id: approval.grant_id,
                scope: granted,
                subject: approval.subject,
                patient: approval.patient,
                encounter: approval.encounter,
                fhir_user: approval.fhir_user,
                fhir_context: approval.fhir_context,
                need_patient_banner: approval.need_patient_banner,
                smart_style_url: approval.smart_style_url,
                intent: approval.intent,
                tenant: approval.tenant,
            },
            nonce: request.nonce.clone(),
            auth_time: approval.auth_time,
            expires_at: now + self.config.code_ttl,
        };
        self.store
            .put_code(TokenHash::of(&code), record)
            .map_err(|e| server(ServerFailure::Store(e)))?;
        Ok(redirect_to(
            &request.redirect_uri,
            &[("code", &code), ("state", &request.state)],
            request.via_post,
        ))
    }
}

/// Folds the EHR's launch context into the approval: the approval may not name another
/// patient or user than the launch did, and the launch's encounter and UI hints fill what the
/// approval left unset.
fn apply_launch(approval: &mut Approval, context: LaunchContext) -> Result<(), RedirectReason> {
    if let Some(patient) = context.patient {
        match &approval.patient {
            Some(p) if *p != patient => return Err(RedirectReason::LaunchMismatch),
            _ => approval.patient = Some(patient),
        }
    }
    if context
        .subject
        .as_ref()
        .is_some_and(|s| *s != approval.subject)
    {
        return Err(RedirectReason::LaunchMismatch);
    }
    approval.encounter = approval.encounter.take().or(context.encounter);
    approval.need_patient_banner = approval.need_patient_banner.or(context.need_patient_banner);
    approval.smart_style_url = approval.smart_style_url.take().or(context.smart_style_url);
    approval.intent = approval.intent.take().or(context.intent);
    approval.tenant = approval.tenant.take().or(context.tenant);
    if approval.fhir_context.is_empty() {
        approval.fhir_context = context.fhir_context;
    }
    Ok(())
}
