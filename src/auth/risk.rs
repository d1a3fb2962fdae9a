//! Risk-based step-up: the assurance a request needs, and what the login flow must ask for.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::Duration;

use super::assurance::Aal;
use crate::CategoryId;

/// Who is logging in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum UserType {
    /// A patient using the portal for her own record.
    Patient,
    /// A personal representative acting for a patient (parent, guardian, proxy).
    Representative,
    /// A clinician (staff with access to many patients' records).
    Clinician,
    /// An administrator of the EHR or the portal.
    Administrator,
}

impl UserType {
    /// Staff whose accounts reach many patients: they need AAL2 for everything and the longer
    /// minimum password length.
    pub fn is_privileged(self) -> bool {
        matches!(self, Self::Clinician | Self::Administrator)
    }
}

/// How much harm disclosure of a data category would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Sensitivity {
    /// Routine, low-harm data (demographics, vital signs, immunisations).
    Low,
    /// Clinical data whose disclosure could embarrass or harm (labs, problems, medications).
    Moderate,
    /// Narrative and specially protected data (clinical notes, mental health, substance use,
    /// reproductive and genetic data).
    High,
}

/// Sensitivity of each data category, as data the host can change. Categories not in the
/// table get the `unknown` sensitivity, `High` by default, so a new category fails safe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensitivityTable {
    entries: HashMap<CategoryId, Sensitivity>,
    unknown: Sensitivity,
}

/// The default table as data: (category id, sensitivity).
pub const DEFAULT_SENSITIVITIES: &[(&str, Sensitivity)] = &[
    ("demographics", Sensitivity::Low),
    ("patient-demographics", Sensitivity::Low),
    ("vital-signs", Sensitivity::Low),
    ("smoking-status", Sensitivity::Low),
    ("immunizations", Sensitivity::Low),
    ("care-team", Sensitivity::Low),
    ("goals", Sensitivity::Low),
    ("unique-device-identifiers", Sensitivity::Low),
    ("allergies", Sensitivity::Moderate),
    ("laboratory", Sensitivity::Moderate),
    ("problems", Sensitivity::Moderate),
    ("medications", Sensitivity::Moderate),
    ("procedures", Sensitivity::Moderate),
    ("encounters", Sensitivity::Moderate),
    ("health-concerns", Sensitivity::Moderate),
    ("diagnostic-imaging", Sensitivity::Moderate),
    ("clinical-notes", Sensitivity::High),
    ("assessment-and-plan", Sensitivity::High),
    ("mental-health", Sensitivity::High),
    ("substance-use", Sensitivity::High),
    ("sexual-and-reproductive-health", Sensitivity::High),
    ("genetics", Sensitivity::High),
];

impl Default for SensitivityTable {
    fn default() -> Self {
        let entries = DEFAULT_SENSITIVITIES
            .iter()
            .filter_map(|(id, s)| CategoryId::new(*id).ok().map(|id| (id, *s)))
            .collect();
        Self {
            entries,
            unknown: Sensitivity::High,
        }
    }
}

impl SensitivityTable {
    /// An empty table: every category gets `unknown`.
    pub fn empty(unknown: Sensitivity) -> Self {
        Self {
            entries: HashMap::new(),
            unknown,
        }
    }

    /// Sets one category's sensitivity.
    pub fn set(&mut self, category: CategoryId, sensitivity: Sensitivity) -> &mut Self {
        self.entries.insert(category, sensitivity);
        self
    }

    /// Sets the sensitivity of categories not in the table.
    pub fn set_unknown(&mut self, sensitivity: Sensitivity) -> &mut Self {
        self.unknown = sensitivity;
        self
    }

    /// A category's sensitivity.
    pub fn get(&self, category: &CategoryId) -> Sensitivity {
        self.entries.get(category).copied().unwrap_or(self.unknown)
    }

    /// The highest sensitivity among `categories` (`Low` for none).
    pub fn highest<'a>(&self, categories: impl IntoIterator<Item = &'a CategoryId>) -> Sensitivity {
        categories
            .into_iter()
            .map(|c| self.get(c))
            .max()
            .unwrap_or(Sensitivity::Low)
    }
}

/// The user's current authenticated session, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// The level reached when the session was authenticated.
    pub achieved: Aal,
    /// Time since that authentication.
    pub authenticated_ago: Duration,
}

/// Context the host knows about this attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RiskContext {
    /// The device (a long-lived cookie, say) has not been seen for this account before.
    pub new_device: bool,
    /// The source address (or its network) has not been seen for this account before.
    pub new_address: bool,
    /// The current session, or `None` when nobody is logged in.
    pub session: Option<Session>,
}

/// One request to assess.
#[derive(Debug, Clone, Copy)]
pub struct RiskRequest<'a> {
    /// Who.
    pub user_type: UserType,
    /// The data categories the request would reach (e.g. those on the approval page).
    pub categories: &'a [CategoryId],
    /// Host-supplied context.
    pub context: RiskContext,
}

