//! The right-of-access request and the grant it creates.
//!
//! A [`RightOfAccessRequest`] is what the patient (or her personal representative) approved on
//! the portal: which app, which data categories, the exact disclosure text shown, when and how.
//! A [`Grant`] is that request in force: it lasts until min(approval + 1 year, chosen end) and
//! then expires, or until it is revoked. Expired and revoked are final; a re-approval creates a
//! new grant, so history is never rewritten.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::{Date, Duration, Month, OffsetDateTime};

use super::error::ConsentError;
use super::status::ActiveGrant;
use crate::category::CategoryRegistry;
use crate::ids::{CategoryId, ClientId, GrantId, PatientId};

/// The longest client name, representative name or relationship kept, in bytes.
pub const MAX_NAME_LEN: usize = 200;
/// The longest user agent kept, in bytes (see [`RightOfAccessRequest::with_user_agent`]).
pub const MAX_USER_AGENT_LEN: usize = 512;
/// The longest revocation reason, in bytes.
pub const MAX_REASON_LEN: usize = 1000;
/// The longest disclosure version id, in bytes.
pub const MAX_VERSION_LEN: usize = 64;
/// The most categories one grant may name.
pub const MAX_CATEGORIES: usize = 256;

/// Who approved (or revoked) a grant.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Approver {
    /// The patient herself.
    Patient,
    /// A personal representative acting for the patient (HIPAA 45 CFR 164.502(g)).
    Representative {
        /// The representative's name as shown on the portal.
        name: String,
        /// The relationship to the patient ("parent", "legal guardian", "health care proxy").
        relationship: String,
    },
}

impl fmt::Debug for Approver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Approver::Patient => f.write_str("Patient"),
            // A representative's name is PHI about the patient: never in Debug output.
            Approver::Representative { relationship, .. } => f
                .debug_struct("Representative")
                .field("name", &"<redacted>")
                .field("relationship", relationship)
                .finish(),
        }
    }
}

impl Approver {
    fn validate(&self) -> Result<(), ConsentError> {
        if let Approver::Representative { name, relationship } = self {
            check_text("approver.name", name, MAX_NAME_LEN)?;
            check_text("approver.relationship", relationship, MAX_NAME_LEN)?;
        }
        Ok(())
    }
}

/// Which disclosure text the patient saw: its version id and the SHA-256 of its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DisclosureRef {
    /// The disclosure template's version id (for example `roa-2026-12`).
    pub version: String,
    /// SHA-256 of the exact UTF-8 text shown.
    pub sha256: [u8; 32],
}

impl DisclosureRef {
    /// The digest as 64 lowercase hex characters.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// How the patient expressed her approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ApprovalMethod {
    /// She pressed the portal's "Approve" button after reading the disclosure.
    ApproveButton,
}

impl ApprovalMethod {
    /// The method's wire name (`approve-button`).
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMethod::ApproveButton => "approve-button",
        }
    }

    /// Parses a wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "approve-button" => Some(ApprovalMethod::ApproveButton),
            _ => None,
        }
    }
}

/// The patient's HIPAA right-of-access request directing her data to an app (45 CFR
/// 164.524(c)(3)(ii)): the record of what she approved.
///
/// `chosen_end` is an instant (`OffsetDateTime`), not a date: a portal offering "until 31 March"
/// converts the date to the instant it means in the patient's time zone (usually the end of that
/// day) before building the request, so the store never guesses a zone.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RightOfAccessRequest {
    /// The patient whose data is disclosed.
    pub patient: PatientId,
    /// Who approved: the patient or her personal representative.
    pub approver: Approver,
    /// The designated third party: the app's OAuth client id.
    pub client_id: ClientId,
    /// The app's registered name, as shown in the disclosure.
    pub client_name: String,
    /// The data categories ticked.
    pub categories: BTreeSet<CategoryId>,
    /// The disclosure text shown.
    pub disclosure: DisclosureRef,
    /// When she approved.
    #[serde(with = "time::serde::rfc3339")]
    pub approved_at: OffsetDateTime,
    /// How she approved.
    pub method: ApprovalMethod,
    /// The browser's user agent, if the host records it.
    pub user_agent: Option<String>,
    /// The address the approval came from, if the host records it.
    pub address: Option<IpAddr>,
    /// The end she chose, if any (at most one year after `approved_at`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub chosen_end: Option<OffsetDateTime>,
}

