//! TOTP second factor (RFC 6238 over RFC 4226 HOTP), HMAC through ring.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::base32;

/// The HMAC behind the one-time codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TotpAlgorithm {
    /// HMAC-SHA-1: the RFC 6238 default, and the only one every authenticator app supports.
    /// (HMAC-SHA-1 remains sound as a MAC; the collision attacks on SHA-1 do not apply.)
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl TotpAlgorithm {
    fn ring(self) -> hmac::Algorithm {
        match self {
            Self::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }

    /// The name used in `otpauth://` URIs.
    pub fn uri_name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    /// The secret length RFC 4226 recommends for this HMAC (its output length).
    pub fn secret_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

/// Code parameters. The default (SHA-1, 6 digits, 30 s, ±1 step) is what authenticator apps
/// implement; change it only if the users' apps honour the URI's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpParams {
    /// The HMAC.
    pub algorithm: TotpAlgorithm,
    /// Code length, 6 to 8 digits.
    pub digits: u8,
    /// Time step in seconds.
    pub period: u32,
    /// Steps accepted either side of the current one, for clock drift and typing time
    /// (RFC 6238 §5.2 recommends at most one).
    pub skew: u8,
}

impl Default for TotpParams {
    fn default() -> Self {
        Self {
            algorithm: TotpAlgorithm::Sha1,
            digits: 6,
            period: 30,
            skew: 1,
        }
    }
}

/// Why a TOTP operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TotpError {
    /// The submitted code was not exactly `digits` ASCII digits.
    #[error("the code is not a {digits}-digit number")]
    Malformed {
        /// The expected number of digits.
        digits: u8,
    },
    /// No code in the accepted window matched.
    #[error("the code does not match")]
    Mismatch,
    /// The code matched a time step already used (or older than one used): a replay.
    #[error("the code was already used")]
    Replayed,
    /// The parameters are outside what RFC 6238 allows (digits 6..=8, period 1..=300, skew ≤ 2).
    #[error("TOTP parameters are out of range")]
    BadParams,
    /// The stored secret is not valid base32 of at least 16 bytes.
    #[error("the TOTP secret is malformed or too short")]
    BadSecret,
    /// The issuer or account name is empty or contains a colon (the `otpauth` label separator).
    #[error("issuer and account name must be non-empty and contain no colon")]
    BadLabel,
    /// The clock is before 1970: no time step can be computed.
    #[error("the time is before the Unix epoch")]
    BeforeEpoch,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// A shared TOTP secret. `Debug` is redacted; the memory is wiped on drop.
#[derive(Clone)]
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl TotpSecret {
    /// Shortest secret accepted (RFC 4226 §4: at least 128 bits).
    pub const MIN_LEN: usize = 16;

    /// Wraps raw secret bytes (at least 16).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TotpError> {
        if bytes.len() < Self::MIN_LEN || bytes.len() > 128 {
            return Err(TotpError::BadSecret);
        }
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// Reads a base32 secret (as stored, or as shown to the user).
    pub fn from_base32(text: &str) -> Result<Self, TotpError> {
        let bytes = Zeroizing::new(base32::decode(text).ok_or(TotpError::BadSecret)?);
        Self::from_bytes(&bytes)
    }

    /// Draws a fresh random secret of `len` bytes.
    pub fn generate(len: usize) -> Result<Self, TotpError> {
        let mut bytes = Zeroizing::new(vec![0u8; len]);
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| TotpError::Random)?;
        Self::from_bytes(&bytes)
    }

    /// The secret as upper-case unpadded base32, for storage (encrypt it at rest: unlike a
    /// password, the verifier needs it in the clear) or for manual entry in an app.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(base32::encode(&self.0))
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

/// RFC 4226 HOTP value for `counter`, reduced to `digits` decimal digits.
pub fn hotp(secret: &TotpSecret, algorithm: TotpAlgorithm, counter: u64, digits: u8) -> u32 {
    let key = hmac::Key::new(algorithm.ring(), &secret.0);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
    let word = mac
        .get(offset..offset + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes)
        & 0x7fff_ffff;
    word % 10u32.pow(u32::from(digits.clamp(1, 9)))
}

/// The RFC 6238 time step containing `now`.
pub fn time_step(now: OffsetDateTime, period: u32) -> Result<u64, TotpError> {
    let seconds = u64::try_from(now.unix_timestamp()).map_err(|_| TotpError::BeforeEpoch)?;
    Ok(seconds / u64::from(period.max(1)))
}

/// The code for `now`, zero-padded to `digits` (what the user's app shows).
pub fn code_at(
    secret: &TotpSecret,
    params: &TotpParams,
    now: OffsetDateTime,
) -> Result<String, TotpError> {
    check_params(params)?;
    let step = time_step(now, params.period)?;
    Ok(format_code(
        hotp(secret, params.algorithm, step, params.digits),
        params.digits,
    ))
}

fn format_code(value: u32, digits: u8) -> String {
    format!("{value:0width$}", width = usize::from(digits))
}

fn check_params(params: &TotpParams) -> Result<(), TotpError> {
    if !(6..=8).contains(&params.digits) || !(1..=300).contains(&params.period) || params.skew > 2 {
        return Err(TotpError::BadParams);
    }
    Ok(())
}

/// One account's TOTP authenticator: the secret, its parameters, and the last time step a
/// code was accepted for, which is what refuses replays.
///
/// Persist [`last_used_step`](Self::last_used_step) after every successful
/// [`verify`](Self::verify), atomically with the check (a compare-and-set on the stored value,
/// or a row lock), or two concurrent logins could both spend the same code.
#[derive(Clone)]
pub struct TotpCredential {
    secret: TotpSecret,
    params: TotpParams,
    last_used_step: Option<u64>,
}

impl fmt::Debug for TotpCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpCredential")
            .field("secret", &self.secret)
            .field("params", &self.params)
            .field("last_used_step", &self.last_used_step)
            .finish()
    }
}

