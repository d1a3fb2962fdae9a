//! Granular filters: the `?param=value&…` part of a SMART v2 scope.
//!
//! A filter is FHIR search syntax. `category=a,b` is one [`Filter`] with two alternatives (an OR,
//! as in FHIR search); two parameters joined by `&` are two filters that must both hold (an AND).
//! Values are stored percent-decoded and still FHIR-escaped (`\,` `\|` stay as written), so they
//! compare directly with the decoded search parameters of a [`crate::fhir::FhirRequest`].
//!
//! Printing percent-encodes only what a scope token cannot carry raw (RFC 6749 allows
//! `%x21 / %x23-5B / %x5D-7E`) plus the query's own delimiters (`%`, `&`, and `=` in names), so
//! `|`, `:` and `/` appear raw, as in every scope the guide and US Core print.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use super::error::{ExperimentalFeature, QueryError, ScopeError};
use super::{ParseOptions, errata};

/// One `param=value[,value…]` constraint of a granular scope.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Filter {
    name: String,
    values: Vec<String>,
}

/// A FHIR token search value split at its first unescaped `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenValue<'a> {
    /// The code system (`None` when the value has no `|`; `Some("")` for `|code`, which in
    /// FHIR means "a code with no system").
    pub system: Option<&'a str>,
    /// The code.
    pub code: &'a str,
}

impl Filter {
    /// A filter `name=values[0],values[1],…`.
    ///
    /// The name must be a plain search parameter name (`A-Z a-z 0-9 _ -`). Each value is one
    /// FHIR-escaped alternative: a literal comma must be written `\,`, and a `\` must escape
    /// something. Known code-system typos in the values are repaired. Fails on an empty name, no
    /// values, an empty value, or a value with an unescaped `,` or a dangling `\`.
    pub fn new<I, S>(name: &str, values: I) -> Result<Filter, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        check_name(name, false)?;
        let mut out = Vec::new();
        for v in values {
            let v: String = v.into();
            if v.is_empty() {
                return Err(QueryError::EmptyValue.into());
            }
            if !is_one_alternative(&v) {
                return Err(QueryError::BadEscape.into());
            }
            out.push(errata::canonical_token_value(&v).unwrap_or(v));
        }
        if out.is_empty() {
            return Err(QueryError::EmptyValue.into());
        }
        Ok(Filter {
            name: name.to_owned(),
            values: out,
        })
    }

    /// The parameter name (`category`), including a modifier or chain if experimental filters
    /// were accepted.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The alternatives (an OR), decoded, FHIR escapes kept.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &str> + Clone {
        self.values.iter().map(String::as_str)
    }

    /// The alternatives read as FHIR token values (`system|code`).
    pub fn tokens(&self) -> impl Iterator<Item = TokenValue<'_>> {
        self.values.iter().map(|v| {
            let (system, code) = split_token(v);
            TokenValue { system, code }
        })
    }

    /// Whether `value` is one of the alternatives.
    pub fn allows(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }

    /// Whether every alternative of `other` is one of ours: then `other` is at least as narrow.
    pub(crate) fn values_superset_of(&self, other: &Filter) -> bool {
        other.values.iter().all(|v| self.values.contains(v))
    }

    /// The alternatives both filters allow (same name assumed), or `None` if there are none.
    pub(crate) fn intersect_values(&self, other: &Filter) -> Option<Filter> {
        let values: Vec<String> = self
            .values
            .iter()
            .filter(|v| other.values.contains(v))
            .cloned()
            .collect();
        (!values.is_empty()).then(|| Filter {
            name: self.name.clone(),
            values,
        })
    }

    /// Sorts and deduplicates the alternatives (the normal form).
    pub(crate) fn normalize(&mut self) {
        self.values.sort();
        self.values.dedup();
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_encoded(f, &self.name, true)?;
        f.write_char('=')?;
        for (i, v) in self.values.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            write_encoded(f, v, false)?;
        }
        Ok(())
    }
}

/// Splits a token value at its first unescaped `|`.
pub(crate) fn split_token(value: &str) -> (Option<&str>, &str) {
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes.get(i) {
            Some(b'\\') => i += 2,
            Some(b'|') => return (value.get(..i), value.get(i + 1..).unwrap_or("")),
            _ => i += 1,
        }
    }
    (None, value)
}

