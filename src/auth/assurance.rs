//! Authenticator assurance levels and the id_token `acr` / `amr` claims they map to.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An authenticator assurance level (NIST SP 800-63B §4). AAL3 (hardware-bound keys) is not
/// offered by this crate's authenticators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Aal {
    /// One factor: a memorised secret.
    Aal1,
    /// Two distinct factors: a password plus a one-time code or look-up secret.
    Aal2,
}

/// `acr` value for AAL1 (the identifiers login.gov and other US federal IdPs publish).
pub const ACR_AAL1: &str = "http://idmanagement.gov/ns/assurance/aal/1";
/// `acr` value for AAL2.
pub const ACR_AAL2: &str = "http://idmanagement.gov/ns/assurance/aal/2";

impl Aal {
    /// The `acr` claim value for this level.
    pub fn acr(self) -> &'static str {
        match self {
            Self::Aal1 => ACR_AAL1,
            Self::Aal2 => ACR_AAL2,
        }
    }

    /// Reads an `acr` value back (e.g. an `acr_values` request parameter); `None` if unknown.
    pub fn from_acr(acr: &str) -> Option<Self> {
        match acr {
            ACR_AAL1 => Some(Self::Aal1),
            ACR_AAL2 => Some(Self::Aal2),
            _ => None,
        }
    }
}

impl fmt::Display for Aal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Aal1 => "AAL1",
            Self::Aal2 => "AAL2",
        })
    }
}

/// A way the user proved who they are in this login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AuthMethod {
    /// A password (memorised secret).
    Password,
    /// A TOTP code from an authenticator app (something you have).
    Totp,
    /// A single-use recovery code (a look-up secret: something you have).
    RecoveryCode,
}

impl AuthMethod {
    fn is_possession(self) -> bool {
        matches!(self, Self::Totp | Self::RecoveryCode)
    }
}

/// What to put in the id_token for a completed login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthClaims {
    /// The `acr` claim: the assurance level reached.
    pub acr: String,
    /// The `amr` claim: RFC 8176 method references, in a stable order.
    pub amr: Vec<String>,
}

/// The assurance level reached by a set of completed authentication methods.
pub fn achieved_aal(methods: &[AuthMethod]) -> Option<Aal> {
    let password = methods.contains(&AuthMethod::Password);
    let possession = methods.iter().any(|m| m.is_possession());
    match (password, possession) {
        (true, true) => Some(Aal::Aal2),
        (true, false) | (false, true) => Some(Aal::Aal1),
        (false, false) => None,
    }
}

/// The `acr` / `amr` claim values for a login that used `methods`; `None` if no method was
/// used. `amr` uses RFC 8176 values: `pwd` (password), `otp` (TOTP), `mfa` (two factors).
/// A recovery code contributes only to `mfa`, since RFC 8176 has no value for look-up secrets.
pub fn id_token_claims(methods: &[AuthMethod]) -> Option<AuthClaims> {
    let aal = achieved_aal(methods)?;
    let mut amr = Vec::new();
    if methods.contains(&AuthMethod::Password) {
        amr.push("pwd".to_owned());
    }
    if methods.contains(&AuthMethod::Totp) {
        amr.push("otp".to_owned());
    }
    if aal == Aal::Aal2 {
        amr.push("mfa".to_owned());
    }
    Some(AuthClaims {
        acr: aal.acr().to_owned(),
        amr,
    })
}
