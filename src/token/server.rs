//! The authorization server: configuration, traits and the shared helpers of its endpoints.

use std::fmt;
use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode, header};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;

use super::access::{AccessTokenValidator, ValidatorConfig};
use super::clients::ClientRegistry;
use super::config::{ConfigError, ServerConfig};
use super::error::json_response;
use super::jose::{Jwks, b64};
use super::keys::KeySource;
use super::launch::{EhrLaunch, LAUNCH_TTL, LaunchContext, LaunchError, LaunchStore};
use super::store::{TokenHash, TokenStore};
use crate::consent::GrantStatusSource;

/// The authorization server: protocol logic over the host's traits.
///
/// Every endpoint is a plain function from request parts (an `http::Request` or its parsed
/// form) and `now` to a typed outcome that converts into an `http::Response`; nothing here does
/// I/O other than through the traits, and time comes only from the `now` arguments.
pub struct AuthorizationServer {
    pub(crate) config: ServerConfig,
    pub(crate) keys: Arc<dyn KeySource>,
    pub(crate) clients: Arc<dyn ClientRegistry>,
    pub(crate) store: Arc<dyn TokenStore>,
    pub(crate) grants: Arc<dyn GrantStatusSource>,
    pub(crate) validator: AccessTokenValidator,
    pub(crate) launches: Option<Arc<dyn LaunchStore>>,
    pub(crate) client_jwks: Option<super::client_jwks::ClientJwksCache>,
    rng: SystemRandom,
}

impl fmt::Debug for AuthorizationServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationServer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A failure that is the server's, not the client's: storage, randomness or signing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerFailure {
    /// The operating system's random source failed.
    #[error("random source failed")]
    Random,
    /// A signing key was missing or signing failed.
    #[error("signing failed")]
    Signing,
    /// The token store failed.
    #[error("token store failed: {0}")]
    Store(super::store::StoreError),
    /// The host's approval carried a `fhirContext` entry SMART does not allow.
    #[error("the approval's fhirContext is invalid: {0}")]
    FhirContext(super::launch::FhirContextError),
}

impl AuthorizationServer {
    /// Builds the server after validating `config` and checking that `keys` holds a current
    /// key for every configured algorithm.
    pub fn new(
        config: ServerConfig,
        keys: Arc<dyn KeySource>,
        clients: Arc<dyn ClientRegistry>,
        store: Arc<dyn TokenStore>,
        grants: Arc<dyn GrantStatusSource>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if config.ehr_launch {
            return Err(ConfigError::EhrLaunchWithoutStore);
        }
        for alg in std::iter::once(config.access_token_alg).chain(config.id_token_alg) {
            if keys.signing_key(alg).is_none() {
                return Err(ConfigError::MissingKey(alg));
            }
        }
        let mut validator_config = ValidatorConfig::new(&config.issuer, &config.fhir_base_url);
        validator_config.algorithms = vec![config.access_token_alg];
        // The server checks tokens it issued on its own clock: no skew to allow for, so an
        // expired token is inactive the second it expires (`leeway` is for client assertions).
        validator_config.leeway = time::Duration::ZERO;
        let store_as_list: Arc<dyn TokenStore> = Arc::clone(&store);
        let validator =
            AccessTokenValidator::new(validator_config, Arc::clone(&keys), Arc::clone(&grants))
                .with_revocations(Arc::new(StoreRevocations(store_as_list)));
        Ok(Self {
            config,
            keys,
            clients,
            store,
            grants,
            validator,
            launches: None,
            client_jwks: None,
            rng: SystemRandom::new(),
        })
    }

    /// Resolves the keys of `private_key_jwt` clients registered with a JWKS URL
    /// ([`ClientAuth::PrivateKeyJwt`](super::ClientAuth::PrivateKeyJwt)'s `jwks_uri`) through
    /// the host's `fetcher`, as SMART's confidential-asymmetric profile asks: the set is
    /// fetched when an assertion needs it, kept no longer than its `Cache-Control` allows
    /// ([`DEFAULT_JWKS_TTL`](super::DEFAULT_JWKS_TTL) without one), and fetched again for a
    /// `kid` it lacks (at most once per [`JWKS_REFETCH_INTERVAL`](super::JWKS_REFETCH_INTERVAL)).
    /// Such a client's directly registered `keys` are then not used. Without a fetcher, the
    /// registered `keys` are the only ones (the host keeps them current).
    #[must_use]
    pub fn with_jwks_fetcher(mut self, fetcher: Arc<dyn super::JwksFetcher>) -> Self {
        self.client_jwks = Some(super::client_jwks::ClientJwksCache::new(fetcher));
        self
    }

