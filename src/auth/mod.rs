//! Authentication building blocks: password hashing and policy, a TOTP second factor with
//! recovery codes, risk-based step-up, and failed-login throttling.
//!
//! The host owns the login pages and the user directory; these are the pieces its login flow
//! is made of:
//!
//! 1. [`LoginThrottle::check`] before anything else: a running back-off refuses the attempt
//!    unchecked (with a `Retry-After` and a [`SecurityEvent`] to audit).
//! 2. [`RiskPolicy::assess`] says what to ask for ([`Prompt`]) and which level the request
//!    needs ([`Aal`]), from the user type, the sensitivity of the data categories asked for,
//!    and context (new device, new address, session age).
//! 3. [`PasswordHasher::verify`] checks the password (or
//!    [`verify_unknown_user`](PasswordHasher::verify_unknown_user) spends the same time when
//!    the login name is unknown); [`PasswordCheck::MatchNeedsRehash`] says to store a fresh
//!    hash made with current parameters.
//! 4. For AAL2, [`TotpCredential::verify`] (a code works once) or
//!    [`RecoveryCodeSet::redeem`] (each code works once).
//! 5. [`LoginThrottle::record_failure`] on every failure (it returns the audit event) or
//!    [`LoginThrottle::record_success`]; [`id_token_claims`] gives the `acr` / `amr` claims.
//!
//! New passwords go through [`PasswordPolicy::check`] (NIST SP 800-63B: length, a shipped list
//! of common and breached passwords, no composition rules) before being hashed.
//!
//! ```
//! use fhirguard::auth::{Password, PasswordContext, PasswordPolicy};
//!
//! let policy = PasswordPolicy::default();
//! let ctx = PasswordContext::user(["maria@example.org"]);
//! assert!(policy.check(&Password::new("correct horse battery staple"), &ctx).is_ok());
//! let refused = policy.check(&Password::new("password1"), &ctx).unwrap_err();
//! assert_eq!(refused.reasons, [fhirguard::auth::RefusalReason::Common]);
//! ```
//!
//! See `docs/authentication.md` for the design and the decision tables.

mod assurance;
mod base32;
mod common;
mod password;
mod policy;
mod recovery;
mod risk;
mod throttle;
mod totp;

pub use assurance::{
    ACR_AAL1, ACR_AAL2, Aal, AuthClaims, AuthMethod, achieved_aal, id_token_claims,
};
pub use password::{
    HashAlgorithm, HashError, HashParams, HashParseError, MAX_ENCODED_ITERATIONS, MAX_ENCODED_LEN,
    MAX_SALT_LEN, MIN_ENCODED_ITERATIONS, MIN_SALT_LEN, Password, PasswordCheck, PasswordHash,
    PasswordHasher,
};
pub use policy::{
    DEFAULT_MAX_LENGTH, HARD_MAX_LENGTH, NIST_MIN_LENGTH, PRIVILEGED_MIN_LENGTH, PasswordContext,
    PasswordPolicy, PasswordRejected, PolicyConfigError, RefusalReason,
};
pub use recovery::{MAX_CODES, RecoveryCodeSet, RecoveryCodes, RecoveryError};
pub use risk::{
    DEFAULT_SENSITIVITIES, DefaultRiskPolicy, Prompt, RiskContext, RiskPolicy, RiskReason,
    RiskRequest, Sensitivity, SensitivityTable, Session, StepUp, UserType,
};
pub use throttle::{
    Backoff, FailureKind, FailureRecord, LoginAttempt, LoginThrottle, MemoryThrottleStore,
    SecurityEvent, SecurityEventKind, ThrottleConfig, ThrottleKey, ThrottleScope, ThrottleStore,
    Throttled,
};
pub use totp::{
    TotpAlgorithm, TotpCredential, TotpEnrollment, TotpError, TotpParams, TotpSecret, code_at,
    hotp, time_step,
};

/// Weak settings for tests and benchmarks only: never in production.
pub mod dangerous {
    use super::password::{HashError, HashParams, PasswordHasher};

    /// A hasher whose work factor may be below OWASP guidance (down to 1,000 iterations), so
    /// test suites need not spend a second per hash. Production code uses
    /// [`PasswordHasher::new`], which refuses such parameters.
    pub fn weak_hasher(params: HashParams) -> Result<PasswordHasher, HashError> {
        PasswordHasher::build(params)
    }
}