/// Whether `v` is a single FHIR-escaped alternative: no unescaped `,`, no dangling `\`.
fn is_one_alternative(v: &str) -> bool {
    let bytes = v.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' if i + 1 >= bytes.len() => return false,
            b'\\' => i += 2,
            b',' => return false,
            _ => i += 1,
        }
    }
    true
}

/// Parses the text after `?` into filters.
pub(crate) fn parse_query(q: &str, opts: &ParseOptions) -> Result<Vec<Filter>, ScopeError> {
    if q.is_empty() {
        return Err(QueryError::Empty.into());
    }
    let mut filters = Vec::new();
    for pair in q.split('&') {
        if filters.len() == opts.limits.max_filters {
            return Err(QueryError::TooManyParams {
                max: opts.limits.max_filters,
            }
            .into());
        }
        let (raw_name, raw_value) = pair.split_once('=').ok_or(QueryError::MissingValue)?;
        if raw_name.is_empty() {
            return Err(QueryError::EmptyName.into());
        }
        if raw_value.is_empty() {
            return Err(QueryError::EmptyValue.into());
        }
        let name = percent_decode(raw_name)?;
        check_name(&name, opts.experimental_filters)?;
        let value = percent_decode(raw_value)?;
        let values = if name == "_filter" {
            vec![value.into_owned()]
        } else {
            split_alternatives(&value, opts.limits.max_values)?
        };
        filters.push(Filter {
            name: name.into_owned(),
            values,
        });
    }
    Ok(filters)
}

fn check_name(name: &str, experimental: bool) -> Result<(), ScopeError> {
    if name.is_empty() {
        return Err(QueryError::EmptyName.into());
    }
    for b in name.bytes() {
        let feature = match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => continue,
            b':' => ExperimentalFeature::Modifier,
            b'.' => ExperimentalFeature::Chain,
            _ => return Err(QueryError::BadName.into()),
        };
        if !experimental {
            return Err(ScopeError::UnsupportedFilter(feature));
        }
    }
    if name == "_filter" && !experimental {
        return Err(ScopeError::UnsupportedFilter(ExperimentalFeature::Filter));
    }
    Ok(())
}

/// Splits a decoded value at unescaped commas, repairing known code-system typos.
fn split_alternatives(value: &str, max: usize) -> Result<Vec<String>, ScopeError> {
    let mut out = Vec::new();
    let bytes = value.as_bytes();
    let mut start = 0;
    let mut i = 0;
    loop {
        let at = bytes.get(i).copied();
        match at {
            Some(b'\\') if i + 1 >= bytes.len() => return Err(QueryError::BadEscape.into()),
            Some(b'\\') => i += 2,
            Some(b',') | None => {
                let alt = value.get(start..i).unwrap_or("");
                if alt.is_empty() {
                    return Err(QueryError::EmptyValue.into());
                }
                if out.len() == max {
                    return Err(QueryError::TooManyValues { max }.into());
                }
                out.push(errata::canonical_token_value(alt).unwrap_or_else(|| alt.to_owned()));
                if at.is_none() {
                    break;
                }
                i += 1;
                start = i;
            }
            Some(_) => i += 1,
        }
    }
    Ok(out)
}

/// Strict percent-decoding: `%` must be followed by two hex digits, the result must be UTF-8.
/// Borrows when there is nothing to decode (the common case).
fn percent_decode(s: &str) -> Result<Cow<'_, str>, QueryError> {
    if !s.contains('%') {
        return Ok(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|h| hex(*h));
            let lo = bytes.get(i + 2).and_then(|h| hex(*h));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(QueryError::BadPercentEncoding),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| QueryError::NotUtf8)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Writes `s` percent-encoding what a scope token cannot carry raw and the query delimiters.
