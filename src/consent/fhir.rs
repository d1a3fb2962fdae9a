//! A grant as a FHIR R4 `Consent` resource, and back.
//!
//! Export ([`Grant::to_fhir_consent`]) maps the record onto the resource's own elements
//! where R4 has them — `status` (`active`, or `inactive` once expired or revoked), `scope`
//! `patient-privacy`, `category` `INFA` (information access), `patient`, `dateTime`,
//! `performer`, `policy` (45 CFR 164.524), `provision` (permit, `period` = approval → end,
//! recipient actor = the app's client id, action `access`, one `code` per data category) — and
//! keeps the rest (disclosure digest, approval act, revocation, narrowings) in extensions under
//! [`EXTENSION_BASE`], so the import ([`Grant::from_fhir_consent`]) restores the grant exactly.
//!
//! The import is for hosts that store consents in their FHIR server: it is bounded (string
//! lengths, category and narrowing counts), re-validates every identifier and the one-year rule,
//! and fails with a typed [`FhirConsentError`], never a panic.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::record::{
    ApprovalMethod, Approver, DisclosureRef, Grant, GrantState, MAX_CATEGORIES, MAX_NAME_LEN,
    MAX_REASON_LEN, MAX_USER_AGENT_LEN, MAX_VERSION_LEN, Narrowing, RightOfAccessRequest,
    check_text, hex, one_year_after,
};
use crate::category::CategoryRegistry;
use crate::ids::{CategoryId, ClientId, GrantId, PatientId};

/// The base of fhirguard's extension URLs and code systems.
pub const EXTENSION_BASE: &str = "https://fhirguard.dev/fhir";
/// The code system of data-category ids in `provision.code`.
pub const CATEGORY_SYSTEM: &str = "https://fhirguard.dev/fhir/CodeSystem/data-category";
/// The identifier system of OAuth client ids in `provision.actor.reference.identifier`.
pub const CLIENT_ID_SYSTEM: &str = "https://fhirguard.dev/fhir/sid/oauth-client-id";
/// Most narrowings an imported Consent may carry.
pub const MAX_NARROWINGS: usize = 256;

fn ext(name: &str) -> String {
    format!("{EXTENSION_BASE}/StructureDefinition/{name}")
}

/// Why a `Consent` resource could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FhirConsentError {
    /// The JSON is not an object with `resourceType` `Consent`.
    #[error("not a FHIR Consent resource")]
    NotConsent,
    /// A required element is missing or has the wrong JSON type.
    #[error("missing or mistyped element {0}")]
    Missing(&'static str),
    /// An element holds a value fhirguard does not accept (bad id, bad instant, unknown code,
    /// a period longer than one year, too long a string).
    #[error("invalid element {0}")]
    Invalid(&'static str),
    /// A repeated element holds more entries than allowed.
    #[error("too many entries in {0}")]
    TooMany(&'static str),
}

type R<T> = Result<T, FhirConsentError>;

fn instant(t: OffsetDateTime) -> String {
    // Rfc3339 formatting only fails outside year 0–9999, which a validated grant never holds.
    t.format(&Rfc3339).unwrap_or_default()
}

fn parse_instant(v: Option<&Value>, what: &'static str) -> R<OffsetDateTime> {
    let s = v
        .and_then(Value::as_str)
        .ok_or(FhirConsentError::Missing(what))?;
    if s.len() > 64 {
        return Err(FhirConsentError::Invalid(what));
    }
    OffsetDateTime::parse(s, &Rfc3339).map_err(|_| FhirConsentError::Invalid(what))
}

fn string<'a>(v: Option<&'a Value>, what: &'static str) -> R<&'a str> {
    v.and_then(Value::as_str)
        .ok_or(FhirConsentError::Missing(what))
}

fn bounded(v: Option<&Value>, what: &'static str, max: usize) -> R<String> {
    let s = string(v, what)?;
    check_text(what, s, max).map_err(|_| FhirConsentError::Invalid(what))?;
    Ok(s.to_owned())
}

fn array<'a>(v: Option<&'a Value>, what: &'static str, max: usize) -> R<&'a [Value]> {
    let a = v
        .and_then(Value::as_array)
        .ok_or(FhirConsentError::Missing(what))?;
    if a.len() > max {
        return Err(FhirConsentError::TooMany(what));
    }
    Ok(a)
}

/// The sub-extensions of `parent` as (url, value object).
fn sub<'a>(parent: &'a Value, url: &str) -> Option<&'a Value> {
    parent
        .get("extension")?
        .as_array()?
        .iter()
        .take(64)
        .find(|e| e.get("url").and_then(Value::as_str) == Some(url))
}

