//! Single-use recovery codes (SP 800-63B "look-up secrets"), stored hashed.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

use super::base32;

/// Random bytes per code: 15 bytes = 120 bits, above the 112 bits SP 800-63B §5.1.2.2 asks of
/// look-up secrets stored with a plain (salted) one-way hash instead of a slow KDF.
const CODE_BYTES: usize = 15;
/// Most codes in one set.
pub const MAX_CODES: usize = 20;
/// Longest stored encoding accepted by the parser.
const MAX_ENCODED_LEN: usize = 2048;

/// Why recovery codes could not be made, read or redeemed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The typed code is not 24 base32 characters (hyphens and spaces aside).
    #[error("the recovery code is malformed")]
    Malformed,
    /// No unused code in the set matches.
    #[error("the recovery code does not match an unused code")]
    Mismatch,
    /// The stored set could not be parsed.
    #[error("the stored recovery code set is malformed")]
    BadEncoding,
    /// A set must hold 1 to 20 codes.
    #[error("a recovery code set holds 1 to {MAX_CODES} codes")]
    BadCount,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// Freshly generated codes, to show the user once. `Debug` is redacted; wiped on drop.
pub struct RecoveryCodes(Vec<Zeroizing<String>>);

impl RecoveryCodes {
    /// The codes, formatted `xxxx-xxxx-xxxx-xxxx-xxxx-xxxx` for reading aloud or printing.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|c| c.as_str())
    }

    /// How many codes there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecoveryCodes({} codes, <redacted>)", self.0.len())
    }
}

/// The stored form of a recovery code set: a salt and one SHA-256 per code; a redeemed code's
/// slot is emptied, so each code works once.
///
/// Text form: `rc1$<salt>$<hash>,<hash>,-,…` (unpadded base64, `-` for a used slot).
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCodeSet {
    salt: [u8; 16],
    slots: Vec<Option<[u8; 32]>>,
}

impl fmt::Debug for RecoveryCodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryCodeSet")
            .field("total", &self.slots.len())
            .field("remaining", &self.remaining())
            .finish_non_exhaustive()
    }
}

fn normalise(code: &str) -> Option<Zeroizing<String>> {
    let mut out = Zeroizing::new(String::with_capacity(24));
    for c in code.chars() {
        match c {
            '-' | ' ' => {}
            // Characters people mistype for base32 letters.
            '0' => out.push('o'),
            '1' => out.push('l'),
            '8' => out.push('b'),
            c if c.is_ascii_alphabetic() || ('2'..='7').contains(&c) => {
                out.push(c.to_ascii_lowercase());
            }
            _ => return None,
        }
        if out.len() > CODE_BYTES * 8 / 5 {
            return None;
        }
    }
    (out.len() == CODE_BYTES * 8 / 5).then_some(out)
}

fn digest_code(salt: &[u8; 16], normalised: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"fhirguard recovery code v1\0");
    ctx.update(salt);
    ctx.update(normalised.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl RecoveryCodeSet {
    /// Generates `count` codes (1 to 20; 10 is usual): the codes to show once, and the set to
    /// store.
    pub fn generate(count: usize) -> Result<(RecoveryCodes, Self), RecoveryError> {
        if !(1..=MAX_CODES).contains(&count) {
            return Err(RecoveryError::BadCount);
        }
        let rng = SystemRandom::new();
        let mut salt = [0u8; 16];
        rng.fill(&mut salt).map_err(|_| RecoveryError::Random)?;
        let mut codes = Vec::with_capacity(count);
        let mut slots = Vec::with_capacity(count);
        for _ in 0..count {
            let mut raw = Zeroizing::new([0u8; CODE_BYTES]);
            rng.fill(raw.as_mut()).map_err(|_| RecoveryError::Random)?;
            let plain = Zeroizing::new(base32::encode(raw.as_ref()).to_ascii_lowercase());
            slots.push(Some(digest_code(&salt, &plain)));
            let grouped: String = plain
                .as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-");
            codes.push(Zeroizing::new(grouped));
        }
        Ok((RecoveryCodes(codes), Self { salt, slots }))
    }

    /// Codes not yet used.
    pub fn remaining(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Redeems a typed code: on a match its slot is emptied (store the set again) and the
    /// number of codes left is returned. Every slot is compared in constant time.
    pub fn redeem(&mut self, typed: &str) -> Result<usize, RecoveryError> {
        let normalised = normalise(typed).ok_or(RecoveryError::Malformed)?;
        let candidate = digest_code(&self.salt, &normalised);
        let mut found: Option<usize> = None;
        for (i, slot) in self.slots.iter().enumerate() {
            let (stored, present) = match slot {
                Some(h) => (*h, Choice::from(1)),
                None => ([0u8; 32], Choice::from(0)),
            };
            let hit: bool = (stored.ct_eq(&candidate) & present).into();
            if hit && found.is_none() {
                found = Some(i);
            }
        }
        let index = found.ok_or(RecoveryError::Mismatch)?;
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = None;
        }
        Ok(self.remaining())
    }

    /// The text form, for storage.
    pub fn encode(&self) -> String {
        let slots: Vec<String> = self
            .slots
            .iter()
            .map(|s| s.map_or_else(|| "-".to_owned(), |h| STANDARD_NO_PAD.encode(h)))
            .collect();
        format!(
            "rc1${}${}",
            STANDARD_NO_PAD.encode(self.salt),
            slots.join(",")
        )
    }
}

impl FromStr for RecoveryCodeSet {
    type Err = RecoveryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_ENCODED_LEN {
            return Err(RecoveryError::BadEncoding);
        }
        let mut parts = s.split('$');
        let (Some("rc1"), Some(salt), Some(list), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(RecoveryError::BadEncoding);
        };
        let salt: [u8; 16] = STANDARD_NO_PAD
            .decode(salt)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(RecoveryError::BadEncoding)?;
        let mut slots = Vec::new();
        for item in list.split(',') {
            if slots.len() >= MAX_CODES {
                return Err(RecoveryError::BadCount);
            }
            slots.push(if item == "-" {
                None
            } else {
                Some(
                    STANDARD_NO_PAD
                        .decode(item)
                        .ok()
                        .and_then(|v| <[u8; 32]>::try_from(v).ok())
                        .ok_or(RecoveryError::BadEncoding)?,
                )
            });
        }
        Ok(Self { salt, slots })
    }
}

impl fmt::Display for RecoveryCodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}
