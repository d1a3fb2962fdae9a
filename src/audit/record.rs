//! The audit record and its vocabulary.
//!
//! Every field is typed: identifiers are validated newtypes with a small alphabet, everything
//! else is an enum, a number, an IP address or a timestamp. There is deliberately no field of
//! type `String`: a resource body, a search value (`name=Smith`), a bearer token or a password
//! has nowhere to go. Validated identifiers refuse `@`, spaces, `=` and `/`, so not even an
//! e-mail address or a `key=value` pair fits in one; deserialisation refuses unknown fields, so
//! a log line cannot smuggle extra data past the verifier either.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::fhir::{FhirRequest, Interaction, ResourceType};
use crate::ids::{CategoryId, ClientId, GrantId, IdError, PatientId};

fn check(
    kind: &'static str,
    value: &str,
    max: usize,
    allowed: fn(u8) -> bool,
) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    if !value.bytes().all(allowed) {
        return Err(IdError::BadCharacter { kind });
    }
    Ok(())
}

fn token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

fn fhir_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.')
}

fn operation_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')
}

fn param_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':')
}

macro_rules! audit_identifier {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr, $alphabet:ident) => {
        $(#[$doc])*
        // Shared, not owned: a request's id is copied into its context, its record and its
        // header, and a clone should not cost an allocation each time.
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `value` and wraps it.
            pub fn new(value: impl AsRef<str>) -> Result<Self, IdError> {
                let value = value.as_ref();
                check($kind, value, $max, $alphabet)?;
                Ok(Self(Arc::from(value)))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::new(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

audit_identifier!(
    /// The request's correlation id (`X-Request-Id`), `[A-Za-z0-9._-]{1,64}`.
    ///
    /// Generate it on the server (a UUID): a client-chosen value is an attacker-chosen value.
    RequestId, "request id", 64, token_byte
);
audit_identifier!(
    /// The host's opaque account id of the person acting, `[A-Za-z0-9._-]{1,64}`.
    ///
    /// The alphabet has no `@`, so an e-mail address (a login name that is PHI) cannot be used.
    UserId, "user id", 64, token_byte
);
audit_identifier!(
    /// A FHIR logical id (`[A-Za-z0-9.-]{1,64}`) of the resource a request addressed.
    ResourceId, "resource id", 64, fhir_id_byte
);
audit_identifier!(
    /// The name of a FHIR operation without its `$` (`everything`).
    OperationName, "operation name", 64, operation_byte
);
audit_identifier!(
    /// The *name* of a search parameter (`patient`, `code:not`, `_has:Observation:patient:code`).
    ///
    /// Records keep which parameters a search used, never their values.
    ParamName, "search parameter name", 64, param_byte
);
audit_identifier!(
    /// The id of a MAC key, carried in every sealed record so keys can rotate.
    KeyId, "key id", 32, token_byte
);

/// An instant in UTC with nanosecond precision, written as RFC 3339 (`2026-11-24T22:40:01.123456789Z`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct AuditTime(OffsetDateTime);

impl AuditTime {
    /// Converts `instant` to UTC; refuses years RFC 3339 cannot write (before 0 or after 9999).
    pub fn new(instant: OffsetDateTime) -> Result<Self, RecordError> {
        let utc = instant.to_offset(time::UtcOffset::UTC);
        if !(0..=9999).contains(&utc.year()) {
            return Err(RecordError::TimeOutOfRange);
        }
        Ok(Self(utc))
    }

    /// The current time of `clock`.
    pub fn now(clock: &dyn crate::clock::Clock) -> Result<Self, RecordError> {
        Self::new(clock.now())
    }

    /// The instant.
    pub fn get(&self) -> OffsetDateTime {
        self.0
    }
}

impl Serialize for AuditTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.0.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for AuditTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let parsed = OffsetDateTime::parse(&raw, &Rfc3339).map_err(serde::de::Error::custom)?;
        if parsed.offset() != time::UtcOffset::UTC {
            return Err(serde::de::Error::custom("audit time must be in UTC"));
        }
        AuditTime::new(parsed).map_err(serde::de::Error::custom)
    }
}

/// Why a record could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The instant lies outside the years 0–9999 that RFC 3339 can represent.
    #[error("audit time is outside the years 0 to 9999")]
    TimeOutOfRange,
    /// An identifier taken from the request did not validate.
    #[error("request carries an invalid identifier: {0}")]
    Id(#[from] IdError),
}

/// What kind of event a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EventKind {
    /// A FHIR REST interaction on the resource server (BALP RESTful patterns).
    RestAccess,
    /// A call to an authorization-server endpoint (authorize, token, introspect, revoke).
    AuthorizationServer,
    /// A person signed in.
    LoginSucceeded,
    /// A sign-in attempt failed (bad credentials, locked account).
    LoginFailed,
    /// A second factor was wrong or missing.
    MfaFailed,
    /// A request was refused by policy (the outcome carries the reason).
    RequestDenied,
    /// A client or a user hit a rate limit.
    RateLimited,
    /// A refresh token that had already been rotated was presented again: the family is revoked.
    RefreshTokenReuse,
    /// A `private_key_jwt` client assertion was presented twice (same `jti`).
    ClientAssertionReplay,
    /// The patient approved a right-of-access grant.
    ConsentApproved,
    /// The patient or her representative revoked a grant.
    ConsentRevoked,
    /// A grant reached its end date.
    ConsentExpired,
    /// The file sink found a torn last line on start and continued the chain after it.
    AuditLogRecovered,
    /// A grant's request rate or breadth of categories jumped far above its own history
    /// (the "fire hose instead of one sip"); the record names the grant, client and patient.
    AnomalyDetected,
}

impl EventKind {
    /// Whether the event belongs in a security-event report (everything but routine access).
    pub fn is_security_event(self) -> bool {
        !matches!(self, EventKind::RestAccess | EventKind::AuthorizationServer)
    }
}

/// Who acted, in which capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ActorRole {
    /// The patient herself.
    Patient,
    /// A representative (parent, guardian, power of attorney) acting for the patient.
    Representative,
    /// A clinician or other workforce member.
    Practitioner,
    /// No person: a backend service or the system itself.
    System,
}

