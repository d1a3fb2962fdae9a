//! Password policy after NIST SP 800-63B §5.1.1.2: length, a blocklist, no composition rules.

use std::fmt;

use super::common;
use super::password::Password;

/// The shortest minimum length a policy may be configured with (SP 800-63B: 8).
pub const NIST_MIN_LENGTH: usize = 8;
/// The minimum for privileged users (administrators, clinicians with write access): 15, as
/// SP 800-63B rev. 4 asks of single-factor passwords.
pub const PRIVILEGED_MIN_LENGTH: usize = 15;
/// The default maximum (SP 800-63B: verifiers should permit at least 64).
pub const DEFAULT_MAX_LENGTH: usize = 64;
/// The highest maximum a policy may be configured with, so that a hostile multi-megabyte
/// "password" is refused before anything expensive is done with it.
pub const HARD_MAX_LENGTH: usize = 1024;
/// Identifiers shorter than this are not searched for inside a password.
const MIN_IDENTIFIER_LEN: usize = 4;

/// One reason a password was refused. Show the person all of them at once.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalReason {
    /// Shorter than the minimum (counted in Unicode code points after NFKC normalisation).
    TooShort {
        /// The minimum that applies to this user.
        minimum: usize,
        /// The password's length.
        length: usize,
    },
    /// Longer than the maximum.
    TooLong {
        /// The configured maximum.
        maximum: usize,
    },
    /// On the shipped list of common and breached passwords (compared case-insensitively).
    Common,
    /// Contains the user's own login name, e-mail local part or the service's name.
    ContainsIdentifier,
    /// One character repeated, or a short pattern repeated (`aaaaaaaa`, `abababab`).
    Repetitive,
    /// A run of consecutive characters (`12345678`, `abcdefghij`, `98765432`).
    Sequential,
    /// Contains a control character (a pasted newline or NUL, almost never intended).
    ControlCharacter,
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { minimum, length } => {
                write!(f, "is {length} characters long; use at least {minimum}")
            }
            Self::TooLong { maximum } => write!(f, "is longer than {maximum} characters"),
            Self::Common => f.write_str("is on a list of commonly used or breached passwords"),
            Self::ContainsIdentifier => f.write_str("contains your user name or the site's name"),
            Self::Repetitive => f.write_str("repeats a character or a short pattern"),
            Self::Sequential => f.write_str("is a run of consecutive characters"),
            Self::ControlCharacter => f.write_str("contains a control character"),
        }
    }
}

/// A refused password, with every reason that applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("password refused: {}", join(.reasons))]
pub struct PasswordRejected {
    /// The reasons, in a stable order (length first).
    pub reasons: Vec<RefusalReason>,
}

fn join(reasons: &[RefusalReason]) -> String {
    reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a policy could not be configured as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyConfigError {
    /// A minimum below 8 is not allowed by SP 800-63B.
    #[error("minimum length must be at least {NIST_MIN_LENGTH}")]
    MinimumTooLow,
    /// A maximum below 64 is not allowed by SP 800-63B, and above 1024 invites abuse.
    #[error("maximum length must be between {DEFAULT_MAX_LENGTH} and {HARD_MAX_LENGTH}")]
    MaximumOutOfRange,
    /// The minimums would exceed the maximum.
    #[error("minimum length exceeds the maximum")]
    MinimumAboveMaximum,
}

/// What the policy needs to know about the person choosing a password.
#[derive(Debug, Clone, Default)]
pub struct PasswordContext<'a> {
    /// Privileged users (administrators, staff) need [`PRIVILEGED_MIN_LENGTH`] characters.
    pub privileged: bool,
    /// Context-specific words the password must not contain: login name, e-mail address
    /// (its local part is checked too), the portal's or organisation's name.
    pub identifiers: Vec<&'a str>,
}

impl<'a> PasswordContext<'a> {
    /// Context for an ordinary user (a patient or representative).
    pub fn user(identifiers: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            privileged: false,
            identifiers: identifiers.into_iter().collect(),
        }
    }

    /// Context for a privileged user.
    pub fn privileged(identifiers: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            privileged: true,
            identifiers: identifiers.into_iter().collect(),
        }
    }
}

/// NIST SP 800-63B password policy: length limits, a blocklist, and nothing else — no
/// composition rules ("one digit, one symbol"), no periodic expiry, no hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    min_length: usize,
    privileged_min_length: usize,
    max_length: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: NIST_MIN_LENGTH,
            privileged_min_length: PRIVILEGED_MIN_LENGTH,
            max_length: DEFAULT_MAX_LENGTH,
        }
    }
}

impl PasswordPolicy {
    /// The default policy: 8 characters (15 for privileged users), at most 64.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the minimum length for ordinary users (never below 8).
    pub fn with_min_length(mut self, min: usize) -> Result<Self, PolicyConfigError> {
        if min < NIST_MIN_LENGTH {
            return Err(PolicyConfigError::MinimumTooLow);
        }
        self.min_length = min;
        self.privileged_min_length = self.privileged_min_length.max(min);
        self.validated()
    }

