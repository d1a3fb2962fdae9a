//! Token / oidc (issue 4): the authorization server and resource-server validation.

mod access;
mod authorize;
mod client_auth;
mod discovery;
mod harness;
mod interop;
mod introspection;
mod jwks_url;
mod launch;
mod server;
mod support;
