//! The token store: authorization codes, refresh-token families, the client-assertion `jti`
//! cache and revoked access tokens.
//!
//! Synchronous and small on purpose, so a SQL store can implement it with one statement per
//! method. Codes and refresh tokens are kept only as SHA-256 hashes ([`TokenHash`]): they are
//! 256-bit random values, so a plain hash makes a stolen table useless without slowing the
//! token endpoint.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;

use ring::digest::{SHA256, digest};
use time::OffsetDateTime;

use super::access::RevocationList;
use crate::ids::{ClientId, GrantId, PatientId};
use crate::scope::ScopeSet;

/// The SHA-256 of a code or refresh token: the only form in which they are stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// Hashes a presented token.
    pub fn of(token: &str) -> Self {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
        Self(out)
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

/// What an authorization binds together: the grant, the granted scopes and the SMART launch
/// context returned with every token issued under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantContext {
    /// The consent grant.
    pub grant_id: GrantId,
    /// The granted scopes.
    pub scope: ScopeSet,
    /// The end user's stable subject identifier (id_token `sub`).
    pub subject: String,
    /// Patient in context.
    pub patient: Option<PatientId>,
    /// Encounter in context (bare id).
    pub encounter: Option<String>,
    /// The user as a FHIR resource (`Patient/355`, absolute or relative to the FHIR base).
    pub fhir_user: Option<String>,
    /// `fhirContext` entries (JSON objects or relative reference strings).
    pub fhir_context: Vec<serde_json::Value>,
    /// `need_patient_banner`.
    pub need_patient_banner: Option<bool>,
    /// `smart_style_url`.
    pub smart_style_url: Option<String>,
    /// `intent`.
    pub intent: Option<String>,
    /// `tenant`.
    pub tenant: Option<String>,
}

/// A stored authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    /// The client it was issued to.
    pub client_id: ClientId,
    /// The redirect URI of the authorize request (must be repeated exactly).
    pub redirect_uri: String,
    /// The S256 PKCE challenge.
    pub code_challenge: String,
    /// The family every token issued from this code belongs to (revoked on code reuse).
    pub family_id: String,
    /// The grant and context.
    pub context: GrantContext,
    /// The OIDC `nonce`, echoed in the id_token.
    pub nonce: Option<String>,
    /// When the user authenticated (id_token `auth_time`).
    pub auth_time: OffsetDateTime,
    /// Expiry (at most 60 s after issue).
    pub expires_at: OffsetDateTime,
}

/// The result of redeeming a code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodeRedemption {
    /// First use of an unexpired code: the record, now marked used.
    Fresh(Box<CodeRecord>),
    /// The code was already redeemed: the caller revokes `family_id`.
    Reused {
        /// The family issued from the first redemption.
        family_id: String,
    },
    /// The code expired before use.
    Expired,
    /// No such code.
    Unknown,
}

/// A refresh-token family: one authorization's chain of rotated refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFamily {
    /// Family id (also carried by the family's access tokens as `fam`).
    pub family_id: String,
    /// The client it is bound to.
    pub client_id: ClientId,
    /// Grant and context; `scope` is the current (possibly narrowed) scope.
    pub context: GrantContext,
    /// When the current refresh token stops working (never past the grant's end).
    pub expires_at: OffsetDateTime,
}

/// The result of looking up a presented refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshLookup {
    /// The family's current token.
    Current(Box<RefreshFamily>),
    /// A token of the family that was already rotated out: a replay. The caller revokes the
    /// family.
    RotatedOut {
        /// The family to revoke.
        family_id: String,
        /// The client the family is bound to.
        client_id: ClientId,
    },
    /// The family was revoked.
    Revoked,
    /// The token expired.
    Expired,
    /// No such token.
    Unknown,
}

/// A storage failure (the SQL stores map their errors here). Never carries token material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed; the message is safe to log.
    #[error("token store failure: {0}")]
    Backend(String),
    /// A record with this key already exists.
    #[error("token store key collision")]
    Duplicate,
}