/// The FHIR resource type a `fhirUser` claim points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FhirUserType {
    /// `Patient/…`.
    Patient,
    /// `Practitioner/…`.
    Practitioner,
    /// `PractitionerRole/…`.
    PractitionerRole,
    /// `RelatedPerson/…` (a representative).
    RelatedPerson,
    /// `Person/…`.
    Person,
}

impl FhirUserType {
    /// The resource type name.
    pub fn as_str(self) -> &'static str {
        match self {
            FhirUserType::Patient => "Patient",
            FhirUserType::Practitioner => "Practitioner",
            FhirUserType::PractitionerRole => "PractitionerRole",
            FhirUserType::RelatedPerson => "RelatedPerson",
            FhirUserType::Person => "Person",
        }
    }
}

/// The `fhirUser` of the actor: a typed reference, never free text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirUser {
    /// The referenced resource type.
    #[serde(rename = "type")]
    pub resource_type: FhirUserType,
    /// The referenced logical id.
    pub id: ResourceId,
}

impl FhirUser {
    /// A reference `Type/id`.
    pub fn new(resource_type: FhirUserType, id: ResourceId) -> Self {
        Self { resource_type, id }
    }

    /// The relative reference, `Patient/355`.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.resource_type.as_str(), self.id)
    }
}

/// The person (or system) on whose authority a request was made.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// In which capacity they acted.
    pub role: ActorRole,
    /// The host's account id, if a person signed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    /// The `fhirUser` of the person, if known.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "fhirUser")]
    pub fhir_user: Option<FhirUser>,
}

