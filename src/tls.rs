//! Transport security (feature `tls`): a rustls server configuration that only speaks TLS 1.2
//! and 1.3 with AEAD cipher suites, and the HTTP Strict Transport Security header.
//!
//! # Design
//!
//! The S4S assessment asks that every API exchange be encrypted with current TLS. rustls already
//! refuses SSL 3, TLS 1.0/1.1, CBC, RC4, export and static-RSA suites, so the policy here is
//! mostly a matter of *not loosening* it, written down so that a reviewer can see it:
//!
//! - the `ring` crypto provider is passed explicitly, so the configuration never depends on a
//!   process-wide default provider (and aws-lc stays out of the dependency tree);
//! - the cipher suites are an explicit allow-list ([`ALLOWED_CIPHER_SUITES`]): ECDHE key exchange
//!   (forward secrecy) with AES-GCM or ChaCha20-Poly1305 (AEAD) only;
//! - protocol versions are TLS 1.3 and TLS 1.2, nothing else;
//! - client certificates (mutual TLS, for backend-service clients) are verified against roots
//!   the host names, never against the system store;
//! - ALPN offers `h2` and `http/1.1`.
//!
//! The result is a plain [`rustls::ServerConfig`]; serve it with `tokio-rustls` (see
//! `docs/tls.md`) or any rustls-based acceptor.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use rustls::crypto::{CryptoProvider, ring as ring_provider};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The cipher suites a fhirguard TLS server accepts, most preferred first.
///
/// Every suite uses ephemeral ECDH key exchange and an AEAD cipher. TLS 1.3 suites are listed
/// first so a client that speaks both versions negotiates 1.3.
pub static ALLOWED_CIPHER_SUITES: &[SupportedCipherSuite] = &[
    ring_provider::cipher_suite::TLS13_AES_256_GCM_SHA384,
    ring_provider::cipher_suite::TLS13_AES_128_GCM_SHA256,
    ring_provider::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ring_provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ring_provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ring_provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ring_provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ring_provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ring_provider::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// Why a TLS server configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// No server certificate chain was given.
    #[error("no server certificate chain was configured")]
    MissingCertificate,
    /// No private key was given.
    #[error("no server private key was configured")]
    MissingPrivateKey,
    /// The certificate PEM held no `CERTIFICATE` block, or a block that does not decode.
    #[error("the server certificate PEM holds no readable certificate")]
    BadCertificatePem,
    /// The key PEM held no PKCS#8, PKCS#1 or SEC1 private key, or one that does not decode.
    #[error("the private key PEM holds no readable private key")]
    BadPrivateKeyPem,
    /// The client-certificate roots PEM held no usable CA certificate.
    #[error("the client CA PEM holds no usable CA certificate")]
    BadClientRoots,
    /// rustls refused the combination (for example a key that does not match the certificate,
    /// or a key type the ring provider cannot sign with).
    #[error("rustls refused the configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built from the given roots.
    #[error("the client certificate verifier could not be built: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
}

/// Builds a [`rustls::ServerConfig`] that follows fhirguard's transport policy.
///
/// ```
/// # fn main() -> Result<(), fhirguard::tls::TlsConfigError> {
/// let cert = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls/server.cert.pem")).unwrap();
/// let key = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls/server.key.pem")).unwrap();
/// let config = fhirguard::tls::TlsServerConfigBuilder::new()
///     .certificate_chain_pem(&cert)
///     .private_key_pem(&key)
///     .build()?;
/// assert_eq!(config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
/// # Ok(()) }
/// ```
#[derive(Default)]
#[must_use]
pub struct TlsServerConfigBuilder {
    certificate_chain_pem: Option<Vec<u8>>,
    private_key_pem: Option<Vec<u8>>,
    client_roots_pem: Option<Vec<u8>>,
    client_certificate_optional: bool,
    alpn: Option<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for TlsServerConfigBuilder {
    // The private key never reaches a Debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServerConfigBuilder")
            .field("certificate_chain", &self.certificate_chain_pem.is_some())
            .field(
                "private_key",
                &self.private_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("client_roots", &self.client_roots_pem.is_some())
            .field(
                "client_certificate_optional",
                &self.client_certificate_optional,
            )
            .field("alpn", &self.alpn)
            .finish()
    }
}

impl TlsServerConfigBuilder {
    /// A builder with no certificate, no client authentication and ALPN `h2`, `http/1.1`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The server's certificate chain, leaf first, as PEM.
    pub fn certificate_chain_pem(mut self, pem: &[u8]) -> Self {
        self.certificate_chain_pem = Some(pem.to_vec());
        self
    }

