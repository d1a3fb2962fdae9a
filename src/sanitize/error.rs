//! Why a request was refused.

use crate::fhir::PublicProblem;

use super::methods::AllowedMethods;
use super::table::ParamType;

/// Why the sanitizer refused a request (or, under lenient handling, stripped a parameter).
///
/// Errors carry parameter *names* (truncated, and only when they have the shape of a name),
/// never parameter values or body content: a value may be PHI, and this error is meant for
/// the audit record. The client only ever sees [`SanitizeError::public`]'s generic problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SanitizeError {
    /// The request target is longer than the configured limit.
    #[error("request target of {len} bytes exceeds the limit of {max}")]
    UrlTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More query/form parameters (or comma alternatives) than the configured limit.
    #[error("more than {max} parameters")]
    TooManyParameters {
        /// The limit.
        max: usize,
    },
    /// Headers larger in total, or more numerous, than the configured limit.
    #[error("headers exceed the configured size or count limit")]
    HeadersTooLarge,
    /// A body larger than the configured limit.
    #[error("body exceeds the limit of {max} bytes")]
    BodyTooLarge {
        /// The limit.
        max: usize,
    },
    /// A JSON body nested deeper than the configured limit (checked before parsing).
    #[error("JSON body nested deeper than {max}")]
    JsonTooDeep {
        /// The limit.
        max: usize,
    },
    /// The body is not well-formed JSON of the shape the interaction needs.
    #[error("body is not valid JSON of the expected shape")]
    InvalidJson,
    /// The body's `resourceType` (or Bundle type, or id) does not match the URL.
    #[error("body resource does not match the request")]
    BodyMismatch,
    /// The declared content type is not one this interaction accepts.
    #[error("content type not accepted for this interaction")]
    UnsupportedMediaType,
    /// The interaction needs a body and none was sent.
    #[error("a body is required")]
    MissingBody,
    /// A body was sent where the interaction takes none.
    #[error("a body is not allowed here")]
    BodyNotAllowed,
    /// A character that is not allowed raw in a request target (space, quote, angle bracket,
    /// backslash, non-ASCII, fragment `#`).
    #[error("illegal character in request target")]
    IllegalCharacter,
    /// `%` not followed by two hex digits.
    #[error("invalid percent-encoding")]
    InvalidPercentEncoding,
    /// A percent-encoded `%` that decodes to another escape (`%252e`): double encoding.
    #[error("double percent-encoding")]
    DoubleEncoding,
    /// A NUL, C0/C1 control, DEL, or invisible formatting character (bidi override,
    /// zero-width) in a path, name or value.
    #[error("control or formatting character")]
    ControlCharacter,
    /// Percent-decoded bytes that are not UTF-8 (this includes overlong encodings).
    #[error("invalid UTF-8 after decoding")]
    InvalidUtf8,
    /// A `.` or `..` path segment.
    #[error("dot segment in path")]
    DotSegment,
    /// An empty path segment (`//`, trailing `/`).
    #[error("empty path segment")]
    EmptySegment,
    /// Percent-encoding in the path: no valid FHIR path needs it, so it can only be a trick.
    #[error("percent-encoding in path")]
    EncodedPath,
    /// The path is not under the configured base path.
    #[error("path is not under the FHIR base")]
    NotUnderBase,
    /// A resource type that is not on the allow-list (or not a FHIR R4 type at all).
    #[error("resource type not allowed")]
    UnknownResourceType,
    /// An id or version id outside `[A-Za-z0-9\-.]{1,64}`.
    #[error("invalid logical id")]
    InvalidId,
    /// A path shape that is no FHIR interaction.
    #[error("no FHIR interaction has this path")]
    UnknownRoute,
    /// The HTTP method is not valid for this path, or names an interaction the configuration
    /// does not support (a write on a read-only API). `allow` is what the path accepts, for
    /// the `405`'s `Allow` header; the message never names it (nor the method sent).
    #[error("method not allowed for this path")]
    MethodNotAllowed {
        /// The methods the path accepts under the configuration.
        allow: AllowedMethods,
    },
    /// An operation that is not configured (or not at this level / on this type).
    #[error("operation not supported")]
    UnknownOperation,
    /// A parameter name with characters outside `[A-Za-z0-9_.:-]`, or percent-encoded.
    #[error("malformed parameter name")]
    InvalidParameterName,
    /// A parameter the table does not declare for this resource type.
    #[error("unknown parameter `{name}`")]
    UnknownParameter {
        /// The parameter name.
        name: String,
    },
    /// Parameters on an interaction that takes none (read, metadata, delete…) other than the
    /// general `_format` and `_pretty`.
    #[error("this interaction takes no parameters")]
    ParametersNotAllowed,
    /// `_format`, or without it `Accept`, asks for something other than JSON (XML, Turtle…):
    /// this API speaks JSON only (`406`).
    #[error("only JSON formats are served")]
    UnsupportedFormat,
    /// A modifier that the parameter's type does not allow.
    #[error("modifier not allowed on `{name}`")]
    InvalidModifier {
        /// The parameter name.
        name: String,
    },
    /// A chained parameter (`subject.name`); chains are refused.
    #[error("chained parameter `{name}` not supported")]
    ChainNotSupported {
        /// The parameter name.
        name: String,
    },
    /// A value that is not of the parameter's type.
    #[error("value of `{name}` is not a valid {expected}")]
    InvalidValue {
        /// The parameter name.
        name: String,
        /// The expected type.
        expected: &'static str,
    },
    /// A single value longer than the configured limit.
    #[error("value of `{name}` too long")]
    ValueTooLong {
        /// The parameter name.
        name: String,
    },
    /// A known parameter the API does not support (`_summary` other than `false`,
    /// `_elements`): `400` with `not-supported`. Never stripped under lenient handling, since
    /// a handler reading the raw query would still apply it.
    #[error("parameter `{name}` is not supported")]
    UnsupportedParameter {
        /// The parameter name.
        name: String,
    },
    /// A single-valued parameter sent twice with different values (parameter pollution).
    #[error("contradicting duplicate parameter `{name}`")]
    ContradictingDuplicate {
        /// The parameter name.
        name: String,
    },
    /// A `Prefer` header that is malformed or names an unknown `handling`.
    #[error("invalid Prefer header")]
    InvalidPrefer,
}

