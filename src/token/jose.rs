//! JWS compact serialisation (RFC 7515) on `ring`, and the JWK subset fhirguard needs.
//!
//! Why by hand: `jsonwebtoken` ≥ 10 has no `ring` backend and its RustCrypto one is about five
//! times slower for ES256, and access-token validation runs on every FHIR request. The compact
//! form is three base64url segments; the only subtle parts are the algorithm rules, and those
//! are the point of doing it here:
//!
//! * the algorithm is chosen by the *verifier's* configuration: a token's `alg` header only
//!   selects among algorithms the caller allowed, and must match the key's own type and curve;
//! * `none` and every HMAC algorithm are unknown to [`Algorithm`], so they cannot be allowed
//!   at all, and an RSA public key can never be used as an HMAC secret;
//! * a `crit` header is refused (no extension is understood).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde::{Deserialize, Serialize};

/// A JWS signature algorithm fhirguard signs or verifies with.
///
/// There is deliberately no `none` and no `HS*` variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Algorithm {
    /// ECDSA with P-256 and SHA-256 (the default for access tokens).
    ES256,
    /// ECDSA with P-384 and SHA-384 (SMART client assertions).
    ES384,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (id_tokens, as SMART requires).
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384 (SMART client assertions).
    RS384,
}

impl Algorithm {
    /// The JOSE name (`"ES256"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
        }
    }

    /// Parses a JOSE name; `none`, `HS256` and anything else unknown give `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Algorithm::ES256),
            "ES384" => Some(Algorithm::ES384),
            "RS256" => Some(Algorithm::RS256),
            "RS384" => Some(Algorithm::RS384),
            _ => None,
        }
    }

    /// The JWK key type this algorithm needs (`"EC"` or `"RSA"`).
    pub fn key_type(self) -> &'static str {
        match self {
            Algorithm::ES256 | Algorithm::ES384 => "EC",
            Algorithm::RS256 | Algorithm::RS384 => "RSA",
        }
    }

    fn curve(self) -> Option<&'static str> {
        match self {
            Algorithm::ES256 => Some("P-256"),
            Algorithm::ES384 => Some("P-384"),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why key material could not be loaded or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The PEM text had no `-----BEGIN PRIVATE KEY-----` block or its base64 was damaged.
    #[error("not a PKCS#8 PEM private key")]
    NotPem,
    /// `ring` refused the PKCS#8 document for this algorithm (wrong curve, wrong key type,
    /// RSA modulus outside 2048–8192 bits).
    #[error("the key does not fit algorithm {0}")]
    Rejected(Algorithm),
    /// A JWK lacked a member its key type needs, or a member was not valid base64url.
    #[error("the JWK is incomplete or malformed")]
    BadJwk,
    /// A JWK used a key type or curve fhirguard does not verify with.
    #[error("the JWK's key type or curve is not supported")]
    UnsupportedJwk,
    /// The signing operation failed inside `ring` (should not happen with a loaded key).
    #[error("signing failed")]
    SigningFailed,
}

/// Decodes the first PKCS#8 `PRIVATE KEY` block of a PEM text.
pub fn pem_to_pkcs8(pem: &str) -> Result<Vec<u8>, KeyError> {
    const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
    const END: &str = "-----END PRIVATE KEY-----";
    let start = pem.find(BEGIN).ok_or(KeyError::NotPem)? + BEGIN.len();
    let end = pem[start..].find(END).ok_or(KeyError::NotPem)? + start;
    let body: String = pem[start..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| KeyError::NotPem)
}

/// Base64url without padding, as JOSE uses everywhere.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding (padding and the standard alphabet are refused).
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// A public JSON Web Key (RFC 7517), the members fhirguard reads and writes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Jwk {
    /// Key type: `EC` or `RSA`.
    pub kty: String,
    /// Key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Intended use (`sig`).
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Algorithm the key is meant for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// EC curve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC x coordinate (base64url).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate (base64url).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// RSA modulus (base64url).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent (base64url).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kty", &self.kty)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("crv", &self.crv)
            .finish_non_exhaustive()
    }
}

/// A JWK Set document (`{"keys": [...]}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

#[derive(Clone, PartialEq, Eq)]
enum PublicMaterial {
    /// Uncompressed SEC1 point (`04 || x || y`) and its curve.
    Ec { curve: &'static str, point: Vec<u8> },
    /// Big-endian modulus and exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// A public key ready for verification, with its key id.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    kid: String,
    /// The algorithm the key is pinned to, when known (always for keys fhirguard made; for
    /// registered client keys when their JWK said so).
    alg: Option<Algorithm>,
    material: PublicMaterial,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kty", &self.key_type())
            .finish()
    }
}

