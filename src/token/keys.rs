//! Signing keys, rotation and the JWKS document.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use time::{Duration, OffsetDateTime};

use super::jose::{Algorithm, Jwks, SigningKey, VerifyingKey};

/// Where the authorization server's keys live.
///
/// Implementations hold one current signing key per algorithm plus the public halves of keys
/// retired by rotation, which stay verifiable (and published in the JWKS) until every token
/// they signed has expired. Answers come from memory: [`KeySource::verifying_key`] runs on
/// every FHIR request.
pub trait KeySource: Send + Sync {
    /// The current signing key for `alg`, if one is configured.
    fn signing_key(&self, alg: Algorithm) -> Option<Arc<SigningKey>>;
    /// The public key named `kid` — current, or retired but still within its retention at `now`.
    fn verifying_key(&self, kid: &str, now: OffsetDateTime) -> Option<Arc<VerifyingKey>>;
    /// The public JWKS at `now`: current keys and retired keys still within their retention.
    fn jwks(&self, now: OffsetDateTime) -> Jwks;
}

impl<K: KeySource + ?Sized> KeySource for Arc<K> {
    fn signing_key(&self, alg: Algorithm) -> Option<Arc<SigningKey>> {
        (**self).signing_key(alg)
    }
    fn verifying_key(&self, kid: &str, now: OffsetDateTime) -> Option<Arc<VerifyingKey>> {
        (**self).verifying_key(kid, now)
    }
    fn jwks(&self, now: OffsetDateTime) -> Jwks {
        (**self).jwks(now)
    }
}

/// Why a key could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySourceError {
    /// Another key (current or retired) already uses this `kid`; a `kid` must name one key.
    #[error("a key with this kid already exists")]
    DuplicateKid,
}

#[derive(Debug)]
struct Retired {
    keep_until: OffsetDateTime,
}

#[derive(Debug, Default)]
struct State {
    current: BTreeMap<Algorithm, Arc<SigningKey>>,
    /// Public halves by kid: current and retired keys.
    public: BTreeMap<String, Arc<VerifyingKey>>,
    retired: BTreeMap<String, Retired>,
}

/// The in-memory [`KeySource`]: keys loaded at start-up, rotated by the host.
#[derive(Debug)]
pub struct InMemoryKeySource {
    state: RwLock<State>,
    retention: Duration,
}

impl InMemoryKeySource {
    /// An empty source whose retired keys stay published for `retention` after rotation. Use
    /// at least the longest token lifetime plus the validator's leeway (the default server
    /// configuration's access tokens live at most one hour).
    pub fn new(retention: Duration) -> Self {
        Self {
            state: RwLock::new(State::default()),
            retention,
        }
    }

    /// A source with these keys current (one per algorithm; a later key replaces an earlier
    /// one of the same algorithm without retention).
    pub fn with_keys(
        retention: Duration,
        keys: impl IntoIterator<Item = SigningKey>,
    ) -> Result<Self, KeySourceError> {
        let source = Self::new(retention);
        for key in keys {
            if let Some(replaced) = source.insert(key)? {
                let mut state = source.state.write().unwrap_or_else(|p| p.into_inner());
                state.public.remove(replaced.kid());
            }
        }
        Ok(source)
    }

    fn insert(&self, key: SigningKey) -> Result<Option<Arc<SigningKey>>, KeySourceError> {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if state.public.contains_key(key.kid()) {
            return Err(KeySourceError::DuplicateKid);
        }
        let key = Arc::new(key);
        state
            .public
            .insert(key.kid().to_owned(), Arc::new(key.verifying_key().clone()));
        Ok(state.current.insert(key.algorithm(), key))
    }

    /// Makes `key` the current key for its algorithm. The key it replaces stops signing at once
    /// but keeps verifying, and stays in the JWKS, until `now + retention`.
    pub fn rotate(&self, key: SigningKey, now: OffsetDateTime) -> Result<(), KeySourceError> {
        if let Some(old) = self.insert(key)? {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            let kid = old.kid().to_owned();
            let keep_until = now + self.retention;
            state.retired.insert(kid, Retired { keep_until });
        }
        Ok(())
    }

    /// Drops retired keys whose retention ended before `now` (lookups already ignore them;
    /// this frees the memory).
    pub fn prune(&self, now: OffsetDateTime) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<String> = state
            .retired
            .iter()
            .filter(|(_, r)| r.keep_until <= now)
            .map(|(kid, _)| kid.clone())
            .collect();
        for kid in gone {
            state.retired.remove(&kid);
            state.public.remove(&kid);
        }
    }
}

impl State {
    fn usable(&self, kid: &str, now: OffsetDateTime) -> bool {
        self.retired.get(kid).is_none_or(|r| r.keep_until > now)
    }
}

impl KeySource for InMemoryKeySource {
    fn signing_key(&self, alg: Algorithm) -> Option<Arc<SigningKey>> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.current.get(&alg).cloned()
    }

    fn verifying_key(&self, kid: &str, now: OffsetDateTime) -> Option<Arc<VerifyingKey>> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let key = state.public.get(kid)?;
        state.usable(kid, now).then(|| Arc::clone(key))
    }

    fn jwks(&self, now: OffsetDateTime) -> Jwks {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        Jwks {
            keys: state
                .public
                .iter()
                .filter(|(kid, _)| state.usable(kid, now))
                .map(|(_, key)| key.to_jwk())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn rotation_keeps_retired_key_until_retention_ends() {
        let now = datetime!(2026-11-24 12:00 UTC);
        let first = SigningKey::generate_ec(Algorithm::ES256, "k1").unwrap();
        let source = InMemoryKeySource::with_keys(Duration::hours(1), [first]).unwrap();
        source
            .rotate(
                SigningKey::generate_ec(Algorithm::ES256, "k2").unwrap(),
                now,
            )
            .unwrap();
        assert_eq!(source.signing_key(Algorithm::ES256).unwrap().kid(), "k2");
        assert!(
            source
                .verifying_key("k1", now + Duration::minutes(59))
                .is_some()
        );
        assert_eq!(source.jwks(now).keys.len(), 2);
        assert!(
            source
                .verifying_key("k1", now + Duration::hours(1))
                .is_none()
        );
        assert_eq!(source.jwks(now + Duration::hours(1)).keys.len(), 1);
        source.prune(now + Duration::hours(2));
        assert_eq!(source.jwks(now).keys.len(), 1);
        let dup = SigningKey::generate_ec(Algorithm::ES256, "k2").unwrap();
        assert_eq!(source.rotate(dup, now), Err(KeySourceError::DuplicateKid));
    }
}
