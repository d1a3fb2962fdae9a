//! Registered clients and how they authenticate.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

use super::endpoint::ClientAuthMethod;
use super::jose::{VerifyingKey, b64};
use crate::ids::ClientId;
use crate::scope::ScopeSet;

/// A client secret as the client presents it. `Debug` is redacted.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Wraps a presented secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// A fresh random secret: 32 bytes from the OS, base64url (43 characters).
    pub fn generate() -> Option<Self> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).ok()?;
        Some(Self(b64(&bytes)))
    }

    /// The secret text (to hand to the client once, at registration).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// A client secret at rest: `SHA-256(salt || secret)` with a random 16-byte salt.
///
/// Client secrets are random and high-entropy, so a salted fast hash protects them at rest
/// without a password KDF's cost on every token request (people's passwords belong in
/// [`crate::auth`]). Comparison is constant-time.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash {
    salt: [u8; 16],
    hash: [u8; 32],
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(<redacted>)")
    }
}

fn salted(salt: &[u8; 16], secret: &str) -> [u8; 32] {
    let mut input = Vec::with_capacity(16 + secret.len());
    input.extend_from_slice(salt);
    input.extend_from_slice(secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, &input).as_ref());
    out
}

impl SecretHash {
    /// Hashes `secret` with a fresh salt. `None` only if the OS random source fails.
    pub fn new(secret: &ClientSecret) -> Option<Self> {
        let mut salt = [0u8; 16];
        SystemRandom::new().fill(&mut salt).ok()?;
        Some(Self {
            salt,
            hash: salted(&salt, &secret.0),
        })
    }

    /// Rebuilds a stored hash from its parts (as written by [`Self::to_parts`]).
    pub fn from_parts(salt: [u8; 16], hash: [u8; 32]) -> Self {
        Self { salt, hash }
    }

    /// Salt and hash, for storage.
    pub fn to_parts(&self) -> ([u8; 16], [u8; 32]) {
        (self.salt, self.hash)
    }

    /// Whether `candidate` is the secret, compared in constant time.
    pub fn verify(&self, candidate: &str) -> bool {
        salted(&self.salt, candidate).ct_eq(&self.hash).into()
    }
}

/// How a shared-secret client sends its secret: its registered `token_endpoint_auth_method`.
/// The token, introspection and revocation endpoints accept only the registered one, so a
/// secret meant for an `Authorization` header is never taken from a form body (which is more
/// often logged) and the other way round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecretMethod {
    /// `client_secret_basic`: HTTP Basic (RFC 6749 §2.3.1). The default, as OpenID Connect
    /// Dynamic Client Registration makes it.
    #[default]
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post,
}

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// Public client (browser or native app): sends `client_id`, proves nothing but PKCE.
    Public,
    /// `client_secret_basic` or `client_secret_post`: a shared secret, stored hashed.
    Secret {
        /// The salted hash of the secret.
        hash: SecretHash,
        /// The one way the client may send it.
        method: SecretMethod,
    },
    /// `private_key_jwt`: a signed client assertion.
    PrivateKeyJwt {
        /// The client's public keys, registered directly (SMART: "JWK Set directly"). Not
        /// used when `jwks_uri` is set and the server has a
        /// [`JwksFetcher`](super::JwksFetcher) (`AuthorizationServer::with_jwks_fetcher`):
        /// the URL's set is then the client's.
        keys: Vec<VerifyingKey>,
        /// The registered JWK Set URL: an assertion's `jku` header must equal it, and with a
        /// fetcher configured the keys are dereferenced from it.
        jwks_uri: Option<String>,
    },
}

impl ClientAuth {
    /// Whether this is a confidential client.
    pub fn is_confidential(&self) -> bool {
        !matches!(self, ClientAuth::Public)
    }

    /// The registered method: the only one the client may authenticate with.
    pub fn method(&self) -> ClientAuthMethod {
        match self {
            ClientAuth::Public => ClientAuthMethod::None,
            ClientAuth::Secret {
                method: SecretMethod::Basic,
                ..
            } => ClientAuthMethod::SecretBasic,
            ClientAuth::Secret {
                method: SecretMethod::Post,
                ..
            } => ClientAuthMethod::SecretPost,
            ClientAuth::PrivateKeyJwt { .. } => ClientAuthMethod::PrivateKeyJwt,
        }
    }
}