fn write_encoded(f: &mut fmt::Formatter<'_>, s: &str, is_name: bool) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut run_start = 0;
    for (i, b) in s.bytes().enumerate() {
        let raw = matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
            && b != b'%'
            && b != b'&'
            && !(is_name && b == b'=');
        if !raw {
            f.write_str(s.get(run_start..i).unwrap_or(""))?;
            let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
            let lo = HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0');
            f.write_char('%')?;
            f.write_char(char::from(hi))?;
            f.write_char(char::from(lo))?;
            run_start = i + 1;
        }
    }
    f.write_str(s.get(run_start..).unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<Vec<Filter>, ScopeError> {
        parse_query(s, &ParseOptions::default())
    }

    #[test]
    fn parses_and_prints_granular_queries() {
        let f = q("category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory")
            .unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].name(), "category");
        let tok = f[0].tokens().next().unwrap();
        assert_eq!(
            tok.system,
            Some("http://terminology.hl7.org/CodeSystem/observation-category")
        );
        assert_eq!(tok.code, "laboratory");
        assert_eq!(
            f[0].to_string(),
            "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
        );
        let two = q("category=a,b&status=final").unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].values().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn percent_encoding_is_decoded_and_canonicalised() {
        let f = q("category=http%3A%2F%2Floinc.org%7CLP29684-5").unwrap();
        assert_eq!(f[0].to_string(), "category=http://loinc.org|LP29684-5");
        let f = q("code=a%26b%20c%25").unwrap();
        assert_eq!(f[0].values().next(), Some("a&b c%"));
        assert_eq!(f[0].to_string(), "code=a%26b%20c%25");
        assert_eq!(q("code=a%5C"), Err(QueryError::BadEscape.into()));
        assert_eq!(
            Filter::new("code", ["a,b"]),
            Err(QueryError::BadEscape.into())
        );
        assert_eq!(
            Filter::new("code", ["a\\"]),
            Err(QueryError::BadEscape.into())
        );
        assert!(Filter::new("code", ["a\\,b"]).is_ok());
        let f = q("code=a%5C,b").unwrap();
        assert_eq!(f[0].values().collect::<Vec<_>>(), ["a\\,b"]);
        assert_eq!(f[0].to_string(), "code=a%5C,b");
    }

    #[test]
    fn malformed_queries_say_why() {
        assert_eq!(q(""), Err(QueryError::Empty.into()));
        assert_eq!(q("category"), Err(QueryError::MissingValue.into()));
        assert_eq!(q("=x"), Err(QueryError::EmptyName.into()));
        assert_eq!(q("category="), Err(QueryError::EmptyValue.into()));
        assert_eq!(q("a=b&"), Err(QueryError::MissingValue.into()));
        assert_eq!(q("a=b,,c"), Err(QueryError::EmptyValue.into()));
        assert_eq!(q("a=%zz"), Err(QueryError::BadPercentEncoding.into()));
        assert_eq!(q("a=%2"), Err(QueryError::BadPercentEncoding.into()));
        assert_eq!(q("a=%FF"), Err(QueryError::NotUtf8.into()));
        assert_eq!(q("a$b=c"), Err(QueryError::BadName.into()));
        assert_eq!(
            q("code:in=x"),
            Err(ScopeError::UnsupportedFilter(ExperimentalFeature::Modifier))
        );
        assert_eq!(
            q("patient.birthdate=x"),
            Err(ScopeError::UnsupportedFilter(ExperimentalFeature::Chain))
        );
        assert_eq!(
            q("_filter=x"),
            Err(ScopeError::UnsupportedFilter(ExperimentalFeature::Filter))
        );
        let many = vec!["a=b"; 100].join("&");
        assert!(matches!(
            q(&many),
            Err(ScopeError::MalformedQuery(QueryError::TooManyParams { .. }))
        ));
        let many = format!("a={}", vec!["b"; 100].join(","));
        assert!(matches!(
            q(&many),
            Err(ScopeError::MalformedQuery(QueryError::TooManyValues { .. }))
        ));
    }

    #[test]
    fn experimental_filters_can_be_allowed() {
        let opts = ParseOptions::default().experimental_filters(true);
        let f = parse_query("code:in=http://x|y&_filter=a,b", &opts).unwrap();
        assert_eq!(f[0].name(), "code:in");
        assert_eq!(f[1].values().collect::<Vec<_>>(), ["a,b"]);
    }

    #[test]
    fn token_split_respects_escapes() {
        assert_eq!(split_token("a\\|b|c"), (Some("a\\|b"), "c"));
        assert_eq!(split_token("|c"), (Some(""), "c"));
        assert_eq!(split_token("c"), (None, "c"));
    }
}