    /// Enables the EHR launch with `store` holding the launch handles: discovery advertises
    /// `launch-ehr` and `context-ehr-patient`/`-encounter`, [`Self::ehr_launch`] mints handles
    /// and the authorization endpoint accepts the `launch` parameter.
    #[must_use]
    pub fn with_launch_store(mut self, store: Arc<dyn LaunchStore>) -> Self {
        self.launches = Some(store);
        self.config.ehr_launch = true;
        self
    }

    /// Starts an EHR launch of `context.client_id`: stores a fresh single-use handle (valid for
    /// [`LAUNCH_TTL`]) and returns it with the client's registered launch URL carrying
    /// `iss` (this server's FHIR base URL, exactly) and `launch`.
    pub fn ehr_launch(
        &self,
        context: LaunchContext,
        now: OffsetDateTime,
    ) -> Result<EhrLaunch, LaunchError> {
        let store = self.launches.as_ref().ok_or(LaunchError::NotEnabled)?;
        super::launch::check_fhir_context(&context.fhir_context)
            .map_err(LaunchError::FhirContext)?;
        let client = self
            .clients
            .client(&context.client_id)
            .ok_or(LaunchError::UnknownClient)?;
        let launch_uri = match &client.launch_uri {
            Some(uri) if client.authorization_code => uri,
            _ => return Err(LaunchError::NotLaunchable),
        };
        let handle = self.random().map_err(|_| LaunchError::Random)?;
        store
            .put_launch(TokenHash::of(&handle), context, now + LAUNCH_TTL)
            .map_err(LaunchError::Store)?;
        let url = super::authorize::append_query(
            launch_uri,
            &[("iss", &self.config.fhir_base_url), ("launch", &handle)],
        );
        Ok(EhrLaunch { handle, url })
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// A resource-server validator matching this server (same issuer, audience, algorithm,
    /// keys, grants and revocation list).
    pub fn validator(&self) -> &AccessTokenValidator {
        &self.validator
    }

    /// The JWKS document at `now` (current and retired-but-retained public keys).
    pub fn jwks(&self, now: OffsetDateTime) -> Jwks {
        self.keys.jwks(now)
    }

    /// The JWKS document as an HTTP response (`application/json`, open to any origin,
    /// cacheable for five minutes so rotations propagate quickly).
    pub fn jwks_response(&self, now: OffsetDateTime) -> Response<Vec<u8>> {
        let body = serde_json::to_vec(&self.jwks(now)).unwrap_or_default();
        public_json(body, "public, max-age=300")
    }

    /// `.well-known/smart-configuration`.
    pub fn smart_configuration(&self) -> crate::oidc::SmartConfiguration {
        crate::oidc::SmartConfiguration::for_server(self)
    }

    /// `.well-known/openid-configuration` (`None` when OpenID Connect is disabled).
    pub fn openid_configuration(&self) -> Option<crate::oidc::OpenIdConfiguration> {
        crate::oidc::OpenIdConfiguration::for_server(self)
    }

    /// 256 random bits, base64url: codes, refresh tokens, token ids, family ids.
    pub(crate) fn random(&self) -> Result<String, ServerFailure> {
        let mut bytes = [0u8; 32];
        self.rng
            .fill(&mut bytes)
            .map_err(|_| ServerFailure::Random)?;
        Ok(b64(&bytes))
    }
}

struct StoreRevocations(Arc<dyn TokenStore>);

impl super::access::RevocationList for StoreRevocations {
    fn is_revoked(&self, jti: &str, family: Option<&str>, now: OffsetDateTime) -> bool {
        self.0.is_revoked(jti, family, now)
    }
}

/// A public discovery document: 200 `application/json`, CORS open to any origin, cacheable
/// for an hour.
pub fn public_json_response(body: Vec<u8>) -> Response<Vec<u8>> {
    public_json(body, "public, max-age=3600")
}

/// A public JSON document (discovery, JWKS): `application/json`, CORS open to any origin.
pub(crate) fn public_json(body: Vec<u8>, cache: &'static str) -> Response<Vec<u8>> {
    let mut response = json_response(StatusCode::OK, body);
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.remove(header::PRAGMA);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}