fn approver_ext(url: &str, a: &Approver) -> Value {
    match a {
        Approver::Patient => json!({
            "url": url,
            "extension": [{"url": "kind", "valueCode": "patient"}]
        }),
        Approver::Representative { name, relationship } => json!({
            "url": url,
            "extension": [
                {"url": "kind", "valueCode": "representative"},
                {"url": "name", "valueString": name},
                {"url": "relationship", "valueString": relationship}
            ]
        }),
    }
}

fn parse_approver(e: &Value, what: &'static str) -> R<Approver> {
    let kind = string(sub(e, "kind").and_then(|k| k.get("valueCode")), what)?;
    match kind {
        "patient" => Ok(Approver::Patient),
        "representative" => Ok(Approver::Representative {
            name: bounded(
                sub(e, "name").and_then(|v| v.get("valueString")),
                what,
                MAX_NAME_LEN,
            )?,
            relationship: bounded(
                sub(e, "relationship").and_then(|v| v.get("valueString")),
                what,
                MAX_NAME_LEN,
            )?,
        }),
        _ => Err(FhirConsentError::Invalid(what)),
    }
}

fn category_codes(
    categories: &BTreeSet<CategoryId>,
    registry: Option<&CategoryRegistry>,
) -> Vec<Value> {
    categories
        .iter()
        .map(|c| {
            let mut coding = Map::new();
            coding.insert("system".into(), CATEGORY_SYSTEM.into());
            coding.insert("code".into(), c.as_str().into());
            if let Some((label, _)) = registry.and_then(|r| r.describe(c)) {
                coding.insert("display".into(), label.into());
            }
            json!({ "coding": [Value::Object(coding)] })
        })
        .collect()
}

fn parse_categories(codes: &[Value], what: &'static str) -> R<BTreeSet<CategoryId>> {
    if codes.len() > MAX_CATEGORIES {
        return Err(FhirConsentError::TooMany(what));
    }
    let mut out = BTreeSet::new();
    for c in codes {
        let coding = c
            .get("coding")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .take(8)
                    .find(|x| x.get("system").and_then(Value::as_str) == Some(CATEGORY_SYSTEM))
            })
            .ok_or(FhirConsentError::Missing(what))?;
        let code = string(coding.get("code"), what)?;
        out.insert(CategoryId::new(code).map_err(|_| FhirConsentError::Invalid(what))?);
    }
    Ok(out)
}

impl Grant {
    /// The grant as a FHIR R4 `Consent` resource; `registry` supplies the category labels.
    pub fn to_fhir_consent(&self, registry: &CategoryRegistry) -> Value {
        self.consent_json(Some(registry))
    }

