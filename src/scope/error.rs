//! Why a scope string was refused.
//!
//! Errors name the rule that was broken and, where it helps, a short piece of the input (a
//! letter, a resource type name cut to 64 bytes). Scope strings carry no secrets or PHI, but the
//! input can be hostile, so nothing here grows with the input's length.

use thiserror::Error;

/// Why one scope token was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// The token is empty.
    #[error("empty scope")]
    Empty,
    /// The token is longer than the configured limit (see [`super::Limits`]).
    #[error("scope is {len} bytes long, more than the limit of {max}")]
    TooLong {
        /// The token's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// RFC 6749 §3.3 only allows `%x21 / %x23-5B / %x5D-7E` in a scope token: no spaces,
    /// controls, `"`, `\` or non-ASCII (percent-encode them inside a granular filter).
    #[error("character {found:?} at byte {offset} is not allowed in a scope token")]
    InvalidCharacter {
        /// The offending character.
        found: char,
        /// Its byte offset in the token.
        offset: usize,
    },
    /// The context before `/` is not `patient`, `user` or `system` (they are lowercase literals:
    /// `Patient/Observation.rs` is not a SMART scope).
    #[error("scope context must be `patient`, `user` or `system` in lowercase")]
    BadContext,
    /// The resource type is not a FHIR R4 resource type name (names are case-sensitive:
    /// `observation` is not `Observation`).
    #[error("`{name}` is not a FHIR R4 resource type")]
    UnknownResourceType {
        /// The name as written, cut to 64 bytes.
        name: String,
    },
    /// A resource scope needs `.` and permissions after the type (`patient/Observation.rs`).
    #[error("resource scope has no `.permissions` part")]
    MissingPermissions,
    /// Nothing follows the `.`: the grammar allows it, but it grants nothing and is refused so
    /// that a typo never turns into a silent no-op.
    #[error("resource scope has an empty permission list")]
    EmptyPermissions,
    /// A letter other than `c r u d s` (and not a v1 `read`, `write` or `*`).
    #[error("`{found}` is not a permission letter (expected a subset of `cruds`)")]
    UnknownPermission {
        /// The offending character.
        found: char,
    },
    /// Permission letters must appear in the order `c r u d s`; the guide's example is `.dus`,
    /// refused so `.read` can never be misread as letters.
    #[error("permission letters must be in the order `cruds`")]
    PermissionsOutOfOrder,
    /// A permission letter appears twice (`.rr`).
    #[error("permission letter `{letter}` appears twice")]
    RepeatedPermission {
        /// The repeated letter.
        letter: char,
    },
    /// A v1 permission (`read`, `write`, `*`) where v1 syntax is not accepted.
    #[error("SMART v1 permissions (`read`, `write`, `*`) are not accepted here")]
    V1NotAccepted,
    /// v1 syntax has no granular filters: `.read?category=…` mixes the two versions.
    #[error("a SMART v1 scope cannot carry a `?` filter")]
    FilterOnV1,
    /// The `?` query of a granular scope is malformed.
    #[error("malformed scope filter: {0}")]
    MalformedQuery(#[from] QueryError),
    /// A filter uses an experimental search feature (modifier, chain or `_filter`) that is
    /// turned off (see [`super::ParseOptions::experimental_filters`]).
    #[error("experimental scope filter ({0}) is not supported")]
    UnsupportedFilter(ExperimentalFeature),
    /// The launch scope names something that is not a lowercase FHIR R4 resource type
    /// (`launch/Patient`, `launch/foo`).
    #[error("launch context must be a lowercase FHIR resource type name")]
    BadLaunchType,
    /// A launch scope carries a parameter other than one `role`.
    #[error("a launch scope allows only one `role` parameter")]
    BadLaunchParam,
}

/// What is wrong with the `?param=value` part of a granular scope.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A `?` with nothing after it.
    #[error("empty query after `?`")]
    Empty,
    /// A `param` without `=value`, or an empty pair between two `&`.
    #[error("parameter without `=value`")]
    MissingValue,
    /// `=value` without a parameter name.
    #[error("value without a parameter name")]
    EmptyName,
    /// `param=` with an empty value, or an empty alternative in `a,,b`.
    #[error("empty value")]
    EmptyValue,
    /// An unescaped `,` inside one value given to [`super::Filter::new`], or a `\` with
    /// nothing after it to escape.
    #[error("unescaped `,` or dangling `\\` in a value")]
    BadEscape,
    /// A parameter name with characters outside `A-Z a-z 0-9 _ -` (and `:` `.` for the
    /// experimental features).
    #[error("invalid parameter name")]
    BadName,
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding")]
    BadPercentEncoding,
    /// The percent-decoded bytes are not UTF-8.
    #[error("percent-decoded value is not UTF-8")]
    NotUtf8,
    /// More parameters than [`super::Limits::max_filters`].
    #[error("more than {max} filter parameters")]
    TooManyParams {
        /// The limit.
        max: usize,
    },
    /// More comma-separated alternatives than [`super::Limits::max_values`].
    #[error("more than {max} values in one filter")]
    TooManyValues {
        /// The limit.
        max: usize,
    },
}

/// The experimental FHIR search features the guide lists for granular scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExperimentalFeature {
    /// A search modifier (`code:in=…`).
    Modifier,
    /// A chained parameter (`patient.birthdate=…`).
    Chain,
    /// The `_filter` parameter.
    Filter,
}

impl std::fmt::Display for ExperimentalFeature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExperimentalFeature::Modifier => "search modifier",
            ExperimentalFeature::Chain => "chained parameter",
            ExperimentalFeature::Filter => "_filter",
        })
    }
}

/// Why a space-separated scope string was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ScopeSetError {
    /// The string is longer than [`super::Limits::max_len`]; nothing was parsed.
    #[error("scope string is {len} bytes long, more than the limit of {max}")]
    TooLong {
        /// The string's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More scope tokens than [`super::Limits::max_scopes`].
    #[error("more than {max} scopes")]
    TooManyScopes {
        /// The limit.
        max: usize,
    },
    /// One token was refused.
    #[error("scope #{position} refused: {error}")]
    Invalid {
        /// The token's 0-based position among the string's tokens.
        position: usize,
        /// Why.
        error: ScopeError,
    },
}

/// Cuts `s` to at most 64 bytes on a character boundary, for error messages.
pub(crate) fn excerpt(s: &str) -> String {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
