//! The authorization server's HTTP surface at `/auth`: a thin adapter from HTTP requests to
//! `fhirguard::token::AuthorizationServer` (interim until the middleware component's axum
//! router lands). `authorize` needs the portal (login and approval), so it lives there.

use http::{HeaderValue, Method, Response, StatusCode, header};

use fhirguard::audit::{AuditRecord, DenyReason as AuditDeny, EventKind, HttpMethod, Outcome};
use fhirguard::sanitize::ResponseKind;
use fhirguard::token::{AssertionError, ClientAuthFailure, TokenFailure, token_response};

use super::{Ehr, Peer, Req, Resp, portal};

pub(crate) fn handle(ehr: &Ehr, req: &Req) -> Resp {
    let now = Ehr::now();
    let path = req.uri().path();
    let method = req.method();
    let cors = matches!(
        path,
        "/auth/token" | "/auth/.well-known/jwks.json" | "/auth/.well-known/openid-configuration"
    );
    if method == Method::OPTIONS && cors {
        let mut r = Response::new(Vec::new());
        *r.status_mut() = StatusCode::NO_CONTENT;
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization, Content-Type"),
        );
        return r;
    }
    let mut response = match (method.clone(), path) {
        (Method::GET | Method::POST, "/auth/authorize") => return portal::authorize(ehr, req),
        (Method::POST, "/auth/token") => {
            let outcome = ehr.server.token(req, now);
            audit_token(ehr, req, &outcome);
            let mut r = token_response(&outcome);
            ehr.headers.apply(r.headers_mut(), ResponseKind::Phi);
            r
        }
        (Method::POST, "/auth/introspect") => {
            let mut r = match ehr.server.introspect(req, now) {
                Ok(i) => i.to_response(),
                Err(e) => e.to_response(),
            };
            ehr.headers.apply(r.headers_mut(), ResponseKind::Phi);
            r
        }
        (Method::POST, "/auth/revoke") => {
            let mut r = match ehr.server.revoke(req, now) {
                Ok(ok) => ok.to_response(),
                Err(e) => e.to_response(),
            };
            ehr.headers.apply(r.headers_mut(), ResponseKind::Phi);
            r
        }
        (Method::GET | Method::HEAD, "/auth/.well-known/jwks.json") => {
            let mut r = ehr.server.jwks_response(now);
            ehr.headers.apply(r.headers_mut(), ResponseKind::Public);
            r
        }
        (Method::GET | Method::HEAD, "/auth/.well-known/openid-configuration") => {
            match ehr.server.openid_configuration() {
                Some(c) => {
                    let mut r = c.to_response();
                    ehr.headers.apply(r.headers_mut(), ResponseKind::Public);
                    r
                }
                None => not_found(ehr),
            }
        }
        (
            _,
            "/auth/authorize"
            | "/auth/token"
            | "/auth/introspect"
            | "/auth/revoke"
            | "/auth/.well-known/jwks.json"
            | "/auth/.well-known/openid-configuration",
        ) => {
            let mut r =
                super::text_response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed\n");
            let allow = if path.ends_with("authorize") {
                "GET, POST"
            } else if path.contains(".well-known") {
                "GET"
            } else {
                "POST"
            };
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            ehr.headers.apply(r.headers_mut(), ResponseKind::Phi);
            r
        }
        _ => not_found(ehr),
    };
    if cors {
        response.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    if method == Method::HEAD {
        response.body_mut().clear();
    }
    response
}

fn not_found(ehr: &Ehr) -> Resp {
    let mut r = super::text_response(StatusCode::NOT_FOUND, "Not found\n");
    ehr.headers.apply(r.headers_mut(), ResponseKind::Public);
    r
}

/// One audit record per token request: success, or the typed reason of the failure.
fn audit_token(ehr: &Ehr, req: &Req, outcome: &fhirguard::token::TokenOutcome) {
    let Some(time) = Ehr::audit_time() else {
        return;
    };
    let (event, result) = match outcome {
        Ok(_) => (EventKind::AuthorizationServer, Outcome::Success),
        Err(err) => match &err.reason {
            TokenFailure::RefreshReused | TokenFailure::CodeReused => (
                EventKind::RefreshTokenReuse,
                Outcome::Denied(AuditDeny::TokenReuse),
            ),
            TokenFailure::ClientAuth(ClientAuthFailure::Assertion(AssertionError::Replayed)) => (
                EventKind::ClientAssertionReplay,
                Outcome::Denied(AuditDeny::AssertionReplay),
            ),
            TokenFailure::ClientAuth(_) => (
                EventKind::AuthorizationServer,
                Outcome::Denied(AuditDeny::ClientAuthenticationFailed),
            ),
            TokenFailure::GrantInactive | TokenFailure::GrantEnding => (
                EventKind::AuthorizationServer,
                Outcome::Denied(AuditDeny::GrantRevoked),
            ),
            _ => (
                EventKind::AuthorizationServer,
                Outcome::Denied(AuditDeny::InvalidToken),
            ),
        },
    };
    let mut record = AuditRecord::new(time, event, result);
    record.source = req.extensions().get::<Peer>().map(|p| p.0.ip());
    record.method = Some(HttpMethod::from(req.method()));
    ehr.record(record);
}
