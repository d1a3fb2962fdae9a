//! Password hashing: PBKDF2-HMAC through ring, a self-describing encoded form, upgrade on login.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

/// A password as typed by a person, held in its canonical (NFKC) form.
///
/// The text is normalised once, when the value is built, so that the same password typed on a
/// phone keyboard and on a desktop (precomposed `é` against `e` + combining accent, full-width
/// digits, ligatures) hashes to the same bytes, as NIST SP 800-63B §5.1.1.2 asks. The memory is
/// wiped when the value is dropped, and `Debug` never shows it.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Takes a password as typed and normalises it to Unicode NFKC.
    pub fn new(typed: impl Into<String>) -> Self {
        let typed = Zeroizing::new(typed.into());
        let mut canonical = Zeroizing::new(String::with_capacity(typed.len() + typed.len() / 2));
        canonical.extend(typed.nfkc());
        Self(canonical)
    }

    /// The canonical (NFKC) text. Named so that every use of the secret stands out in review.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Length in Unicode code points of the canonical form (the unit SP 800-63B counts in).
    pub fn char_count(&self) -> usize {
        self.0.chars().count()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl From<&str> for Password {
    fn from(typed: &str) -> Self {
        Self::new(typed)
    }
}

impl From<String> for Password {
    fn from(typed: String) -> Self {
        Self::new(typed)
    }
}

/// A password-hashing algorithm fhirguard can produce and verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HashAlgorithm {
    /// PBKDF2 with HMAC-SHA-256 (FIPS-approved; OWASP 2023: at least 600,000 iterations).
    Pbkdf2Sha256,
    /// PBKDF2 with HMAC-SHA-512 (OWASP 2023: at least 210,000 iterations).
    Pbkdf2Sha512,
}

impl HashAlgorithm {
    /// The identifier used in the encoded form (`$pbkdf2-sha256$…`).
    pub fn ident(self) -> &'static str {
        match self {
            Self::Pbkdf2Sha256 => "pbkdf2-sha256",
            Self::Pbkdf2Sha512 => "pbkdf2-sha512",
        }
    }

    /// The iteration count current OWASP guidance (Password Storage Cheat Sheet, 2023) asks for:
    /// [`PasswordHasher::new`] refuses anything lower.
    pub fn owasp_min_iterations(self) -> u32 {
        match self {
            Self::Pbkdf2Sha256 => 600_000,
            Self::Pbkdf2Sha512 => 210_000,
        }
    }

    /// Length in bytes of the derived key (the digest length).
    pub fn output_len(self) -> usize {
        match self {
            Self::Pbkdf2Sha256 => 32,
            Self::Pbkdf2Sha512 => 64,
        }
    }

    fn ring(self) -> pbkdf2::Algorithm {
        match self {
            Self::Pbkdf2Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Self::Pbkdf2Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn from_ident(ident: &str) -> Option<Self> {
        match ident {
            "pbkdf2-sha256" => Some(Self::Pbkdf2Sha256),
            "pbkdf2-sha512" => Some(Self::Pbkdf2Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.ident())
    }
}

/// The work factor and salt size new hashes are made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// The algorithm.
    pub algorithm: HashAlgorithm,
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// Salt length in bytes (16 is NIST SP 800-132's floor).
    pub salt_len: usize,
}

impl HashParams {
    /// PBKDF2-HMAC-SHA-256 with 600,000 iterations and a 16-byte salt: OWASP's 2023 figure.
    pub const OWASP_2023: Self = Self {
        algorithm: HashAlgorithm::Pbkdf2Sha256,
        iterations: 600_000,
        salt_len: 16,
    };
}

impl Default for HashParams {
    fn default() -> Self {
        Self::OWASP_2023
    }
}

/// Shortest salt accepted, in bytes, when parsing or configuring.
pub const MIN_SALT_LEN: usize = 8;
/// Longest salt accepted, in bytes.
pub const MAX_SALT_LEN: usize = 64;
/// Fewest iterations an encoded hash may carry; anything lower is refused as corrupt.
pub const MIN_ENCODED_ITERATIONS: u32 = 1_000;
/// Most iterations an encoded hash may carry, whatever the hasher's own limit: ten million
/// PBKDF2-SHA-256 iterations take a few seconds on a server core, not minutes.
pub const MAX_ENCODED_ITERATIONS: u32 = 10_000_000;
/// Longest encoded hash the parser reads, in bytes.
pub const MAX_ENCODED_LEN: usize = 256;

/// Why an encoded password hash could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashParseError {
    /// The text was longer than [`MAX_ENCODED_LEN`]: no hash fhirguard writes is that long.
    #[error("encoded password hash is longer than {MAX_ENCODED_LEN} bytes")]
    TooLong,
    /// The text was not `$<algorithm>$i=<iterations>$<salt>$<hash>`.
    #[error("encoded password hash does not have the form $alg$i=N$salt$hash")]
    Structure,
    /// The algorithm identifier is not one fhirguard knows.
    #[error("encoded password hash names an unknown algorithm")]
    UnknownAlgorithm,
    /// The iteration field was not `i=` followed by a canonical decimal number.
    #[error("encoded password hash has a malformed iteration count")]
    BadIterations,
    /// The iteration count lies outside what fhirguard accepts from storage (a hostile or
    /// corrupted entry could otherwise make one verification take minutes).
    #[error("encoded password hash has an iteration count outside {min}..={max}")]
    IterationsOutOfRange {
        /// Lowest accepted.
        min: u32,
        /// Highest accepted.
        max: u32,
    },
    /// The salt was not canonical unpadded base64 of 8 to 64 bytes.
    #[error("encoded password hash has a malformed salt")]
    BadSalt,
    /// The hash was not canonical unpadded base64 of the algorithm's output length.
    #[error("encoded password hash has a malformed hash value")]
    BadHash,
}

