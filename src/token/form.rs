//! `application/x-www-form-urlencoded` parameters, parsed the way RFC 6749 wants them.
//!
//! * A parameter sent more than once is an error (RFC 6749 §3.1, §3.2), reported when the
//!   caller asks for it, so that the caller decides whether the error may be redirected.
//! * A parameter sent without a value is treated as omitted (§3.1).
//! * Bounded: at most [`MAX_FORM_LEN`] bytes and [`MAX_PARAMS`] parameters; values must be UTF-8.

use std::collections::BTreeMap;
use std::fmt;

use percent_encoding::percent_decode;

/// The largest form body or query string accepted (SMART advises POST for long scope lists,
/// so this leaves room for hundreds of scopes).
pub const MAX_FORM_LEN: usize = 64 * 1024;

/// The most parameters accepted in one form.
pub const MAX_PARAMS: usize = 64;

/// Why a form could not be parsed at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormError {
    /// The body is longer than [`MAX_FORM_LEN`].
    #[error("the form is too long")]
    TooLong,
    /// More than [`MAX_PARAMS`] parameters.
    #[error("the form has too many parameters")]
    TooManyParams,
    /// A name or value is not UTF-8 after percent-decoding.
    #[error("the form is not valid UTF-8")]
    NotUtf8,
    /// A name or value holds a control character (refused rather than stored or logged).
    #[error("the form holds a control character")]
    ControlCharacter,
}

/// A parameter was sent more than once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter {0} was sent more than once")]
pub struct DuplicateParam(pub &'static str);

#[derive(Clone)]
struct Param {
    value: String,
    repeated: bool,
}

/// Parsed form parameters. `Debug` prints names only: values may be secrets.
#[derive(Clone, Default)]
pub struct FormParams {
    params: BTreeMap<String, Param>,
    /// Parameters set aside by [`FormParams::parse_setting_aside_malformed`]: name → the
    /// percent-decoded bytes of a value that is not UTF-8 or holds a control character.
    malformed: BTreeMap<String, Vec<u8>>,
    /// Whether a parameter *name* was malformed (it cannot even be set aside by name).
    malformed_name: bool,
}

impl fmt::Debug for FormParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.params.keys()).finish()
    }
}

/// `raw` with `+` as space and percent-escapes decoded, as bytes (not yet checked).
fn decode_bytes(raw: &[u8]) -> Vec<u8> {
    let plus: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_decode(&plus).collect()
}

fn check(bytes: Vec<u8>) -> Result<String, FormError> {
    let text = String::from_utf8(bytes).map_err(|_| FormError::NotUtf8)?;
    if text.chars().any(char::is_control) {
        return Err(FormError::ControlCharacter);
    }
    Ok(text)
}

impl FormParams {
    /// Parses a form body or a query string (without the leading `?`); any malformed name or
    /// value fails the whole form.
    pub fn parse(body: &[u8]) -> Result<Self, FormError> {
        Self::parse_inner(body, false)
    }

    /// Parses like [`parse`](Self::parse), but sets a malformed value (not UTF-8, or holding a
    /// control character) aside instead of failing the whole form: [`get`](Self::get) treats
    /// it as absent, and [`first_malformed`](Self::first_malformed) reports it.
    ///
    /// An authorization endpoint needs this: RFC 6749 §4.1.2.1 sends a malformed request
    /// back to the app as `invalid_request` once `client_id` and `redirect_uri` are known to
    /// be good, so one bad `state` must not hide them. Oversize forms still fail.
    pub fn parse_setting_aside_malformed(body: &[u8]) -> Result<Self, FormError> {
        Self::parse_inner(body, true)
    }

