//! Read-only views of FHIR JSON, and the pruned, borrowed parse the guard checks a returned
//! resource with.
//!
//! Enforcement and classification read a handful of elements of a resource: its type and id,
//! the coded elements the category rules and granular scopes name, and the patient
//! references of the compartment check. [`JsonView`] is what they read through, so the same
//! checks run over a whole `serde_json::Value` (a host's own resource, a Bundle entry) and over
//! a [`Pruned`] view parsed straight from the response bytes, which keeps only those elements
//! and borrows its strings from the bytes instead of building a `Value` and dropping it again.

use std::borrow::Cow;
use std::fmt;

use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::Value;

/// What the checks read of a JSON value. Implemented for `serde_json::Value` and [`Pruned`].
pub(crate) trait JsonView: Sized {
    /// The member `key` of an object (`None` for anything else).
    fn get(&self, key: &str) -> Option<&Self>;
    /// The string, if this is one.
    fn as_str(&self) -> Option<&str>;
    /// The items, if this is an array.
    fn as_array(&self) -> Option<&[Self]>;
    /// Whether this is an object.
    fn is_object(&self) -> bool;
}

impl JsonView for Value {
    fn get(&self, key: &str) -> Option<&Self> {
        self.as_object().and_then(|o| o.get(key))
    }
    fn as_str(&self) -> Option<&str> {
        Value::as_str(self)
    }
    fn as_array(&self) -> Option<&[Self]> {
        Value::as_array(self).map(Vec::as_slice)
    }
    fn is_object(&self) -> bool {
        Value::is_object(self)
    }
}

/// A JSON value parsed by [`probe`]: objects keep only the wanted members, strings borrow
/// from the input unless they held escapes, numbers and booleans are not kept (no check
/// reads them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pruned<'a> {
    /// `null`, a number or a boolean.
    Scalar,
    /// A string.
    Str(Cow<'a, str>),
    /// An array.
    Array(Vec<Pruned<'a>>),
    /// An object, with only the wanted members, in document order (names are unique: a
    /// repeated wanted name fails the parse).
    Object(Vec<(Cow<'a, str>, Pruned<'a>)>),
}

impl JsonView for Pruned<'_> {
    fn get(&self, key: &str) -> Option<&Self> {
        match self {
            Pruned::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Pruned::Str(s) => Some(s),
            _ => None,
        }
    }
    fn as_array(&self) -> Option<&[Self]> {
        match self {
            Pruned::Array(items) => Some(items),
            _ => None,
        }
    }
    fn is_object(&self) -> bool {
        matches!(self, Pruned::Object(_))
    }
}

/// The keys the checks read inside a kept element: a CodeableConcept's `coding`, a Coding's
/// (or a bare code's) `system` and `code`, a Reference's `reference`. Everything else nested in
/// a kept element (`display`, `text`, extensions…) is skipped.
pub(crate) const NESTED_KEYS: &[&str] = &["coding", "code", "system", "reference"];

/// How deep kept elements may nest before the parse gives up (FHIR coded elements and
/// references are at most three levels below the resource; serde_json's own limit of 128
/// guards the skipped parts).
const MAX_KEPT_DEPTH: u8 = 8;

/// Parses a JSON object keeping only the top-level members `fields` and, inside them, only
/// [`NESTED_KEYS`]; the rest is checked for syntax and skipped, never built.
///
/// Every reader of the result looks at the top-level `fields` and, below them, only at those
/// keys, so the pruned view decides exactly as the whole resource would. Pruning only ever
/// removes: a reader that wanted more would find nothing and refuse, never allow. `None` for
/// anything that is not one JSON object, or that repeats a kept member name (a reader of the
/// whole document could see either copy, so neither is trusted).
pub(crate) fn probe<'a, N: AsRef<str>>(bytes: &'a [u8], fields: &[N]) -> Option<Pruned<'a>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let top = Keep {
        names: Names::Top(fields),
        depth: 0,
    }
    .deserialize(&mut de)
    .ok()?;
    de.end().ok()?;
    top.is_object().then_some(top)
}

/// Which member names an object keeps.
enum Names<'f, N> {
    /// The resource itself: the caller's fields.
    Top(&'f [N]),
    /// Anything below: [`NESTED_KEYS`].
    Nested,
}

impl<N> Clone for Names<'_, N> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<N> Copy for Names<'_, N> {}

impl<N: AsRef<str>> Names<'_, N> {
    fn position(&self, key: &str) -> Option<usize> {
        match self {
            Names::Top(fields) => fields.iter().position(|f| f.as_ref() == key),
            Names::Nested => NESTED_KEYS.iter().position(|f| *f == key),
        }
    }
}

