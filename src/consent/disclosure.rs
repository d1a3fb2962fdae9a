//! The disclosure text shown on the approval page.
//!
//! The wording is a deliberate legal choice (see `docs/consent.md`): the patient is making a
//! request under the HIPAA right of access (45 CFR 164.524) to have her provider send copies to
//! an app she designates. That is *not* a HIPAA authorization (45 CFR 164.508), and once the app
//! holds the data the provider is no longer responsible for it. The text names what is shared
//! and with whom, in plain language, and its SHA-256 goes into the grant so the record proves
//! which words she saw.
//!
//! The text is plain UTF-8 with `\n` line breaks; a host renders it with its HTML encoder (see
//! [`crate::sanitize`]), never as markup.

use ring::digest::{SHA256, digest};

use super::record::DisclosureRef;
use crate::category::CategoryRegistry;
use crate::ids::{CategoryId, ClientId};

/// The version id of the template [`Disclosure::render`] fills in. Bump it whenever the
/// wording changes, so stored grants keep pointing at the words they were approved with.
pub const DISCLOSURE_VERSION: &str = "fhirguard-roa-2";

/// A rendered disclosure: the exact text and its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disclosure {
    /// The template's version id ([`DISCLOSURE_VERSION`]).
    pub version: String,
    /// The exact text to show.
    pub text: String,
    /// SHA-256 of `text`'s UTF-8 bytes.
    pub sha256: [u8; 32],
}

/// Keeps names on one line and free of control characters, so an app's registered name cannot
/// forge extra lines of the disclosure.
fn one_line(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if trimmed.is_empty() {
        "(unnamed)".to_owned()
    } else {
        trimmed
    }
}

impl Disclosure {
    /// Renders the disclosure for `app_name` (`client_id`) receiving the listed categories (each
    /// a patient-facing label and description, as [`CategoryRegistry::describe`] gives them)
    /// from `provider_name`.
    pub fn render<L: AsRef<str>, D: AsRef<str>>(
        provider_name: &str,
        app_name: &str,
        client_id: &ClientId,
        categories: &[(L, D)],
    ) -> Self {
        let provider = one_line(provider_name);
        let app = one_line(app_name);
        let mut text = String::with_capacity(1600 + categories.len() * 160);
        text.push_str(&format!(
            "Request to send your health information to \"{app}\"\n\n"
        ));
        text.push_str(&format!(
            "You are asking {provider} to send copies of your health information to the app \
             \"{app}\" (app id: {client_id}), which you have chosen. This is a request under \
             your right of access to your own health information under HIPAA (45 CFR 164.524). \
             It is NOT a HIPAA authorization: you are directing your own information to an app \
             of your choice.\n\n"
        ));
        // Shown before she ticks anything, so it must not say that everything listed will be
        // sent: only what she chooses is.
        text.push_str(&format!(
            "What {provider} can send to \"{app}\". Only the kinds of information you choose \
             to share are sent; nothing else is:\n"
        ));
        for (label, description) in categories {
            text.push_str(&format!(
                "- {}: {}\n",
                one_line(label.as_ref()),
                one_line(description.as_ref())
            ));
        }
        text.push_str(&format!(
            "\nWho receives it: only the app \"{app}\". {provider} sends the information above \
             each time the app asks for it, until this request ends.\n\n"
        ));
        text.push_str(
            "How long: until the end date you choose, and never more than one year after you \
             approve. You can revoke this request at any time from your patient portal; from \
             then on the app receives nothing more.\n\n",
        );
        text.push_str(&format!(
            "Once the app has your information, {provider} is not responsible for it. How \
             \"{app}\" uses, keeps or shares your information is governed by the app's own terms \
             and privacy policy, and HIPAA's protections may no longer apply to it.\n"
        ));
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(digest(&SHA256, text.as_bytes()).as_ref());
        Self {
            version: DISCLOSURE_VERSION.to_owned(),
            text,
            sha256,
        }
    }

    /// Renders the disclosure for `categories`, labelled and described by `registry`
    /// (categories the registry cannot describe are listed by id).
    pub fn for_categories<'a>(
        provider_name: &str,
        app_name: &str,
        client_id: &ClientId,
        registry: &CategoryRegistry,
        categories: impl IntoIterator<Item = &'a CategoryId>,
    ) -> Self {
        let described: Vec<(String, String)> = categories
            .into_iter()
            .map(|id| {
                registry
                    .describe(id)
                    .unwrap_or_else(|| (id.as_str().to_owned(), String::from("(no description)")))
            })
            .collect();
        Self::render(provider_name, app_name, client_id, &described)
    }

    /// The reference stored in the grant.
    pub fn reference(&self) -> DisclosureRef {
        DisclosureRef {
            version: self.version.clone(),
            sha256: self.sha256,
        }
    }

    /// Whether `reference` names exactly this text.
    pub fn matches(&self, reference: &DisclosureRef) -> bool {
        self.version == reference.version && self.sha256 == reference.sha256
    }
}