/// Codes, refresh families, assertion `jti`s and revoked access tokens.
pub trait TokenStore: RevocationList {
    /// Stores a new code.
    fn put_code(&self, code: TokenHash, record: CodeRecord) -> Result<(), StoreError>;
    /// Redeems a code: the first call returns it and marks it used; later calls report reuse
    /// (keep used codes at least until their expiry, so reuse is detected).
    fn redeem_code(
        &self,
        code: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<CodeRedemption, StoreError>;
    /// Starts a family with its first refresh token.
    fn put_refresh(&self, token: TokenHash, family: RefreshFamily) -> Result<(), StoreError>;
    /// Looks a refresh token up without changing anything.
    fn lookup_refresh(
        &self,
        token: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<RefreshLookup, StoreError>;
    /// Replaces the family's current token `old` by `new` with the (same or narrower) scope
    /// and expiry given. Returns false, changing nothing, when `old` is no longer current
    /// (a concurrent rotation won): the caller treats that as reuse.
    fn rotate_refresh(
        &self,
        family_id: &str,
        old: &TokenHash,
        new: TokenHash,
        scope: &ScopeSet,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Revokes a family: its refresh tokens stop working and its access tokens fail validation.
    fn revoke_family(&self, family_id: &str) -> Result<(), StoreError>;
    /// Records a client assertion's `jti`. False when this client already used it (a replay).
    fn record_jti(
        &self,
        client: &ClientId,
        jti: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Revokes one access token by `jti` until it would have expired anyway.
    fn revoke_access_token(&self, jti: &str, expires_at: OffsetDateTime) -> Result<(), StoreError>;
}

#[derive(Debug)]
enum CodeState {
    Unused(Box<CodeRecord>),
    Used {
        family_id: String,
        expires_at: OffsetDateTime,
    },
}

#[derive(Debug)]
struct Family {
    family: RefreshFamily,
    current: TokenHash,
    revoked: bool,
}

#[derive(Debug, Default)]
struct Memory {
    codes: HashMap<TokenHash, CodeState>,
    families: HashMap<String, Family>,
    /// Every refresh token ever issued → its family.
    refresh: HashMap<TokenHash, String>,
    revoked_families: HashSet<String>,
    jtis: HashMap<(ClientId, String), OffsetDateTime>,
    revoked_jtis: HashMap<String, OffsetDateTime>,
}

/// The in-memory [`TokenStore`] for tests and single-node deployments.
#[derive(Debug, Default)]
pub struct InMemoryTokenStore {
    inner: Mutex<Memory>,
}

impl InMemoryTokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets what can no longer matter at `now`: used or expired codes past their expiry,
    /// `jti`s past their assertion's expiry, revoked access tokens past their expiry.
    pub fn prune(&self, now: OffsetDateTime) {
        let mut m = self.lock();
        m.codes.retain(|_, c| match c {
            CodeState::Unused(r) => r.expires_at > now,
            // Keep used codes a while past expiry so a late replay still revokes.
            CodeState::Used { expires_at, .. } => *expires_at + time::Duration::hours(1) > now,
        });
        m.jtis.retain(|_, exp| *exp > now);
        m.revoked_jtis.retain(|_, exp| *exp > now);
    }
}

impl RevocationList for InMemoryTokenStore {
    fn is_revoked(&self, jti: &str, family: Option<&str>, now: OffsetDateTime) -> bool {
        let m = self.lock();
        family.is_some_and(|f| m.revoked_families.contains(f))
            || m.revoked_jtis.get(jti).is_some_and(|exp| *exp > now)
    }
}

impl TokenStore for InMemoryTokenStore {
    fn put_code(&self, code: TokenHash, record: CodeRecord) -> Result<(), StoreError> {
        let mut m = self.lock();
        if m.codes.contains_key(&code) {
            return Err(StoreError::Duplicate);
        }
        m.codes.insert(code, CodeState::Unused(Box::new(record)));
        Ok(())
    }

    fn redeem_code(
        &self,
        code: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<CodeRedemption, StoreError> {
        let mut m = self.lock();
        let Some(state) = m.codes.get_mut(code) else {
            return Ok(CodeRedemption::Unknown);
        };
        match state {
            CodeState::Used { family_id, .. } => Ok(CodeRedemption::Reused {
                family_id: family_id.clone(),
            }),
            CodeState::Unused(record) => {
                let record = record.clone();
                *state = CodeState::Used {
                    family_id: record.family_id.clone(),
                    expires_at: record.expires_at,
                };
                if record.expires_at <= now {
                    Ok(CodeRedemption::Expired)
                } else {
                    Ok(CodeRedemption::Fresh(record))
                }
            }
        }
    }

    fn put_refresh(&self, token: TokenHash, family: RefreshFamily) -> Result<(), StoreError> {
        let mut m = self.lock();
        if m.refresh.contains_key(&token) || m.families.contains_key(&family.family_id) {
            return Err(StoreError::Duplicate);
        }
        m.refresh.insert(token, family.family_id.clone());
        let revoked = m.revoked_families.contains(&family.family_id);
        m.families.insert(
            family.family_id.clone(),
            Family {
                family,
                current: token,
                revoked,
            },
        );
        Ok(())
    }

    fn lookup_refresh(
        &self,
        token: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<RefreshLookup, StoreError> {
        let m = self.lock();
        let Some(family_id) = m.refresh.get(token) else {
            return Ok(RefreshLookup::Unknown);
        };
        let Some(family) = m.families.get(family_id) else {
            return Ok(RefreshLookup::Unknown);
        };
        if family.revoked {
            return Ok(RefreshLookup::Revoked);
        }
        if family.current != *token {
            return Ok(RefreshLookup::RotatedOut {
                family_id: family_id.clone(),
                client_id: family.family.client_id.clone(),
            });
        }
        if family.family.expires_at <= now {
            return Ok(RefreshLookup::Expired);
        }
        Ok(RefreshLookup::Current(Box::new(family.family.clone())))
    }

    fn rotate_refresh(
        &self,
        family_id: &str,
        old: &TokenHash,
        new: TokenHash,
        scope: &ScopeSet,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut m = self.lock();
        if m.refresh.contains_key(&new) {
            return Err(StoreError::Duplicate);
        }
        let Some(family) = m.families.get_mut(family_id) else {
            return Ok(false);
        };
        if family.revoked || family.current != *old {
            return Ok(false);
        }
        family.current = new;
        family.family.context.scope = scope.clone();
        family.family.expires_at = expires_at;
        m.refresh.insert(new, family_id.to_owned());
        Ok(true)
    }

    fn revoke_family(&self, family_id: &str) -> Result<(), StoreError> {
        let mut m = self.lock();
        m.revoked_families.insert(family_id.to_owned());
        if let Some(family) = m.families.get_mut(family_id) {
            family.revoked = true;
        }
        Ok(())
    }

    fn record_jti(
        &self,
        client: &ClientId,
        jti: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut m = self.lock();
        let key = (client.clone(), jti.to_owned());
        if m.jtis.get(&key).is_some_and(|exp| *exp > now) {
            return Ok(false);
        }
        m.jtis.insert(key, expires_at);
        Ok(true)
    }

    fn revoke_access_token(&self, jti: &str, expires_at: OffsetDateTime) -> Result<(), StoreError> {
        let mut m = self.lock();
        m.revoked_jtis.insert(jti.to_owned(), expires_at);
        Ok(())
    }
}