impl SanitizeError {
    /// A stable, machine-readable code for the audit record and tests (`"unknown_parameter"`).
    pub fn code(&self) -> &'static str {
        use SanitizeError as E;
        match self {
            E::UrlTooLong { .. } => "url_too_long",
            E::TooManyParameters { .. } => "too_many_parameters",
            E::HeadersTooLarge => "headers_too_large",
            E::BodyTooLarge { .. } => "body_too_large",
            E::JsonTooDeep { .. } => "json_too_deep",
            E::InvalidJson => "invalid_json",
            E::BodyMismatch => "body_mismatch",
            E::UnsupportedMediaType => "unsupported_media_type",
            E::MissingBody => "missing_body",
            E::BodyNotAllowed => "body_not_allowed",
            E::IllegalCharacter => "illegal_character",
            E::InvalidPercentEncoding => "invalid_percent_encoding",
            E::DoubleEncoding => "double_encoding",
            E::ControlCharacter => "control_character",
            E::InvalidUtf8 => "invalid_utf8",
            E::DotSegment => "dot_segment",
            E::EmptySegment => "empty_segment",
            E::EncodedPath => "encoded_path",
            E::NotUnderBase => "not_under_base",
            E::UnknownResourceType => "unknown_resource_type",
            E::InvalidId => "invalid_id",
            E::UnknownRoute => "unknown_route",
            E::MethodNotAllowed { .. } => "method_not_allowed",
            E::UnknownOperation => "unknown_operation",
            E::InvalidParameterName => "invalid_parameter_name",
            E::UnknownParameter { .. } => "unknown_parameter",
            E::ParametersNotAllowed => "parameters_not_allowed",
            E::UnsupportedFormat => "unsupported_format",
            E::InvalidModifier { .. } => "invalid_modifier",
            E::ChainNotSupported { .. } => "chain_not_supported",
            E::InvalidValue { .. } => "invalid_value",
            E::ValueTooLong { .. } => "value_too_long",
            E::UnsupportedParameter { .. } => "unsupported_parameter",
            E::ContradictingDuplicate { .. } => "contradicting_duplicate",
            E::InvalidPrefer => "invalid_prefer",
        }
    }

    /// The generic problem the wire sees: a status, a stable OperationOutcome code and text
    /// that say nothing about which check failed.
    pub fn public(&self) -> PublicProblem {
        use SanitizeError as E;
        match self {
            E::UrlTooLong { .. } => PublicProblem::UriTooLong,
            E::HeadersTooLarge => PublicProblem::HeadersTooLarge,
            E::BodyTooLarge { .. } => PublicProblem::PayloadTooLarge,
            E::UnsupportedMediaType => PublicProblem::UnsupportedMediaType,
            E::MethodNotAllowed { .. } => PublicProblem::MethodNotAllowed,
            E::NotUnderBase | E::UnknownResourceType | E::UnknownRoute => PublicProblem::NotFound,
            E::UnknownOperation | E::UnsupportedParameter { .. } => PublicProblem::NotSupported,
            E::UnsupportedFormat => PublicProblem::NotAcceptable,
            _ => PublicProblem::BadRequest,
        }
    }

    /// The methods the path accepts, when the method was refused: the `Allow` header of the
    /// `405` (RFC 9110 §15.5.6).
    pub fn allowed_methods(&self) -> Option<AllowedMethods> {
        match self {
            SanitizeError::MethodNotAllowed { allow } => Some(*allow),
            _ => None,
        }
    }

    /// Whether lenient handling (`Prefer: handling=lenient`) may strip the offending
    /// parameter instead of refusing the request: only unknown parameters and unsupported
    /// modifiers, as FHIR defines it. Bad values, pollution and encoding tricks are always
    /// refused.
    pub fn strippable(&self) -> bool {
        matches!(
            self,
            SanitizeError::UnknownParameter { .. }
                | SanitizeError::InvalidModifier { .. }
                | SanitizeError::ChainNotSupported { .. }
        )
    }

    pub(crate) fn invalid(name: &str, ty: ParamType) -> Self {
        SanitizeError::InvalidValue {
            name: safe_name(name),
            expected: ty.as_str(),
        }
    }
}

/// A parameter name fit for an audit record: at most 64 bytes of `[A-Za-z0-9_.:-]`.
pub(crate) fn safe_name(name: &str) -> String {
    let ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok && !name.is_empty() {
        name.chars().take(64).collect()
    } else {
        "<malformed>".to_owned()
    }
}
