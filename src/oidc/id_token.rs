//! The id_token (OpenID Connect Core §2) with SMART's `fhirUser` claim.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::token::{KeyError, SigningKey};

/// The JOSE `typ` of an id_token (`JWT`, as OIDC clients expect).
pub const ID_TOKEN_TYP: &str = "JWT";

/// The claims of a fhirguard id_token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    /// The issuer (equal to the OIDC configuration's `issuer`).
    pub iss: String,
    /// The user's stable subject id (≤ 255 characters).
    pub sub: String,
    /// The client id.
    pub aud: String,
    /// Expiry.
    pub exp: i64,
    /// Issue time.
    pub iat: i64,
    /// When the user authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The authorize request's `nonce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The user as an absolute FHIR resource URL (`{base}/Patient/355`), when `fhirUser` was
    /// granted.
    #[serde(rename = "fhirUser", default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
}

impl fmt::Debug for IdTokenClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdTokenClaims")
            .field("iss", &self.iss)
            .field("aud", &self.aud)
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

/// Signs `claims` with `key` (RS256 by default configuration, as SMART requires).
pub fn sign_id_token(key: &SigningKey, claims: &IdTokenClaims) -> Result<String, KeyError> {
    key.sign_jwt(ID_TOKEN_TYP, claims)
}