impl fmt::Debug for RightOfAccessRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RightOfAccessRequest")
            .field("patient", &self.patient)
            .field("approver", &self.approver)
            .field("client_id", &self.client_id)
            .field("client_name", &self.client_name)
            .field("categories", &self.categories)
            .field("disclosure", &self.disclosure)
            .field("approved_at", &self.approved_at)
            .field("method", &self.method)
            .field(
                "user_agent",
                &self.user_agent.as_ref().map(|_| "<redacted>"),
            )
            .field("address", &self.address.as_ref().map(|_| "<redacted>"))
            .field("chosen_end", &self.chosen_end)
            .finish()
    }
}

impl RightOfAccessRequest {
    /// A request approved with the approve button, without user agent, address or end date.
    pub fn new(
        patient: PatientId,
        approver: Approver,
        client_id: ClientId,
        client_name: impl Into<String>,
        categories: BTreeSet<CategoryId>,
        disclosure: DisclosureRef,
        approved_at: OffsetDateTime,
    ) -> Self {
        Self {
            patient,
            approver,
            client_id,
            client_name: client_name.into(),
            categories,
            disclosure,
            approved_at,
            method: ApprovalMethod::ApproveButton,
            user_agent: None,
            address: None,
            chosen_end: None,
        }
    }

    /// Records the user agent, cut to [`MAX_USER_AGENT_LEN`] bytes (at a character boundary)
    /// with control characters removed: a browser's header must not block a patient's request.
    #[must_use]
    pub fn with_user_agent(mut self, user_agent: &str) -> Self {
        let mut out = String::new();
        for c in user_agent.chars().filter(|c| !c.is_control()) {
            if out.len() + c.len_utf8() > MAX_USER_AGENT_LEN {
                break;
            }
            out.push(c);
        }
        self.user_agent = (!out.is_empty()).then_some(out);
        self
    }

    /// Records the address the approval came from.
    #[must_use]
    pub fn with_address(mut self, address: IpAddr) -> Self {
        self.address = Some(address);
        self
    }

    /// Records the end the patient chose.
    #[must_use]
    pub fn with_chosen_end(mut self, end: OffsetDateTime) -> Self {
        self.chosen_end = Some(end);
        self
    }

    /// Checks that every category is one `registry` knows.
    pub fn check_categories(&self, registry: &CategoryRegistry) -> Result<(), ConsentError> {
        match self.categories.iter().find(|c| !registry.knows(c)) {
            Some(unknown) => Err(ConsentError::UnknownCategory(unknown.clone())),
            None => Ok(()),
        }
    }

    /// Validates the request at `now` and computes when its grant ends:
    /// min(approval + 1 year, chosen end). Every store calls this before storing.
    pub fn validate(&self, now: OffsetDateTime) -> Result<OffsetDateTime, ConsentError> {
        check_text("client_name", &self.client_name, MAX_NAME_LEN)?;
        check_text(
            "disclosure.version",
            &self.disclosure.version,
            MAX_VERSION_LEN,
        )?;
        if let Some(ua) = &self.user_agent {
            check_text("user_agent", ua, MAX_USER_AGENT_LEN)?;
        }
        self.approver.validate()?;
        if self.categories.is_empty() {
            return Err(ConsentError::NoCategories);
        }
        if self.categories.len() > MAX_CATEGORIES {
            return Err(ConsentError::TooManyCategories {
                max: MAX_CATEGORIES,
            });
        }
        // A little clock skew between the portal's node and the store's is tolerated.
        if self.approved_at > now + Duration::minutes(5) {
            return Err(ConsentError::ApprovalInFuture {
                approved_at: self.approved_at,
            });
        }
        let latest = one_year_after(self.approved_at);
        match self.chosen_end {
            None => {
                if latest <= now {
                    return Err(ConsentError::EndDateInPast { chosen: latest });
                }
                Ok(latest)
            }
            Some(chosen) if chosen > latest => {
                Err(ConsentError::EndDateBeyondOneYear { chosen, latest })
            }
            Some(chosen) if chosen <= self.approved_at || chosen <= now => {
                Err(ConsentError::EndDateInPast { chosen })
            }
            Some(chosen) => Ok(chosen),
        }
    }
}

