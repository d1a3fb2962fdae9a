//! `private_key_jwt` client assertions (RFC 7523 §3, SMART confidential-asymmetric profile).

use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use super::client_jwks::{ClientJwksCache, ClientJwksError};
use super::clients::{Client, ClientAuth};
use super::jose::{Algorithm, JwsError, UnverifiedJws};
use super::store::{StoreError, TokenStore};
use crate::ids::ClientId;

/// The only accepted `client_assertion_type`.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest assertion looked at.
pub const MAX_ASSERTION_LEN: usize = 8 * 1024;

/// How far in the future an assertion's `exp` may be (SMART: five minutes).
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::minutes(5);

/// Why a client assertion was refused. All of these become `invalid_client` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssertionError {
    /// Not a compact JWS, over the size limit, or claims not of the expected shape.
    #[error("the client assertion is malformed")]
    Malformed,
    /// `alg` is not on the accepted list (`none`, `HS256`, …).
    #[error("the client assertion's algorithm is not accepted")]
    AlgorithmNotAllowed,
    /// `typ` is present and is not `JWT` (e.g. an access token replayed as an assertion).
    #[error("the client assertion's typ is not JWT")]
    WrongType,
    /// `crit` or an embedded `jwk` header.
    #[error("the client assertion's header uses an unsupported extension")]
    UnsupportedHeader,
    /// `iss` is missing, not a valid client id, or differs from `sub` or from `client_id`.
    #[error("the client assertion's iss/sub do not name the client")]
    IssuerMismatch,
    /// No client with that id is registered.
    #[error("the client is unknown")]
    UnknownClient,
    /// The client is not registered for `private_key_jwt`.
    #[error("the client does not authenticate with private_key_jwt")]
    NotAsymmetric,
    /// `jku` is not the client's registered JWKS URL.
    #[error("the client assertion's jku is not registered")]
    JkuNotAllowed,
    /// No `kid`, or no registered key has it with a type that fits `alg`.
    #[error("the client assertion's kid names no registered key")]
    UnknownKey,
    /// The client's JWK Set URL could not be dereferenced, or its document was unusable.
    #[error("the client's JWK Set could not be resolved: {0}")]
    KeySetUnavailable(ClientJwksError),
    /// More than one registered key fits `kid` and `alg`.
    #[error("the client assertion's kid is ambiguous")]
    AmbiguousKey,
    /// The signature does not verify.
    #[error("the client assertion's signature does not verify")]
    BadSignature,
    /// `aud` is not the token endpoint URL.
    #[error("the client assertion's aud is not the token endpoint")]
    WrongAudience,
    /// `exp` is missing or has passed.
    #[error("the client assertion has expired")]
    Expired,
    /// `exp` is more than five minutes ahead.
    #[error("the client assertion's exp is too far in the future")]
    ExpTooFar,
    /// `nbf` or `iat` is in the future.
    #[error("the client assertion is not valid yet")]
    NotYetValid,
    /// `jti` is missing or too long.
    #[error("the client assertion has no usable jti")]
    MissingJti,
    /// This client already used this `jti`.
    #[error("the client assertion's jti was already used")]
    Replayed,
    /// The jti cache failed.
    #[error("the jti cache failed: {0}")]
    Store(StoreError),
}

impl From<JwsError> for AssertionError {
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::AlgorithmNotAllowed => AssertionError::AlgorithmNotAllowed,
            JwsError::UnsupportedHeader => AssertionError::UnsupportedHeader,
            _ => AssertionError::Malformed,
        }
    }
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    /// Rounded down: a fractional expiry ends the assertion no later than it says.
    #[serde(default, deserialize_with = "numeric_date_floor")]
    exp: Option<i64>,
    /// Rounded up, as `iat`: a fractional start is never moved earlier.
    #[serde(default, deserialize_with = "numeric_date_ceil")]
    nbf: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date_ceil")]
    iat: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
}

/// A NumericDate (RFC 7519 §2) is any JSON number of seconds, fractions allowed ("non-integer
/// values can be represented"); JWT libraries that write floats must not be refused. A value
/// beyond ±2^53 seconds, or not a number, is malformed.
fn numeric_date(
    value: Option<serde_json::Number>,
    round: fn(f64) -> f64,
) -> Result<Option<i64>, &'static str> {
    const LIMIT: f64 = 9_007_199_254_740_992.0;
    let Some(number) = value else {
        return Ok(None);
    };
    if let Some(whole) = number.as_i64() {
        return Ok(Some(whole));
    }
    match number.as_f64().map(round) {
        // The cast is exact: the value is whole and within ±2^53.
        #[allow(clippy::cast_possible_truncation)]
        Some(seconds) if seconds.is_finite() && seconds.abs() <= LIMIT => Ok(Some(seconds as i64)),
        _ => Err("a NumericDate out of range"),
    }
}

fn numeric_date_floor<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let value = Option::<serde_json::Number>::deserialize(d)?;
    numeric_date(value, f64::floor).map_err(serde::de::Error::custom)
}

fn numeric_date_ceil<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let value = Option::<serde_json::Number>::deserialize(d)?;
    numeric_date(value, f64::ceil).map_err(serde::de::Error::custom)
}

/// What the verifier accepts.
#[derive(Debug, Clone)]
pub struct AssertionPolicy {
    /// The token endpoint URL; `aud` must equal it.
    pub token_url: String,
    /// Accepted algorithms (default RS384, ES384, RS256, ES256).
    pub algorithms: Vec<Algorithm>,
    /// Clock-skew allowance (default 30 s).
    pub leeway: Duration,
}

