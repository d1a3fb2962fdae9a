//! Framework-agnostic handlers for the authorization-server endpoints over `http` types:
//! `Request<Bytes>` in, `Response<Bytes>` out, with CORS, rate limits, security headers and one
//! audit record per request. The login and approval pages stay the host's ([`AuthorizeHost`]).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use time::OffsetDateTime;

use super::cors::{CorsClass, CorsPolicy};
use super::stages::{AuditRecorder, RateLimit, peer_addr};
use crate::abuse::{EndpointClass, LimitKey, RateLimitDecision};
use crate::audit::{
    AuditRecord, AuditTime, DenyReason as AuditDenyReason, Endpoint, ErrorKind, EventKind,
    HttpMethod, Outcome, Route,
};
use crate::clock::Clock;
use crate::fhir::{PublicProblem, problem_response};
use crate::ids::ClientId;
use crate::sanitize::{ResponseKind, SecurityHeaders};
use crate::token::{
    AssertionError, AuthorizationServer, AuthorizeError, AuthorizeRequest, ClientAuthFailure,
    FormParams, IntrospectionOutcome, MAX_FORM_LEN, OAuthError, OAuthErrorCode, TokenError,
    TokenFailure, token_response,
};

/// The host's part of the authorization endpoint: sign the user in, show the approval page,
/// store the consent grant, and finish with [`AuthorizationServer::approve`] or
/// [`AuthorizationServer::deny`].
///
/// Called only with a request the server validated; requests that must not redirect never get
/// here (they get a generic error page), and the others are redirected with their error.
pub trait AuthorizeHost: Send + Sync {
    /// Answers a validated authorization request. `raw` is the HTTP request it came in (for
    /// cookies and the host's own form fields); `now` is the guard's clock.
    fn authorize(
        &self,
        server: &AuthorizationServer,
        request: AuthorizeRequest,
        raw: &Request<Bytes>,
        now: OffsetDateTime,
    ) -> Response<Vec<u8>>;
}

/// Which endpoint a request addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SmartEndpoint {
    /// `{fhir}/.well-known/smart-configuration`.
    SmartConfiguration,
    /// `{issuer}/.well-known/openid-configuration`.
    OpenIdConfiguration,
    /// The JWKS document.
    Jwks,
    /// The authorization endpoint.
    Authorize,
    /// The token endpoint.
    Token,
    /// RFC 7662 introspection.
    Introspect,
    /// RFC 7009 revocation.
    Revoke,
}

impl SmartEndpoint {
    fn methods(self) -> &'static [Method] {
        match self {
            SmartEndpoint::SmartConfiguration
            | SmartEndpoint::OpenIdConfiguration
            | SmartEndpoint::Jwks => &[Method::GET, Method::HEAD],
            SmartEndpoint::Authorize => &[Method::GET, Method::POST],
            SmartEndpoint::Token | SmartEndpoint::Introspect | SmartEndpoint::Revoke => {
                &[Method::POST]
            }
        }
    }

    fn cors(self) -> Option<CorsClass> {
        match self {
            SmartEndpoint::SmartConfiguration
            | SmartEndpoint::OpenIdConfiguration
            | SmartEndpoint::Jwks => Some(CorsClass::Public),
            SmartEndpoint::Token | SmartEndpoint::Introspect | SmartEndpoint::Revoke => {
                Some(CorsClass::Registered)
            }
            // A top-level browser navigation, never a cross-origin fetch.
            SmartEndpoint::Authorize => None,
        }
    }

    fn class(self) -> Option<EndpointClass> {
        match self {
            SmartEndpoint::Authorize => Some(EndpointClass::Authorize),
            SmartEndpoint::Token => Some(EndpointClass::Token),
            SmartEndpoint::Introspect | SmartEndpoint::Revoke => {
                Some(EndpointClass::TokenManagement)
            }
            _ => None,
        }
    }

    fn route(self) -> Option<Route> {
        match self {
            SmartEndpoint::Authorize => Some(Route::Authorize),
            SmartEndpoint::Token => Some(Route::Token),
            SmartEndpoint::Introspect => Some(Route::Introspect),
            SmartEndpoint::Revoke => Some(Route::Revoke),
            _ => None,
        }
    }
}

