//! Typed search-parameter values.
//!
//! Each comma alternative of a parameter becomes one [`TypedValue`] or an error; a value that
//! does not fit its type never reaches the host. Injection strings (`' OR 1=1 --`,
//! `<script>`, `*)(uid=*`, `../../etc/passwd`) therefore either fail the type's grammar or
//! become an inert typed value (a [`TypedValue::String`] the host binds as a parameter).

use std::collections::BTreeSet;

use crate::fhir::ResourceType;

use super::error::SanitizeError;
use super::parse::TypedValues;
use super::table::{ParamDef, ParamTable, ParamType};

/// Byte-level string scanning for ASCII separators: the request path splits on `& = : | / , ? %`
/// many times over short strings, where `str`'s generic pattern machinery costs more than the
/// scan. Splitting at an ASCII byte always lands on a `char` boundary.
pub(crate) mod bytes {
    /// Whether `s` holds the ASCII byte `b`.
    #[inline]
    pub(crate) fn has(s: &str, b: u8) -> bool {
        s.as_bytes().contains(&b)
    }

    /// `s.split_once(b as char)` for an ASCII `b`.
    #[inline]
    pub(crate) fn split_once(s: &str, b: u8) -> Option<(&str, &str)> {
        let i = s.as_bytes().iter().position(|&x| x == b)?;
        Some((&s[..i], &s[i + 1..]))
    }

    /// `s.split(b as char)` for an ASCII `b`.
    #[inline]
    pub(crate) fn split(s: &str, b: u8) -> Split<'_> {
        Split {
            rest: Some(s),
            sep: b,
        }
    }

    /// The iterator of [`split`].
    #[derive(Debug, Clone)]
    pub(crate) struct Split<'a> {
        rest: Option<&'a str>,
        sep: u8,
    }

    impl<'a> Iterator for Split<'a> {
        type Item = &'a str;

        #[inline]
        fn next(&mut self) -> Option<&'a str> {
            let rest = self.rest?;
            match split_once(rest, self.sep) {
                Some((head, tail)) => {
                    self.rest = Some(tail);
                    Some(head)
                }
                None => {
                    self.rest = None;
                    Some(rest)
                }
            }
        }
    }
}

/// A comparison prefix of a date, number or quantity value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Prefix {
    /// `eq` (the default).
    Eq,
    /// `ne`.
    Ne,
    /// `gt`.
    Gt,
    /// `lt`.
    Lt,
    /// `ge`.
    Ge,
    /// `le`.
    Le,
    /// `sa` (starts after).
    Sa,
    /// `eb` (ends before).
    Eb,
    /// `ap` (approximately).
    Ap,
}

impl Prefix {
    fn split(s: &str) -> (Prefix, &str) {
        let p = match s.get(..2) {
            Some("eq") => Prefix::Eq,
            Some("ne") => Prefix::Ne,
            Some("gt") => Prefix::Gt,
            Some("lt") => Prefix::Lt,
            Some("ge") => Prefix::Ge,
            Some("le") => Prefix::Le,
            Some("sa") => Prefix::Sa,
            Some("eb") => Prefix::Eb,
            Some("ap") => Prefix::Ap,
            _ => return (Prefix::Eq, s),
        };
        (p, &s[2..])
    }
}

/// A validated FHIR date / dateTime / instant (year required, the rest optional by precision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirDate {
    /// Year (0001–9999).
    pub year: u16,
    /// Month 1–12, if given.
    pub month: Option<u8>,
    /// Day of month, if given (valid for the month and year).
    pub day: Option<u8>,
    /// `(hour, minute, second, fraction digits as written)`, if a time was given.
    pub time: Option<(u8, u8, u8, Option<String>)>,
    /// Offset from UTC in minutes (`Z` is 0), if given.
    pub offset_minutes: Option<i16>,
}

/// A `_sort` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// The parameter sorted by.
    pub name: String,
    /// `-name`.
    pub descending: bool,
}

