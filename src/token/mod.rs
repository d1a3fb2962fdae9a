//! Authorization-server core: clients, authorize, codes, PKCE, the token endpoint, refresh
//! families, introspection, revocation, JWT access tokens, keys/JWKS and resource-server
//! validation. Protocol logic without I/O; storage and keys behind traits.
