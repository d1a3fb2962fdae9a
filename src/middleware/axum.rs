//! An axum `Router` mounting the authorization-server endpoints (feature `axum`).
//!
//! ```rust,ignore
//! let endpoints = SmartEndpoints::new(server.clone(), host, clock).with_audit(audit);
//! let app = axum::Router::new()
//!     .merge(fhirguard::middleware::axum::smart_router(endpoints))
//!     .merge(fhir_routes.layer(GuardLayer::new(guard_config)));
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! ```

use std::sync::Arc;

use ::axum::Router;
use ::axum::body::Body;
use ::axum::extract::{Request, State};
use ::axum::response::{IntoResponse, Response};
use ::axum::routing::any;

use super::endpoints::{AuthorizeHost, SmartEndpoints};
use crate::clock::SystemClock;
use crate::fhir::{PublicProblem, problem_response};
use crate::token::{AuthorizationServer, MAX_FORM_LEN};

/// A router serving `endpoints` at the paths of the server's configured URLs (discovery,
/// JWKS, authorize, token, introspect, revoke). Mount it next to the guarded FHIR routes.
pub fn smart_router_with(endpoints: SmartEndpoints) -> Router {
    let endpoints = Arc::new(endpoints);
    let mut router = Router::new();
    let paths: Vec<String> = endpoints.paths().map(|(p, _)| p.to_owned()).collect();
    for path in paths {
        router = router.route(&path, any(handle));
    }
    router.with_state(endpoints)
}

/// [`smart_router_with`] for `server` and `host`, on the system clock, without audit, rate
/// limits or a CORS policy for the token endpoint (add them with [`SmartEndpoints`]).
pub fn smart_router(server: Arc<AuthorizationServer>, host: Arc<dyn AuthorizeHost>) -> Router {
    smart_router_with(SmartEndpoints::new(server, host, Arc::new(SystemClock)))
}

async fn handle(State(endpoints): State<Arc<SmartEndpoints>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match super::read_body(body, &parts.headers, MAX_FORM_LEN).await {
        Ok(b) => b,
        Err(e) => {
            return match endpoints.body_refused(&parts, &e) {
                Some(response) => response.map(Body::from).into_response(),
                None => problem_response(PublicProblem::NotFound)
                    .map(Body::from)
                    .into_response(),
            };
        }
    };
    let request = http::Request::from_parts(parts, bytes);
    match endpoints.handle(&request) {
        Some(response) => response.map(Body::from).into_response(),
        None => problem_response(PublicProblem::NotFound)
            .map(Body::from)
            .into_response(),
    }
}