/// Why a level was required; several may apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RiskReason {
    /// Clinicians and administrators always need AAL2.
    PrivilegedUser,
    /// A category of this sensitivity was asked for.
    Sensitivity(Sensitivity),
    /// A representative asked for moderately or highly sensitive data.
    RepresentativeAccess,
    /// Unfamiliar device.
    NewDevice,
    /// Unfamiliar source address.
    NewAddress,
    /// Nobody is logged in.
    NoSession,
    /// The session's authentication is older than the level's reauthentication limit.
    SessionExpired,
    /// The session's level is below what is needed.
    SessionBelowRequired,
}

/// What the login flow must ask the user for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Prompt {
    /// The session already suffices.
    Nothing,
    /// Only the second factor (the session's password login is recent enough).
    SecondFactor,
    /// A password (AAL1 login).
    Password,
    /// A password and then the second factor (AAL2 login).
    PasswordAndSecondFactor,
}

/// The outcome of a risk assessment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUp {
    /// The level the request needs: record it as the id_token `acr` once reached.
    pub required: Aal,
    /// What to ask for now.
    pub prompt: Prompt,
    /// Why, for the audit trail and for a message to the user.
    pub reasons: Vec<RiskReason>,
}

/// Decides the assurance a request needs. Implement it to plug in a host's own rules.
pub trait RiskPolicy: Send + Sync {
    /// Assesses one request.
    fn assess(&self, request: &RiskRequest<'_>) -> StepUp;
}

/// The default rules (documented as a table in `docs/authentication.md`):
///
/// | condition | level |
/// |---|---|
/// | clinician or administrator | AAL2 |
/// | any category of `High` sensitivity | AAL2 |
/// | representative, any category `Moderate` or higher | AAL2 |
/// | patient, `Moderate` category, and a new device or a new address | AAL2 |
/// | new device and new address together | AAL2 |
/// | otherwise | AAL1 |
///
/// A session suffices when its level is at least the required one and it was authenticated
/// within the level's limit (SP 800-63B: 30 days for AAL1, 12 hours for AAL2); an AAL1 session
/// recent enough for AAL2's limit only needs the second factor added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRiskPolicy {
    /// The sensitivity table.
    pub sensitivities: SensitivityTable,
    /// Reauthentication limit for AAL1 sessions.
    pub aal1_max_age: Duration,
    /// Reauthentication limit for AAL2 sessions.
    pub aal2_max_age: Duration,
}

impl Default for DefaultRiskPolicy {
    fn default() -> Self {
        Self {
            sensitivities: SensitivityTable::default(),
            aal1_max_age: Duration::days(30),
            aal2_max_age: Duration::hours(12),
        }
    }
}

impl DefaultRiskPolicy {
    /// The default policy with a host's sensitivity table.
    pub fn with_sensitivities(sensitivities: SensitivityTable) -> Self {
        Self {
            sensitivities,
            ..Self::default()
        }
    }

    fn max_age(&self, aal: Aal) -> Duration {
        match aal {
            Aal::Aal1 => self.aal1_max_age,
            Aal::Aal2 => self.aal2_max_age,
        }
    }
}

impl RiskPolicy for DefaultRiskPolicy {
    fn assess(&self, request: &RiskRequest<'_>) -> StepUp {
        let ctx = request.context;
        let sensitivity = self.sensitivities.highest(request.categories);
        let mut reasons = Vec::new();
        if request.user_type.is_privileged() {
            reasons.push(RiskReason::PrivilegedUser);
        }
        if sensitivity == Sensitivity::High {
            reasons.push(RiskReason::Sensitivity(Sensitivity::High));
        }
        if request.user_type == UserType::Representative && sensitivity >= Sensitivity::Moderate {
            reasons.push(RiskReason::RepresentativeAccess);
        }
        let unfamiliar = ctx.new_device || ctx.new_address;
        let moderate_and_unfamiliar = sensitivity == Sensitivity::Moderate && unfamiliar;
        if moderate_and_unfamiliar {
            reasons.push(RiskReason::Sensitivity(Sensitivity::Moderate));
        }
        if moderate_and_unfamiliar || (ctx.new_device && ctx.new_address) {
            if ctx.new_device {
                reasons.push(RiskReason::NewDevice);
            }
            if ctx.new_address {
                reasons.push(RiskReason::NewAddress);
            }
        }
        let required = if reasons.is_empty() {
            Aal::Aal1
        } else {
            Aal::Aal2
        };
        let prompt = match ctx.session {
            None => {
                reasons.push(RiskReason::NoSession);
                full_login(required)
            }
            Some(session) => {
                if session.authenticated_ago > self.max_age(session.achieved)
                    || session.authenticated_ago < Duration::ZERO
                {
                    reasons.push(RiskReason::SessionExpired);
                    full_login(required)
                } else if session.achieved >= required {
                    Prompt::Nothing
                } else if session.authenticated_ago <= self.max_age(required) {
                    reasons.push(RiskReason::SessionBelowRequired);
                    Prompt::SecondFactor
                } else {
                    reasons.push(RiskReason::SessionBelowRequired);
                    reasons.push(RiskReason::SessionExpired);
                    full_login(required)
                }
            }
        };
        StepUp {
            required,
            prompt,
            reasons,
        }
    }
}

fn full_login(required: Aal) -> Prompt {
    match required {
        Aal::Aal1 => Prompt::Password,
        Aal::Aal2 => Prompt::PasswordAndSecondFactor,
    }
}