impl Actor {
    /// An actor with a role and nothing else.
    pub fn new(role: ActorRole) -> Self {
        Self {
            role,
            user: None,
            fhir_user: None,
        }
    }

    /// The patient herself, signed in as `user`, with `fhirUser` `Patient/{patient}`.
    pub fn patient(user: UserId, patient: &PatientId) -> Self {
        let id = ResourceId(Arc::from(patient.as_str()));
        Self {
            role: ActorRole::Patient,
            user: Some(user),
            fhir_user: Some(FhirUser::new(FhirUserType::Patient, id)),
        }
    }
}

/// HTTP request methods an audited endpoint can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum HttpMethod {
    /// GET.
    Get,
    /// HEAD.
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
    /// OPTIONS.
    Options,
    /// Any other method (refused by the sanitizer; recorded without its name).
    Other,
}

impl From<&http::Method> for HttpMethod {
    fn from(m: &http::Method) -> Self {
        match *m {
            http::Method::GET => HttpMethod::Get,
            http::Method::HEAD => HttpMethod::Head,
            http::Method::POST => HttpMethod::Post,
            http::Method::PUT => HttpMethod::Put,
            http::Method::PATCH => HttpMethod::Patch,
            http::Method::DELETE => HttpMethod::Delete,
            http::Method::OPTIONS => HttpMethod::Options,
            _ => HttpMethod::Other,
        }
    }
}

/// The route template a request matched: the shape of the URL, never the URL itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Route {
    /// `/metadata`.
    #[serde(rename = "/metadata")]
    Metadata,
    /// `/{type}/{id}`.
    #[serde(rename = "/{type}/{id}")]
    Instance,
    /// `/{type}/{id}/_history/{vid}`.
    #[serde(rename = "/{type}/{id}/_history/{vid}")]
    InstanceVersion,
    /// `/{type}/{id}/_history`.
    #[serde(rename = "/{type}/{id}/_history")]
    InstanceHistory,
    /// `/{type}/_history`.
    #[serde(rename = "/{type}/_history")]
    TypeHistory,
    /// `/_history`.
    #[serde(rename = "/_history")]
    SystemHistory,
    /// `/{type}` (type search by GET, or create).
    #[serde(rename = "/{type}")]
    Type,
    /// `/{type}/_search`.
    #[serde(rename = "/{type}/_search")]
    TypeSearch,
    /// `/` (system search, batch or transaction).
    #[serde(rename = "/")]
    System,
    /// `/{compartment}/{id}/{type}`.
    #[serde(rename = "/{compartment}/{id}/{type}")]
    Compartment,
    /// `/$op`, `/{type}/$op` or `/{type}/{id}/$op`.
    #[serde(rename = "/$operation")]
    Operation,
    /// The authorization endpoint.
    #[serde(rename = "/authorize")]
    Authorize,
    /// The token endpoint.
    #[serde(rename = "/token")]
    Token,
    /// The introspection endpoint.
    #[serde(rename = "/introspect")]
    Introspect,
    /// The revocation endpoint.
    #[serde(rename = "/revoke")]
    Revoke,
    /// The host's sign-in page.
    #[serde(rename = "/login")]
    Login,
    /// The host's consent (approval or management) page.
    #[serde(rename = "/consent")]
    Consent,
}

/// The endpoint a request addressed: route template, resource type and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// The route template.
    pub route: Route,
    /// The resource type addressed (for a compartment search, the searched type).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "type",
        with = "resource_type_serde"
    )]
    pub resource_type: Option<ResourceType>,
    /// The logical id addressed (for a compartment search, the compartment's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ResourceId>,
}

mod resource_type_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::fhir::ResourceType;

    pub(super) fn serialize<S: Serializer>(
        value: &Option<ResourceType>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(t) => s.serialize_str(t.as_str()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<ResourceType>, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ResourceType::new(&raw)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("not a FHIR resource type name"))
    }
}