/// Why hashing or verification could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// The stored hash could not be parsed.
    #[error(transparent)]
    Parse(#[from] HashParseError),
    /// The configured parameters are below current guidance; use the `dangerous` module to
    /// build a weak hasher for tests.
    #[error("{algorithm} needs at least {minimum} iterations")]
    WeakParameters {
        /// The algorithm configured.
        algorithm: HashAlgorithm,
        /// The minimum iteration count for it.
        minimum: u32,
    },
    /// The salt length configured lies outside 8..=64 bytes (16 or more is recommended).
    #[error("salt length must be between {MIN_SALT_LEN} and {MAX_SALT_LEN} bytes")]
    BadSaltLength,
    /// The stored hash asks for more iterations than this hasher is willing to spend.
    #[error("stored hash needs {iterations} iterations, above this hasher's limit of {limit}")]
    IterationsAboveLimit {
        /// What the stored hash asks for.
        iterations: u32,
        /// The hasher's limit.
        limit: u32,
    },
    /// The operating system's random number generator failed, so no salt could be drawn.
    #[error("the system random number generator failed")]
    Random,
}

/// A stored password hash: algorithm, work factor, salt and derived key.
///
/// Its text form is PHC-string style, `$pbkdf2-sha256$i=600000$<salt>$<hash>` with unpadded
/// standard base64, so the parameters travel with the hash and older hashes are recognised and
/// upgraded on the next successful login.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    algorithm: HashAlgorithm,
    iterations: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl PasswordHash {
    /// The algorithm this hash was made with.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }

    /// The iteration count this hash was made with.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Salt length in bytes.
    pub fn salt_len(&self) -> usize {
        self.salt.len()
    }

    /// The encoded text form, for storage.
    pub fn encode(&self) -> String {
        self.to_string()
    }

    /// Parses the encoded text form (see [`HashParseError`] for what is refused).
    pub fn parse(encoded: &str) -> Result<Self, HashParseError> {
        if encoded.len() > MAX_ENCODED_LEN {
            return Err(HashParseError::TooLong);
        }
        let mut parts = encoded.split('$');
        let (Some(""), Some(alg), Some(iter), Some(salt), Some(hash), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(HashParseError::Structure);
        };
        let algorithm = HashAlgorithm::from_ident(alg).ok_or(HashParseError::UnknownAlgorithm)?;
        let digits = iter
            .strip_prefix("i=")
            .ok_or(HashParseError::BadIterations)?;
        if digits.is_empty()
            || digits.len() > 10
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(HashParseError::BadIterations);
        }
        let iterations: u32 = digits
            .parse()
            .map_err(|_| HashParseError::IterationsOutOfRange {
                min: MIN_ENCODED_ITERATIONS,
                max: MAX_ENCODED_ITERATIONS,
            })?;
        if !(MIN_ENCODED_ITERATIONS..=MAX_ENCODED_ITERATIONS).contains(&iterations) {
            return Err(HashParseError::IterationsOutOfRange {
                min: MIN_ENCODED_ITERATIONS,
                max: MAX_ENCODED_ITERATIONS,
            });
        }
        let salt = STANDARD_NO_PAD
            .decode(salt)
            .map_err(|_| HashParseError::BadSalt)?;
        if !(MIN_SALT_LEN..=MAX_SALT_LEN).contains(&salt.len()) {
            return Err(HashParseError::BadSalt);
        }
        let hash = STANDARD_NO_PAD
            .decode(hash)
            .map_err(|_| HashParseError::BadHash)?;
        if hash.len() != algorithm.output_len() {
            return Err(HashParseError::BadHash);
        }
        Ok(Self {
            algorithm,
            iterations,
            salt,
            hash,
        })
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "${}$i={}${}${}",
            self.algorithm.ident(),
            self.iterations,
            STANDARD_NO_PAD.encode(&self.salt),
            STANDARD_NO_PAD.encode(&self.hash)
        )
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHash")
            .field("algorithm", &self.algorithm)
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .field("hash", &"<redacted>")
            .finish()
    }
}

