//! OpenID Connect: the id_token with `fhirUser`, and the discovery documents
//! (`.well-known/smart-configuration`, `.well-known/openid-configuration`).

mod discovery;
mod id_token;

pub use discovery::{EndpointAuthMethods, OpenIdConfiguration, SmartConfiguration};
pub use id_token::{ID_TOKEN_TYP, IdTokenClaims, sign_id_token};