/// The authorization server's HTTP endpoints.
#[derive(Clone)]
pub struct SmartEndpoints {
    server: Arc<AuthorizationServer>,
    host: Arc<dyn AuthorizeHost>,
    clock: Arc<dyn Clock>,
    audit: Option<Arc<dyn AuditRecorder>>,
    rate_limiter: Option<Arc<dyn RateLimit>>,
    cors: Option<Arc<CorsPolicy>>,
    headers: SecurityHeaders,
    paths: Vec<(String, SmartEndpoint)>,
}

impl fmt::Debug for SmartEndpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmartEndpoints")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

/// The path of an absolute URL (`https://h/auth/token` → `/auth/token`).
fn url_path(url: &str) -> String {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    match rest.find('/') {
        Some(i) => rest[i..].split(['?', '#']).next().unwrap_or("/").to_owned(),
        None => "/".to_owned(),
    }
}

impl SmartEndpoints {
    /// The endpoints of `server`, answered with `host`'s login and approval pages, at the
    /// paths of the server's configured URLs.
    pub fn new(
        server: Arc<AuthorizationServer>,
        host: Arc<dyn AuthorizeHost>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let config = server.config();
        let mut paths = vec![
            (
                format!(
                    "{}/.well-known/smart-configuration",
                    url_path(&config.fhir_base_url)
                )
                .replace("//", "/"),
                SmartEndpoint::SmartConfiguration,
            ),
            (url_path(&config.jwks_uri), SmartEndpoint::Jwks),
            (
                url_path(&config.authorization_endpoint),
                SmartEndpoint::Authorize,
            ),
            (url_path(&config.token_endpoint), SmartEndpoint::Token),
            (
                url_path(&config.introspection_endpoint),
                SmartEndpoint::Introspect,
            ),
            (url_path(&config.revocation_endpoint), SmartEndpoint::Revoke),
        ];
        if server.openid_configuration().is_some() {
            paths.push((
                format!(
                    "{}/.well-known/openid-configuration",
                    url_path(&config.issuer)
                )
                .replace("//", "/"),
                SmartEndpoint::OpenIdConfiguration,
            ));
        }
        Self {
            server,
            host,
            clock,
            audit: None,
            rate_limiter: None,
            cors: None,
            headers: SecurityHeaders::default(),
            paths,
        }
    }