    fn parse_inner(body: &[u8], set_aside: bool) -> Result<Self, FormError> {
        if body.len() > MAX_FORM_LEN {
            return Err(FormError::TooLong);
        }
        let mut params: BTreeMap<String, Param> = BTreeMap::new();
        let mut malformed: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut malformed_name = false;
        let mut count = 0usize;
        for pair in body.split(|&b| b == b'&') {
            if pair.is_empty() {
                continue;
            }
            count += 1;
            if count > MAX_PARAMS {
                return Err(FormError::TooManyParams);
            }
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let name = match check(decode_bytes(name)) {
                Ok(name) => name,
                Err(_) if set_aside => {
                    malformed_name = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let raw_value = decode_bytes(value);
            let value = match check(raw_value.clone()) {
                Ok(value) => value,
                Err(_) if set_aside => {
                    malformed.entry(name).or_insert(raw_value);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match params.get_mut(&name) {
                Some(existing) => existing.repeated = true,
                None => {
                    params.insert(
                        name,
                        Param {
                            value,
                            repeated: false,
                        },
                    );
                }
            }
        }
        Ok(Self {
            params,
            malformed,
            malformed_name,
        })
    }

    /// The value of `name`: `Ok(None)` if absent or empty, an error if sent more than once.
    pub fn get(&self, name: &'static str) -> Result<Option<&str>, DuplicateParam> {
        match self.params.get(name) {
            None => Ok(None),
            Some(p) if p.repeated => Err(DuplicateParam(name)),
            Some(p) if p.value.is_empty() => Ok(None),
            Some(p) => Ok(Some(p.value.as_str())),
        }
    }

    /// Whether `name` was sent at all (even empty or repeated).
    pub fn contains(&self, name: &str) -> bool {
        self.params.contains_key(name)
    }

    /// The first parameter whose value
    /// [`parse_setting_aside_malformed`](Self::parse_setting_aside_malformed) set aside, or
    /// `Some("")` for a malformed name.
    pub fn first_malformed(&self) -> Option<&str> {
        self.malformed
            .keys()
            .next()
            .map(String::as_str)
            .or(self.malformed_name.then_some(""))
    }

    /// The percent-decoded bytes of `name`'s value if it was set aside as malformed.
    pub fn malformed_value(&self, name: &str) -> Option<&[u8]> {
        self.malformed.get(name).map(Vec::as_slice)
    }

    /// The first parameter sent more than once, if any.
    pub fn first_duplicate(&self) -> Option<&str> {
        self.params
            .iter()
            .find(|(_, p)| p.repeated)
            .map(|(name, _)| name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decodes_and_flags_duplicates() {
        let form = FormParams::parse(b"a=1&b=x+y%2Bz&&c=&d&a=2").unwrap();
        assert_eq!(form.get("a"), Err(DuplicateParam("a")));
        assert_eq!(form.get("b"), Ok(Some("x y+z")));
        assert_eq!(form.get("c"), Ok(None));
        assert_eq!(form.get("d"), Ok(None));
        assert_eq!(form.get("e"), Ok(None));
        assert!(form.contains("c"));
        assert_eq!(form.first_duplicate(), Some("a"));
    }

    #[test]
    fn refuses_bad_encodings_and_oversize() {
        assert_eq!(FormParams::parse(b"a=%ff").err(), Some(FormError::NotUtf8));
        assert_eq!(
            FormParams::parse(b"a=%0a").err(),
            Some(FormError::ControlCharacter)
        );
        let many: Vec<u8> = (0..65)
            .map(|i| format!("p{i}=1&"))
            .collect::<String>()
            .into();
        assert_eq!(
            FormParams::parse(&many).err(),
            Some(FormError::TooManyParams)
        );
        let long = vec![b'a'; MAX_FORM_LEN + 1];
        assert_eq!(FormParams::parse(&long).err(), Some(FormError::TooLong));
    }

    #[test]
    fn sets_malformed_values_aside_when_asked() {
        let form =
            FormParams::parse_setting_aside_malformed(b"client_id=app&state=a%0d%0ab&x=%ff&%fe=1")
                .unwrap();
        assert_eq!(form.get("client_id"), Ok(Some("app")));
        assert_eq!(form.get("state"), Ok(None));
        assert!(!form.contains("state"));
        assert_eq!(form.first_malformed(), Some("state"));
        assert_eq!(form.malformed_value("state"), Some(&b"a\r\nb"[..]));
        assert_eq!(form.malformed_value("x"), Some(&[0xff][..]));
        assert_eq!(form.malformed_value("client_id"), None);

        let only_name = FormParams::parse_setting_aside_malformed(b"a=1&%ff=2").unwrap();
        assert_eq!(only_name.first_malformed(), Some(""));
        let clean = FormParams::parse_setting_aside_malformed(b"a=1").unwrap();
        assert_eq!(clean.first_malformed(), None);
        // Oversize forms still fail as a whole.
        let long = vec![b'a'; MAX_FORM_LEN + 1];
        assert_eq!(
            FormParams::parse_setting_aside_malformed(&long).err(),
            Some(FormError::TooLong)
        );
    }
}