fn curve_name(crv: &str) -> Option<&'static str> {
    match crv {
        "P-256" => Some("P-256"),
        "P-384" => Some("P-384"),
        _ => None,
    }
}

impl VerifyingKey {
    /// Builds a key from a JWK. The JWK must carry a `kid`; an `alg` member, when present, pins
    /// the key to that algorithm.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let kid = jwk
            .kid
            .clone()
            .filter(|k| !k.is_empty())
            .ok_or(KeyError::BadJwk)?;
        let alg = match &jwk.alg {
            Some(name) => Some(Algorithm::from_name(name).ok_or(KeyError::UnsupportedJwk)?),
            None => None,
        };
        let field = |v: &Option<String>| v.as_deref().and_then(b64_decode).ok_or(KeyError::BadJwk);
        let material = match jwk.kty.as_str() {
            "EC" => {
                let curve = jwk
                    .crv
                    .as_deref()
                    .and_then(curve_name)
                    .ok_or(KeyError::UnsupportedJwk)?;
                let size = if curve == "P-256" { 32 } else { 48 };
                let (x, y) = (field(&jwk.x)?, field(&jwk.y)?);
                if x.len() != size || y.len() != size {
                    return Err(KeyError::BadJwk);
                }
                let mut point = Vec::with_capacity(1 + 2 * size);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                PublicMaterial::Ec { curve, point }
            }
            "RSA" => PublicMaterial::Rsa {
                n: field(&jwk.n)?,
                e: field(&jwk.e)?,
            },
            _ => return Err(KeyError::UnsupportedJwk),
        };
        let key = VerifyingKey { kid, alg, material };
        if let Some(alg) = alg {
            if !key.fits(alg) {
                return Err(KeyError::UnsupportedJwk);
            }
        }
        Ok(key)
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm the key is pinned to, if any.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.alg
    }

    /// `"EC"` or `"RSA"`.
    pub fn key_type(&self) -> &'static str {
        match self.material {
            PublicMaterial::Ec { .. } => "EC",
            PublicMaterial::Rsa { .. } => "RSA",
        }
    }

    /// Whether this key can verify `alg`: key type, curve and any pinned algorithm agree.
    pub fn fits(&self, alg: Algorithm) -> bool {
        if self.alg.is_some_and(|pinned| pinned != alg) {
            return false;
        }
        match &self.material {
            PublicMaterial::Ec { curve, .. } => alg.curve() == Some(*curve),
            PublicMaterial::Rsa { .. } => alg.key_type() == "RSA",
        }
    }

    /// Verifies `signature` over `message` with `alg`. False when the key does not fit `alg`.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        if !self.fits(alg) {
            return false;
        }
        match (&self.material, alg) {
            (PublicMaterial::Ec { point, .. }, Algorithm::ES256) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            (PublicMaterial::Ec { point, .. }, Algorithm::ES384) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            (PublicMaterial::Rsa { n, e }, Algorithm::RS256) => signature::RsaPublicKeyComponents {
                n: n.as_slice(),
                e: e.as_slice(),
            }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
            .is_ok(),
            (PublicMaterial::Rsa { n, e }, Algorithm::RS384) => signature::RsaPublicKeyComponents {
                n: n.as_slice(),
                e: e.as_slice(),
            }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA384, message, signature)
            .is_ok(),
            _ => false,
        }
    }

    /// The key as a public JWK with `use: sig`.
    pub fn to_jwk(&self) -> Jwk {
        let mut jwk = Jwk {
            kid: Some(self.kid.clone()),
            use_: Some("sig".to_owned()),
            alg: self.alg.map(|a| a.as_str().to_owned()),
            ..Jwk::default()
        };
        match &self.material {
            PublicMaterial::Ec { curve, point } => {
                let size = (point.len() - 1) / 2;
                jwk.kty = "EC".to_owned();
                jwk.crv = Some((*curve).to_owned());
                jwk.x = Some(b64(&point[1..1 + size]));
                jwk.y = Some(b64(&point[1 + size..]));
            }
            PublicMaterial::Rsa { n, e } => {
                jwk.kty = "RSA".to_owned();
                jwk.n = Some(b64(n));
                jwk.e = Some(b64(e));
            }
        }
        jwk
    }
}