impl FromStr for PasswordHash {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The outcome of checking a password against a stored hash.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// The password is right and the stored hash meets the hasher's current parameters.
    Match,
    /// The password is right, but the stored hash was made with an older algorithm or a lower
    /// work factor: hash the password again with [`PasswordHasher::hash`] and store the result.
    MatchNeedsRehash,
    /// The password is wrong.
    Mismatch,
}

impl PasswordCheck {
    /// Whether the password was right (with or without a re-hash due).
    pub fn is_match(self) -> bool {
        !matches!(self, Self::Mismatch)
    }
}

/// Hashes and verifies passwords with PBKDF2-HMAC through ring.
///
/// Verification always derives the full key and compares in constant time, so a wrong
/// password costs the same as a right one; [`verify_unknown_user`](Self::verify_unknown_user)
/// spends the same work for a login name that does not exist, so response time does not tell
/// an attacker which accounts exist.
pub struct PasswordHasher {
    params: HashParams,
    max_iterations: u32,
    rng: SystemRandom,
    dummy: PasswordHash,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .field("max_iterations", &self.max_iterations)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher making new hashes with `params`; refuses parameters below OWASP guidance.
    ///
    /// Stored hashes are verified up to four times the configured work factor (and never above
    /// [`MAX_ENCODED_ITERATIONS`]); change that with
    /// [`with_max_iterations`](Self::with_max_iterations).
    pub fn new(params: HashParams) -> Result<Self, HashError> {
        let minimum = params.algorithm.owasp_min_iterations();
        if params.iterations < minimum {
            return Err(HashError::WeakParameters {
                algorithm: params.algorithm,
                minimum,
            });
        }
        Self::build(params)
    }

    pub(crate) fn build(params: HashParams) -> Result<Self, HashError> {
        if !(MIN_SALT_LEN..=MAX_SALT_LEN).contains(&params.salt_len) {
            return Err(HashError::BadSaltLength);
        }
        if !(MIN_ENCODED_ITERATIONS..=MAX_ENCODED_ITERATIONS).contains(&params.iterations) {
            return Err(HashError::Parse(HashParseError::IterationsOutOfRange {
                min: MIN_ENCODED_ITERATIONS,
                max: MAX_ENCODED_ITERATIONS,
            }));
        }
        let rng = SystemRandom::new();
        let mut dummy = PasswordHash {
            algorithm: params.algorithm,
            iterations: params.iterations,
            salt: vec![0; params.salt_len],
            hash: vec![0; params.algorithm.output_len()],
        };
        rng.fill(&mut dummy.salt).map_err(|_| HashError::Random)?;
        rng.fill(&mut dummy.hash).map_err(|_| HashError::Random)?;
        Ok(Self {
            params,
            max_iterations: params
                .iterations
                .saturating_mul(4)
                .min(MAX_ENCODED_ITERATIONS),
            rng,
            dummy,
        })
    }

    /// Sets the most iterations a stored hash may ask for before verification refuses it
    /// (at least the configured count, at most [`MAX_ENCODED_ITERATIONS`]).
    #[must_use]
    pub fn with_max_iterations(mut self, max: u32) -> Self {
        self.max_iterations = max.clamp(self.params.iterations, MAX_ENCODED_ITERATIONS);
        self
    }

    /// The parameters new hashes are made with.
    pub fn params(&self) -> HashParams {
        self.params
    }

