//! Authorization-server core: clients, authorize, codes, PKCE, the token endpoint, refresh
//! families, introspection, revocation, JWT access tokens, keys/JWKS and resource-server
//! validation. Protocol logic without I/O; storage and keys behind traits.
//!
//! # Wiring
//!
//! A host builds one [`AuthorizationServer`] from a [`ServerConfig`] and five plug points:
//! [`KeySource`] (signing keys, rotation), [`ClientRegistry`], [`TokenStore`] (codes, refresh
//! families, `jti` cache, revocations), a [`GrantStatusSource`](crate::consent::GrantStatusSource)
//! (the consent component), and the time, passed as `now` to every call. Each endpoint takes
//! an `http::Request` (or parsed form) and returns a typed outcome with `to_response()`:
//!
//! | endpoint | method |
//! |---|---|
//! | authorize (GET and POST) | [`AuthorizationServer::authorize_request`], then [`AuthorizationServer::approve`] or [`AuthorizationServer::deny`] |
//! | token | [`AuthorizationServer::token`] |
//! | introspection (RFC 7662) | [`AuthorizationServer::introspect`] |
//! | revocation (RFC 7009) | [`AuthorizationServer::revoke`] |
//! | JWKS | [`AuthorizationServer::jwks_response`] |
//! | discovery | [`AuthorizationServer::smart_configuration`], [`AuthorizationServer::openid_configuration`] |
//!
//! The resource server validates access tokens with [`AccessTokenValidator`] (available
//! ready-made as [`AuthorizationServer::validator`]).
//!
//! # Security choices
//!
//! * JWS is signed and verified with `ring` directly ([`jose`]); the accepted algorithms come
//!   from configuration, `none` and HMAC do not exist, and a key's type must fit the algorithm.
//! * Codes live ≤ 60 s and are single use; a second redemption revokes every token issued from
//!   the first. Codes and refresh tokens are stored only as SHA-256 hashes.
//! * Refresh tokens rotate on every use; presenting a rotated-out one revokes its family.
//!   A refresh can narrow an access token, never widen it. Nothing outlives the consent grant.
//! * PKCE is `S256` only, lengths checked before hashing.
//! * Errors on the wire are fixed strings; the typed reason is for the audit log.
//!
//! `docs/authorization-server.md` has the whole story.

mod access;
mod assertion;
mod authorize;
mod client_jwks;
mod clients;
mod config;
mod endpoint;
mod error;
mod form;
mod grants;
mod introspect;
pub mod jose;
mod keys;
mod launch;
mod pkce;
mod server;
mod store;

pub use access::{
    ACCESS_TOKEN_TYP, AccessTokenClaims, AccessTokenValidator, MAX_ACCESS_TOKEN_LEN,
    RevocationList, SmartContextClaims, TokenRejection, ValidatedToken, ValidatorConfig,
    bearer_token, sign_access_token,
};
pub use assertion::{
    AssertionError, AssertionPolicy, JWT_BEARER, MAX_ASSERTION_LEN, MAX_ASSERTION_LIFETIME,
    claimed_client, verify_assertion,
};
pub use authorize::{
    Approval, AuthorizeError, AuthorizeRedirect, AuthorizeRequest, MAX_STATE_LEN, RedirectReason,
    RenderReason,
};
pub use client_jwks::{
    ClientJwksError, DEFAULT_JWKS_TTL, FetchedJwks, JWKS_REFETCH_INTERVAL, JwksFetchError,
    JwksFetcher, MAX_JWKS_KEYS, MAX_JWKS_LEN, MAX_JWKS_TTL,
};
pub use clients::{
    Client, ClientAuth, ClientRegistry, ClientSecret, InMemoryClientRegistry, SecretHash,
    SecretMethod,
};
pub use config::{ConfigError, ServerConfig};
pub use endpoint::{
    ClientAuthFailure, ClientAuthMethod, TokenError, TokenFailure, TokenOutcome, TokenResponse,
    token_response,
};
pub use error::{Challenge, OAuthError, OAuthErrorCode};
pub use form::{DuplicateParam, FormError, FormParams, MAX_FORM_LEN, MAX_PARAMS};
pub use grants::MemoryGrantStatus;
pub use introspect::{Introspection, IntrospectionOutcome, Revoked};
pub use jose::{Algorithm, Jwk, Jwks, KeyError, SigningKey, VerifyingKey};
pub use keys::{InMemoryKeySource, KeySource, KeySourceError};
pub use launch::{
    EhrLaunch, FhirContextError, InMemoryLaunchStore, LAUNCH_TTL, LaunchContext, LaunchError,
    LaunchStore, MAX_LAUNCH_LEN, MAX_PENDING_LAUNCHES, check_fhir_context,
};
pub use pkce::{
    PkceError, check_challenge as check_pkce_challenge, s256 as pkce_s256, verify as verify_pkce,
};
pub use server::{AuthorizationServer, ServerFailure, public_json_response};
pub use store::{
    CodeRecord, CodeRedemption, GrantContext, InMemoryTokenStore, RefreshFamily, RefreshLookup,
    StoreError, TokenHash, TokenStore,
};
