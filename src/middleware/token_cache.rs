//! A token validator that verifies each token's signature once and remembers the verified
//! claims for a short while: the signature check (ECDSA or RSA) dominates the cost of a guarded
//! request, and a client sends the same token hundreds of times.
//!
//! Everything that can change while a token lives is still checked on every request: expiry
//! and not-before (against `now`, with the server's leeway), revocation of the token or its
//! family, and the grant's status. A signing key withdrawn from the key source stops vouching
//! for cached tokens within the cache's time-to-live (default 60 s).
//!
//! Only successes are cached, and only a token identical to a verified one matches: an entry is
//! found by the SHA-256 of the token's signature (its unguessable part, so the cache holds no
//! usable token) and matches only if the rest of the token, header and claims (which the entry
//! holds in the clear anyway, as the verified claims), is byte for byte the same. Hashing the
//! signature alone rather than the whole token saves most of the hashing a cached request does.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use http::{HeaderMap, header};
use time::{Duration, OffsetDateTime};

use super::stages::TokenValidation;
use crate::consent::GrantStatus;
use crate::token::{
    AccessTokenClaims, AuthorizationServer, MAX_ACCESS_TOKEN_LEN, RevocationList, TokenRejection,
    ValidatedToken, bearer_token,
};

/// The default time a verified signature is trusted without re-verifying.
pub const DEFAULT_TOKEN_CACHE_TTL: Duration = Duration::seconds(60);

/// The default number of tokens remembered.
pub const DEFAULT_TOKEN_CACHE_CAPACITY: usize = 10_000;

struct Entry {
    claims: Arc<AccessTokenClaims>,
    /// What precedes the signature (`header.claims`, base64url): a token whose signature
    /// matches but whose claims differ is not this one.
    signed: Box<[u8]>,
    verified_at: OffsetDateTime,
}

/// A token split into what the cache hashes (the signature) and what it compares (the rest).
/// A token without a `.` is all signature (nothing to compare).
fn split_signature(token: &str) -> (&[u8], &[u8]) {
    let bytes = token.as_bytes();
    match token.rfind('.') {
        Some(dot) => (&bytes[..dot], &bytes[dot..]),
        None => (&[], bytes),
    }
}

/// [`TokenValidation`] over an [`AuthorizationServer`] with a cache of verified signatures.
pub struct CachedTokenValidator {
    server: Arc<AuthorizationServer>,
    ttl: Duration,
    capacity: usize,
    cache: RwLock<HashMap<[u8; 32], Entry>>,
}

impl fmt::Debug for CachedTokenValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedTokenValidator")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl CachedTokenValidator {
    /// A cache in front of `server`'s validator with the default TTL and capacity.
    pub fn new(server: Arc<AuthorizationServer>) -> Self {
        Self {
            server,
            ttl: DEFAULT_TOKEN_CACHE_TTL,
            capacity: DEFAULT_TOKEN_CACHE_CAPACITY,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// How long a verified signature is trusted (clamped to 0–5 minutes; 0 disables the cache).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.clamp(Duration::ZERO, Duration::minutes(5));
        self
    }

    /// How many tokens are remembered at most.
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// How many tokens are remembered now.
    pub fn len(&self) -> usize {
        self.cache.read().map(|c| c.len()).unwrap_or(0)
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn claims(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<Arc<AccessTokenClaims>, TokenRejection> {
        let validator = self.server.validator();
        if self.ttl == Duration::ZERO || self.capacity == 0 {
            return validator
                .verify_signature_and_claims(token, now)
                .map(Arc::new);
        }
        let (signed, signature) = split_signature(token);
        let digest = ring::digest::digest(&ring::digest::SHA256, signature);
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        let cached = self.cache.read().ok().and_then(|cache| {
            cache.get(&key).and_then(|e| {
                let age = now - e.verified_at;
                // Not secret (the claims are kept in the clear beside it): a plain comparison.
                (*e.signed == *signed && age >= Duration::ZERO && age < self.ttl)
                    .then(|| Arc::clone(&e.claims))
            })
        });
        if let Some(claims) = cached {
            // The time claims move with `now`: check them again.
            let leeway = validator.config().leeway.whole_seconds();
            let now_s = now.unix_timestamp();
            if claims.exp.saturating_add(leeway) <= now_s {
                return Err(TokenRejection::Expired);
            }
            if claims.nbf.unwrap_or(i64::MIN) > now_s.saturating_add(leeway)
                || claims.iat > now_s.saturating_add(leeway)
            {
                return Err(TokenRejection::NotYetValid);
            }
            return Ok(claims);
        }
        let claims = Arc::new(validator.verify_signature_and_claims(token, now)?);
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= self.capacity {
                let ttl = self.ttl;
                cache.retain(|_, e| now - e.verified_at < ttl);
                if cache.len() >= self.capacity {
                    cache.clear();
                }
            }
            cache.insert(
                key,
                Entry {
                    claims: Arc::clone(&claims),
                    signed: signed.into(),
                    verified_at: now,
                },
            );
        }
        Ok(claims)
    }
}

impl TokenValidation for CachedTokenValidator {
    fn validate_headers(
        &self,
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Result<ValidatedToken, TokenRejection> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let value = values.next().ok_or(TokenRejection::Missing)?;
        if values.next().is_some() {
            return Err(TokenRejection::NotBearer);
        }
        let token = bearer_token(value).ok_or_else(|| TokenRejection::not_bearer(value))?;
        if token.len() > MAX_ACCESS_TOKEN_LEN {
            return Err(TokenRejection::TooLong);
        }
        let claims = self.claims(token, now)?;
        if self
            .server
            .store
            .is_revoked(&claims.jti, claims.family.as_deref(), now)
        {
            return Err(TokenRejection::Revoked);
        }
        let grant = match &claims.grant_id {
            None => None,
            Some(grant_id) => match self.server.grants.grant_status(grant_id, now) {
                GrantStatus::Active(grant) => {
                    if grant.client_id != claims.client_id
                        || claims.patient.as_ref().is_some_and(|p| *p != grant.patient)
                    {
                        return Err(TokenRejection::GrantMismatch);
                    }
                    Some(grant)
                }
                GrantStatus::Expired => return Err(TokenRejection::GrantExpired),
                GrantStatus::Revoked => return Err(TokenRejection::GrantRevoked),
                GrantStatus::Unknown => return Err(TokenRejection::GrantUnknown),
            },
        };
        Ok(ValidatedToken { claims, grant })
    }

    fn grant_source(&self) -> Option<&Arc<dyn crate::consent::GrantStatusSource>> {
        Some(&self.server.grants)
    }
}
