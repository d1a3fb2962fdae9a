//! The EHR launch: launch handles and the context they carry.
//!
//! In an EHR launch the EHR, not the app, starts the flow: it opens the app's registered
//! launch URL with `iss` (the FHIR base URL, exactly) and `launch` (an opaque handle). The app
//! sends the handle back in its authorization request, and the server answers the token request
//! with the context the handle stood for: the patient, the encounter, UI hints. The handle is
//! what ties the app's request to the EHR session that launched it, so it is:
//!
//! * **random** (256 bits) and stored only as its SHA-256 hash, like codes and refresh tokens;
//! * **bound to one client**: another app presenting it gets `invalid_request`;
//! * **short-lived** ([`LAUNCH_TTL`], five minutes) and **single use**: the approval that
//!   issues the code consumes it, so a replayed or leaked launch URL yields nothing;
//! * **binding**: the approval must be for the launch's patient (and user, when the launch
//!   names one) — a handle minted for one patient cannot carry another patient's approval.
//!
//! Storage is behind [`LaunchStore`]; [`InMemoryLaunchStore`] serves a single node.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

use super::store::{StoreError, TokenHash};
use crate::ids::{ClientId, PatientId};

/// How long a launch handle may wait for the app's authorization request to be approved.
pub const LAUNCH_TTL: Duration = Duration::minutes(5);

/// Longest `launch` parameter accepted (handles this server issues are 43 characters).
pub const MAX_LAUNCH_LEN: usize = 256;

/// Most unexpired handles [`InMemoryLaunchStore`] holds; past it, new launches are refused
/// rather than letting a flood of launches grow memory without bound.
pub const MAX_PENDING_LAUNCHES: usize = 100_000;

/// What the EHR knew when it launched the app.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct LaunchContext {
    /// The app being launched; only it may present the handle.
    pub client_id: ClientId,
    /// The patient in context (the token response's `patient`).
    pub patient: Option<PatientId>,
    /// The encounter in context (`encounter`).
    pub encounter: Option<String>,
    /// The user the EHR launched for (the approval's subject must match), if it binds one.
    pub subject: Option<String>,
    /// Additional `fhirContext` entries.
    pub fhir_context: Vec<serde_json::Value>,
    /// `need_patient_banner`: whether the app must show the patient's name itself.
    pub need_patient_banner: Option<bool>,
    /// `smart_style_url`: the EHR's style document for the embedded app.
    pub smart_style_url: Option<String>,
    /// `intent`.
    pub intent: Option<String>,
    /// `tenant`.
    pub tenant: Option<String>,
}

impl LaunchContext {
    /// A launch of `client_id` with no context yet; set the fields that apply.
    pub fn new(client_id: ClientId) -> Self {
        Self {
            client_id,
            patient: None,
            encounter: None,
            subject: None,
            fhir_context: Vec::new(),
            need_patient_banner: None,
            smart_style_url: None,
            intent: None,
            tenant: None,
        }
    }

    /// The same launch with `patient` in context.
    #[must_use]
    pub fn with_patient(mut self, patient: PatientId) -> Self {
        self.patient = Some(patient);
        self
    }

    /// The same launch bound to the user `subject` (the approval's subject must equal it).
    #[must_use]
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }
}

impl fmt::Debug for LaunchContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Who the launch is about stays out of logs.
        f.debug_struct("LaunchContext")
            .field("client_id", &self.client_id)
            .field("patient", &self.patient.as_ref().map(|_| "<set>"))
            .field("encounter", &self.encounter.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

/// A launch the EHR started: the handle and the URL to open.
#[derive(Clone, PartialEq, Eq)]
pub struct EhrLaunch {
    /// The opaque handle (the `launch` parameter).
    pub handle: String,
    /// The app's launch URL with `iss` and `launch`, ready for a redirect.
    pub url: String,
}

impl fmt::Debug for EhrLaunch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EhrLaunch(<redacted>)")
    }
}

/// Why the EHR could not launch an app.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The server was built without a [`LaunchStore`] (see
    /// [`AuthorizationServer::with_launch_store`](super::AuthorizationServer::with_launch_store)).
    #[error("the EHR launch is not enabled on this server")]
    NotEnabled,
    /// No client with that id.
    #[error("the client is unknown")]
    UnknownClient,
    /// The client registered no launch URL, or may not use the authorization-code flow.
    #[error("the client cannot be launched from the EHR")]
    NotLaunchable,
    /// The store failed or is full.
    #[error("the launch could not be stored: {0}")]
    Store(StoreError),
    /// The operating system's random source failed.
    #[error("random source failed")]
    Random,
    /// A `fhirContext` entry is not one SMART allows ([`check_fhir_context`]).
    #[error("fhirContext: {0}")]
    FhirContext(FhirContextError),
}