/// A registered client.
#[derive(Debug, Clone)]
pub struct Client {
    /// The client id.
    pub id: ClientId,
    /// Display name for consent screens.
    pub name: String,
    /// How it authenticates.
    pub auth: ClientAuth,
    /// Exact redirect URIs (compared byte for byte).
    pub redirect_uris: Vec<String>,
    /// The most it may ever be granted (for backend services: its pre-authorisation).
    pub allowed_scopes: ScopeSet,
    /// May use the authorization-code flow (and refresh tokens when granted).
    pub authorization_code: bool,
    /// May use `client_credentials` (backend services; requires `private_key_jwt`).
    pub client_credentials: bool,
    /// The registered launch URL the EHR opens for an EHR launch (`None`: standalone only).
    pub launch_uri: Option<String>,
    /// May introspect tokens issued to *any* client: the registration of a resource server
    /// that relies on introspection (SMART: callers "authorized in this way are able to
    /// introspect tokens issued to any client"). Default `false`: a client introspecting
    /// another client's token is told `{"active":false}` (RFC 7662 §2.2). Honoured only for
    /// confidential clients; a public client's credentials prove nothing about who holds them.
    pub introspect_any_token: bool,
}

impl Client {
    /// A public app using the authorization-code flow.
    pub fn public(id: ClientId, redirect_uris: Vec<String>, allowed_scopes: ScopeSet) -> Self {
        Self {
            name: id.to_string(),
            id,
            auth: ClientAuth::Public,
            redirect_uris,
            allowed_scopes,
            authorization_code: true,
            client_credentials: false,
            launch_uri: None,
            introspect_any_token: false,
        }
    }

    /// A confidential app with a shared secret, sent by `client_secret_basic` (the default
    /// method; set `auth` to [`ClientAuth::Secret`] with [`SecretMethod::Post`] for
    /// `client_secret_post`).
    pub fn confidential(
        id: ClientId,
        secret: SecretHash,
        redirect_uris: Vec<String>,
        allowed_scopes: ScopeSet,
    ) -> Self {
        Self {
            auth: ClientAuth::Secret {
                hash: secret,
                method: SecretMethod::Basic,
            },
            ..Self::public(id, redirect_uris, allowed_scopes)
        }
    }

    /// A confidential app using `private_key_jwt` and the authorization-code flow.
    pub fn asymmetric(
        id: ClientId,
        keys: Vec<VerifyingKey>,
        jwks_uri: Option<String>,
        redirect_uris: Vec<String>,
        allowed_scopes: ScopeSet,
    ) -> Self {
        Self {
            auth: ClientAuth::PrivateKeyJwt { keys, jwks_uri },
            ..Self::public(id, redirect_uris, allowed_scopes)
        }
    }

    /// A backend-services client: `client_credentials` with `private_key_jwt`, pre-authorised
    /// for `allowed_scopes` (typically `system/…`).
    pub fn backend(
        id: ClientId,
        keys: Vec<VerifyingKey>,
        jwks_uri: Option<String>,
        allowed_scopes: ScopeSet,
    ) -> Self {
        Self {
            authorization_code: false,
            client_credentials: true,
            ..Self::asymmetric(id, keys, jwks_uri, Vec::new(), allowed_scopes)
        }
    }

    /// Whether this client may introspect tokens issued to other clients: registered with
    /// [`Self::introspect_any_token`] and confidential.
    pub fn may_introspect_any_token(&self) -> bool {
        self.introspect_any_token && self.auth.is_confidential()
    }

    /// Whether `uri` is registered: by exact comparison, except that a registered loopback IP
    /// redirect (`http://127.0.0.1…` or `http://[::1]…`) matches on any port. A native app
    /// listens on whatever port the system gives it at the time (RFC 8252 §7.3: the server
    /// MUST allow any port; RFC 9700 §2.1 keeps the exception); the scheme, the IP literal,
    /// the path and the query must still be exactly the registered ones. `localhost` gets no
    /// such leniency: it is a name that may resolve elsewhere (RFC 8252 §8.3). Nor does a
    /// confidential client: native apps are public clients (RFC 8252 §8.4), and a
    /// confidential one gets the exact matching RFC 6749 §3.1.2.3 and RFC 9700 §4.1.3 ask for.
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        let any_port = !self.auth.is_confidential();
        self.redirect_uris.iter().any(|r| {
            r == uri || (any_port && crate::sanitize::same_loopback_redirect_but_port(r, uri))
        })
    }
}