/// The FHIR interaction, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AuditInteraction {
    /// `capabilities`.
    Capabilities,
    /// `read`.
    Read,
    /// `vread`.
    Vread,
    /// `history-instance`.
    HistoryInstance,
    /// `history-type`.
    HistoryType,
    /// `history-system`.
    HistorySystem,
    /// `search-type`.
    SearchType,
    /// `search-system`.
    SearchSystem,
    /// A compartment search (`Patient/1/Observation`).
    SearchCompartment,
    /// `create`.
    Create,
    /// `update`.
    Update,
    /// `patch`.
    Patch,
    /// `delete`.
    Delete,
    /// `batch` or `transaction`.
    Batch,
    /// `operation`, with the operation's name.
    Operation(OperationName),
}

impl AuditInteraction {
    /// The typed form of a sanitized request's interaction.
    pub fn from_interaction(interaction: &Interaction) -> Result<Self, IdError> {
        Ok(match interaction {
            Interaction::Capabilities => Self::Capabilities,
            Interaction::Read => Self::Read,
            Interaction::Vread => Self::Vread,
            Interaction::HistoryInstance => Self::HistoryInstance,
            Interaction::HistoryType => Self::HistoryType,
            Interaction::HistorySystem => Self::HistorySystem,
            Interaction::SearchType => Self::SearchType,
            Interaction::SearchSystem => Self::SearchSystem,
            Interaction::SearchCompartment => Self::SearchCompartment,
            Interaction::Create => Self::Create,
            Interaction::Update => Self::Update,
            Interaction::Patch => Self::Patch,
            Interaction::Delete => Self::Delete,
            Interaction::BatchOrTransaction => Self::Batch,
            Interaction::Operation(name) => Self::Operation(OperationName::new(name.as_str())?),
            // `Interaction` is non-exhaustive: a future interaction is recorded as the closest
            // safe thing, an operation without a usable name.
            #[allow(unreachable_patterns)]
            _ => Self::Operation(OperationName::new("unknown")?),
        })
    }

    /// Whether the interaction is a search (BALP Query pattern).
    pub fn is_query(&self) -> bool {
        matches!(
            self,
            Self::SearchType
                | Self::SearchSystem
                | Self::SearchCompartment
                | Self::HistoryInstance
                | Self::HistoryType
                | Self::HistorySystem
        )
    }
}

/// Why a request or an attempt was refused. Precise on purpose: the wire sees a generic error,
/// the audit record sees this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DenyReason {
    /// No access token, or one that failed signature or claim checks.
    InvalidToken,
    /// The access token had expired.
    ExpiredToken,
    /// The token's scopes do not cover the request.
    InsufficientScope,
    /// The grant behind the token was revoked.
    GrantRevoked,
    /// The grant behind the token reached its end date.
    GrantExpired,
    /// The token names a grant the server does not know.
    GrantUnknown,
    /// The request reaches outside the patient compartment of the grant.
    OutsideCompartment,
    /// The request asks for a data category the patient did not approve.
    CategoryNotGranted,
    /// The request was malformed (refused by the sanitizer).
    MalformedRequest,
    /// The request used a parameter the server does not support.
    UnsupportedParameter,
    /// The request or its body was over a size limit.
    TooLarge,
    /// A rate limit was hit.
    RateLimited,
    /// A password or user name was wrong.
    BadCredentials,
    /// The account is locked after repeated failures.
    AccountLocked,
    /// A second factor was required and not given.
    MfaRequired,
    /// A second factor was wrong.
    MfaInvalid,
    /// The client failed to authenticate at the token endpoint.
    ClientAuthenticationFailed,
    /// A refresh token was presented after it had been rotated.
    TokenReuse,
    /// A client assertion's `jti` was seen before.
    AssertionReplay,
    /// The write is not allowed by the policy.
    WriteForbidden,
    /// The caller authenticated but may not learn about what it asked for: an introspection
    /// of a live token issued to another client (answered `{"active":false}` all the same).
    NotEntitled,
}

