//! The canonical bytes of an [`AuditRecord`], written by hand.
//!
//! The canonical form *is* `serde_json`'s compact serialisation of the record (fields in
//! declaration order, empty fields omitted, enums as their serde names): logs written before
//! this writer existed verify unchanged, and a line parsed back with serde re-serialises to the
//! same bytes. Writing it directly into the caller's buffer skips serde's per-field machinery,
//! the per-string escape scan (every identifier's alphabet is escape-free; a string that did
//! need escaping would still be escaped exactly as `serde_json` does) and the `String` that
//! `time`'s RFC 3339 formatter allocates — the bulk of what sealing a record used to cost.
//!
//! A unit test compares this writer with `serde_json::to_vec` over records that use every
//! field and every enum variant, so the two cannot drift apart silently.

use std::io::Write as _;
use std::net::IpAddr;

use super::record::{
    Actor, ActorRole, AuditInteraction, AuditRecord, AuditTime, DenyReason, Endpoint, ErrorKind,
    EventKind, FhirUserType, HttpMethod, Outcome, PolicyDecision, Route,
};

/// Appends the canonical bytes of `record` to `out`.
pub(crate) fn write_record(record: &AuditRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":");
    write_time(&record.time, out);
    out.extend_from_slice(b",\"event\":\"");
    out.extend_from_slice(event_name(record.event).as_bytes());
    out.extend_from_slice(b"\",\"outcome\":");
    write_outcome(record.outcome, out);
    if let Some(id) = &record.request_id {
        out.extend_from_slice(b",\"requestId\":");
        write_str(id.as_str(), out);
    }
    if let Some(actor) = &record.actor {
        out.extend_from_slice(b",\"actor\":");
        write_actor(actor, out);
    }
    if let Some(client) = &record.client {
        out.extend_from_slice(b",\"client\":");
        write_str(client.as_str(), out);
    }
    if let Some(grant) = &record.grant {
        out.extend_from_slice(b",\"grant\":");
        write_str(grant.as_str(), out);
    }
    if let Some(source) = &record.source {
        out.extend_from_slice(b",\"source\":\"");
        write_ip(source, out);
        out.push(b'"');
    }
    if let Some(method) = record.method {
        out.extend_from_slice(b",\"method\":\"");
        out.extend_from_slice(method_name(method).as_bytes());
        out.push(b'"');
    }
    if let Some(endpoint) = &record.endpoint {
        out.extend_from_slice(b",\"endpoint\":");
        write_endpoint(endpoint, out);
    }
    if let Some(interaction) = &record.interaction {
        out.extend_from_slice(b",\"interaction\":");
        write_interaction(interaction, out);
    }
    if !record.params.is_empty() {
        out.extend_from_slice(b",\"params\":");
        write_list(record.params.iter().map(|p| p.as_str()), out);
    }
    if let Some(patient) = &record.patient {
        out.extend_from_slice(b",\"patient\":");
        write_str(patient.as_str(), out);
    }
    if !record.categories.is_empty() {
        out.extend_from_slice(b",\"categories\":");
        write_list(record.categories.iter().map(|c| c.as_str()), out);
    }
    if let Some(purpose) = record.purpose {
        out.extend_from_slice(b",\"purpose\":\"");
        out.extend_from_slice(purpose.code().as_bytes());
        out.push(b'"');
    }
    if let Some(decision) = record.decision {
        out.extend_from_slice(b",\"decision\":");
        write_decision(decision, out);
    }
    out.push(b'}');
}

/// A JSON string, escaped as `serde_json` escapes (`\"`, `\\`, the short forms of `\b \f \n
/// \r \t`, `\u00xx` for other controls; everything else as is).
fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(bytes);
    } else {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &b in bytes {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b if b < 0x20 => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0x0f)],
                ]),
                b => out.push(b),
            }
        }
    }
    out.push(b'"');
}