    /// Sets the minimum length for privileged users (never below the ordinary minimum nor 15).
    pub fn with_privileged_min_length(mut self, min: usize) -> Result<Self, PolicyConfigError> {
        if min < PRIVILEGED_MIN_LENGTH || min < self.min_length {
            return Err(PolicyConfigError::MinimumTooLow);
        }
        self.privileged_min_length = min;
        self.validated()
    }

    /// Sets the maximum length (64..=1024).
    pub fn with_max_length(mut self, max: usize) -> Result<Self, PolicyConfigError> {
        if !(DEFAULT_MAX_LENGTH..=HARD_MAX_LENGTH).contains(&max) {
            return Err(PolicyConfigError::MaximumOutOfRange);
        }
        self.max_length = max;
        self.validated()
    }

    fn validated(self) -> Result<Self, PolicyConfigError> {
        if self.privileged_min_length > self.max_length {
            return Err(PolicyConfigError::MinimumAboveMaximum);
        }
        Ok(self)
    }

    /// The maximum length in characters.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The minimum length that applies to a user.
    pub fn min_length(&self, privileged: bool) -> usize {
        if privileged {
            self.privileged_min_length
        } else {
            self.min_length
        }
    }

    /// Checks a newly chosen password; on refusal, every applicable reason is listed.
    pub fn check(
        &self,
        password: &Password,
        context: &PasswordContext<'_>,
    ) -> Result<(), PasswordRejected> {
        let mut reasons = Vec::new();
        let text = password.expose_secret();
        // Count at most max+1 characters: enough to decide, and bounded on hostile input.
        let length = text.chars().take(self.max_length + 1).count();
        let minimum = self.min_length(context.privileged);
        if length < minimum {
            reasons.push(RefusalReason::TooShort { minimum, length });
        }
        if length > self.max_length {
            reasons.push(RefusalReason::TooLong {
                maximum: self.max_length,
            });
            // Nothing else is worth computing on an over-long input.
            return Err(PasswordRejected { reasons });
        }
        if text.chars().any(char::is_control) {
            reasons.push(RefusalReason::ControlCharacter);
        }
        let lower = zeroize::Zeroizing::new(text.to_lowercase());
        if common::contains(&lower) {
            reasons.push(RefusalReason::Common);
        }
        if contains_identifier(&lower, &context.identifiers) {
            reasons.push(RefusalReason::ContainsIdentifier);
        }
        let chars: Vec<char> = lower.chars().collect();
        if is_repetitive(&chars) {
            reasons.push(RefusalReason::Repetitive);
        } else if is_sequential(&chars) {
            reasons.push(RefusalReason::Sequential);
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(PasswordRejected { reasons })
        }
    }
}

fn contains_identifier(lower_password: &str, identifiers: &[&str]) -> bool {
    identifiers.iter().any(|id| {
        let id = id.trim().to_lowercase();
        let local = id.split('@').next().unwrap_or_default().to_owned();
        [id, local]
            .iter()
            .any(|w| w.chars().count() >= MIN_IDENTIFIER_LEN && lower_password.contains(w.as_str()))
    })
}

/// The whole password is one unit of 1 to 3 characters repeated.
fn is_repetitive(chars: &[char]) -> bool {
    (1..=3).any(|period| {
        chars.len() >= period * 2
            && chars.len() % period == 0
            && chars.chunks(period).all(|c| c == &chars[..period])
    })
}

/// Each character is the previous one plus one (or minus one) code point.
fn is_sequential(chars: &[char]) -> bool {
    if chars.len() < 2 {
        return false;
    }
    let steps: Vec<i64> = chars
        .windows(2)
        .map(|w| i64::from(u32::from(w[1])) - i64::from(u32::from(w[0])))
        .collect();
    steps.iter().all(|&s| s == 1) || steps.iter().all(|&s| s == -1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_cannot_go_below_nist() {
        assert_eq!(
            PasswordPolicy::new().with_min_length(6),
            Err(PolicyConfigError::MinimumTooLow)
        );
        assert_eq!(
            PasswordPolicy::new().with_max_length(32),
            Err(PolicyConfigError::MaximumOutOfRange)
        );
        assert!(PasswordPolicy::new().with_min_length(12).is_ok());
    }

    #[test]
    fn patterns() {
        let c = |s: &str| s.chars().collect::<Vec<_>>();
        assert!(is_repetitive(&c("aaaaaaaa")));
        assert!(is_repetitive(&c("abcabcabc")));
        assert!(!is_repetitive(&c("abcabcabd")));
        assert!(is_sequential(&c("abcdefghi")));
        assert!(is_sequential(&c("987654321")));
        assert!(!is_sequential(&c("13579bdf")));
    }
}