/// One typed alternative of a search parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TypedValue {
    /// A token: `system|code` (`system: Some("")` for `|code`, meaning "no system").
    Token {
        /// The system, if a `|` was present.
        system: Option<String>,
        /// The code (`None` for `system|`).
        code: Option<String>,
    },
    /// `:text` on a token, or a `:in`/`:not-in` value set, or `:of-type` — the raw text.
    TokenText(String),
    /// A local reference `Type/id[/_history/vid]` or a bare id.
    Reference {
        /// The type, when written.
        resource_type: Option<ResourceType>,
        /// The id.
        id: String,
        /// A version, when written.
        version: Option<String>,
    },
    /// An absolute reference URL.
    ReferenceUrl(String),
    /// A date with a prefix.
    Date(Prefix, FhirDate),
    /// An instant (`_since`).
    Instant(FhirDate),
    /// A string (unescaped).
    String(String),
    /// A number with a prefix, as written (validated decimal).
    Number(Prefix, String),
    /// A quantity with a prefix.
    Quantity {
        /// The prefix.
        prefix: Prefix,
        /// The number as written.
        number: String,
        /// Its unit system.
        system: Option<String>,
        /// Its unit code.
        code: Option<String>,
    },
    /// An absolute URI or URN.
    Uri(String),
    /// `:missing=true|false`.
    Missing(bool),
    /// A logical id (`_id`).
    Id(String),
    /// `_count`.
    Count(u32),
    /// A `_sort` key.
    Sort(SortKey),
    /// `_include` / `_revinclude`.
    Include {
        /// Source type.
        source: ResourceType,
        /// Reference search parameter on the source type.
        param: String,
        /// Optional target type.
        target: Option<ResourceType>,
    },
    /// `_summary` mode.
    Summary(String),
    /// One element name of `_elements`.
    Element(String),
    /// `_total` mode.
    Total(String),
    /// A resource type (`_type`).
    TypeName(ResourceType),
}

/// The resource-type allow-list, compiled for lookups on the request path: sorted by
/// (length, name), so a miss or a hit mostly compares lengths and `memcmp` only runs on names
/// of the right length; a hit hands out a `ResourceType` clone that does not allocate.
#[derive(Debug, Clone)]
pub(crate) struct AllowedTypes(Vec<ResourceType>);

impl AllowedTypes {
    pub(crate) fn new(names: &BTreeSet<String>) -> Self {
        let mut types: Vec<ResourceType> =
            names.iter().filter_map(|n| ResourceType::new(n)).collect();
        types.sort_by(|a, b| by_len_then_name(a.as_str(), b.as_str()));
        Self(types)
    }

    /// The typed name, if `name` is on the allow-list.
    pub(crate) fn get(&self, name: &str) -> Option<ResourceType> {
        self.0
            .binary_search_by(|t| by_len_then_name(t.as_str(), name))
            .ok()
            .and_then(|i| self.0.get(i))
            .cloned()
    }
}

fn by_len_then_name(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Context a value parser needs: the table, the allow-list check, the searched type, limits.
pub(crate) struct ValueCtx<'a> {
    pub(crate) table: &'a ParamTable,
    pub(crate) allowed: &'a AllowedTypes,
    pub(crate) resource_type: Option<&'a str>,
    pub(crate) max_count: u32,
}

/// Whether `id` is a valid FHIR logical id: `[A-Za-z0-9\-.]{1,64}`, and not `.` or `..`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Splits on `sep` not preceded by a backslash escape, then unescapes `\, \| \$ \\`.
pub(crate) fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ (',' | '|' | '$' | '\\')) => cur.push(n),
                Some(n) => {
                    cur.push('\\');
                    cur.push(n);
                }
                None => cur.push('\\'),
            }
        } else if c == sep {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

/// Removes FHIR search escapes (`\,` `\|` `\$` `\\`) from a value that is not split further.
pub(crate) fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ (',' | '|' | '$' | '\\')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn is_uri(s: &str) -> bool {
    // scheme ":" rest, with no whitespace, quotes or angle brackets.
    let Some((scheme, rest)) = bytes::split_once(s, b':') else {
        return false;
    };
    let mut sb = scheme.bytes();
    let scheme_ok = matches!(sb.next(), Some(b) if b.is_ascii_alphabetic())
        && sb.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    // Bytes, not chars: a non-ASCII character's bytes are all >= 0x80, which the table
    // refuses just as `char::is_ascii_graphic` refuses the character.
    scheme_ok && !rest.is_empty() && s.len() <= 1024 && s.bytes().all(|b| URI_BYTE[usize::from(b)])
}

/// Bytes an absolute URI value may hold: ASCII graphic, minus `" < > \ ^ ` { }`.
static URI_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_graphic()
            && !matches!(c, b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'}');
        b += 1;
    }
    t
};

