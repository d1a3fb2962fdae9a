//! Client key sets registered by URL (SMART confidential-asymmetric: a server SHALL support
//! registration of a client's JWK Set URL, dereference it to verify assertions, and SHALL NOT
//! cache it longer than the client's `Cache-Control` says).
//!
//! fhirguard opens no connection itself: its dependency tree holds no HTTP client, and which
//! hosts the authorization server may reach, through which proxy and with what timeout, is the
//! deployment's policy. The host implements [`JwksFetcher`] with its own client; the server
//! asks it only when an assertion of a client registered with a `jwks_uri` arrives and no
//! fresh copy is cached, parses and bounds what comes back, and caches it as the response's
//! `Cache-Control` allows.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use time::{Duration, OffsetDateTime};

use super::jose::{Jwks, VerifyingKey};

/// The largest JWK Set document read (bytes).
pub const MAX_JWKS_LEN: usize = 64 * 1024;

/// The most keys kept from one JWK Set.
pub const MAX_JWKS_KEYS: usize = 64;

/// How long a JWK Set without `Cache-Control` freshness is kept (HTTP's heuristic freshness,
/// kept short): five minutes.
pub const DEFAULT_JWKS_TTL: Duration = Duration::minutes(5);

/// The longest a JWK Set is kept, whatever its `max-age`: one day.
pub const MAX_JWKS_TTL: Duration = Duration::days(1);

/// How soon an assertion naming a `kid` the cached set lacks may fetch the set again (the
/// client rotated its keys): at most once in this interval per URL, so that assertions with
/// made-up key ids cannot make the server fetch on every request.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::seconds(30);

/// How many URLs the cache holds before it starts afresh.
const MAX_CACHED_SETS: usize = 1024;

/// A JWK Set document as the host's HTTP client received it.
#[derive(Clone, PartialEq, Eq)]
pub struct FetchedJwks {
    /// The response body (a 2xx response's; the fetcher refuses any other status).
    pub body: Vec<u8>,
    /// The response's `Cache-Control` header value, if any.
    pub cache_control: Option<String>,
}

impl fmt::Debug for FetchedJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchedJwks")
            .field("body_len", &self.body.len())
            .field("cache_control", &self.cache_control)
            .finish()
    }
}

/// Why a JWK Set could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksFetchError {
    /// The URL may not be fetched (the host's egress policy).
    #[error("the JWK Set URL may not be fetched")]
    Forbidden,
    /// The connection, TLS or the response failed, or took too long.
    #[error("the JWK Set could not be retrieved")]
    Unavailable,
    /// The server answered with a status other than 2xx.
    #[error("the JWK Set URL answered with status {0}")]
    Status(u16),
}

/// The host's HTTP GET of a client's JWK Set URL.
///
/// Called synchronously while a token, introspection or revocation request is being
/// authenticated, and only when the cache has no fresh copy: implement it with a short
/// timeout (a few seconds), HTTPS only, no redirects to other hosts, and a body limit of
/// [`MAX_JWKS_LEN`]. From an async server, run it on a blocking-capable thread.
pub trait JwksFetcher: Send + Sync {
    /// GETs `url` and returns the body with its `Cache-Control`.
    fn fetch(&self, url: &str) -> Result<FetchedJwks, JwksFetchError>;
}

/// Why a client's key set could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientJwksError {
    /// The host's fetcher failed.
    #[error("JWK Set fetch: {0}")]
    Fetch(JwksFetchError),
    /// The document is too long, not a JWK Set, or holds no usable signing key.
    #[error("the JWK Set document is not usable")]
    Invalid,
}

struct Cached {
    keys: Arc<[VerifyingKey]>,
    fetched_at: OffsetDateTime,
    fresh_until: OffsetDateTime,
}

/// Client JWK Sets by URL, fetched through the host's [`JwksFetcher`] and kept no longer than
/// their `Cache-Control` allows.
pub(crate) struct ClientJwksCache {
    fetcher: Arc<dyn JwksFetcher>,
    sets: Mutex<HashMap<String, Cached>>,
}

impl ClientJwksCache {
    pub(crate) fn new(fetcher: Arc<dyn JwksFetcher>) -> Self {
        Self {
            fetcher,
            sets: Mutex::new(HashMap::new()),
        }
    }