/// What went wrong when a request failed for reasons other than policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// A bug or unexpected state in the server.
    Internal,
    /// The host's FHIR engine or store failed.
    Upstream,
    /// A dependency timed out.
    Timeout,
    /// The service was unavailable (shutting down, overloaded).
    Unavailable,
}

/// How the event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Outcome {
    /// It succeeded.
    Success,
    /// It was refused, for this reason.
    Denied(DenyReason),
    /// It failed.
    Error(ErrorKind),
}

/// Purpose of use (HL7 v3 ActReason), the `purposeOfEvent` of the AuditEvent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PurposeOfUse {
    /// `PATRQT`: the patient requested it (HIPAA right of access).
    #[serde(rename = "PATRQT")]
    PatientRequest,
    /// `FAMRQT`: a family member requested it.
    #[serde(rename = "FAMRQT")]
    FamilyRequest,
    /// `PWATRNY`: a power of attorney requested it.
    #[serde(rename = "PWATRNY")]
    PowerOfAttorney,
    /// `TREAT`: treatment.
    #[serde(rename = "TREAT")]
    Treatment,
    /// `ETREAT`: emergency treatment.
    #[serde(rename = "ETREAT")]
    EmergencyTreatment,
    /// `HPAYMT`: payment.
    #[serde(rename = "HPAYMT")]
    Payment,
    /// `HOPERAT`: healthcare operations.
    #[serde(rename = "HOPERAT")]
    Operations,
    /// `HRESCH`: research.
    #[serde(rename = "HRESCH")]
    Research,
    /// `PUBHLTH`: public health.
    #[serde(rename = "PUBHLTH")]
    PublicHealth,
    /// `HSYSADMIN`: system administration.
    #[serde(rename = "HSYSADMIN")]
    SystemAdministration,
}

impl PurposeOfUse {
    /// The ActReason code.
    pub fn code(self) -> &'static str {
        match self {
            PurposeOfUse::PatientRequest => "PATRQT",
            PurposeOfUse::FamilyRequest => "FAMRQT",
            PurposeOfUse::PowerOfAttorney => "PWATRNY",
            PurposeOfUse::Treatment => "TREAT",
            PurposeOfUse::EmergencyTreatment => "ETREAT",
            PurposeOfUse::Payment => "HPAYMT",
            PurposeOfUse::Operations => "HOPERAT",
            PurposeOfUse::Research => "HRESCH",
            PurposeOfUse::PublicHealth => "PUBHLTH",
            PurposeOfUse::SystemAdministration => "HSYSADMIN",
        }
    }
}

/// The access decision the policy reached for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum PolicyDecision {
    /// Allowed as asked.
    Permit,
    /// Allowed, but the response was narrowed: `withheld` resources outside the grant dropped.
    Narrowed {
        /// How many resources were withheld (a count, never which).
        withheld: u32,
    },
    /// Refused (the outcome carries the reason).
    Deny,
}

/// One audit record: who did what to whose data, through which app and grant, and how it ended.
///
/// Build one with [`AuditRecord::new`] or [`AuditRecord::for_request`] and set the public
/// fields; every field type is validated, so a record can hold no free text at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct AuditRecord {
    /// When the event happened (UTC, nanoseconds).
    pub time: AuditTime,
    /// What kind of event it was.
    pub event: EventKind,
    /// How it ended.
    pub outcome: Outcome,
    /// The request's correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    /// Who acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// The OAuth client (the app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientId>,
    /// The consent grant the token was issued under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantId>,
    /// The network address the request came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
    /// The HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    /// The endpoint addressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
    /// The FHIR interaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction: Option<AuditInteraction>,
    /// The names (never the values) of the search parameters used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<ParamName>,
    /// The patient whose data was touched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<PatientId>,
    /// The data categories disclosed (or, for a denial, asked for).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub categories: BTreeSet<CategoryId>,
    /// Why the data was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<PurposeOfUse>,
    /// The access decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<PolicyDecision>,
}

