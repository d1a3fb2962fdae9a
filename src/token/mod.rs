//! Authorization-server core: clients, authorize, codes, PKCE, the token endpoint, refresh
//! families, introspection, revocation, JWT access tokens, keys/JWKS and resource-server
//! validation. Protocol logic without I/O; storage and keys behind traits.
//!
//! * JWS is signed and verified with `ring` directly ([`jose`]); the accepted algorithms come
//!   from configuration, `none` and HMAC do not exist, and a key's type must fit the algorithm.
//! * Access tokens are RFC 9068 JWTs (`typ: at+jwt`) carrying their consent grant's id; the
//!   [`AccessTokenValidator`] checks signature, claims, revocation and the grant's status.

mod access;
mod grants;
pub mod jose;
mod keys;

pub use access::{
    ACCESS_TOKEN_TYP, AccessTokenClaims, AccessTokenValidator, MAX_ACCESS_TOKEN_LEN,
    RevocationList, TokenRejection, ValidatedToken, ValidatorConfig, bearer_token,
    sign_access_token,
};
pub use grants::MemoryGrantStatus;
pub use jose::{Algorithm, Jwk, Jwks, KeyError, SigningKey, VerifyingKey};
pub use keys::{InMemoryKeySource, KeySource, KeySourceError};