    /// Audits every call to authorize, token, introspect and revoke.
    #[must_use]
    pub fn with_audit(mut self, audit: Arc<dyn AuditRecorder>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Rate limits (classes `Authorize`, `Token`, `TokenManagement`; keyed by address and the
    /// claimed `client_id`).
    #[must_use]
    pub fn with_rate_limiter(mut self, limiter: Arc<dyn RateLimit>) -> Self {
        self.rate_limiter = Some(limiter);
        self
    }

    /// CORS: discovery and JWKS open to any origin; token, introspection and revocation only
    /// to registered origins. Without a policy only the public documents carry CORS headers.
    #[must_use]
    pub fn with_cors(mut self, cors: Arc<CorsPolicy>) -> Self {
        self.cors = Some(cors);
        self
    }

    /// The security headers set on every response.
    #[must_use]
    pub fn with_security_headers(mut self, headers: SecurityHeaders) -> Self {
        self.headers = headers;
        self
    }

    /// The server.
    pub fn server(&self) -> &AuthorizationServer {
        &self.server
    }

    /// The mounted paths and what they serve.
    pub fn paths(&self) -> impl Iterator<Item = (&str, SmartEndpoint)> {
        self.paths.iter().map(|(p, e)| (p.as_str(), *e))
    }

    /// Which endpoint `path` is, if any.
    pub fn endpoint_for(&self, path: &str) -> Option<SmartEndpoint> {
        self.paths.iter().find(|(p, _)| p == path).map(|(_, e)| *e)
    }

    /// Answers `request` if its path is one of the endpoints; `None` otherwise (pass it on).
    pub fn handle(&self, request: &Request<Bytes>) -> Option<Response<Bytes>> {
        let endpoint = self.endpoint_for(request.uri().path())?;
        Some(self.call(endpoint, request))
    }

    /// The answer to a request for one of the endpoints whose body could not be read
    /// ([`read_body`](super::read_body) failed: over the host's limit, or cut off); `None` when
    /// `parts` is for no endpoint. The token, introspection and revocation endpoints answer as
    /// OAuth does (RFC 6749 §5.2): an `invalid_request` JSON body with `Cache-Control:
    /// no-store`, status `413` for a body over the limit and `400` otherwise; the others with
    /// the generic OperationOutcome of the same status. Security headers and CORS are set as
    /// for any answer of the endpoint, and the refusal is audited.
    pub fn body_refused(
        &self,
        parts: &http::request::Parts,
        error: &super::BodyReadError,
    ) -> Option<Response<Bytes>> {
        let endpoint = self.endpoint_for(parts.uri.path())?;
        let (problem, status, audited, text) = match error {
            super::BodyReadError::TooLarge => (
                PublicProblem::PayloadTooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
                AuditDenyReason::TooLarge,
                "the request body is too large",
            ),
            super::BodyReadError::Unreadable => (
                PublicProblem::BadRequest,
                StatusCode::BAD_REQUEST,
                AuditDenyReason::MalformedRequest,
                "the request body could not be read",
            ),
        };
        let response = match endpoint {
            SmartEndpoint::Token | SmartEndpoint::Introspect | SmartEndpoint::Revoke => {
                let mut r = OAuthError::new(OAuthErrorCode::InvalidRequest, text).to_response();
                *r.status_mut() = status;
                r
            }
            _ => problem_response(problem),
        };
        let response = self.finish(
            endpoint,
            response,
            ResponseKind::Phi,
            parts.headers.get(header::ORIGIN),
        );
        self.audit(
            endpoint,
            self.clock.now(),
            peer_addr(&parts.extensions),
            &parts.method,
            None,
            Outcome::Denied(audited),
        );
        Some(response)
    }

    /// Answers `request` as `endpoint`.
    pub fn call(&self, endpoint: SmartEndpoint, request: &Request<Bytes>) -> Response<Bytes> {
        let now = self.clock.now();
        let source = peer_addr(request.extensions());
        let origin = request.headers().get(header::ORIGIN).cloned();
        let method = request.method();

        // Preflight.
        if method == Method::OPTIONS
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            let answer = match (endpoint.cors(), &self.cors) {
                (Some(CorsClass::Public), None) => CorsPolicy::with_origins(Vec::<String>::new())
                    .preflight(
                        CorsClass::Public,
                        method,
                        request.headers(),
                        endpoint.methods(),
                    ),
                (Some(class), Some(cors)) => {
                    cors.preflight(class, method, request.headers(), endpoint.methods())
                }
                _ => None,
            };
            let response = answer.unwrap_or_else(|| {
                let mut r = Response::new(Vec::new());
                *r.status_mut() = StatusCode::FORBIDDEN;
                r
            });
            return self.finish(endpoint, response, ResponseKind::Public, None);
        }

        if !endpoint.methods().contains(method) {
            // In the authorization server's own language: these are OAuth endpoints and
            // documents, not FHIR resources.
            let description = match endpoint {
                SmartEndpoint::Token | SmartEndpoint::Introspect | SmartEndpoint::Revoke => {
                    "the request must be a POST"
                }
                SmartEndpoint::Authorize => "the request must be a GET or a POST",
                _ => "the document is read with GET",
            };
            let mut response =
                OAuthError::new(OAuthErrorCode::InvalidRequest, description).to_response();
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            // RFC 9110 §15.5.6: a 405 names the methods the endpoint does support.
            let allow: Vec<&str> = endpoint.methods().iter().map(Method::as_str).collect();
            if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            let response = self.finish(endpoint, response, ResponseKind::Phi, origin.as_ref());
            self.audit(
                endpoint,
                now,
                source,
                method,
                None,
                Outcome::Denied(AuditDenyReason::MalformedRequest),
            );
            return response;
        }

        // Rate limits.
        let claimed = claimed_client(request);
        if let (Some(limiter), Some(class)) = (&self.rate_limiter, endpoint.class()) {
            let mut keys = Vec::with_capacity(2);
            if let Some(ip) = source {
                keys.push(LimitKey::Address(ip));
            }
            if let Some(c) = &claimed {
                keys.push(LimitKey::Client(c.clone()));
            }
            let decision = limiter.check(class, &keys, now);
            let limited = match &decision {
                Ok(RateLimitDecision::Allowed) => None,
                Ok(d) => Some(d.retry_after_seconds().unwrap_or(1)),
                Err(_) => Some(0),
            };
            if let Some(retry) = limited {
                let mut response = if retry == 0 {
                    problem_response(PublicProblem::Unavailable)
                } else {
                    let mut r = problem_response(PublicProblem::TooManyRequests);
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(retry));
                    r
                };
                if endpoint == SmartEndpoint::Token {
                    // OAuth clients expect JSON errors: keep the status, say it in OAuth terms.
                    let status = response.status();
                    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
                    response = OAuthError::new(
                        OAuthErrorCode::InvalidRequest,
                        "too many requests; try again later",
                    )
                    .to_response();
                    *response.status_mut() = status;
                    if let Some(v) = retry_after {
                        response.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                }
                let (event_outcome, kind) = if retry == 0 {
                    (
                        Outcome::Error(ErrorKind::Unavailable),
                        EventKind::AuthorizationServer,
                    )
                } else {
                    (
                        Outcome::Denied(AuditDenyReason::RateLimited),
                        EventKind::RateLimited,
                    )
                };
                self.audit_event(endpoint, now, source, method, claimed, event_outcome, kind);
                return self.finish(endpoint, response, ResponseKind::Phi, origin.as_ref());
            }
        }

        let (response, kind, outcome, client) = match endpoint {
            SmartEndpoint::SmartConfiguration => (
                self.server.smart_configuration().to_response(),
                ResponseKind::Public,
                Outcome::Success,
                None,
            ),
            SmartEndpoint::OpenIdConfiguration => match self.server.openid_configuration() {
                Some(c) => (
                    c.to_response(),
                    ResponseKind::Public,
                    Outcome::Success,
                    None,
                ),
                None => (
                    problem_response(PublicProblem::NotFound),
                    ResponseKind::Public,
                    Outcome::Success,
                    None,
                ),
            },
            SmartEndpoint::Jwks => (
                self.server.jwks_response(now),
                ResponseKind::Public,
                Outcome::Success,
                None,
            ),
            SmartEndpoint::Token => {
                let outcome = self.server.token(request, now);
                let audit = match &outcome {
                    Ok(_) => Outcome::Success,
                    Err(e) => token_outcome(e),
                };
                let client = outcome
                    .as_ref()
                    .ok()
                    .and_then(|t| t.client_id.clone())
                    .or(claimed);
                (token_response(&outcome), ResponseKind::Phi, audit, client)
            }
            SmartEndpoint::Introspect => match self.server.introspect_checked(request, now) {
                Ok(checked) => {
                    // Another client's live token: answered like an unknown one, audited as a
                    // refusal (one app probing another's tokens is what the trail is for).
                    let audit = match checked {
                        IntrospectionOutcome::Withheld => {
                            Outcome::Denied(AuditDenyReason::NotEntitled)
                        }
                        _ => Outcome::Success,
                    };
                    (
                        checked.into_answer().to_response(),
                        ResponseKind::Phi,
                        audit,
                        claimed,
                    )
                }
                Err(e) => (
                    e.to_response(),
                    ResponseKind::Phi,
                    token_outcome(&e),
                    claimed,
                ),
            },
            SmartEndpoint::Revoke => match self.server.revoke(request, now) {
                Ok(r) => (
                    r.to_response(),
                    ResponseKind::Phi,
                    Outcome::Success,
                    claimed,
                ),
                Err(e) => (
                    e.to_response(),
                    ResponseKind::Phi,
                    token_outcome(&e),
                    claimed,
                ),
            },
            SmartEndpoint::Authorize => match self.server.authorize_request(request, now) {
                Ok(validated) => {
                    let client = Some(validated.client.id.clone());
                    let response = self.host.authorize(&self.server, validated, request, now);
                    (response, ResponseKind::Html, Outcome::Success, client)
                }
                Err(e) => {
                    let client = match &e {
                        AuthorizeError::Redirect { .. } => claimed,
                        _ => None,
                    };
                    (
                        e.to_response(),
                        ResponseKind::Html,
                        Outcome::Denied(AuditDenyReason::MalformedRequest),
                        client,
                    )
                }
            },
        };
        let public = kind == ResponseKind::Public;
        let response = self.finish(endpoint, response, kind, origin.as_ref());
        if !public {
            // Discovery and JWKS are public documents: not audited as access.
            let kept = self.audit(endpoint, now, source, method, client, outcome);
            if !kept {
                let failed = problem_response(PublicProblem::Internal);
                return self.finish(endpoint, failed, ResponseKind::Phi, origin.as_ref());
            }
        }
        response
    }

    fn finish(
        &self,
        endpoint: SmartEndpoint,
        response: Response<Vec<u8>>,
        kind: ResponseKind,
        origin: Option<&HeaderValue>,
    ) -> Response<Bytes> {
        let mut response = response.map(Bytes::from);
        let headers = response.headers_mut();
        // Keep the public documents' own caching (`max-age`), strip everything else.
        self.headers.apply(headers, kind);
        if let Some(class) = endpoint.cors() {
            match (&self.cors, class) {
                (Some(cors), class) => {
                    cors.apply(class, origin, headers);
                }
                (None, CorsClass::Public) => {
                    headers.insert(
                        header::ACCESS_CONTROL_ALLOW_ORIGIN,
                        HeaderValue::from_static("*"),
                    );
                }
                (None, _) => {}
            }
        }
        response
    }

    fn audit(
        &self,
        endpoint: SmartEndpoint,
        now: OffsetDateTime,
        source: Option<IpAddr>,
        method: &Method,
        client: Option<ClientId>,
        outcome: Outcome,
    ) -> bool {
        let kind = match outcome {
            Outcome::Denied(_) => EventKind::RequestDenied,
            _ => EventKind::AuthorizationServer,
        };
        self.audit_event(endpoint, now, source, method, client, outcome, kind)
    }

    #[allow(clippy::too_many_arguments)]
    fn audit_event(
        &self,
        endpoint: SmartEndpoint,
        now: OffsetDateTime,
        source: Option<IpAddr>,
        method: &Method,
        client: Option<ClientId>,
        outcome: Outcome,
        kind: EventKind,
    ) -> bool {
        let Some(audit) = &self.audit else {
            return true;
        };
        let Ok(time) = AuditTime::new(now) else {
            return false;
        };
        let mut record = AuditRecord::new(time, kind, outcome);
        record.source = source;
        record.method = Some(HttpMethod::from(method));
        record.client = client;
        record.endpoint = endpoint.route().map(|route| Endpoint {
            route,
            resource_type: None,
            id: None,
        });
        audit.record(record).is_ok()
    }
}

/// The `client_id` a request claims (form field or HTTP Basic user), for rate limits and the
/// audit record only — never for authentication.
fn claimed_client(request: &Request<Bytes>) -> Option<ClientId> {
    if let Some(auth) = request.headers().get(header::AUTHORIZATION) {
        let value = auth.to_str().ok()?;
        if let Some(b64) = value.strip_prefix("Basic ") {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let user = text.split(':').next()?;
            let user = percent_encoding::percent_decode_str(user)
                .decode_utf8()
                .ok()?;
            return ClientId::new(user.as_ref()).ok();
        }
    }
    let raw: &[u8] = if request.method() == Method::GET {
        request.uri().query().unwrap_or("").as_bytes()
    } else {
        request.body()
    };
    if raw.len() > MAX_FORM_LEN {
        return None;
    }
    let form = FormParams::parse(raw).ok()?;
    let id = form.get("client_id").ok()??;
    ClientId::new(id).ok()
}

/// The token endpoint's precise reason, in the audit vocabulary.
fn token_outcome(error: &TokenError) -> Outcome {
    Outcome::Denied(match &error.reason {
        TokenFailure::ClientAuth(ClientAuthFailure::Assertion(AssertionError::Replayed)) => {
            AuditDenyReason::AssertionReplay
        }
        TokenFailure::ClientAuth(_) => AuditDenyReason::ClientAuthenticationFailed,
        TokenFailure::CodeReused | TokenFailure::RefreshReused => AuditDenyReason::TokenReuse,
        TokenFailure::GrantInactive => AuditDenyReason::GrantRevoked,
        TokenFailure::RevokeOtherClient => AuditDenyReason::NotEntitled,
        TokenFailure::InvalidScope | TokenFailure::ScopeWidened | TokenFailure::NothingGranted => {
            AuditDenyReason::InsufficientScope
        }
        TokenFailure::Server(_) => return Outcome::Error(ErrorKind::Internal),
        TokenFailure::BadMethod
        | TokenFailure::Form(_)
        | TokenFailure::Duplicate(_)
        | TokenFailure::Missing(_)
        | TokenFailure::UnsupportedGrantType => AuditDenyReason::MalformedRequest,
        _ => AuditDenyReason::InvalidToken,
    })
}