impl AuditRecord {
    /// A record of `event` at `time` with `outcome` and every optional field empty.
    pub fn new(time: AuditTime, event: EventKind, outcome: Outcome) -> Self {
        Self {
            time,
            event,
            outcome,
            request_id: None,
            actor: None,
            client: None,
            grant: None,
            source: None,
            method: None,
            endpoint: None,
            interaction: None,
            params: Vec::new(),
            patient: None,
            categories: BTreeSet::new(),
            purpose: None,
            decision: None,
        }
    }

    /// A REST-access record for a sanitized FHIR request: route template, resource type, id,
    /// interaction and search parameter *names* are taken from `request`; its values are not.
    ///
    /// A patient-compartment search also fills [`AuditRecord::patient`]. Fails only if the
    /// request carries an id or name the audit alphabet refuses (the sanitizer should have).
    pub fn for_request(
        time: AuditTime,
        request: &FhirRequest,
        outcome: Outcome,
    ) -> Result<Self, RecordError> {
        let mut record = Self::new(time, EventKind::RestAccess, outcome);
        let interaction = AuditInteraction::from_interaction(&request.interaction)?;
        let route = match (&request.interaction, &request.resource_type, &request.id) {
            (Interaction::Capabilities, _, _) => Route::Metadata,
            (Interaction::Read, _, _)
            | (Interaction::Update, _, _)
            | (Interaction::Patch, _, _)
            | (Interaction::Delete, _, _) => Route::Instance,
            (Interaction::Vread, _, _) => Route::InstanceVersion,
            (Interaction::HistoryInstance, _, _) => Route::InstanceHistory,
            (Interaction::HistoryType, _, _) => Route::TypeHistory,
            (Interaction::HistorySystem, _, _) => Route::SystemHistory,
            (Interaction::SearchType, _, _) | (Interaction::Create, _, _) => Route::Type,
            (Interaction::SearchSystem, _, _) | (Interaction::BatchOrTransaction, _, _) => {
                Route::System
            }
            (Interaction::SearchCompartment, _, _) => Route::Compartment,
            _ => Route::Operation,
        };
        let mut id = match &request.id {
            Some(raw) => Some(ResourceId::new(raw.as_str())?),
            None => None,
        };
        if let Some((compartment, compartment_id)) = &request.compartment {
            let cid = ResourceId::new(compartment_id.as_str())?;
            if compartment.as_str() == "Patient" {
                record.patient = Some(PatientId::new(cid.as_str())?);
            }
            id = id.or(Some(cid));
        }
        if request.resource_type.as_ref().map(ResourceType::as_str) == Some("Patient") {
            if let Some(pid) = &id {
                record.patient = Some(PatientId::new(pid.as_str())?);
            }
        }
        record.endpoint = Some(Endpoint {
            route,
            resource_type: request.resource_type.clone(),
            id,
        });
        record.interaction = Some(interaction);
        for param in &request.params {
            let name = match &param.modifier {
                Some(m) => ParamName::new(format!("{}:{}", param.name, m))?,
                None => ParamName::new(param.name.as_str())?,
            };
            if !record.params.contains(&name) {
                record.params.push(name);
            }
        }
        Ok(record)
    }

    /// The canonical bytes the chain's MAC covers: compact JSON, fields in declaration order,
    /// empty fields omitted. Parsing a line and re-serialising gives the same bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(640);
        self.write_canonical(&mut out);
        out
    }

    /// Appends the canonical bytes to `out`: the same bytes `serde_json` writes for the
    /// record, written directly (see `audit/canonical.rs`).
    pub(crate) fn write_canonical(&self, out: &mut Vec<u8>) {
        super::canonical::write_record(self, out);
    }
}