    /// The server's private key (PKCS#8, PKCS#1 or SEC1) as PEM.
    pub fn private_key_pem(mut self, pem: &[u8]) -> Self {
        self.private_key_pem = Some(pem.to_vec());
        self
    }

    /// Requires every client to present a certificate issued by one of these CA certificates
    /// (mutual TLS, e.g. for backend-service clients).
    pub fn require_client_certificates(mut self, ca_pem: &[u8]) -> Self {
        self.client_roots_pem = Some(ca_pem.to_vec());
        self.client_certificate_optional = false;
        self
    }

    /// Verifies client certificates issued by these CAs when a client presents one, and lets
    /// clients without a certificate through (to be authenticated some other way).
    pub fn accept_client_certificates(mut self, ca_pem: &[u8]) -> Self {
        self.client_roots_pem = Some(ca_pem.to_vec());
        self.client_certificate_optional = true;
        self
    }

    /// Replaces the ALPN protocol list (default: `h2`, `http/1.1`).
    pub fn alpn_protocols(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.alpn = Some(protocols);
        self
    }

    /// Validates the inputs and builds the configuration.
    pub fn build(self) -> Result<ServerConfig, TlsConfigError> {
        let chain_pem = self
            .certificate_chain_pem
            .ok_or(TlsConfigError::MissingCertificate)?;
        let key_pem = self
            .private_key_pem
            .ok_or(TlsConfigError::MissingPrivateKey)?;
        let chain = CertificateDer::pem_slice_iter(&chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TlsConfigError::BadCertificatePem)?;
        if chain.is_empty() {
            return Err(TlsConfigError::BadCertificatePem);
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|_| TlsConfigError::BadPrivateKeyPem)?;

        let provider = Arc::new(policy_provider());
        let versions = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let with_client_auth = match self.client_roots_pem {
            None => versions.with_no_client_auth(),
            Some(ca_pem) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&ca_pem) {
                    let cert = cert.map_err(|_| TlsConfigError::BadClientRoots)?;
                    roots
                        .add(cert)
                        .map_err(|_| TlsConfigError::BadClientRoots)?;
                }
                if roots.is_empty() {
                    return Err(TlsConfigError::BadClientRoots);
                }
                let builder =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if self.client_certificate_optional {
                    builder.allow_unauthenticated().build()?
                } else {
                    builder.build()?
                };
                versions.with_client_cert_verifier(verifier)
            }
        };
        let mut config = with_client_auth.with_single_cert(chain, key)?;
        config.alpn_protocols = self
            .alpn
            .unwrap_or_else(|| vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        Ok(config)
    }
}

/// The ring provider restricted to [`ALLOWED_CIPHER_SUITES`].
pub fn policy_provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: ALLOWED_CIPHER_SUITES.to_vec(),
        ..ring_provider::default_provider()
    }
}

/// An HTTP Strict Transport Security policy (RFC 6797).
///
/// The default is two years, including subdomains, without `preload` (preloading is a
/// deployment decision that is hard to undo, so it must be asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hsts {
    /// How long browsers must remember to use HTTPS only, in seconds.
    pub max_age_seconds: u64,
    /// Whether the policy also covers subdomains.
    pub include_subdomains: bool,
    /// Whether to signal consent to browser preload lists.
    pub preload: bool,
}

impl Default for Hsts {
    fn default() -> Self {
        Self {
            max_age_seconds: 63_072_000,
            include_subdomains: true,
            preload: false,
        }
    }
}