/// The same instant one calendar year later. 29 February maps to 28 February, so a grant never
/// outlives a year.
pub fn one_year_after(t: OffsetDateTime) -> OffsetDateTime {
    let date = t.date();
    let year = date.year().saturating_add(1);
    let next = Date::from_calendar_date(year, date.month(), date.day())
        .or_else(|_| Date::from_calendar_date(year, Month::February, 28));
    match next {
        Ok(d) => t.replace_date(d),
        // Only at the end of `time`'s range: a plain 365 days is then the best we can say.
        Err(_) => t.saturating_add(Duration::days(365)),
    }
}

pub(crate) fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), ConsentError> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(ConsentError::InvalidText { field, max });
    }
    Ok(())
}

/// The state a grant is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum GrantState {
    /// In force (until its `ends_at`).
    Active,
    /// Reached its end date. Final.
    Expired,
    /// Revoked by the patient or her representative. Final.
    Revoked {
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        /// By whom.
        by: Approver,
        /// The reason given (free text the patient typed: treat as PHI).
        reason: String,
    },
}

impl GrantState {
    /// The state without its details.
    pub fn kind(&self) -> GrantStateKind {
        match self {
            GrantState::Active => GrantStateKind::Active,
            GrantState::Expired => GrantStateKind::Expired,
            GrantState::Revoked { .. } => GrantStateKind::Revoked,
        }
    }
}

/// A grant's state without its details (for errors and queries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum GrantStateKind {
    /// In force.
    Active,
    /// Reached its end.
    Expired,
    /// Revoked.
    Revoked,
}

impl GrantStateKind {
    /// The state's name as stored (`active`, `expired`, `revoked`).
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStateKind::Active => "active",
            GrantStateKind::Expired => "expired",
            GrantStateKind::Revoked => "revoked",
        }
    }
}

/// An operation that changes a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transition {
    /// Revocation.
    Revoke,
    /// Removing categories.
    Narrow,
    /// Marking as expired.
    Expire,
}

/// One narrowing: categories un-ticked after approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Narrowing {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The categories removed.
    pub removed: BTreeSet<CategoryId>,
}

/// A right-of-access request in force (or once in force).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The grant's id; every token issued under it carries it.
    pub id: GrantId,
    /// What was approved.
    pub request: RightOfAccessRequest,
    /// The categories currently shared (the request's, minus any narrowing).
    pub categories: BTreeSet<CategoryId>,
    /// min(approval + 1 year, chosen end).
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    /// The stored state. Use [`Grant::status_at`] for the effective one: a grant whose end has
    /// passed is expired even before a store's `expire_due` marked it.
    pub state: GrantState,
    /// Narrowings, oldest first.
    pub narrowings: Vec<Narrowing>,
}

impl Grant {
    /// A new active grant for a validated request (see [`RightOfAccessRequest::validate`]).
    pub fn new(id: GrantId, request: RightOfAccessRequest, ends_at: OffsetDateTime) -> Self {
        Self {
            id,
            categories: request.categories.clone(),
            request,
            ends_at,
            state: GrantState::Active,
            narrowings: Vec::new(),
        }
    }