impl AssertionPolicy {
    /// The default policy for `token_url`.
    pub fn new(token_url: impl Into<String>) -> Self {
        Self {
            token_url: token_url.into(),
            algorithms: vec![
                Algorithm::RS384,
                Algorithm::ES384,
                Algorithm::RS256,
                Algorithm::ES256,
            ],
            leeway: Duration::seconds(30),
        }
    }
}

/// The client an assertion claims to come from, read before verification (to find its keys).
pub fn claimed_client(assertion: &str) -> Result<ClientId, AssertionError> {
    let jws = UnverifiedJws::parse(
        assertion,
        MAX_ASSERTION_LEN,
        &[
            Algorithm::RS384,
            Algorithm::ES384,
            Algorithm::RS256,
            Algorithm::ES256,
        ],
    )?;
    let claims: AssertionClaims =
        serde_json::from_slice(&jws.payload).map_err(|_| AssertionError::Malformed)?;
    let iss = claims.iss.ok_or(AssertionError::IssuerMismatch)?;
    ClientId::new(iss).map_err(|_| AssertionError::IssuerMismatch)
}

/// Verifies `assertion` for `client` and records its `jti`.
///
/// Order: header (alg allow-list, typ), issuer = subject = client, key resolution (jku, kid,
/// key type), signature, aud, exp ≤ 5 min ahead, nbf/iat, then the jti replay cache — the
/// cache is written only for assertions whose signature verified, so nobody can fill it.
pub fn verify_assertion(
    assertion: &str,
    client: &Client,
    policy: &AssertionPolicy,
    store: &dyn TokenStore,
    now: OffsetDateTime,
) -> Result<(), AssertionError> {
    verify_assertion_with(assertion, client, policy, store, None, now)
}

/// [`verify_assertion`], resolving a client's keys by its JWKS URL through `jwks` when it has
/// one (SMART's key resolution: a whitelisted `jku`, else the registered `jwks_uri`, else the
/// registered JWK Set).
pub(crate) fn verify_assertion_with(
    assertion: &str,
    client: &Client,
    policy: &AssertionPolicy,
    store: &dyn TokenStore,
    jwks: Option<&ClientJwksCache>,
    now: OffsetDateTime,
) -> Result<(), AssertionError> {
    let jws = UnverifiedJws::parse(assertion, MAX_ASSERTION_LEN, &policy.algorithms)?;
    if jws
        .header
        .typ
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
    {
        return Err(AssertionError::WrongType);
    }
    let claims: AssertionClaims =
        serde_json::from_slice(&jws.payload).map_err(|_| AssertionError::Malformed)?;
    let client_id = client.id.as_str();
    if claims.iss.as_deref() != Some(client_id) || claims.sub.as_deref() != Some(client_id) {
        return Err(AssertionError::IssuerMismatch);
    }
    let ClientAuth::PrivateKeyJwt { keys, jwks_uri } = &client.auth else {
        return Err(AssertionError::NotAsymmetric);
    };
    if let Some(jku) = &jws.header.jku {
        if jwks_uri.as_deref() != Some(jku.as_str()) {
            return Err(AssertionError::JkuNotAllowed);
        }
    }
    let kid = jws
        .header
        .kid
        .as_deref()
        .ok_or(AssertionError::UnknownKey)?;
    let fetched;
    let keys: &[_] = match (jwks_uri, jwks) {
        (Some(url), Some(cache)) => {
            fetched = cache
                .keys(url, kid, now)
                .map_err(AssertionError::KeySetUnavailable)?;
            &fetched
        }
        _ => keys,
    };
    let mut candidates = keys.iter().filter(|k| k.kid() == kid && k.fits(jws.alg));
    let key = candidates.next().ok_or(AssertionError::UnknownKey)?;
    if candidates.next().is_some() {
        return Err(AssertionError::AmbiguousKey);
    }
    if !jws.verify_with(key) {
        return Err(AssertionError::BadSignature);
    }
    let aud_ok = match &claims.aud {
        Some(serde_json::Value::String(a)) => *a == policy.token_url,
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .any(|a| a.as_str() == Some(policy.token_url.as_str())),
        _ => false,
    };
    if !aud_ok {
        return Err(AssertionError::WrongAudience);
    }
    let now_s = now.unix_timestamp();
    let leeway = policy.leeway.whole_seconds();
    let exp = claims.exp.ok_or(AssertionError::Expired)?;
    if exp.saturating_add(leeway) <= now_s {
        return Err(AssertionError::Expired);
    }
    if exp > now_s.saturating_add(MAX_ASSERTION_LIFETIME.whole_seconds() + leeway) {
        return Err(AssertionError::ExpTooFar);
    }
    if claims.nbf.is_some_and(|t| t > now_s.saturating_add(leeway))
        || claims.iat.is_some_and(|t| t > now_s.saturating_add(leeway))
    {
        return Err(AssertionError::NotYetValid);
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(AssertionError::MissingJti)?;
    let remember_until = OffsetDateTime::from_unix_timestamp(exp.saturating_add(leeway))
        .unwrap_or(now + MAX_ASSERTION_LIFETIME + policy.leeway);
    match store.record_jti(&client.id, &jti, remember_until, now) {
        Ok(true) => Ok(()),
        Ok(false) => Err(AssertionError::Replayed),
        Err(e) => Err(AssertionError::Store(e)),
    }
}