fn write_list<'a>(items: impl Iterator<Item = &'a str>, out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(item, out);
    }
    out.push(b']');
}

/// `n` as exactly `width` decimal digits (the caller guarantees it fits).
fn push_digits(out: &mut Vec<u8>, mut n: u32, width: usize) {
    let mut buf = [b'0'; 9];
    let digits = &mut buf[..width];
    for d in digits.iter_mut().rev() {
        // `n % 10` is below 10: the cast cannot truncate.
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(digits);
}

/// RFC 3339 in UTC exactly as `time`'s `Rfc3339` writes it: `YYYY-MM-DDTHH:MM:SS`, then the
/// nanoseconds without trailing zeros (nothing if zero), then `Z`. [`AuditTime::new`] has
/// converted to UTC and checked the year is 0–9999.
fn write_time(time: &AuditTime, out: &mut Vec<u8>) {
    let t = time.get();
    out.push(b'"');
    // `AuditTime` holds years 0..=9999 only.
    push_digits(out, u32::try_from(t.year()).unwrap_or(0), 4);
    out.push(b'-');
    push_digits(out, u32::from(u8::from(t.month())), 2);
    out.push(b'-');
    push_digits(out, u32::from(t.day()), 2);
    out.push(b'T');
    push_digits(out, u32::from(t.hour()), 2);
    out.push(b':');
    push_digits(out, u32::from(t.minute()), 2);
    out.push(b':');
    push_digits(out, u32::from(t.second()), 2);
    let mut nanos = t.nanosecond();
    if nanos != 0 {
        let mut width = 9;
        while nanos % 10 == 0 {
            nanos /= 10;
            width -= 1;
        }
        out.push(b'.');
        push_digits(out, nanos, width);
    }
    out.extend_from_slice(b"Z\"");
}

fn write_ip(ip: &IpAddr, out: &mut Vec<u8>) {
    // serde writes an address (human-readable form) as its `Display` text.
    match ip {
        IpAddr::V4(v4) => {
            // Dotted decimal, no leading zeros: what `Ipv4Addr`'s `Display` writes.
            for (i, octet) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                let o = *octet;
                if o >= 100 {
                    out.push(b'0' + o / 100);
                }
                if o >= 10 {
                    out.push(b'0' + (o / 10) % 10);
                }
                out.push(b'0' + o % 10);
            }
        }
        // Writing to a `Vec` cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn write_outcome(outcome: Outcome, out: &mut Vec<u8>) {
    match outcome {
        Outcome::Success => out.extend_from_slice(b"\"success\""),
        Outcome::Denied(reason) => {
            out.extend_from_slice(b"{\"denied\":\"");
            out.extend_from_slice(deny_name(reason).as_bytes());
            out.extend_from_slice(b"\"}");
        }
        Outcome::Error(kind) => {
            out.extend_from_slice(b"{\"error\":\"");
            out.extend_from_slice(error_name(kind).as_bytes());
            out.extend_from_slice(b"\"}");
        }
    }
}

fn write_actor(actor: &Actor, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"role\":\"");
    out.extend_from_slice(role_name(actor.role).as_bytes());
    out.push(b'"');
    if let Some(user) = &actor.user {
        out.extend_from_slice(b",\"user\":");
        write_str(user.as_str(), out);
    }
    if let Some(fhir_user) = &actor.fhir_user {
        out.extend_from_slice(b",\"fhirUser\":{\"type\":\"");
        out.extend_from_slice(fhir_user_type_name(fhir_user.resource_type).as_bytes());
        out.extend_from_slice(b"\",\"id\":");
        write_str(fhir_user.id.as_str(), out);
        out.push(b'}');
    }
    out.push(b'}');
}

fn write_endpoint(endpoint: &Endpoint, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"route\":");
    write_str(route_name(endpoint.route), out);
    if let Some(t) = &endpoint.resource_type {
        out.extend_from_slice(b",\"type\":");
        write_str(t.as_str(), out);
    }
    if let Some(id) = &endpoint.id {
        out.extend_from_slice(b",\"id\":");
        write_str(id.as_str(), out);
    }
    out.push(b'}');
}