enum PrivateMaterial {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A private signing key with its `kid` and algorithm. `Debug` shows only the public parts.
pub struct SigningKey {
    alg: Algorithm,
    material: PrivateMaterial,
    public: VerifyingKey,
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads a PKCS#8 DER private key for `alg`, naming it `kid`.
    pub fn from_pkcs8(
        alg: Algorithm,
        kid: impl Into<String>,
        der: &[u8],
    ) -> Result<Self, KeyError> {
        let kid = kid.into();
        let rng = SystemRandom::new();
        let (material, public) = match alg {
            Algorithm::ES256 | Algorithm::ES384 => {
                let (sig_alg, curve) = if alg == Algorithm::ES256 {
                    (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256")
                } else {
                    (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384")
                };
                let pair = EcdsaKeyPair::from_pkcs8(sig_alg, der, &rng)
                    .map_err(|_| KeyError::Rejected(alg))?;
                let point = pair.public_key().as_ref().to_vec();
                (
                    PrivateMaterial::Ec(pair),
                    PublicMaterial::Ec { curve, point },
                )
            }
            Algorithm::RS256 | Algorithm::RS384 => {
                let pair = RsaKeyPair::from_pkcs8(der).map_err(|_| KeyError::Rejected(alg))?;
                let parts: signature::RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
                let (n, e) = (parts.n, parts.e);
                (PrivateMaterial::Rsa(pair), PublicMaterial::Rsa { n, e })
            }
        };
        Ok(SigningKey {
            alg,
            material,
            public: VerifyingKey {
                kid,
                alg: Some(alg),
                material: public,
            },
            rng,
        })
    }

    /// Loads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`) for `alg`.
    pub fn from_pem(alg: Algorithm, kid: impl Into<String>, pem: &str) -> Result<Self, KeyError> {
        Self::from_pkcs8(alg, kid, &pem_to_pkcs8(pem)?)
    }

    /// Generates a fresh ECDSA key (ES256 or ES384). RSA keys are loaded, not generated
    /// (`ring` cannot generate them).
    pub fn generate_ec(alg: Algorithm, kid: impl Into<String>) -> Result<Self, KeyError> {
        let sig_alg = match alg {
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            _ => return Err(KeyError::Rejected(alg)),
        };
        let doc = EcdsaKeyPair::generate_pkcs8(sig_alg, &SystemRandom::new())
            .map_err(|_| KeyError::Rejected(alg))?;
        Self::from_pkcs8(alg, kid, doc.as_ref())
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public half.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// Signs `message` (the JWS signing input).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.material {
            PrivateMaterial::Ec(pair) => pair
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::SigningFailed),
            PrivateMaterial::Rsa(pair) => {
                let padding: &dyn signature::RsaEncoding = match self.alg {
                    Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(padding, &self.rng, message, &mut out)
                    .map_err(|_| KeyError::SigningFailed)?;
                Ok(out)
            }
        }
    }

    /// Serialises `claims` as a compact JWS with header `{alg, typ, kid}`.
    pub fn sign_jwt<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, KeyError> {
        let header = serde_json::json!({"alg": self.alg.as_str(), "typ": typ, "kid": self.kid()});
        let header = serde_json::to_vec(&header).map_err(|_| KeyError::SigningFailed)?;
        let payload = serde_json::to_vec(claims).map_err(|_| KeyError::SigningFailed)?;
        let mut out = b64(&header);
        out.push('.');
        out.push_str(&b64(&payload));
        let signature = self.sign(out.as_bytes())?;
        out.push('.');
        out.push_str(&b64(&signature));
        Ok(out)
    }
}

/// The protected header members fhirguard looks at.
#[derive(Debug, Clone, Deserialize)]
pub struct JwsHeader {
    /// `alg` as written (checked against an allow-list, never trusted).
    pub alg: String,
    /// `typ`, if any.
    #[serde(default)]
    pub typ: Option<String>,
    /// `kid`, if any.
    #[serde(default)]
    pub kid: Option<String>,
    /// `jku`, if any (client assertions only).
    #[serde(default)]
    pub jku: Option<String>,
    /// `crit`: present means refuse.
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
    /// An embedded `jwk` is never used to verify; present is refused.
    #[serde(default)]
    pub jwk: Option<serde_json::Value>,
}

/// Why a compact JWS could not even be taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Longer than the caller's size limit.
    #[error("the token is longer than allowed")]
    TooLong,
    /// Not three base64url segments, or a segment or header that is not valid JSON.
    #[error("the token is not a compact JWS")]
    Malformed,
    /// `alg` is unknown, `none`, HMAC, or not on the verifier's allow-list.
    #[error("the token's algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// The header had `crit` or an embedded `jwk`.
    #[error("the token header uses an unsupported extension")]
    UnsupportedHeader,
}

/// A compact JWS split into its parts, signature not yet checked.
#[derive(Debug, Clone)]
pub struct UnverifiedJws<'a> {
    /// The parsed protected header.
    pub header: JwsHeader,
    /// The allowed algorithm named by the header.
    pub alg: Algorithm,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    /// The decoded payload.
    pub payload: Vec<u8>,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

impl<'a> UnverifiedJws<'a> {
    /// Splits and decodes `token`, refusing algorithms outside `allowed`.
    pub fn parse(token: &'a str, max_len: usize, allowed: &[Algorithm]) -> Result<Self, JwsError> {
        if token.len() > max_len {
            return Err(JwsError::TooLong);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::Malformed);
        };
        let header_bytes = b64_decode(h).ok_or(JwsError::Malformed)?;
        let header: JwsHeader =
            serde_json::from_slice(&header_bytes).map_err(|_| JwsError::Malformed)?;
        let alg = Algorithm::from_name(&header.alg)
            .filter(|a| allowed.contains(a))
            .ok_or(JwsError::AlgorithmNotAllowed)?;
        if header.crit.is_some() || header.jwk.is_some() {
            return Err(JwsError::UnsupportedHeader);
        }
        let payload = b64_decode(p).ok_or(JwsError::Malformed)?;
        let signature = b64_decode(s).ok_or(JwsError::Malformed)?;
        Ok(UnverifiedJws {
            header,
            alg,
            signing_input: &token[..h.len() + 1 + p.len()],
            payload,
            signature,
        })
    }