impl TotpCredential {
    /// Rebuilds a stored credential.
    pub fn new(
        secret: TotpSecret,
        params: TotpParams,
        last_used_step: Option<u64>,
    ) -> Result<Self, TotpError> {
        check_params(&params)?;
        Ok(Self {
            secret,
            params,
            last_used_step,
        })
    }

    /// The secret.
    pub fn secret(&self) -> &TotpSecret {
        &self.secret
    }

    /// The parameters.
    pub fn params(&self) -> &TotpParams {
        &self.params
    }

    /// The last time step a code was accepted for (store it).
    pub fn last_used_step(&self) -> Option<u64> {
        self.last_used_step
    }

    /// Checks `code` against the window around `now`. On success the matching step becomes
    /// the last used one, so that code (and any earlier one) is refused from then on.
    pub fn verify(&mut self, code: &str, now: OffsetDateTime) -> Result<u64, TotpError> {
        let digits = self.params.digits;
        let code = code.trim();
        if code.len() != usize::from(digits) || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TotpError::Malformed { digits });
        }
        let current = time_step(now, self.params.period)?;
        let skew = u64::from(self.params.skew);
        let mut matched: Option<u64> = None;
        // Every step in the window is computed and compared, with no early exit.
        for step in current.saturating_sub(skew)..=current.saturating_add(skew) {
            let expected = format_code(
                hotp(&self.secret, self.params.algorithm, step, digits),
                digits,
            );
            let equal: bool = expected.as_bytes().ct_eq(code.as_bytes()).into();
            if equal && matched.is_none() {
                matched = Some(step);
            }
        }
        let step = matched.ok_or(TotpError::Mismatch)?;
        if self.last_used_step.is_some_and(|last| step <= last) {
            return Err(TotpError::Replayed);
        }
        self.last_used_step = Some(step);
        Ok(step)
    }
}

/// A new TOTP enrolment: the credential to store (after confirmation) and the `otpauth://`
/// URI to show as a QR code. `Debug` is redacted: the URI carries the secret.
pub struct TotpEnrollment {
    /// The credential, not yet used.
    pub credential: TotpCredential,
    /// `otpauth://totp/<issuer>:<account>?secret=…&issuer=…&algorithm=…&digits=…&period=…`
    pub uri: Zeroizing<String>,
}

impl fmt::Debug for TotpEnrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpEnrollment")
            .field("credential", &self.credential)
            .field("uri", &"<redacted>")
            .finish()
    }
}

/// Characters percent-encoded in the URI label and issuer (everything but unreserved).
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl TotpEnrollment {
    /// Starts an enrolment: a fresh secret of the algorithm's recommended length and its URI.
    ///
    /// Store the credential only once the user has typed a first valid code
    /// ([`TotpCredential::verify`]), which proves the app holds the secret.
    pub fn start(issuer: &str, account: &str, params: TotpParams) -> Result<Self, TotpError> {
        check_params(&params)?;
        for label in [issuer, account] {
            if label.trim().is_empty() || label.contains(':') || label.chars().any(char::is_control)
            {
                return Err(TotpError::BadLabel);
            }
        }
        let secret = TotpSecret::generate(params.algorithm.secret_len())?;
        let issuer_enc = utf8_percent_encode(issuer, URI_COMPONENT).to_string();
        let account_enc = utf8_percent_encode(account, URI_COMPONENT).to_string();
        let uri = Zeroizing::new(format!(
            "otpauth://totp/{issuer_enc}:{account_enc}?secret={}&issuer={issuer_enc}&algorithm={}&digits={}&period={}",
            secret.to_base32().as_str(),
            params.algorithm.uri_name(),
            params.digits,
            params.period,
        ));
        Ok(Self {
            credential: TotpCredential {
                secret,
                params,
                last_used_step: None,
            },
            uri,
        })
    }
}