fn write_interaction(interaction: &AuditInteraction, out: &mut Vec<u8>) {
    let name = match interaction {
        AuditInteraction::Capabilities => "capabilities",
        AuditInteraction::Read => "read",
        AuditInteraction::Vread => "vread",
        AuditInteraction::HistoryInstance => "history-instance",
        AuditInteraction::HistoryType => "history-type",
        AuditInteraction::HistorySystem => "history-system",
        AuditInteraction::SearchType => "search-type",
        AuditInteraction::SearchSystem => "search-system",
        AuditInteraction::SearchCompartment => "search-compartment",
        AuditInteraction::Create => "create",
        AuditInteraction::Update => "update",
        AuditInteraction::Patch => "patch",
        AuditInteraction::Delete => "delete",
        AuditInteraction::Batch => "batch",
        AuditInteraction::Operation(op) => {
            out.extend_from_slice(b"{\"operation\":");
            write_str(op.as_str(), out);
            out.push(b'}');
            return;
        }
    };
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.push(b'"');
}

fn write_decision(decision: PolicyDecision, out: &mut Vec<u8>) {
    match decision {
        PolicyDecision::Permit => out.extend_from_slice(b"\"permit\""),
        PolicyDecision::Deny => out.extend_from_slice(b"\"deny\""),
        PolicyDecision::Narrowed { withheld } => {
            // Writing to a `Vec` cannot fail.
            let _ = write!(out, "{{\"narrowed\":{{\"withheld\":{withheld}}}}}");
        }
    }
}

fn event_name(event: EventKind) -> &'static str {
    match event {
        EventKind::RestAccess => "rest-access",
        EventKind::AuthorizationServer => "authorization-server",
        EventKind::LoginSucceeded => "login-succeeded",
        EventKind::LoginFailed => "login-failed",
        EventKind::MfaFailed => "mfa-failed",
        EventKind::RequestDenied => "request-denied",
        EventKind::RateLimited => "rate-limited",
        EventKind::RefreshTokenReuse => "refresh-token-reuse",
        EventKind::ClientAssertionReplay => "client-assertion-replay",
        EventKind::ConsentApproved => "consent-approved",
        EventKind::ConsentRevoked => "consent-revoked",
        EventKind::ConsentExpired => "consent-expired",
        EventKind::AuditLogRecovered => "audit-log-recovered",
        EventKind::AnomalyDetected => "anomaly-detected",
    }
}

fn deny_name(reason: DenyReason) -> &'static str {
    match reason {
        DenyReason::InvalidToken => "invalid-token",
        DenyReason::ExpiredToken => "expired-token",
        DenyReason::InsufficientScope => "insufficient-scope",
        DenyReason::GrantRevoked => "grant-revoked",
        DenyReason::GrantExpired => "grant-expired",
        DenyReason::GrantUnknown => "grant-unknown",
        DenyReason::OutsideCompartment => "outside-compartment",
        DenyReason::CategoryNotGranted => "category-not-granted",
        DenyReason::MalformedRequest => "malformed-request",
        DenyReason::UnsupportedParameter => "unsupported-parameter",
        DenyReason::TooLarge => "too-large",
        DenyReason::RateLimited => "rate-limited",
        DenyReason::BadCredentials => "bad-credentials",
        DenyReason::AccountLocked => "account-locked",
        DenyReason::MfaRequired => "mfa-required",
        DenyReason::MfaInvalid => "mfa-invalid",
        DenyReason::ClientAuthenticationFailed => "client-authentication-failed",
        DenyReason::TokenReuse => "token-reuse",
        DenyReason::AssertionReplay => "assertion-replay",
        DenyReason::WriteForbidden => "write-forbidden",
        DenyReason::NotEntitled => "not-entitled",
    }
}