    /// Hashes `password` with a fresh random salt.
    pub fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        let mut salt = vec![0; self.params.salt_len];
        self.rng.fill(&mut salt).map_err(|_| HashError::Random)?;
        let hash = derive(
            self.params.algorithm,
            self.params.iterations,
            &salt,
            password,
        );
        Ok(PasswordHash {
            algorithm: self.params.algorithm,
            iterations: self.params.iterations,
            salt,
            hash,
        })
    }

    /// Checks `password` against a stored hash, and says whether the hash is due an upgrade.
    pub fn verify(
        &self,
        password: &Password,
        stored: &PasswordHash,
    ) -> Result<PasswordCheck, HashError> {
        if stored.iterations > self.max_iterations {
            return Err(HashError::IterationsAboveLimit {
                iterations: stored.iterations,
                limit: self.max_iterations,
            });
        }
        let computed = derive(stored.algorithm, stored.iterations, &stored.salt, password);
        let equal: bool = computed.as_slice().ct_eq(stored.hash.as_slice()).into();
        Ok(if !equal {
            PasswordCheck::Mismatch
        } else if self.needs_rehash(stored) {
            PasswordCheck::MatchNeedsRehash
        } else {
            PasswordCheck::Match
        })
    }

    /// Parses an encoded hash and checks `password` against it.
    pub fn verify_encoded(
        &self,
        password: &Password,
        encoded: &str,
    ) -> Result<PasswordCheck, HashError> {
        let stored = PasswordHash::parse(encoded)?;
        self.verify(password, &stored)
    }

    /// Spends the same work as a real verification and answers
    /// [`PasswordCheck::Mismatch`]: call it when the login name is unknown, so that timing
    /// does not reveal which accounts exist.
    pub fn verify_unknown_user(&self, password: &Password) -> PasswordCheck {
        let computed = derive(
            self.dummy.algorithm,
            self.dummy.iterations,
            &self.dummy.salt,
            password,
        );
        // The comparison is done (and discarded) so the work matches `verify`.
        let _ = computed.as_slice().ct_eq(self.dummy.hash.as_slice());
        PasswordCheck::Mismatch
    }

    /// Whether a stored hash falls short of the parameters new hashes are made with.
    pub fn needs_rehash(&self, stored: &PasswordHash) -> bool {
        stored.algorithm != self.params.algorithm
            || stored.iterations < self.params.iterations
            || stored.salt.len() < self.params.salt_len
    }
}

fn derive(algorithm: HashAlgorithm, iterations: u32, salt: &[u8], password: &Password) -> Vec<u8> {
    let mut out = vec![0; algorithm.output_len()];
    // `iterations` is at least MIN_ENCODED_ITERATIONS wherever a PasswordHash or
    // PasswordHasher is built, so the fallback of 1 is never used.
    let iterations = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(
        algorithm.ring(),
        iterations,
        salt,
        password.expose_secret().as_bytes(),
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weak(iterations: u32) -> PasswordHasher {
        PasswordHasher::build(HashParams {
            iterations,
            ..HashParams::OWASP_2023
        })
        .unwrap()
    }

    #[test]
    fn rfc_7914_pbkdf2_sha256_vector() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256, P="passwd", S="salt", c=1, dkLen=64 (first 32 bytes).
        let mut out = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::MIN,
            b"salt",
            b"passwd",
            &mut out,
        );
        assert_eq!(out[..8], [0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f]);
    }

    #[test]
    fn nfkc_makes_equivalent_inputs_equal() {
        let composed = Password::new("caf\u{e9}\u{FF11}");
        let decomposed = Password::new("cafe\u{301}1");
        assert_eq!(composed.expose_secret(), decomposed.expose_secret());
        assert_eq!(format!("{composed:?}"), "Password(<redacted>)");
    }

    #[test]
    fn parse_refuses_non_canonical_and_hostile_input() {
        let h = weak(1000).hash(&Password::new("correct horse")).unwrap();
        let text = h.encode();
        assert_eq!(PasswordHash::parse(&text).unwrap(), h);
        for bad in [
            "",
            "$pbkdf2-sha256$i=1000$",
            "$pbkdf2-sha256$i=01000$AAAAAAAAAAA$AAAA",
            "$pbkdf2-sha256$i=4294967296$AAAAAAAAAAA$AAAA",
            "$pbkdf2-sha256$i=999$AAAAAAAAAAA$AAAA",
            "$pbkdf2-sha256$i=+1000$AAAAAAAAAAA$AAAA",
            "$md5$i=1000$AAAAAAAAAAA$AAAA",
        ] {
            assert!(PasswordHash::parse(bad).is_err(), "{bad}");
        }
        let huge = text.replace("i=1000", "i=10000001");
        assert!(matches!(
            PasswordHash::parse(&huge),
            Err(HashParseError::IterationsOutOfRange { .. })
        ));
    }
}
