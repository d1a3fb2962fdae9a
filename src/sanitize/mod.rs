//! Request validation: FHIR REST requests, search-parameter values, size limits, encodings,
//! redirect URIs, HTML encoding for portal pages and response-header hygiene.
//!
//! The [`Sanitizer`] turns an `http::Request` into a [`SanitizedRequest`] — the shared
//! [`FhirRequest`](crate::fhir::FhirRequest) plus one [`TypedValue`] per parameter
//! alternative — or refuses it with a [`SanitizeError`] that says why. Nothing is normalised
//! into something else: an encoding trick, an unknown parameter or a value that does not fit
//! its type is refused, never "repaired".
//!
//! ```
//! use fhirguard::sanitize::{Sanitizer, SanitizerConfig, TypedValue};
//!
//! let sanitizer = Sanitizer::new(SanitizerConfig::us_core("/fhir")).unwrap();
//! let req = http::Request::get("/fhir/Observation?patient=123&date=ge2024-01-01&_count=20")
//!     .body(Vec::new())
//!     .unwrap();
//! let ok = sanitizer.parse(&req).unwrap();
//! assert_eq!(ok.typed[2].values, vec![TypedValue::Count(20)]);
//!
//! let bad = http::Request::get("/fhir/Observation?patient=123%27%20OR%20%271%27=%271")
//!     .body(Vec::new())
//!     .unwrap();
//! assert_eq!(sanitizer.parse(&bad).unwrap_err().code(), "invalid_value");
//! ```
//!
//! Design notes:
//! - The path of a FHIR request never needs percent-encoding (types, ids, `_history`,
//!   `$operation` are all unreserved characters), so any `%` in the path is refused. That
//!   closes `%2e%2e`, `%2f` and overlong-UTF-8 path tricks at once.
//! - Parameter names are never percent-encoded either; values are decoded exactly once and a
//!   decoded value that still holds an escape is refused as double encoding.
//! - Single-valued parameters (references, `_id`, `_count`, `_sort`…) sent twice with
//!   different values are refused: one layer reading the first and another the last is the
//!   classic parameter-pollution bypass. `patient` and `subject` count as one.
//! - Lenient handling strips only what FHIR says it may (unknown parameters and unsupported
//!   modifiers) and reports each in [`SanitizedRequest::stripped`] for the audit record.
//! - Only the interactions the configuration supports are routed, read-only by default
//!   ([`InteractionCode`]): a write is [`SanitizeError::MethodNotAllowed`] before its body is
//!   read, carrying the path's [`AllowedMethods`] for the `405`'s `Allow`. HEAD types as GET
//!   wherever GET reads.
//! - Where FHIR lets a server answer with less, it does rather than refuse: `_count` above the
//!   maximum is capped to it. What it cannot check, it refuses as not supported (`_summary`
//!   other than `false`, `_elements`).

mod config;
mod error;
pub mod headers;
pub mod html;
mod methods;
mod parse;
mod redirect;
mod table;
mod value;

pub use config::{
    ConfigError, Handling, InteractionCode, Limits, OperationDef, R4_RESOURCE_TYPES,
    SanitizerConfig,
};
pub use error::SanitizeError;
pub use headers::{ResponseKind, SecurityHeaders};
pub use methods::AllowedMethods;
pub use parse::{
    HasClause, SanitizedRequest, Sanitizer, TypedParam, TypedValues, check_json_depth, decode,
};
pub(crate) use redirect::same_loopback_redirect_but_port;
pub use redirect::{RedirectUri, RedirectUriError, match_exact};
pub use table::{ParamDef, ParamTable, ParamType};
pub use value::{FhirDate, Prefix, SortKey, TypedValue, is_valid_id, parse_date};

/// Parses one search-parameter value of type `ty` against the default US Core
/// configuration (for fuzzing and for hosts typing values outside a request).
pub fn parse_value(
    resource_type: &str,
    name: &str,
    modifier: Option<&str>,
    raw: &str,
) -> Result<TypedValue, SanitizeError> {
    let config = SanitizerConfig::us_core("");
    let def = config.table.get(Some(resource_type), name).ok_or_else(|| {
        SanitizeError::UnknownParameter {
            name: error::safe_name(name),
        }
    })?;
    let allowed = value::AllowedTypes::new(&config.allowed_types);
    let ctx = value::ValueCtx {
        table: &config.table,
        allowed: &allowed,
        resource_type: Some(resource_type),
        max_count: config.limits.max_count,
    };
    ctx.parse(name, def, modifier, raw)
}