impl Hsts {
    /// The `Strict-Transport-Security` header name and value for this policy.
    pub fn header(&self) -> (HeaderName, HeaderValue) {
        let mut value = format!("max-age={}", self.max_age_seconds);
        if self.include_subdomains {
            value.push_str("; includeSubDomains");
        }
        if self.preload {
            value.push_str("; preload");
        }
        // Only ASCII digits, letters, '=', ';' and spaces were written above.
        let value = HeaderValue::from_str(&value)
            .unwrap_or_else(|_| HeaderValue::from_static("max-age=63072000"));
        (http::header::STRICT_TRANSPORT_SECURITY, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &[u8] = include_bytes!("../tests/data/tls/server.cert.pem");
    const KEY: &[u8] = include_bytes!("../tests/data/tls/server.key.pem");
    const RSA_KEY: &[u8] = include_bytes!("../tests/data/tls/server-rsa.key.pem");
    const CLIENT_CA: &[u8] = include_bytes!("../tests/data/tls/client-ca.cert.pem");

    #[test]
    fn builds_with_policy_suites_only() {
        let config = TlsServerConfigBuilder::new()
            .certificate_chain_pem(CERT)
            .private_key_pem(KEY)
            .build()
            .unwrap();
        assert_eq!(
            config.crypto_provider().cipher_suites.len(),
            ALLOWED_CIPHER_SUITES.len()
        );
        for suite in &config.crypto_provider().cipher_suites {
            let name = format!("{:?}", suite.suite());
            assert!(
                name.contains("GCM") || name.contains("CHACHA20_POLY1305"),
                "{name} is not AEAD"
            );
            assert!(
                name.starts_with("TLS13_") || name.contains("ECDHE"),
                "{name}"
            );
        }
    }

    #[test]
    fn refuses_missing_or_garbled_material() {
        assert!(matches!(
            TlsServerConfigBuilder::new().private_key_pem(KEY).build(),
            Err(TlsConfigError::MissingCertificate)
        ));
        assert!(matches!(
            TlsServerConfigBuilder::new()
                .certificate_chain_pem(CERT)
                .build(),
            Err(TlsConfigError::MissingPrivateKey)
        ));
        assert!(matches!(
            TlsServerConfigBuilder::new()
                .certificate_chain_pem(b"not pem")
                .private_key_pem(KEY)
                .build(),
            Err(TlsConfigError::BadCertificatePem)
        ));
        assert!(matches!(
            TlsServerConfigBuilder::new()
                .certificate_chain_pem(CERT)
                .private_key_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .build(),
            Err(TlsConfigError::BadPrivateKeyPem | TlsConfigError::Rustls(_))
        ));
        // A key that does not belong to the certificate.
        assert!(
            TlsServerConfigBuilder::new()
                .certificate_chain_pem(CERT)
                .private_key_pem(RSA_KEY)
                .build()
                .is_err()
        );
        assert!(matches!(
            TlsServerConfigBuilder::new()
                .certificate_chain_pem(CERT)
                .private_key_pem(KEY)
                .require_client_certificates(b"")
                .build(),
            Err(TlsConfigError::BadClientRoots)
        ));
    }

    #[test]
    fn client_roots_are_accepted() {
        assert!(
            TlsServerConfigBuilder::new()
                .certificate_chain_pem(CERT)
                .private_key_pem(KEY)
                .require_client_certificates(CLIENT_CA)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn debug_redacts_the_key() {
        let builder = TlsServerConfigBuilder::new().private_key_pem(KEY);
        let printed = format!("{builder:?}");
        assert!(printed.contains("<redacted>"));
        assert!(!printed.contains("PRIVATE"));
    }

    #[test]
    fn hsts_header() {
        let (name, value) = Hsts::default().header();
        assert_eq!(name, http::header::STRICT_TRANSPORT_SECURITY);
        assert_eq!(value, "max-age=63072000; includeSubDomains");
        let (_, value) = Hsts {
            max_age_seconds: 31_536_000,
            include_subdomains: false,
            preload: true,
        }
        .header();
        assert_eq!(value, "max-age=31536000; preload");
    }
}