/// Where clients are registered.
pub trait ClientRegistry: Send + Sync {
    /// The client with this id, if registered.
    fn client(&self, id: &ClientId) -> Option<Arc<Client>>;
}

impl<R: ClientRegistry + ?Sized> ClientRegistry for Arc<R> {
    fn client(&self, id: &ClientId) -> Option<Arc<Client>> {
        (**self).client(id)
    }
}

/// The in-memory [`ClientRegistry`].
#[derive(Debug, Default)]
pub struct InMemoryClientRegistry {
    clients: RwLock<HashMap<ClientId, Arc<Client>>>,
}

impl InMemoryClientRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) a client.
    pub fn register(&self, client: Client) {
        let mut map = self.clients.write().unwrap_or_else(|p| p.into_inner());
        map.insert(client.id.clone(), Arc::new(client));
    }

    /// Removes a client.
    pub fn remove(&self, id: &ClientId) {
        let mut map = self.clients.write().unwrap_or_else(|p| p.into_inner());
        map.remove(id);
    }
}

impl ClientRegistry for InMemoryClientRegistry {
    fn client(&self, id: &ClientId) -> Option<Arc<Client>> {
        let map = self.clients.read().unwrap_or_else(|p| p.into_inner());
        map.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_hash_verifies_only_the_secret_and_is_salted() {
        let secret = ClientSecret::generate().unwrap();
        assert_eq!(secret.expose().len(), 43);
        let a = SecretHash::new(&secret).unwrap();
        let b = SecretHash::new(&secret).unwrap();
        assert_ne!(a, b, "fresh salt each time");
        assert!(a.verify(secret.expose()));
        assert!(!a.verify("wrong"));
        assert!(!a.verify(""));
        let (salt, hash) = a.to_parts();
        assert!(SecretHash::from_parts(salt, hash).verify(secret.expose()));
        assert_eq!(
            format!("{secret:?} {a:?}"),
            "ClientSecret(<redacted>) SecretHash(<redacted>)"
        );
    }

    #[test]
    fn loopback_ip_redirects_match_on_any_port_and_nothing_else() {
        let client = Client::public(
            ClientId::new("native").unwrap(),
            vec![
                "http://127.0.0.1:8765/callback".into(),
                "http://[::1]/cb?x=1".into(),
                "http://localhost:8765/callback".into(),
                "https://app.example.org/cb".into(),
            ],
            ScopeSet::default(),
        );
        for ok in [
            "http://127.0.0.1:8765/callback",
            "http://127.0.0.1:49152/callback",
            "http://127.0.0.1/callback",
            "http://[::1]:1234/cb?x=1",
            "http://localhost:8765/callback",
        ] {
            assert!(client.has_redirect_uri(ok), "{ok}");
        }
        for refused in [
            "http://127.0.0.1:8765/callback/",
            "http://127.0.0.1:8765/other",
            "http://127.0.0.1:0/callback",
            "http://127.0.0.1:65536/callback",
            "http://127.0.0.1:/callback",
            "http://127.0.0.1:8765@evil.example/callback",
            "http://127.0.0.1.evil.example/callback",
            "https://127.0.0.1:8765/callback",
            "http://127.0.0.2:8765/callback",
            "http://[::1]:1234/cb?x=2",
            "http://[::1]:1234/cb",
            // `localhost` is a name: exact only.
            "http://localhost:9999/callback",
            "https://app.example.org:8443/cb",
        ] {
            assert!(!client.has_redirect_uri(refused), "{refused}");
        }
        // A confidential client's loopback redirect is matched exactly.
        let confidential = Client::confidential(
            ClientId::new("web").unwrap(),
            SecretHash::from_parts([1; 16], [2; 32]),
            vec!["http://127.0.0.1:8765/callback".into()],
            ScopeSet::default(),
        );
        assert!(confidential.has_redirect_uri("http://127.0.0.1:8765/callback"));
        assert!(!confidential.has_redirect_uri("http://127.0.0.1:8766/callback"));
        assert!(!confidential.has_redirect_uri("http://127.0.0.1/callback"));
    }
}