fn error_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Internal => "internal",
        ErrorKind::Upstream => "upstream",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Unavailable => "unavailable",
    }
}

fn role_name(role: ActorRole) -> &'static str {
    match role {
        ActorRole::Patient => "patient",
        ActorRole::Representative => "representative",
        ActorRole::Practitioner => "practitioner",
        ActorRole::System => "system",
    }
}

fn fhir_user_type_name(t: FhirUserType) -> &'static str {
    t.as_str()
}

fn method_name(method: HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "GET",
        HttpMethod::Head => "HEAD",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Patch => "PATCH",
        HttpMethod::Delete => "DELETE",
        HttpMethod::Options => "OPTIONS",
        HttpMethod::Other => "OTHER",
    }
}

fn route_name(route: Route) -> &'static str {
    match route {
        Route::Metadata => "/metadata",
        Route::Instance => "/{type}/{id}",
        Route::InstanceVersion => "/{type}/{id}/_history/{vid}",
        Route::InstanceHistory => "/{type}/{id}/_history",
        Route::TypeHistory => "/{type}/_history",
        Route::SystemHistory => "/_history",
        Route::Type => "/{type}",
        Route::TypeSearch => "/{type}/_search",
        Route::System => "/",
        Route::Compartment => "/{compartment}/{id}/{type}",
        Route::Operation => "/$operation",
        Route::Authorize => "/authorize",
        Route::Token => "/token",
        Route::Introspect => "/introspect",
        Route::Revoke => "/revoke",
        Route::Login => "/login",
        Route::Consent => "/consent",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

    use super::*;
    use crate::audit::record::{
        FhirUser, OperationName, ParamName, PurposeOfUse, RequestId, ResourceId, UserId,
    };
    use crate::fhir::ResourceType;
    use crate::ids::{CategoryId, ClientId, GrantId, PatientId};

    const EVENTS: &[EventKind] = &[
        EventKind::RestAccess,
        EventKind::AuthorizationServer,
        EventKind::LoginSucceeded,
        EventKind::LoginFailed,
        EventKind::MfaFailed,
        EventKind::RequestDenied,
        EventKind::RateLimited,
        EventKind::RefreshTokenReuse,
        EventKind::ClientAssertionReplay,
        EventKind::ConsentApproved,
        EventKind::ConsentRevoked,
        EventKind::ConsentExpired,
        EventKind::AuditLogRecovered,
        EventKind::AnomalyDetected,
    ];
    const DENIALS: &[DenyReason] = &[
        DenyReason::InvalidToken,
        DenyReason::ExpiredToken,
        DenyReason::InsufficientScope,
        DenyReason::GrantRevoked,
        DenyReason::GrantExpired,
        DenyReason::GrantUnknown,
        DenyReason::OutsideCompartment,
        DenyReason::CategoryNotGranted,
        DenyReason::MalformedRequest,
        DenyReason::UnsupportedParameter,
        DenyReason::TooLarge,
        DenyReason::RateLimited,
        DenyReason::BadCredentials,
        DenyReason::AccountLocked,
        DenyReason::MfaRequired,
        DenyReason::MfaInvalid,
        DenyReason::ClientAuthenticationFailed,
        DenyReason::TokenReuse,
        DenyReason::AssertionReplay,
        DenyReason::WriteForbidden,
        DenyReason::NotEntitled,
    ];
    const ERRORS: &[ErrorKind] = &[
        ErrorKind::Internal,
        ErrorKind::Upstream,
        ErrorKind::Timeout,
        ErrorKind::Unavailable,
    ];
    const ROLES: &[ActorRole] = &[
        ActorRole::Patient,
        ActorRole::Representative,
        ActorRole::Practitioner,
        ActorRole::System,
    ];
    const USER_TYPES: &[FhirUserType] = &[
        FhirUserType::Patient,
        FhirUserType::Practitioner,
        FhirUserType::PractitionerRole,
        FhirUserType::RelatedPerson,
        FhirUserType::Person,
    ];
    const METHODS: &[HttpMethod] = &[
        HttpMethod::Get,
        HttpMethod::Head,
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Patch,
        HttpMethod::Delete,
        HttpMethod::Options,
        HttpMethod::Other,
    ];
    const ROUTES: &[Route] = &[
        Route::Metadata,
        Route::Instance,
        Route::InstanceVersion,
        Route::InstanceHistory,
        Route::TypeHistory,
        Route::SystemHistory,
        Route::Type,
        Route::TypeSearch,
        Route::System,
        Route::Compartment,
        Route::Operation,
        Route::Authorize,
        Route::Token,
        Route::Introspect,
        Route::Revoke,
        Route::Login,
        Route::Consent,
    ];
    const PURPOSES: &[PurposeOfUse] = &[
        PurposeOfUse::PatientRequest,
        PurposeOfUse::FamilyRequest,
        PurposeOfUse::PowerOfAttorney,
        PurposeOfUse::Treatment,
        PurposeOfUse::EmergencyTreatment,
        PurposeOfUse::Payment,
        PurposeOfUse::Operations,
        PurposeOfUse::Research,
        PurposeOfUse::PublicHealth,
        PurposeOfUse::SystemAdministration,
    ];
    const ADDRESSES: &[&str] = &[
        "203.0.113.7",
        "10.0.99.100",
        "1.20.255.9",
        "0.0.0.0",
        "255.255.255.255",
        "::1",
        "::",
        "2001:db8::8a2e:370:7334",
        "::ffff:192.0.2.1",
        "fe80::1:2:3:4",
    ];

    fn interactions() -> Vec<AuditInteraction> {
        vec![
            AuditInteraction::Capabilities,
            AuditInteraction::Read,
            AuditInteraction::Vread,
            AuditInteraction::HistoryInstance,
            AuditInteraction::HistoryType,
            AuditInteraction::HistorySystem,
            AuditInteraction::SearchType,
            AuditInteraction::SearchSystem,
            AuditInteraction::SearchCompartment,
            AuditInteraction::Create,
            AuditInteraction::Update,
            AuditInteraction::Patch,
            AuditInteraction::Delete,
            AuditInteraction::Batch,
            AuditInteraction::Operation(OperationName::new("everything").unwrap()),
        ]
    }

    fn outcomes() -> Vec<Outcome> {
        let mut all = vec![Outcome::Success];
        all.extend(DENIALS.iter().map(|d| Outcome::Denied(*d)));
        all.extend(ERRORS.iter().map(|e| Outcome::Error(*e)));
        all
    }

    fn decisions() -> Vec<PolicyDecision> {
        vec![
            PolicyDecision::Permit,
            PolicyDecision::Deny,
            PolicyDecision::Narrowed { withheld: 0 },
            PolicyDecision::Narrowed { withheld: 7 },
            PolicyDecision::Narrowed { withheld: u32::MAX },
        ]
    }

    fn times() -> Vec<AuditTime> {
        let mut out = Vec::new();
        for nanos in [
            0u32,
            1,
            10,
            100,
            1_000,
            120_000,
            123_456_789,
            500_000_000,
            999_999_999,
            100_000_010,
        ] {
            for (year, month, day) in [
                (2026, Month::November, 24),
                (0, Month::January, 1),
                (9999, Month::December, 31),
                (1970, Month::February, 28),
                (2024, Month::February, 29),
                (999, Month::July, 9),
            ] {
                let date = Date::from_calendar_date(year, month, day).unwrap();
                let t = Time::from_hms_nano(23, 59, 59, nanos).unwrap();
                let dt = PrimitiveDateTime::new(date, t).assume_utc();
                out.push(AuditTime::new(dt).unwrap());
            }
        }
        // An instant given in another offset is converted to UTC first.
        let east = OffsetDateTime::UNIX_EPOCH
            .replace_offset(UtcOffset::from_hms(5, 30, 0).unwrap())
            + time::Duration::nanoseconds(1_500);
        out.push(AuditTime::new(east).unwrap());
        out
    }

    /// Records that, between them, use every field empty and set and every enum variant.
    fn records() -> Vec<AuditRecord> {
        let times = times();
        let outcomes = outcomes();
        let interactions = interactions();
        let decisions = decisions();
        let clients = [
            "research-app",
            // Client ids may hold most printable ASCII: none of it needs escaping in JSON.
            "app!$'()*,;:@~^|{}<>[]`/?",
        ];
        let mut out = Vec::new();
        for i in 0..400usize {
            let mut r = AuditRecord::new(
                times[i % times.len()],
                EVENTS[i % EVENTS.len()],
                outcomes[i % outcomes.len()],
            );
            // Each optional field is left empty on some records (i % k == 0).
            if i % 3 != 0 {
                r.request_id = Some(RequestId::new(format!("req-{i}")).unwrap());
            }
            if i % 4 != 0 {
                let mut actor = Actor::new(ROLES[i % ROLES.len()]);
                if i % 5 != 0 {
                    actor.user = Some(UserId::new(format!("u-{i}")).unwrap());
                }
                if i % 7 != 0 {
                    actor.fhir_user = Some(FhirUser::new(
                        USER_TYPES[i % USER_TYPES.len()],
                        ResourceId::new(format!("{i}")).unwrap(),
                    ));
                }
                r.actor = Some(actor);
            }
            if i % 5 != 1 {
                r.client = Some(ClientId::new(clients[i % clients.len()]).unwrap());
            }
            if i % 6 != 1 {
                r.grant = Some(GrantId::new(format!("g-{i}")).unwrap());
            }
            if i % 7 != 1 {
                r.source = Some(ADDRESSES[i % ADDRESSES.len()].parse().unwrap());
            }
            if i % 8 != 1 {
                r.method = Some(METHODS[i % METHODS.len()]);
            }
            if i % 9 != 1 {
                r.endpoint = Some(Endpoint {
                    route: ROUTES[i % ROUTES.len()],
                    resource_type: (i % 2 == 0).then(|| ResourceType::new("Observation").unwrap()),
                    id: (i % 3 == 0).then(|| ResourceId::new("obs-1.2").unwrap()),
                });
            }
            if i % 10 != 1 {
                r.interaction = Some(interactions[i % interactions.len()].clone());
            }
            for k in 0..(i % 4) {
                r.params
                    .push(ParamName::new(["code:not", "_count", "patient", "date"][k]).unwrap());
            }
            if i % 11 != 1 {
                r.patient = Some(PatientId::new(format!("p{i}")).unwrap());
            }
            r.categories = (0..(i % 3))
                .map(|k| CategoryId::new(["vital-signs", "laboratory"][k]).unwrap())
                .collect::<BTreeSet<_>>();
            if i % 12 != 1 {
                r.purpose = Some(PURPOSES[i % PURPOSES.len()]);
            }
            if i % 13 != 1 {
                r.decision = Some(decisions[i % decisions.len()]);
            }
            out.push(r);
        }
        out
    }

    #[test]
    fn the_writer_matches_serde_json_byte_for_byte() {
        for record in records() {
            let ours = record.canonical_bytes();
            let serde = serde_json::to_vec(&record).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&serde)
            );
            // And a line parsed back re-serialises to the same bytes.
            let back: AuditRecord = serde_json::from_slice(&ours).unwrap();
            assert_eq!(back, record);
            assert_eq!(back.canonical_bytes(), ours);
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for s in [
            "plain",
            "quote\"back\\slash",
            "\u{8}\u{c}\n\r\t",
            "\u{0}\u{1}\u{1f}\u{7f}",
            "é ü 日本",
            "",
        ] {
            let mut ours = Vec::new();
            write_str(s, &mut ours);
            assert_eq!(ours, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }
}