    fn consent_json(&self, registry: Option<&CategoryRegistry>) -> Value {
        let r = &self.request;
        let patient_ref = format!("Patient/{}", r.patient);
        let status = match self.state {
            GrantState::Active => "active",
            _ => "inactive",
        };
        let performer = match &r.approver {
            Approver::Patient => json!({ "reference": patient_ref }),
            Approver::Representative { name, .. } => json!({ "display": name }),
        };
        let mut approval = vec![
            json!({"url": "method", "valueCode": r.method.as_str()}),
            json!({"url": "disclosureVersion", "valueString": r.disclosure.version}),
            json!({"url": "disclosureSha256", "valueString": hex(&r.disclosure.sha256)}),
        ];
        if let Some(ua) = &r.user_agent {
            approval.push(json!({"url": "userAgent", "valueString": ua}));
        }
        if let Some(addr) = &r.address {
            approval.push(json!({"url": "address", "valueString": addr.to_string()}));
        }
        if let Some(end) = r.chosen_end {
            approval.push(json!({"url": "chosenEnd", "valueDateTime": instant(end)}));
        }
        approval.push(json!({
            "url": "requestedCategories",
            "valueCodeableConcept": { "coding": category_codes(&r.categories, registry)
                .into_iter()
                .filter_map(|c| c.get("coding").and_then(|a| a.get(0)).cloned())
                .collect::<Vec<_>>() }
        }));
        let mut extensions = vec![
            json!({"url": ext("right-of-access-approval"), "extension": approval}),
            approver_ext(&ext("approver"), &r.approver),
        ];
        if let GrantState::Revoked { at, by, reason } = &self.state {
            extensions.push(json!({
                "url": ext("revocation"),
                "extension": [
                    {"url": "at", "valueDateTime": instant(*at)},
                    approver_ext("by", by),
                    {"url": "reason", "valueString": reason}
                ]
            }));
        }
        if matches!(self.state, GrantState::Expired) {
            extensions.push(json!({"url": ext("expired"), "valueBoolean": true}));
        }
        for n in &self.narrowings {
            let mut parts = vec![json!({"url": "at", "valueDateTime": instant(n.at)})];
            parts.extend(
                n.removed
                    .iter()
                    .map(|c| json!({"url": "removed", "valueCode": c.as_str()})),
            );
            extensions.push(json!({"url": ext("narrowing"), "extension": parts}));
        }
        json!({
            "resourceType": "Consent",
            "id": self.id.as_str(),
            "extension": extensions,
            "status": status,
            "scope": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                "code": "patient-privacy"
            }]},
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "INFA",
                "display": "information access"
            }]}],
            "patient": {"reference": patient_ref},
            "dateTime": instant(r.approved_at),
            "performer": [performer],
            "policy": [{
                "authority": "https://www.hhs.gov/hipaa",
                "uri": "https://www.ecfr.gov/current/title-45/section-164.524"
            }],
            "provision": {
                "type": "permit",
                "period": {"start": instant(r.approved_at), "end": instant(self.ends_at)},
                "actor": [{
                    "role": {"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                        "code": "IRCP",
                        "display": "information recipient"
                    }]},
                    "reference": {
                        "identifier": {"system": CLIENT_ID_SYSTEM, "value": r.client_id.as_str()},
                        "display": r.client_name
                    }
                }],
                "action": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/consentaction",
                    "code": "access"
                }]}],
                "code": category_codes(&self.categories, registry)
            }
        })
    }

    /// Imports a `Consent` produced by [`Grant::to_fhir_consent`] (or by a host following the
    /// same profile). Bounded and validating: see the module documentation.
    pub fn from_fhir_consent(value: &Value) -> Result<Grant, FhirConsentError> {
        if value.get("resourceType").and_then(Value::as_str) != Some("Consent") {
            return Err(FhirConsentError::NotConsent);
        }
        let id = GrantId::new(string(value.get("id"), "id")?)
            .map_err(|_| FhirConsentError::Invalid("id"))?;
        let patient = string(value.pointer("/patient/reference"), "patient.reference")?
            .strip_prefix("Patient/")
            .and_then(|p| PatientId::new(p).ok())
            .ok_or(FhirConsentError::Invalid("patient.reference"))?;
        let approved_at = parse_instant(value.get("dateTime"), "dateTime")?;
        let ends_at = parse_instant(
            value.pointer("/provision/period/end"),
            "provision.period.end",
        )?;
        if ends_at <= approved_at || ends_at > one_year_after(approved_at) {
            return Err(FhirConsentError::Invalid("provision.period.end"));
        }
        let actor = array(value.pointer("/provision/actor"), "provision.actor", 8)?
            .iter()
            .find(|a| {
                a.pointer("/reference/identifier/system")
                    .and_then(Value::as_str)
                    == Some(CLIENT_ID_SYSTEM)
            })
            .ok_or(FhirConsentError::Missing("provision.actor"))?;
        let client_id = ClientId::new(string(
            actor.pointer("/reference/identifier/value"),
            "provision.actor.reference.identifier.value",
        )?)
        .map_err(|_| FhirConsentError::Invalid("provision.actor.reference.identifier.value"))?;
        let client_name = bounded(
            actor.pointer("/reference/display"),
            "provision.actor.reference.display",
            MAX_NAME_LEN,
        )?;
        let categories = parse_categories(
            array(
                value.pointer("/provision/code"),
                "provision.code",
                MAX_CATEGORIES,
            )?,
            "provision.code",
        )?;

        let extensions = array(value.get("extension"), "extension", 16 + MAX_NARROWINGS)?;
        let find = |name: &str| {
            let url = ext(name);
            extensions
                .iter()
                .find(move |e| e.get("url").and_then(Value::as_str) == Some(url.as_str()))
        };
        let approval = find("right-of-access-approval").ok_or(FhirConsentError::Missing(
            "extension right-of-access-approval",
        ))?;
        let method = ApprovalMethod::from_name(string(
            sub(approval, "method").and_then(|v| v.get("valueCode")),
            "approval.method",
        )?)
        .ok_or(FhirConsentError::Invalid("approval.method"))?;
        let version = bounded(
            sub(approval, "disclosureVersion").and_then(|v| v.get("valueString")),
            "approval.disclosureVersion",
            MAX_VERSION_LEN,
        )?;
        let digest_hex = string(
            sub(approval, "disclosureSha256").and_then(|v| v.get("valueString")),
            "approval.disclosureSha256",
        )?;
        let sha256 = parse_hex32(digest_hex)
            .ok_or(FhirConsentError::Invalid("approval.disclosureSha256"))?;
        let user_agent = sub(approval, "userAgent")
            .map(|v| {
                bounded(
                    v.get("valueString"),
                    "approval.userAgent",
                    MAX_USER_AGENT_LEN,
                )
            })
            .transpose()?;
        let address = sub(approval, "address")
            .map(|v| {
                string(v.get("valueString"), "approval.address")?
                    .parse::<IpAddr>()
                    .map_err(|_| FhirConsentError::Invalid("approval.address"))
            })
            .transpose()?;
        let chosen_end = sub(approval, "chosenEnd")
            .map(|v| parse_instant(v.get("valueDateTime"), "approval.chosenEnd"))
            .transpose()?;
        let requested = parse_categories(
            &array(
                sub(approval, "requestedCategories")
                    .and_then(|v| v.pointer("/valueCodeableConcept/coding")),
                "approval.requestedCategories",
                MAX_CATEGORIES,
            )?
            .iter()
            .map(|coding| json!({ "coding": [coding] }))
            .collect::<Vec<_>>(),
            "approval.requestedCategories",
        )?;
        if requested.is_empty() || categories.is_empty() || !categories.is_subset(&requested) {
            return Err(FhirConsentError::Invalid("provision.code"));
        }
        let approver = parse_approver(
            find("approver").ok_or(FhirConsentError::Missing("extension approver"))?,
            "extension approver",
        )?;

        let status = string(value.get("status"), "status")?;
        let state = match (status, find("revocation"), find("expired")) {
            ("active", None, None) => GrantState::Active,
            ("inactive", Some(rev), None) => GrantState::Revoked {
                at: parse_instant(
                    sub(rev, "at").and_then(|v| v.get("valueDateTime")),
                    "revocation.at",
                )?,
                by: parse_approver(
                    sub(rev, "by").ok_or(FhirConsentError::Missing("revocation.by"))?,
                    "revocation.by",
                )?,
                reason: {
                    let reason = string(
                        sub(rev, "reason").and_then(|v| v.get("valueString")),
                        "revocation.reason",
                    )?;
                    if reason.len() > MAX_REASON_LEN
                        || reason.chars().any(|c| c.is_control() && c != '\n')
                    {
                        return Err(FhirConsentError::Invalid("revocation.reason"));
                    }
                    reason.to_owned()
                },
            },
            ("inactive", None, Some(e)) if e.get("valueBoolean") == Some(&Value::Bool(true)) => {
                GrantState::Expired
            }
            _ => return Err(FhirConsentError::Invalid("status")),
        };

        let mut narrowings = Vec::new();
        let narrowing_url = ext("narrowing");
        for e in extensions
            .iter()
            .filter(|e| e.get("url").and_then(Value::as_str) == Some(narrowing_url.as_str()))
        {
            if narrowings.len() >= MAX_NARROWINGS {
                return Err(FhirConsentError::TooMany("narrowing"));
            }
            let parts = array(e.get("extension"), "narrowing", MAX_CATEGORIES + 1)?;
            let mut at = None;
            let mut removed = BTreeSet::new();
            for p in parts {
                match p.get("url").and_then(Value::as_str) {
                    Some("at") => at = Some(parse_instant(p.get("valueDateTime"), "narrowing.at")?),
                    Some("removed") => {
                        removed.insert(
                            CategoryId::new(string(p.get("valueCode"), "narrowing.removed")?)
                                .map_err(|_| FhirConsentError::Invalid("narrowing.removed"))?,
                        );
                    }
                    _ => return Err(FhirConsentError::Invalid("narrowing")),
                }
            }
            narrowings.push(Narrowing {
                at: at.ok_or(FhirConsentError::Missing("narrowing.at"))?,
                removed,
            });
        }
        // The narrowings must explain exactly the difference between request and current.
        let mut replay = requested.clone();
        for n in &narrowings {
            if n.removed.is_empty() || !n.removed.is_subset(&replay) {
                return Err(FhirConsentError::Invalid("narrowing.removed"));
            }
            replay.retain(|c| !n.removed.contains(c));
        }
        if replay != categories {
            return Err(FhirConsentError::Invalid("narrowing"));
        }

        let request = RightOfAccessRequest {
            patient,
            approver,
            client_id,
            client_name,
            categories: requested,
            disclosure: DisclosureRef { version, sha256 },
            approved_at,
            method,
            user_agent,
            address,
            chosen_end,
        };
        match request.chosen_end {
            Some(end) if end != ends_at => {
                return Err(FhirConsentError::Invalid("approval.chosenEnd"));
            }
            None if ends_at != one_year_after(approved_at) => {
                return Err(FhirConsentError::Invalid("provision.period.end"));
            }
            _ => {}
        }
        Ok(Grant {
            id,
            request,
            categories,
            ends_at,
            state,
            narrowings,
        })
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}