    /// The patient.
    pub fn patient(&self) -> &PatientId {
        &self.request.patient
    }

    /// The app.
    pub fn client_id(&self) -> &ClientId {
        &self.request.client_id
    }

    /// When the patient approved.
    pub fn approved_at(&self) -> OffsetDateTime {
        self.request.approved_at
    }

    /// The effective state at `now`: an active grant whose `ends_at` is at or before `now` is
    /// [`GrantState::Expired`].
    pub fn status_at(&self, now: OffsetDateTime) -> GrantState {
        match &self.state {
            GrantState::Active if self.ends_at <= now => GrantState::Expired,
            other => other.clone(),
        }
    }

    /// Whether the grant may be used at `now`.
    pub fn is_active_at(&self, now: OffsetDateTime) -> bool {
        matches!(self.state, GrantState::Active) && self.ends_at > now
    }

    /// The instant the grant stopped being usable, if it did: the revocation time, or its end
    /// for an expired one. Retention is counted from there.
    pub fn closed_at(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        match &self.state {
            GrantState::Revoked { at, .. } => Some(*at),
            GrantState::Expired => Some(self.ends_at),
            GrantState::Active if self.ends_at <= now => Some(self.ends_at),
            GrantState::Active => None,
        }
    }

    /// What the request path needs of this grant.
    pub fn to_active(&self) -> ActiveGrant {
        ActiveGrant {
            grant_id: self.id.clone(),
            patient: self.request.patient.clone(),
            client_id: self.request.client_id.clone(),
            categories: self.categories.clone(),
            ends_at: self.ends_at,
        }
    }

    /// Revokes the grant at `now`. Refused (typed) unless it is active at `now`.
    pub fn apply_revoke(
        &mut self,
        by: Approver,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<(), ConsentError> {
        self.require_active(Transition::Revoke, now)?;
        by.validate()?;
        if reason.len() > MAX_REASON_LEN || reason.chars().any(|c| c.is_control() && c != '\n') {
            return Err(ConsentError::InvalidText {
                field: "reason",
                max: MAX_REASON_LEN,
            });
        }
        self.state = GrantState::Revoked {
            at: now,
            by,
            reason: reason.to_owned(),
        };
        Ok(())
    }

    /// Removes `remove` from the shared categories at `now`. Every category must currently be
    /// shared, and at least one must remain (revoke the grant to stop all sharing).
    pub fn apply_narrow(
        &mut self,
        remove: &BTreeSet<CategoryId>,
        now: OffsetDateTime,
    ) -> Result<(), ConsentError> {
        self.require_active(Transition::Narrow, now)?;
        if remove.is_empty() {
            return Err(ConsentError::NoCategories);
        }
        if let Some(missing) = remove.iter().find(|c| !self.categories.contains(*c)) {
            return Err(ConsentError::CategoryNotGranted(missing.clone()));
        }
        if remove.len() == self.categories.len() {
            return Err(ConsentError::NoCategories);
        }
        self.categories.retain(|c| !remove.contains(c));
        self.narrowings.push(Narrowing {
            at: now,
            removed: remove.clone(),
        });
        Ok(())
    }

    /// Marks an active grant whose end has passed as expired. Refused for a grant that is
    /// revoked, already expired, or not yet at its end.
    pub fn apply_expire(&mut self, now: OffsetDateTime) -> Result<(), ConsentError> {
        match self.state.kind() {
            GrantStateKind::Active if self.ends_at <= now => {
                self.state = GrantState::Expired;
                Ok(())
            }
            from => Err(ConsentError::IllegalTransition {
                from,
                to: Transition::Expire,
            }),
        }
    }

    fn require_active(&self, to: Transition, now: OffsetDateTime) -> Result<(), ConsentError> {
        match self.status_at(now).kind() {
            GrantStateKind::Active => Ok(()),
            from => Err(ConsentError::IllegalTransition { from, to }),
        }
    }
}
