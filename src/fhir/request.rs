//! The typed FHIR REST request every later stage works on.
//!
//! The sanitizer turns an `http::Request` into a [`FhirRequest`] (refusing what it cannot type);
//! enforcement, the middleware and the audit record only ever see this form, so no stage has to
//! re-parse a URL or guess what a raw query string meant.

use std::borrow::Cow;
use std::fmt;

use crate::sanitize::R4_RESOURCE_TYPES;

/// A FHIR resource type name, as it appears in a URL (`Observation`).
///
/// The sanitizer only builds one for a type on its allow-list; the type itself only guarantees
/// the FHIR name shape (an ASCII capital followed by ASCII letters, at most 64 bytes).
///
/// A FHIR R4 type name (every name the sanitizer accepts) borrows the static name list, so
/// building, cloning and dropping one never allocates; other well-shaped names are owned.
/// Equality, ordering and hashing are those of the name either way.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceType(Cow<'static, str>);

impl ResourceType {
    /// Wraps `name` if it has the shape of a FHIR resource type name.
    pub fn new(name: &str) -> Option<Self> {
        let bytes = name.as_bytes();
        let shaped = !bytes.is_empty()
            && bytes.len() <= 64
            && bytes[0].is_ascii_uppercase()
            && bytes.iter().all(u8::is_ascii_alphabetic);
        if !shaped {
            return None;
        }
        // `R4_RESOURCE_TYPES` is sorted (a unit test holds it to that).
        Some(match R4_RESOURCE_TYPES.binary_search(&name) {
            Ok(i) => Self(Cow::Borrowed(R4_RESOURCE_TYPES[i])),
            Err(_) => Self(Cow::Owned(name.to_owned())),
        })
    }

    /// The type name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceType({})", self.0)
    }
}

/// The FHIR RESTful interaction a request performs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Interaction {
    /// `GET [base]/metadata`.
    Capabilities,
    /// `GET [base]/[type]/[id]`.
    Read,
    /// `GET [base]/[type]/[id]/_history/[vid]`.
    Vread,
    /// `GET [base]/[type]/[id]/_history`.
    HistoryInstance,
    /// `GET [base]/[type]/_history`.
    HistoryType,
    /// `GET [base]/_history`.
    HistorySystem,
    /// `GET [base]/[type]?…` or `POST [base]/[type]/_search`.
    SearchType,
    /// `GET [base]?…` or `POST [base]/_search`.
    SearchSystem,
    /// `GET [base]/[Compartment]/[id]/[type]?…` (a compartment search).
    SearchCompartment,
    /// `POST [base]/[type]`.
    Create,
    /// `PUT [base]/[type]/[id]`.
    Update,
    /// `PATCH [base]/[type]/[id]`.
    Patch,
    /// `DELETE [base]/[type]/[id]`.
    Delete,
    /// `POST [base]` with a batch or transaction Bundle.
    BatchOrTransaction,
    /// `[base]/$op`, `[base]/[type]/$op` or `[base]/[type]/[id]/$op`; the name is without `$`.
    Operation(String),
}

impl Interaction {
    /// Whether the interaction can change data on the server.
    ///
    /// Operations and batches are not classified here: whether `$everything` writes is a
    /// property of the operation, and a batch is judged entry by entry.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Interaction::Create | Interaction::Update | Interaction::Patch | Interaction::Delete
        )
    }
}

/// One search parameter occurrence, after percent-decoding.
///
/// `code:not=1234-5` is `name = "code"`, `modifier = Some("not")`, `values = ["1234-5"]`;
/// `status=final,amended` has two values (an OR). Escaped commas (`\,`) stay inside one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchParam {
    /// The parameter name, including a chain (`subject.name`) or a `_has:` prefix as written.
    pub name: String,
    /// The modifier after `:`, if any.
    pub modifier: Option<String>,
    /// The comma-separated alternatives, decoded.
    pub values: Vec<String>,
}

/// A FHIR REST request in typed form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirRequest {
    /// What the request does.
    pub interaction: Interaction,
    /// The resource type addressed, if any (`None` for system-level interactions).
    pub resource_type: Option<ResourceType>,
    /// The logical id addressed, if any.
    pub id: Option<String>,
    /// The version id of a vread.
    pub version_id: Option<String>,
    /// For a compartment search, the compartment (`Patient`, id).
    pub compartment: Option<(ResourceType, String)>,
    /// Search and control parameters, in the order they were sent.
    pub params: Vec<SearchParam>,
}

impl FhirRequest {
    /// A request with the given interaction and nothing else set.
    pub fn new(interaction: Interaction) -> Self {
        Self {
            interaction,
            resource_type: None,
            id: None,
            version_id: None,
            compartment: None,
            params: Vec::new(),
        }
    }

    /// The occurrences of the parameter `name` (any modifier).
    pub fn params_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a SearchParam> {
        self.params.iter().filter(move |p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_type_shape() {
        assert!(ResourceType::new("Observation").is_some());
        assert!(ResourceType::new("observation").is_none());
        assert!(ResourceType::new("Obs-ervation").is_none());
        assert!(ResourceType::new("").is_none());
        assert!(ResourceType::new(&"A".repeat(65)).is_none());
        // Names outside R4 keep working (owned), and compare like the static ones.
        let custom = ResourceType::new("MyCustomType").unwrap();
        assert_eq!(custom.as_str(), "MyCustomType");
        assert!(ResourceType::new("Account").unwrap() < custom);
        assert!(custom < ResourceType::new("Observation").unwrap());
    }

    #[test]
    fn r4_names_are_sorted_for_binary_search() {
        assert!(R4_RESOURCE_TYPES.windows(2).all(|w| w[0] < w[1]));
        for name in R4_RESOURCE_TYPES {
            let t = ResourceType::new(name).unwrap();
            assert!(matches!(t.0, Cow::Borrowed(_)));
            assert_eq!(t.as_str(), *name);
        }
    }

    #[test]
    fn writes_are_recognised() {
        assert!(Interaction::Create.is_write());
        assert!(Interaction::Delete.is_write());
        assert!(!Interaction::Read.is_write());
        assert!(!Interaction::Operation("everything".into()).is_write());
    }
}