/// A value to keep, pruned below by [`NESTED_KEYS`].
struct Keep<'f, N> {
    names: Names<'f, N>,
    depth: u8,
}

impl<'de, N: AsRef<str>> DeserializeSeed<'de> for Keep<'_, N> {
    type Value = Pruned<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Pruned<'de>, D::Error> {
        if self.depth > MAX_KEPT_DEPTH {
            return Err(D::Error::custom("kept element nested too deep"));
        }
        d.deserialize_any(self)
    }
}

impl<'de, N: AsRef<str>> Visitor<'de> for Keep<'_, N> {
    type Value = Pruned<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Pruned<'de>, E> {
        Ok(Pruned::Scalar)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Pruned<'de>, E> {
        Ok(Pruned::Scalar)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Pruned<'de>, E> {
        Ok(Pruned::Scalar)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Pruned<'de>, E> {
        Ok(Pruned::Scalar)
    }
    fn visit_unit<E>(self) -> Result<Pruned<'de>, E> {
        Ok(Pruned::Scalar)
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Pruned<'de>, E> {
        Ok(Pruned::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Pruned<'de>, E> {
        Ok(Pruned::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Pruned<'de>, E> {
        Ok(Pruned::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Pruned<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Keep {
            names: Names::<N>::Nested,
            depth: self.depth + 1,
        })? {
            items.push(item);
        }
        Ok(Pruned::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pruned<'de>, A::Error> {
        let mut members: Vec<(Cow<'de, str>, Pruned<'de>)> = Vec::new();
        while let Some(key) = map.next_key_seed(Key(self.names))? {
            match key {
                Some(name) => {
                    if members.iter().any(|(k, _)| *k == name) {
                        return Err(A::Error::custom("repeated member"));
                    }
                    let value = map.next_value_seed(Keep {
                        names: Names::<N>::Nested,
                        depth: self.depth + 1,
                    })?;
                    members.push((name, value));
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Pruned::Object(members))
    }
}

/// A member name: kept (borrowed when it had no escapes) or `None`, matched as it is read.
struct Key<'f, N>(Names<'f, N>);

impl<'de, N: AsRef<str>> DeserializeSeed<'de> for Key<'_, N> {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, N: AsRef<str>> Visitor<'de> for Key<'_, N> {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(self.0.position(key).map(|_| Cow::Borrowed(key)))
    }
    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.position(key).map(|_| Cow::Owned(key.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[&str] = &["resourceType", "id", "category", "subject"];

    #[test]
    fn keeps_wanted_members_and_borrows_their_strings() {
        let bytes = br#"{"resourceType":"Observation","id":"1","text":{"div":"<div>x</div>"},
            "category":[{"coding":[{"system":"s","code":"vital-signs","display":"V"}],"text":"t"}],
            "subject":{"reference":"Patient/355","display":"Amy"},"valueQuantity":{"value":1}}"#;
        let view = probe(bytes, FIELDS).unwrap();
        assert_eq!(
            view.get("resourceType").and_then(JsonView::as_str),
            Some("Observation")
        );
        assert!(view.get("text").is_none() && view.get("valueQuantity").is_none());
        let subject = view.get("subject").unwrap();
        assert_eq!(
            subject.get("reference").and_then(JsonView::as_str),
            Some("Patient/355")
        );
        assert!(subject.get("display").is_none());
        let coding = &view.get("category").unwrap().as_array().unwrap()[0]
            .get("coding")
            .unwrap()
            .as_array()
            .unwrap()[0];
        assert_eq!(
            coding.get("code").and_then(JsonView::as_str),
            Some("vital-signs")
        );
        assert!(coding.get("display").is_none());
        assert!(matches!(
            view.get("resourceType"),
            Some(Pruned::Str(Cow::Borrowed(_)))
        ));
    }

    #[test]
    fn escaped_strings_and_names_are_decoded() {
        let view = probe(
            br#"{"resource\u0054ype":"Pat\u0069ent","id":"a\"b"}"#,
            FIELDS,
        )
        .unwrap();
        assert_eq!(
            view.get("resourceType").and_then(JsonView::as_str),
            Some("Patient")
        );
        assert_eq!(view.get("id").and_then(JsonView::as_str), Some("a\"b"));
    }

    #[test]
    fn refuses_what_is_not_one_object() {
        for bad in [
            &br#"{"resourceType":"Observation"} trailing"#[..],
            br#"{"resourceType":"Observation","x":[1,}"#,
            b"[1,2]",
            b"\"Observation\"",
            b"",
            br#"{"id":"1""#,
        ] {
            assert!(
                probe(bad, FIELDS).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_repeated_kept_member_is_refused_a_repeated_skipped_one_is_not() {
        assert!(
            probe(
                br#"{"subject":{"reference":"Patient/1"},"subject":{"reference":"Patient/2"}}"#,
                FIELDS
            )
            .is_none()
        );
        assert!(
            probe(
                br#"{"subject":{"reference":"Patient/1","reference":"Patient/2"}}"#,
                FIELDS
            )
            .is_none()
        );
        assert!(probe(br#"{"id":"1","note":1,"note":2}"#, FIELDS).is_some());
    }

    #[test]
    fn deep_nesting_inside_a_kept_element_is_refused_not_overflowed() {
        let deep = format!("{{\"category\":{}1{}}}", "[".repeat(64), "]".repeat(64));
        assert!(probe(deep.as_bytes(), FIELDS).is_none());
        let skipped = format!("{{\"note\":{}1{}}}", "[".repeat(64), "]".repeat(64));
        assert!(probe(skipped.as_bytes(), FIELDS).is_some());
    }

    #[test]
    fn the_value_view_reads_like_the_pruned_one() {
        let bytes = br#"{"resourceType":"Condition","category":[{"coding":[{"code":"x"}]}]}"#;
        let whole: Value = serde_json::from_slice(bytes).unwrap();
        let pruned = probe(bytes, FIELDS).unwrap();
        let code = |v: &dyn Fn() -> Option<String>| v();
        assert_eq!(
            code(&|| whole.get("category")?.as_array()?[0]
                .get("coding")?
                .as_array()?[0]
                .get("code")?
                .as_str()
                .map(str::to_owned)),
            code(&|| pruned.get("category")?.as_array()?[0]
                .get("coding")?
                .as_array()?[0]
                .get("code")?
                .as_str()
                .map(str::to_owned)),
        );
        assert!(JsonView::is_object(&whole) && pruned.is_object());
    }
}

/// Scans a JSON resource for what [`Enforcer::redact`](crate::enforce::Enforcer::redact) would
/// remove from it, without building the document: a reference (an object holding only
/// `Reference` keys, with a `display` or `identifier`) whose target `hidden` says is hidden, or
/// a `contained` list (always reported: its types are decided on the parsed value). The
/// argument of `hidden` is the target's resource type, `None` when the reference does not say.
///
/// `bytes` must already have been parsed once by serde_json (the guard's [`probe`] does): this
/// pass only finds object boundaries and member names in a document known to be valid. It
/// never decides alone that something may be sent: whatever it does not expect (a member name
/// or reference with an escape, a repeated `Reference` key, nesting deeper than serde_json
/// allows) answers `true`, and the caller then parses the value and decides on that.
#[cfg_attr(not(feature = "tower"), allow(dead_code))] // used by the guard alone
pub(crate) fn scan_naming_references(bytes: &[u8], hidden: &dyn Fn(Option<&str>) -> bool) -> bool {
    let mut scan = RefScan {
        b: bytes,
        i: 0,
        found: false,
        hidden,
    };
    match scan.value(Parent::Top, 0) {
        Ok(_) => scan.found,
        Err(Unexpected) => true,
    }
}

#[cfg_attr(not(feature = "tower"), allow(dead_code))] // used by the guard alone
/// Where a scanned value sits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parent {
    /// The resource itself.
    Top,
    /// Under `coding` or a `…Coding` choice: codings, never references.
    Coding,
    /// The resource's `text` and `meta`, which redaction leaves alone.
    Skipped,
    /// Anywhere else.
    Other,
}

#[cfg_attr(not(feature = "tower"), allow(dead_code))] // used by the guard alone
impl Parent {
    fn of(key: &[u8]) -> Self {
        if key == b"coding" || key.ends_with(b"Coding") {
            Parent::Coding
        } else {
            Parent::Other
        }
    }
}

/// The keys a `Reference` may hold (the same list as enforcement's).
#[cfg_attr(not(feature = "tower"), allow(dead_code))] // used by the guard alone
const REFERENCE_KEYS: [&[u8]; 6] = [
    b"id",
    b"extension",
    b"reference",
    b"type",
    b"identifier",
    b"display",
];

/// serde_json refuses nesting beyond 128; a deeper document cannot have been validated.
#[cfg_attr(not(feature = "tower"), allow(dead_code))] // used by the guard alone
const SCAN_MAX_DEPTH: usize = 130;

/// Something a validated document would not hold, or an escape the scan does not decode.
#[cfg_attr(not(feature = "tower"), allow(dead_code))] // used by the guard alone
struct Unexpected;

/// A string's raw bytes, between its quotes; `escaped` when it holds a backslash.
#[cfg_attr(not(feature = "tower"), allow(dead_code))] // used by the guard alone
#[derive(Clone, Copy)]
struct RawStr<'a> {
    bytes: &'a [u8],
    escaped: bool,
}

#[cfg_attr(not(feature = "tower"), allow(dead_code))] // used by the guard alone
struct RefScan<'a, 'h> {
    b: &'a [u8],
    i: usize,
    found: bool,
    hidden: &'h dyn Fn(Option<&str>) -> bool,
}

#[cfg_attr(not(feature = "tower"), allow(dead_code))] // used by the guard alone
impl<'a> RefScan<'a, '_> {
    fn skip_ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), Unexpected> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(Unexpected)
        }
    }

    /// A string, the opening quote at `self.i`.
    fn string(&mut self) -> Result<RawStr<'a>, Unexpected> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            let rest = self.b.get(self.i..).ok_or(Unexpected)?;
            let at = memchr::memchr2(b'"', b'\\', rest).ok_or(Unexpected)?;
            self.i += at;
            if self.b.get(self.i) == Some(&b'"') {
                let bytes = self.b.get(start..self.i).ok_or(Unexpected)?;
                self.i += 1;
                return Ok(RawStr { bytes, escaped });
            }
            // A backslash: skip it and the byte it escapes.
            escaped = true;
            self.i += 2;
        }
    }

    /// One value; its raw text when it is a string.
    fn value(&mut self, parent: Parent, depth: usize) -> Result<Option<RawStr<'a>>, Unexpected> {
        if depth > SCAN_MAX_DEPTH {
            return Err(Unexpected);
        }
        match self.peek().ok_or(Unexpected)? {
            b'{' => {
                self.i += 1;
                self.object(parent, depth)?;
                Ok(None)
            }
            b'[' => {
                self.i += 1;
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(None);
                }
                loop {
                    self.value(parent, depth + 1)?;
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(None);
                        }
                        _ => return Err(Unexpected),
                    }
                }
            }
            b'"' => self.string().map(Some),
            _ => {
                // A number, `true`, `false` or `null`: up to the next delimiter.
                while let Some(c) = self.b.get(self.i) {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.i += 1;
                }
                Ok(None)
            }
        }
    }

    fn object(&mut self, parent: Parent, depth: usize) -> Result<(), Unexpected> {
        let checked = parent == Parent::Other;
        let mut reference_like = checked;
        let mut names = false;
        let mut seen = 0u8;
        let mut reference: Option<RawStr<'a>> = None;
        let mut declared: Option<RawStr<'a>> = None;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(Unexpected);
            }
            let key = self.string()?;
            if key.escaped {
                // The client reads the decoded name; this scan does not decode.
                return Err(Unexpected);
            }
            let key = key.bytes;
            self.expect(b':')?;
            let child = match parent {
                Parent::Top if key == b"text" || key == b"meta" => Parent::Skipped,
                Parent::Skipped => Parent::Skipped,
                _ => Parent::of(key),
            };
            if parent == Parent::Top && key == b"contained" {
                self.found = true;
            }
            match REFERENCE_KEYS.iter().position(|k| *k == key) {
                Some(i) => {
                    let bit = 1u8 << i;
                    if checked && seen & bit != 0 {
                        // Read either way by the client's parser: let the parsed value decide.
                        self.found = true;
                    }
                    seen |= bit;
                    if key == b"display" || key == b"identifier" {
                        names = true;
                    }
                }
                None => reference_like = false,
            }
            let text = self.value(child, depth + 1)?;
            if key == b"reference" {
                reference = text;
                reference_like &= text.is_some();
            } else if key == b"type" {
                declared = text;
                reference_like &= text.is_some();
            }
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(Unexpected),
            }
        }
        if reference_like && names {
            if reference.is_some_and(|r| r.escaped) || declared.is_some_and(|t| t.escaped) {
                return Err(Unexpected);
            }
            let as_str = |r: Option<RawStr<'a>>| r.and_then(|r| std::str::from_utf8(r.bytes).ok());
            let target = as_str(reference)
                .filter(|r| !(r.starts_with('#') || r.starts_with("urn:")))
                .and_then(crate::enforce::literal_type)
                .or_else(|| {
                    as_str(declared)
                        .and_then(|t| t.rsplit('/').next())
                        .filter(|t| crate::enforce::is_type_name(t))
                });
            if (self.hidden)(target) {
                self.found = true;
            }
        }
        Ok(())
    }
}
