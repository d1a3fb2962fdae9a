//! Token / oidc (issue 4): the authorization server and resource-server validation.

mod access;
mod support;