fn is_code(s: &str) -> bool {
    // FHIR code: no leading/trailing whitespace, no control chars, single spaces only.
    let bytes = s.as_bytes();
    !s.is_empty()
        && s.len() <= 256
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && !bytes.windows(2).any(|w| w == b"  ")
        && (if s.is_ascii() {
            // ASCII controls are C0 and DEL; C1 controls are outside ASCII.
            !bytes.iter().any(|&b| b < 0x20 || b == 0x7f)
        } else {
            s.chars().all(|c| !c.is_control())
        })
}

fn two(s: &str) -> Option<u8> {
    if s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            if leap { 29 } else { 28 }
        }
    }
}

/// Parses a FHIR date/dateTime (`YYYY[-MM[-DD[Thh:mm[:ss[.f+]][Z|±hh:mm]]]]`).
pub fn parse_date(s: &str) -> Option<FhirDate> {
    if s.len() > 35 || !s.is_ascii() {
        return None;
    }
    let (date, time) = match bytes::split_once(s, b'T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = bytes::split(date, b'-');
    let y = parts.next()?;
    if y.len() != 4 || !y.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: u16 = y.parse().ok()?;
    if year == 0 {
        return None;
    }
    let month = parts
        .next()
        .map(two)
        .map(|m| m.filter(|m| (1..=12).contains(m)));
    let month = match month {
        None => None,
        Some(None) => return None,
        Some(Some(m)) => Some(m),
    };
    let day = match parts.next() {
        None => None,
        Some(d) => {
            let d = two(d)?;
            let m = month?;
            if d == 0 || d > days_in_month(year, m) {
                return None;
            }
            Some(d)
        }
    };
    if parts.next().is_some() {
        return None;
    }
    let mut out = FhirDate {
        year,
        month,
        day,
        time: None,
        offset_minutes: None,
    };
    let Some(t) = time else {
        return Some(out);
    };
    day?;
    // Split off the zone.
    let (clock, zone) = if let Some(c) = t.strip_suffix('Z') {
        (c, Some(0i16))
    } else if let Some(pos) = t.rfind(['+', '-']) {
        let (c, z) = t.split_at(pos);
        let sign: i16 = if z.starts_with('-') { -1 } else { 1 };
        let (zh, zm) = z[1..].split_once(':')?;
        let zh = two(zh).filter(|h| *h <= 14)?;
        let zm = two(zm).filter(|m| *m < 60)?;
        (c, Some(sign * (i16::from(zh) * 60 + i16::from(zm))))
    } else {
        (t, None)
    };
    let mut hms = bytes::split(clock, b':');
    let h = two(hms.next()?).filter(|h| *h < 24)?;
    let m = two(hms.next()?).filter(|m| *m < 60)?;
    let (sec, frac) = match hms.next() {
        None => (0, None),
        Some(sf) => {
            let (sec, frac) = match sf.split_once('.') {
                Some((s, f)) => {
                    if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    (s, Some(f.to_owned()))
                }
                None => (sf, None),
            };
            (two(sec).filter(|s| *s < 60)?, frac)
        }
    };
    if hms.next().is_some() {
        return None;
    }
    out.time = Some((h, m, sec, frac));
    out.offset_minutes = zone;
    Some(out)
}

fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(p) => (&s[..p], Some(&s[p + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |x: &str| !x.is_empty() && x.len() <= 32 && x.bytes().all(|b| b.is_ascii_digit());
    digits(int)
        && frac.is_none_or(digits)
        && exp.is_none_or(|e| {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && e.len() <= 3 && e.bytes().all(|b| b.is_ascii_digit())
        })
}

impl ValueCtx<'_> {
    fn rtype(&self, name: &str) -> Option<ResourceType> {
        self.allowed.get(name)
    }

    /// Parses every comma alternative of parameter `name` (declared as `def`), in order.
    pub(crate) fn parse_all(
        &self,
        name: &str,
        def: &ParamDef,
        modifier: Option<&str>,
        raws: &[String],
    ) -> Result<TypedValues, SanitizeError> {
        if let [raw] = raws {
            return Ok(self.parse(name, def, modifier, raw)?.into());
        }
        let mut out = Vec::with_capacity(raws.len());
        for raw in raws {
            out.push(self.parse(name, def, modifier, raw)?);
        }
        Ok(out.into())
    }

    /// Parses one comma alternative of parameter `name` (declared as `def`).
    pub(crate) fn parse(
        &self,
        name: &str,
        def: &ParamDef,
        modifier: Option<&str>,
        raw: &str,
    ) -> Result<TypedValue, SanitizeError> {
        let bad = || SanitizeError::invalid(name, def.ty);
        if raw.is_empty() {
            return Err(bad());
        }
        if modifier == Some("missing") {
            return match raw {
                "true" => Ok(TypedValue::Missing(true)),
                "false" => Ok(TypedValue::Missing(false)),
                _ => Err(bad()),
            };
        }
        match def.ty {
            ParamType::Token => self.token(raw, modifier).ok_or_else(bad),
            ParamType::Reference => self.reference(def, modifier, raw).ok_or_else(bad),
            ParamType::Date => {
                let (p, rest) = Prefix::split(raw);
                parse_date(rest)
                    .map(|d| TypedValue::Date(p, d))
                    .ok_or_else(bad)
            }
            ParamType::Instant => parse_date(raw)
                .filter(|d| d.time.is_some() && d.offset_minutes.is_some())
                .map(TypedValue::Instant)
                .ok_or_else(bad),
            ParamType::String => {
                let v = unescape(raw);
                if v.chars().count() > 256 {
                    return Err(SanitizeError::ValueTooLong {
                        name: super::error::safe_name(name),
                    });
                }
                Ok(TypedValue::String(v))
            }
            ParamType::Number => {
                let (p, rest) = Prefix::split(raw);
                if is_decimal(rest) {
                    Ok(TypedValue::Number(p, rest.to_owned()))
                } else {
                    Err(bad())
                }
            }
            ParamType::Quantity => {
                let (prefix, rest) = Prefix::split(raw);
                let parts = split_unescaped(rest, '|');
                let (number, system, code) = match parts.as_slice() {
                    [n] => (n.clone(), None, None),
                    [n, s, c] => (
                        n.clone(),
                        (!s.is_empty()).then(|| s.clone()),
                        (!c.is_empty()).then(|| c.clone()),
                    ),
                    _ => return Err(bad()),
                };
                if !is_decimal(&number)
                    || system.as_deref().is_some_and(|s| !is_uri(s))
                    || code.as_deref().is_some_and(|c| !is_code(c))
                {
                    return Err(bad());
                }
                Ok(TypedValue::Quantity {
                    prefix,
                    number,
                    system,
                    code,
                })
            }
            ParamType::Uri => {
                if is_uri(raw) {
                    Ok(TypedValue::Uri(raw.to_owned()))
                } else {
                    Err(bad())
                }
            }
            ParamType::Id => {
                if is_valid_id(raw) {
                    Ok(TypedValue::Id(raw.to_owned()))
                } else {
                    Err(bad())
                }
            }
            ParamType::Count => {
                if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                // FHIR lets a server return fewer than asked (search.html, `_count`): a page
                // size above the maximum is capped to it, not refused. Ten digits or more are
                // above any maximum (at most 10 000).
                let n: u32 = if raw.len() > 9 {
                    u32::MAX
                } else {
                    raw.parse().map_err(|_| bad())?
                };
                Ok(TypedValue::Count(n.min(self.max_count)))
            }
            ParamType::Sort => {
                let (descending, key) = match raw.strip_prefix('-') {
                    Some(k) => (true, k),
                    None => (false, raw),
                };
                let known = matches!(key, "_id" | "_lastUpdated")
                    || self
                        .resource_type
                        .and_then(|t| self.table.get_specific(t, key))
                        .is_some();
                if known {
                    Ok(TypedValue::Sort(SortKey {
                        name: key.to_owned(),
                        descending,
                    }))
                } else {
                    Err(bad())
                }
            }
            ParamType::Include | ParamType::RevInclude => self.include(def.ty, raw).ok_or_else(bad),
            ParamType::Summary => match raw {
                "true" | "text" | "data" | "count" | "false" => {
                    Ok(TypedValue::Summary(raw.to_owned()))
                }
                _ => Err(bad()),
            },
            ParamType::Total => match raw {
                "none" | "estimate" | "accurate" => Ok(TypedValue::Total(raw.to_owned())),
                _ => Err(bad()),
            },
            ParamType::Elements => {
                let ok = raw.len() <= 64
                    && raw.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                    && raw.bytes().all(|b| b.is_ascii_alphanumeric());
                if ok {
                    Ok(TypedValue::Element(raw.to_owned()))
                } else {
                    Err(bad())
                }
            }
            ParamType::TypeName => self.rtype(raw).map(TypedValue::TypeName).ok_or_else(bad),
            ParamType::Has => Err(bad()),
        }
    }

    fn token(&self, raw: &str, modifier: Option<&str>) -> Option<TypedValue> {
        match modifier {
            Some("text") => {
                return (raw.chars().count() <= 256).then(|| TypedValue::TokenText(raw.to_owned()));
            }
            Some("in" | "not-in") => {
                return (is_uri(raw) || self.local_reference(raw).is_some())
                    .then(|| TypedValue::TokenText(raw.to_owned()));
            }
            Some("of-type") => {
                let parts = split_unescaped(raw, '|');
                return match parts.as_slice() {
                    [s, c, v] if is_uri(s) && is_code(c) && is_code(v) => {
                        Some(TypedValue::TokenText(raw.to_owned()))
                    }
                    _ => None,
                };
            }
            _ => {}
        }
        if !bytes::has(raw, b'\\') {
            return match bytes::split_once(raw, b'|') {
                None => is_code(raw).then(|| TypedValue::Token {
                    system: None,
                    code: Some(raw.to_owned()),
                }),
                Some((system, code)) => {
                    if bytes::has(code, b'|')
                        || (system.is_empty() && code.is_empty())
                        || (!system.is_empty() && !is_uri(system))
                        || (!code.is_empty() && !is_code(code))
                    {
                        return None;
                    }
                    Some(TypedValue::Token {
                        system: Some(system.to_owned()),
                        code: (!code.is_empty()).then(|| code.to_owned()),
                    })
                }
            };
        }
        let parts = split_unescaped(raw, '|');
        match parts.as_slice() {
            [code] => is_code(code).then(|| TypedValue::Token {
                system: None,
                code: Some(code.clone()),
            }),
            [system, code] => {
                if system.is_empty() && code.is_empty() {
                    return None;
                }
                if !system.is_empty() && !is_uri(system) {
                    return None;
                }
                if !code.is_empty() && !is_code(code) {
                    return None;
                }
                Some(TypedValue::Token {
                    system: Some(system.clone()),
                    code: (!code.is_empty()).then(|| code.clone()),
                })
            }
            _ => None,
        }
    }

    fn local_reference(&self, raw: &str) -> Option<TypedValue> {
        let mut it = bytes::split(raw, b'/');
        let segs: [Option<&str>; 5] = [it.next(), it.next(), it.next(), it.next(), it.next()];
        let n = segs.iter().take_while(|s| s.is_some()).count();
        if n > 4 {
            return None;
        }
        let segs: [&str; 4] = [
            segs[0].unwrap_or(""),
            segs[1].unwrap_or(""),
            segs[2].unwrap_or(""),
            segs[3].unwrap_or(""),
        ];
        match segs.get(..n)? {
            [id] if is_valid_id(id) => Some(TypedValue::Reference {
                resource_type: None,
                id: (*id).to_owned(),
                version: None,
            }),
            [t, id] if is_valid_id(id) => Some(TypedValue::Reference {
                resource_type: Some(self.rtype(t)?),
                id: (*id).to_owned(),
                version: None,
            }),
            [t, id, "_history", v] if is_valid_id(id) && is_valid_id(v) => {
                Some(TypedValue::Reference {
                    resource_type: Some(self.rtype(t)?),
                    id: (*id).to_owned(),
                    version: Some((*v).to_owned()),
                })
            }
            _ => None,
        }
    }

    fn reference(&self, def: &ParamDef, modifier: Option<&str>, raw: &str) -> Option<TypedValue> {
        if modifier == Some("identifier") {
            return self.token(raw, None);
        }
        // A type modifier (`subject:Patient=123`) must be an allowed target.
        let type_modifier = match modifier {
            Some(m) => Some(self.rtype(m)?),
            None => None,
        };
        let target_ok = |t: &ResourceType| def.targets.is_empty() || def.targets.contains(t);
        if let Some(t) = &type_modifier {
            if !target_ok(t) {
                return None;
            }
        }
        if raw.starts_with("https://") || raw.starts_with("http://") {
            // Absolute: must end in Type/id and carry nothing odd.
            if !is_uri(raw) || raw.contains(['?', '#']) {
                return None;
            }
            let mut tail = raw.rsplitn(3, '/');
            let id = tail.next()?;
            let t = tail.next()?;
            let t = self.rtype(t)?;
            if !is_valid_id(id) || !target_ok(&t) || type_modifier.is_some() {
                return None;
            }
            return Some(TypedValue::ReferenceUrl(raw.to_owned()));
        }
        let v = self.local_reference(raw)?;
        if let TypedValue::Reference {
            resource_type: Some(t),
            ..
        } = &v
        {
            if !target_ok(t) || type_modifier.as_ref().is_some_and(|m| m != t) {
                return None;
            }
        }
        // A bare id on a parameter with several possible targets is fine: FHIR leaves it to
        // the server; `patient` has one target anyway.
        Some(v)
    }

    fn include(&self, ty: ParamType, raw: &str) -> Option<TypedValue> {
        let parts: Vec<&str> = raw.split(':').collect();
        let (source, param, target) = match parts.as_slice() {
            [s, p] => (*s, *p, None),
            [s, p, t] => (*s, *p, Some(*t)),
            _ => return None,
        };
        let source_t = self.rtype(source)?;
        let def = self.table.get_specific(source, param)?;
        if def.ty != ParamType::Reference {
            return None;
        }
        // `_include` starts from the searched type; `_revinclude` points back at it.
        if ty == ParamType::Include && self.resource_type.is_some_and(|t| t != source) {
            return None;
        }
        let target = match target {
            Some(t) => {
                let t = self.rtype(t)?;
                if !def.targets.is_empty() && !def.targets.contains(&t) {
                    return None;
                }
                Some(t)
            }
            None => None,
        };
        Some(TypedValue::Include {
            source: source_t,
            param: param.to_owned(),
            target,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert!(parse_date("2020").is_some());
        assert!(parse_date("2020-02-29").is_some());
        assert!(parse_date("2021-02-29").is_none());
        assert!(parse_date("2020-13").is_none());
        assert!(parse_date("2020-01-01T10:00").is_some());
        assert!(parse_date("2020-01-01T10:00:00.123+05:30").is_some());
        assert!(parse_date("2020-01-01T25:00").is_none());
        assert!(parse_date("2020-01T10:00").is_none());
        assert!(parse_date("20200101").is_none());
        assert!(parse_date("2020-01-01T10:00:00+15:00").is_none());
    }

    #[test]
    fn decimals() {
        assert!(is_decimal("5.4"));
        assert!(is_decimal("-1e10"));
        assert!(!is_decimal("1e"));
        assert!(!is_decimal("0x10"));
        assert!(!is_decimal("1;DROP"));
    }

    #[test]
    fn escapes() {
        assert_eq!(split_unescaped(r"a\,b,c", ','), vec!["a,b", "c"]);
        assert_eq!(split_unescaped(r"s|c\|d", '|'), vec!["s", "c|d"]);
    }

    #[test]
    fn ids() {
        assert!(is_valid_id("abc-1.2"));
        assert!(!is_valid_id(".."));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id(&"a".repeat(65)));
    }
}