    /// Verifies the signature with `key`.
    pub fn verify_with(&self, key: &VerifyingKey) -> bool {
        key.verify(self.alg, self.signing_input.as_bytes(), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ES256: &str = include_str!("../../tests/data/token/as_es256.pem");
    const RS256: &str = include_str!("../../tests/data/token/as_rs256.pem");

    #[test]
    fn sign_then_verify_each_algorithm() {
        let es = SigningKey::from_pem(Algorithm::ES256, "e1", ES256).unwrap();
        let rs = SigningKey::from_pem(Algorithm::RS256, "r1", RS256).unwrap();
        for key in [&es, &rs] {
            let jwt = key.sign_jwt("JWT", &serde_json::json!({"a": 1})).unwrap();
            let jws = UnverifiedJws::parse(&jwt, 8192, &[key.algorithm()]).unwrap();
            assert!(jws.verify_with(key.verifying_key()));
            // Round trip through the JWK form.
            let back = VerifyingKey::from_jwk(&key.verifying_key().to_jwk()).unwrap();
            assert!(jws.verify_with(&back));
        }
    }

    #[test]
    fn refuses_none_hmac_and_unlisted_algorithms() {
        for alg in ["none", "HS256", "RS512", "es256"] {
            let header = b64(format!("{{\"alg\":\"{alg}\"}}").as_bytes());
            let token = format!("{header}.{}.", b64(b"{}"));
            assert_eq!(
                UnverifiedJws::parse(&token, 8192, &[Algorithm::ES256, Algorithm::RS256]).err(),
                Some(JwsError::AlgorithmNotAllowed),
                "{alg}"
            );
        }
    }

    #[test]
    fn key_type_must_fit_algorithm() {
        let es = SigningKey::from_pem(Algorithm::ES256, "e1", ES256).unwrap();
        let rs = SigningKey::from_pem(Algorithm::RS256, "r1", RS256).unwrap();
        assert!(!es.verifying_key().fits(Algorithm::RS256));
        assert!(!es.verifying_key().fits(Algorithm::ES384));
        assert!(!rs.verifying_key().fits(Algorithm::RS384)); // pinned to RS256
        assert!(SigningKey::from_pem(Algorithm::ES384, "x", ES256).is_err());
    }

    #[test]
    fn malformed_segments_refused() {
        for token in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.e30.",
            "e30.e30.",
            "eyJhbGciOiJFUzI1NiJ9.e30.$$",
        ] {
            assert!(
                UnverifiedJws::parse(token, 8192, &[Algorithm::ES256]).is_err(),
                "{token}"
            );
        }
        let long = "a".repeat(10);
        assert_eq!(
            UnverifiedJws::parse(&long, 5, &[Algorithm::ES256]).err(),
            Some(JwsError::TooLong)
        );
    }
}