/// Why a `fhirContext` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FhirContextError {
    /// Not a JSON object.
    #[error("entry {0} is not an object")]
    NotAnObject(usize),
    /// No non-empty `reference`, `canonical` or `identifier`.
    #[error("entry {0} has no reference, canonical or identifier")]
    NothingReferenced(usize),
    /// `role` is not a non-empty string, or is neither `launch` nor an absolute URI.
    #[error("entry {0} has an invalid role")]
    BadRole(usize),
    /// A Patient or Encounter in the launch role: those go in the top-level `patient` and
    /// `encounter` parameters.
    #[error("entry {0} puts a Patient or Encounter in the launch role")]
    PatientOrEncounterInLaunchRole(usize),
}

/// Checks `fhirContext` entries as SMART App Launch 2.2 (scopes-and-launch-context) has them:
/// each an object with at least one of `reference`, `canonical` or `identifier`; a `role`, when
/// present, a non-empty string that is `launch` (the default) or an absolute URI; and no
/// Patient or Encounter unless its role is other than `launch` (they have the top-level
/// `patient` and `encounter` parameters).
pub fn check_fhir_context(entries: &[serde_json::Value]) -> Result<(), FhirContextError> {
    for (i, entry) in entries.iter().enumerate() {
        let object = entry.as_object().ok_or(FhirContextError::NotAnObject(i))?;
        let present = |name: &str| match object.get(name) {
            Some(serde_json::Value::String(s)) => !s.is_empty(),
            Some(serde_json::Value::Object(o)) => !o.is_empty(),
            _ => false,
        };
        if !(present("reference") || present("canonical") || present("identifier")) {
            return Err(FhirContextError::NothingReferenced(i));
        }
        let launch_role = match object.get("role") {
            None => true,
            Some(serde_json::Value::String(role)) if role == "launch" => true,
            Some(serde_json::Value::String(role)) if is_absolute_uri(role) => false,
            Some(_) => return Err(FhirContextError::BadRole(i)),
        };
        let ty = object
            .get("type")
            .and_then(serde_json::Value::as_str)
            .or_else(|| {
                let reference = object.get("reference")?.as_str()?;
                let mut parts = reference.rsplit('/');
                let last = parts.next()?;
                let before = parts.next()?;
                // `Type/id` or `…/Type/id/_history/n`.
                Some(
                    if last.chars().all(|c| c.is_ascii_digit()) && before == "_history" {
                        parts.nth(1)?
                    } else {
                        before
                    },
                )
            });
        if launch_role && matches!(ty, Some("Patient" | "Encounter")) {
            return Err(FhirContextError::PatientOrEncounterInLaunchRole(i));
        }
    }
    Ok(())
}

/// `scheme:` followed by something, the scheme a letter then letters, digits, `+`, `-`, `.`
/// (RFC 3986 §3.1), with no whitespace.
fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !s.chars().any(char::is_whitespace)
}

/// Where launch handles wait for the app's authorization request.
pub trait LaunchStore: Send + Sync {
    /// Stores a new handle (by hash) valid until `expires_at`.
    fn put_launch(
        &self,
        handle: TokenHash,
        context: LaunchContext,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// The context of an unexpired, unused handle, leaving it in place (the authorization
    /// request is checked before the user has approved anything).
    fn launch(&self, handle: &TokenHash, now: OffsetDateTime) -> Option<LaunchContext>;

    /// The context of an unexpired, unused handle, consuming it: a second call returns `None`.
    fn take_launch(&self, handle: &TokenHash, now: OffsetDateTime) -> Option<LaunchContext>;
}

type PendingLaunches = HashMap<TokenHash, (LaunchContext, OffsetDateTime)>;

/// The in-memory [`LaunchStore`] for tests and single-node deployments.
#[derive(Debug, Default)]
pub struct InMemoryLaunchStore {
    inner: Mutex<PendingLaunches>,
}

impl InMemoryLaunchStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PendingLaunches> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LaunchStore for InMemoryLaunchStore {
    fn put_launch(
        &self,
        handle: TokenHash,
        context: LaunchContext,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut map = self.lock();
        if map.len() >= MAX_PENDING_LAUNCHES {
            // Expired entries go first; only a store full of live launches refuses.
            let now = expires_at - LAUNCH_TTL;
            map.retain(|_, (_, exp)| *exp > now);
            if map.len() >= MAX_PENDING_LAUNCHES {
                return Err(StoreError::Backend("too many pending launches".to_owned()));
            }
        }
        map.insert(handle, (context, expires_at));
        Ok(())
    }

    fn launch(&self, handle: &TokenHash, now: OffsetDateTime) -> Option<LaunchContext> {
        let map = self.lock();
        map.get(handle)
            .filter(|(_, exp)| *exp > now)
            .map(|(ctx, _)| ctx.clone())
    }

    fn take_launch(&self, handle: &TokenHash, now: OffsetDateTime) -> Option<LaunchContext> {
        let mut map = self.lock();
        map.remove(handle)
            .filter(|(_, exp)| *exp > now)
            .map(|(ctx, _)| ctx)
    }
}
