//! Known mistakes in published scope strings, and their corrections.
//!
//! US Core 7.0.0, 8.0.0 and 9.0.0 generate their scope tables from CSV files that write the
//! social-history category system as `http://terminology.hl7.org//CodeSystem-observation-category`
//! (a double slash and a hyphen where the canonical URL has `/CodeSystem/`), and several public
//! servers copied that string into `scopes_supported`. The 6.1.0 Quick Starts point at the HTML
//! page instead (`http://terminology.hl7.org/3.1.0/CodeSystem-observation-category.html`), and the
//! 6.1.0/7.0.0 Quick Start templates write `patient.Observation.rs` with a dot after the context.
//!
//! The parser repairs these forms as it reads them, so a scope that came in with the typo is
//! stored, compared and printed with the canonical URL only. The same repair is applied to every
//! `system|code` value of a filter, whatever the parameter, because the mistake is in the system
//! URL, not in the parameter. Only `terminology.hl7.org` shapes that cannot be a canonical URL are
//! rewritten, so no correct URL is ever changed.

/// The canonical host prefix of HL7 terminology code systems.
const THO: &str = "http://terminology.hl7.org/";

/// The canonical form of a code-system URL written in one of the known wrong shapes, or `None`
/// if `system` is not one of them (correct URLs included).
///
/// Repaired shapes, for any code-system name `N` (letters, digits and `-`):
/// `http://terminology.hl7.org//CodeSystem-N`, `http://terminology.hl7.org/CodeSystem-N`,
/// `http://terminology.hl7.org//CodeSystem/N`, the same with `.html` appended, and
/// `http://terminology.hl7.org/<version>/CodeSystem-N.html`; all become
/// `http://terminology.hl7.org/CodeSystem/N`.
///
/// ```
/// use fhirguard::scope::canonical_system;
/// assert_eq!(
///     canonical_system("http://terminology.hl7.org//CodeSystem-observation-category").as_deref(),
///     Some("http://terminology.hl7.org/CodeSystem/observation-category"),
/// );
/// assert_eq!(canonical_system("http://terminology.hl7.org/CodeSystem/observation-category"), None);
/// ```
pub fn canonical_system(system: &str) -> Option<String> {
    let rest = system.strip_prefix(THO)?;
    let name = if let Some(r) = rest.strip_prefix('/') {
        // `//CodeSystem-N` or `//CodeSystem/N`
        r.strip_prefix("CodeSystem-")
            .or_else(|| r.strip_prefix("CodeSystem/"))?
    } else if let Some(r) = rest.strip_prefix("CodeSystem-") {
        r
    } else {
        // `<version>/CodeSystem-N.html`
        let (version, r) = rest.split_once('/')?;
        let versioned = !version.is_empty()
            && version.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && version.bytes().next().is_some_and(|b| b.is_ascii_digit());
        if !versioned {
            return None;
        }
        r.strip_prefix("CodeSystem-")?
    };
    let name = name.strip_suffix(".html").unwrap_or(name);
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    valid.then(|| format!("{THO}CodeSystem/{name}"))
}

/// Repairs the system part of a FHIR token value (`system|code`), if it is a known mistake.
pub(crate) fn canonical_token_value(value: &str) -> Option<String> {
    let (system, code) = super::filter::split_token(value);
    let system = system?;
    let fixed = canonical_system(system)?;
    Some(format!("{fixed}|{code}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBS: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

    #[test]
    fn known_typos_are_repaired() {
        for typo in [
            "http://terminology.hl7.org//CodeSystem-observation-category",
            "http://terminology.hl7.org/CodeSystem-observation-category",
            "http://terminology.hl7.org//CodeSystem/observation-category",
            "http://terminology.hl7.org/3.1.0/CodeSystem-observation-category.html",
            "http://terminology.hl7.org/CodeSystem-observation-category.html",
        ] {
            assert_eq!(canonical_system(typo).as_deref(), Some(OBS), "{typo}");
        }
        assert_eq!(
            canonical_token_value(
                "http://terminology.hl7.org//CodeSystem-observation-category|social-history"
            )
            .as_deref(),
            Some("http://terminology.hl7.org/CodeSystem/observation-category|social-history")
        );
    }

    #[test]
    fn correct_and_foreign_urls_are_left_alone() {
        for ok in [
            OBS,
            "http://hl7.org/fhir/us/core/CodeSystem/us-core-category",
            "http://terminology.hl7.org/CodeSystem/v2-0074",
            "http://loinc.org",
            "http://terminology.hl7.org/x/CodeSystem-a.html",
            "http://terminology.hl7.org//CodeSystem-",
            "laboratory",
        ] {
            assert_eq!(canonical_system(ok), None, "{ok}");
        }
        assert_eq!(canonical_token_value("laboratory"), None);
    }
}
