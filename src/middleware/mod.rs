//! The guard middleware (feature `tower`): a tower [`Layer`](tower_layer::Layer) +
//! [`Service`](tower_service::Service) composing the resource server's pipeline around the
//! host's FHIR handler.
//!
//! ```text
//! request → sanitize → token → grant active? → rate limits → enforce (allow / narrow / deny)
//!         → host handler → filter the response (read: check; search: drop entries, fix totals)
//!         → one audit record → generic errors, security headers, CORS → response
//! ```
//!
//! * [`GuardLayer`] / [`GuardService`] / [`ResponseFuture`]: the tower-http shape — a `Clone`,
//!   `#[must_use]` layer built from a validated [`GuardConfig`] ([`GuardConfig::builder`]), a
//!   service with `get_ref`/`get_mut`/`into_inner`, and its own future.
//! * The handler finds a [`GuardContext`] in the request's extensions (patient, client, grant,
//!   granted categories, scopes, the narrowed typed request); the request's URI already carries
//!   the narrowing parameters; a search's request also carries its [`Visibility`], for a
//!   handler that must page over matches the guard could not narrow. A refused request's response carries a [`GuardRejection`] (and a
//!   [`RejectionReason`](crate::fhir::RejectionReason)) in its extensions.
//! * Each stage is a trait with the crate's component as its implementation:
//!   [`TokenValidation`] (`AuthorizationServer`, `AccessTokenValidator`),
//!   [`GrantStatusSource`](crate::consent::GrantStatusSource), [`AuditRecorder`]
//!   (`AuditLog`), [`RateLimit`] (`RateLimiter`), [`OriginRegistry`] (CORS).
//! * `/metadata` and `.well-known/smart-configuration` under the FHIR base pass without a
//!   token ([`GuardConfigBuilder::public_paths`]).
//!
//! Every request gets exactly one audit record, refused ones included; if the record cannot be
//! kept the response is withheld with a `500`. `docs/middleware.md` shows the wiring into axum
//! and plain hyper.

#[cfg(feature = "axum")]
pub mod axum;
mod body;
mod config;
mod context;
mod cors;
mod endpoints;
mod resource;
mod scopes;
mod service;
mod stages;
mod token_cache;

pub use body::{BodyReadError, OVERSIZED_DRAIN_FACTOR, read_body};
pub use config::{
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_PUBLIC_PATHS, GuardConfig, GuardConfigBuilder,
    GuardConfigError,
};
pub use context::{GuardContext, GuardRejection};
pub use cors::{CorsClass, CorsPolicy, OriginRegistry};
pub use endpoints::{AuthorizeHost, SmartEndpoint, SmartEndpoints};
pub use resource::FhirJson;
pub use service::{GuardBody, GuardLayer, GuardService, ResponseFuture, Visibility};
pub use stages::{AuditRecorder, PeerAddr, RateLimit, TokenValidation};
pub use token_cache::{
    CachedTokenValidator, DEFAULT_TOKEN_CACHE_CAPACITY, DEFAULT_TOKEN_CACHE_TTL,
};