    /// The keys at `url` for an assertion naming `kid`: the cached set while it is fresh and
    /// has the key (or was fetched too recently to fetch again), otherwise a fresh fetch.
    pub(crate) fn keys(
        &self,
        url: &str,
        kid: &str,
        now: OffsetDateTime,
    ) -> Result<Arc<[VerifyingKey]>, ClientJwksError> {
        if let Some(cached) = self.lock().get(url) {
            let fresh = now < cached.fresh_until;
            let has_kid = cached.keys.iter().any(|k| k.kid() == kid);
            if fresh && (has_kid || now < cached.fetched_at + JWKS_REFETCH_INTERVAL) {
                return Ok(Arc::clone(&cached.keys));
            }
        }
        // Fetched without the lock: a slow client server must not hold up other clients.
        let fetched = self.fetcher.fetch(url).map_err(ClientJwksError::Fetch)?;
        let keys = parse_jwks(&fetched.body)?;
        let ttl = freshness(fetched.cache_control.as_deref());
        let mut sets = self.lock();
        if ttl > Duration::ZERO {
            if sets.len() >= MAX_CACHED_SETS && !sets.contains_key(url) {
                sets.clear();
            }
            sets.insert(
                url.to_owned(),
                Cached {
                    keys: Arc::clone(&keys),
                    fetched_at: now,
                    fresh_until: now + ttl,
                },
            );
        } else {
            // `no-store` / `no-cache` / `max-age=0`: used for this request only.
            sets.remove(url);
        }
        Ok(keys)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.sets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The signing keys of a JWK Set document. Keys fhirguard cannot use (another `kty` or
/// curve, `use` other than `sig`, no `kid`) are skipped, as RFC 7517 §5 lets a reader do;
/// a document with none left is refused.
fn parse_jwks(body: &[u8]) -> Result<Arc<[VerifyingKey]>, ClientJwksError> {
    if body.len() > MAX_JWKS_LEN {
        return Err(ClientJwksError::Invalid);
    }
    let set: Jwks = serde_json::from_slice(body).map_err(|_| ClientJwksError::Invalid)?;
    if set.keys.len() > MAX_JWKS_KEYS {
        return Err(ClientJwksError::Invalid);
    }
    let keys: Vec<VerifyingKey> = set
        .keys
        .iter()
        .filter(|jwk| jwk.use_.as_deref().is_none_or(|u| u == "sig"))
        .filter_map(|jwk| VerifyingKey::from_jwk(jwk).ok())
        .collect();
    if keys.is_empty() {
        return Err(ClientJwksError::Invalid);
    }
    Ok(keys.into())
}

/// How long a response with this `Cache-Control` may be kept: zero for `no-store`,
/// `no-cache` or `max-age=0`; its `max-age` (at most [`MAX_JWKS_TTL`]); otherwise
/// [`DEFAULT_JWKS_TTL`].
fn freshness(cache_control: Option<&str>) -> Duration {
    let Some(value) = cache_control else {
        return DEFAULT_JWKS_TTL;
    };
    let mut max_age = None;
    for directive in value.split(',') {
        let directive = directive.trim();
        let (name, argument) = match directive.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Duration::ZERO;
        }
        if name.eq_ignore_ascii_case("max-age") {
            // RFC 9111 §1.2.2: an invalid delta-seconds is stale; a huge one is capped.
            max_age = Some(
                argument
                    .and_then(|a| a.parse::<u64>().ok())
                    .map_or(Duration::ZERO, |s| {
                        Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX))
                    }),
            );
        }
    }
    max_age.map_or(DEFAULT_JWKS_TTL, |age| age.min(MAX_JWKS_TTL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_follows_cache_control() {
        assert_eq!(freshness(None), DEFAULT_JWKS_TTL);
        assert_eq!(freshness(Some("max-age=60")), Duration::seconds(60));
        assert_eq!(
            freshness(Some("public, MAX-AGE=\"120\"")),
            Duration::seconds(120)
        );
        assert_eq!(freshness(Some("max-age=99999999999")), MAX_JWKS_TTL);
        assert_eq!(freshness(Some("max-age=0")), Duration::ZERO);
        assert_eq!(freshness(Some("max-age=-5")), Duration::ZERO);
        assert_eq!(freshness(Some("max-age=60, no-cache")), Duration::ZERO);
        assert_eq!(freshness(Some("no-store")), Duration::ZERO);
        assert_eq!(freshness(Some("private")), DEFAULT_JWKS_TTL);
    }

    #[test]
    fn documents_are_bounded_and_need_a_usable_key() {
        assert_eq!(
            parse_jwks(b"not json").unwrap_err(),
            ClientJwksError::Invalid
        );
        assert_eq!(
            parse_jwks(br#"{"keys":[]}"#).unwrap_err(),
            ClientJwksError::Invalid
        );
        assert_eq!(
            parse_jwks(br#"{"keys":[{"kty":"oct","kid":"a","k":"c2VjcmV0"}]}"#).unwrap_err(),
            ClientJwksError::Invalid
        );
        let long = vec![b' '; MAX_JWKS_LEN + 1];
        assert_eq!(parse_jwks(&long).unwrap_err(), ClientJwksError::Invalid);
    }
}
