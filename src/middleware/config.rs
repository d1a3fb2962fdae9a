//! The guard's configuration: a builder that validates everything when built.

use std::fmt;
use std::sync::Arc;

use crate::abuse::{AnomalyDetector, AnomalyHook};
use crate::audit::PurposeOfUse;
use crate::category::CategoryRegistry;
use crate::clock::Clock;
use crate::consent::GrantStatusSource;
use crate::enforce::EnforceConfig;
use crate::sanitize::SecurityHeaders;
use crate::sanitize::{ConfigError as SanitizerConfigError, Sanitizer, SanitizerConfig};

use super::cors::CorsPolicy;
use super::stages::{AuditRecorder, RateLimit, TokenValidation};

/// The largest handler response the guard reads by default (it must read a response whole to
/// filter it): 32 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// The paths under the FHIR base that pass without a token by default.
pub const DEFAULT_PUBLIC_PATHS: &[&str] = &["metadata", ".well-known/smart-configuration"];

/// Why a [`GuardConfig`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuardConfigError {
    /// No FHIR base was given.
    #[error("the FHIR base path or URL is missing")]
    MissingBase,
    /// The FHIR base is neither a path (`/fhir`) nor an `http(s)` URL, or ends with `/`.
    #[error("the FHIR base must be a path like /fhir or an http(s) URL, without a trailing /")]
    InvalidBase,
    /// No sanitizer (or sanitizer configuration) was given.
    #[error("the sanitizer is missing")]
    MissingSanitizer,
    /// The sanitizer configuration was refused.
    #[error("the sanitizer configuration is invalid: {0}")]
    Sanitizer(SanitizerConfigError),
    /// The sanitizer's base path differs from the guard's FHIR base path.
    #[error("the sanitizer's base path differs from the FHIR base path")]
    BasePathMismatch,
    /// No token validator was given.
    #[error("the token validator is missing")]
    MissingValidator,
    /// No grant status source was given.
    #[error("the grant status source is missing")]
    MissingGrants,
    /// No category registry was given.
    #[error("the category registry is missing")]
    MissingRegistry,
    /// No audit recorder was given.
    #[error("the audit recorder is missing")]
    MissingAudit,
    /// No clock was given.
    #[error("the clock is missing")]
    MissingClock,
    /// A public path is empty, absolute, or holds `..`, `?`, `#` or `%`.
    #[error("a public path is not a plain relative path")]
    InvalidPublicPath,
    /// The concurrency limit or the response size limit is zero.
    #[error("limits must be greater than zero")]
    ZeroLimit,
}

/// The guard's validated configuration; build one with [`GuardConfig::builder`].
///
/// Cheap to clone (everything shared is behind an `Arc`).
#[derive(Clone)]
pub struct GuardConfig {
    pub(crate) base_path: String,
    pub(crate) base_url: Option<String>,
    pub(crate) sanitizer: Arc<Sanitizer>,
    pub(crate) validator: Arc<dyn TokenValidation>,
    pub(crate) grants: Arc<dyn GrantStatusSource>,
    pub(crate) registry: Arc<CategoryRegistry>,
    pub(crate) audit: Arc<dyn AuditRecorder>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rate_limiter: Option<Arc<dyn RateLimit>>,
    pub(crate) enforce: EnforceConfig,
    pub(crate) public_paths: Vec<String>,
    pub(crate) headers: SecurityHeaders,
    pub(crate) max_response_bytes: usize,
    pub(crate) max_concurrency: Option<usize>,
    pub(crate) purpose: Option<PurposeOfUse>,
    pub(crate) allow_grantless: bool,
    pub(crate) anomaly: Option<Arc<AnomalyDetector>>,
    pub(crate) anomaly_hook: Option<Arc<dyn AnomalyHook>>,
    pub(crate) cors: Option<Arc<CorsPolicy>>,
}

impl fmt::Debug for GuardConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardConfig")
            .field("base_path", &self.base_path)
            .field("enforce", &self.enforce)
            .field("public_paths", &self.public_paths)
            .field("rate_limited", &self.rate_limiter.is_some())
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_concurrency", &self.max_concurrency)
            .field("allow_grantless", &self.allow_grantless)
            .finish_non_exhaustive()
    }
}

impl GuardConfig {
    /// A builder with nothing set; [`GuardConfigBuilder::build`] says what is missing.
    pub fn builder() -> GuardConfigBuilder {
        GuardConfigBuilder::default()
    }

    /// The FHIR base path (`/fhir`, or `""` for the root).
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// The FHIR base URL, when the builder was given a URL rather than a path.
    pub fn base_url(&self) -> Option<&str> {
        self.base_url.as_deref()
    }

    /// The enforcement settings.
    pub fn enforce(&self) -> EnforceConfig {
        self.enforce
    }

    /// The sanitizer.
    pub fn sanitizer(&self) -> &Sanitizer {
        &self.sanitizer
    }

    /// The paths (relative to the base) that pass without a token.
    pub fn public_paths(&self) -> &[String] {
        &self.public_paths
    }
}

enum SanitizerInput {
    Built(Arc<Sanitizer>),
    Config(Box<SanitizerConfig>),
}

/// Builds a [`GuardConfig`]. Required: the FHIR base, a sanitizer (or its configuration), a
/// token validator, a grant status source, a category registry, an audit recorder and a clock.
#[must_use]
#[derive(Default)]
pub struct GuardConfigBuilder {
    base: Option<String>,
    sanitizer: Option<SanitizerInput>,
    validator: Option<Arc<dyn TokenValidation>>,
    grants: Option<Arc<dyn GrantStatusSource>>,
    registry: Option<Arc<CategoryRegistry>>,
    audit: Option<Arc<dyn AuditRecorder>>,
    clock: Option<Arc<dyn Clock>>,
    rate_limiter: Option<Arc<dyn RateLimit>>,
    enforce: EnforceConfig,
    public_paths: Option<Vec<String>>,
    headers: Option<SecurityHeaders>,
    max_response_bytes: Option<usize>,
    max_concurrency: Option<usize>,
    purpose: Option<Option<PurposeOfUse>>,
    allow_grantless: bool,
    anomaly: Option<Arc<AnomalyDetector>>,
    anomaly_hook: Option<Arc<dyn AnomalyHook>>,
    cors: Option<Arc<CorsPolicy>>,
}

impl fmt::Debug for GuardConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardConfigBuilder")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl GuardConfigBuilder {
    /// The FHIR base: a path (`/fhir`, `""` for the root) or the base URL
    /// (`https://ehr.example.org/fhir`, whose path is used).
    pub fn fhir_base(mut self, base: impl Into<String>) -> Self {
        self.base = Some(base.into());
        self
    }

    /// The sanitizer to use.
    pub fn sanitizer(mut self, sanitizer: impl Into<Arc<Sanitizer>>) -> Self {
        self.sanitizer = Some(SanitizerInput::Built(sanitizer.into()));
        self
    }

    /// A sanitizer configuration, validated by [`GuardConfigBuilder::build`].
    pub fn sanitizer_config(mut self, config: SanitizerConfig) -> Self {
        self.sanitizer = Some(SanitizerInput::Config(Box::new(config)));
        self
    }

    /// The access-token validator: an `Arc<AuthorizationServer>`, an
    /// `Arc<AccessTokenValidator>`, or the host's own [`TokenValidation`].
    pub fn validator(mut self, validator: Arc<dyn TokenValidation>) -> Self {
        self.validator = Some(validator);
        self
    }

    /// Where the guard asks whether a token's grant is still active (the approved categories
    /// come from [`ActiveGrant::categories`](crate::consent::ActiveGrant::categories)).
    pub fn grants(mut self, grants: Arc<dyn GrantStatusSource>) -> Self {
        self.grants = Some(grants);
        self
    }

    /// The category registry enforcement classifies with.
    pub fn registry(mut self, registry: Arc<CategoryRegistry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Where audit records go (the crate's [`AuditLog`](crate::audit::AuditLog) or the host's
    /// own [`AuditRecorder`]).
    pub fn audit(mut self, audit: Arc<dyn AuditRecorder>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The clock every expiry and limit is decided against.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Rate limits (class [`EndpointClass::FhirRead`](crate::abuse::EndpointClass::FhirRead),
    /// keyed by address before token validation and by client, grant and patient after).
    pub fn rate_limiter(mut self, limiter: Arc<dyn RateLimit>) -> Self {
        self.rate_limiter = Some(limiter);
        self
    }

    /// Enforcement settings (read-only deployment, concealment as 404 or 403).
    pub fn enforce(mut self, config: EnforceConfig) -> Self {
        self.enforce = config;
        self
    }

    /// Replaces the public paths (relative to the base; default [`DEFAULT_PUBLIC_PATHS`]).
    pub fn public_paths<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.public_paths = Some(paths.into_iter().map(Into::into).collect());
        self
    }

    /// The security headers set on every response.
    pub fn security_headers(mut self, headers: SecurityHeaders) -> Self {
        self.headers = Some(headers);
        self
    }

    /// The largest handler response read (default [`DEFAULT_MAX_RESPONSE_BYTES`]).
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = Some(max);
        self
    }

    /// At most `max` requests in the guard at once; more get `503` (audited).
    pub fn max_concurrency(mut self, max: usize) -> Self {
        self.max_concurrency = Some(max);
        self
    }

    /// The purpose of use recorded in audit records (default: patient request, the HIPAA
    /// right of access); `None` records none.
    pub fn purpose_of_use(mut self, purpose: Option<PurposeOfUse>) -> Self {
        self.purpose = Some(purpose);
        self
    }

    /// Lets tokens without a consent grant through (backend services): their scopes alone
    /// bound them and every registry category counts as granted. Off by default.
    pub fn allow_grantless_tokens(mut self, allow: bool) -> Self {
        self.allow_grantless = allow;
        self
    }

    /// Watches every served request of a grant for rate and breadth jumps.
    pub fn anomaly_detector(mut self, detector: Arc<AnomalyDetector>) -> Self {
        self.anomaly = Some(detector);
        self
    }

    /// Called with every anomaly signal (alerting, notifying the patient).
    pub fn anomaly_hook(mut self, hook: Arc<dyn AnomalyHook>) -> Self {
        self.anomaly_hook = Some(hook);
        self
    }

    /// CORS for the FHIR API: public paths open to any origin, everything else only to the
    /// policy's registered origins. Without a policy, cross-origin requests get no CORS headers
    /// (browsers then refuse them) and preflights are refused.
    pub fn cors(mut self, cors: Arc<CorsPolicy>) -> Self {
        self.cors = Some(cors);
        self
    }

    /// Validates everything and builds the configuration.
    pub fn build(self) -> Result<GuardConfig, GuardConfigError> {
        let base = self.base.ok_or(GuardConfigError::MissingBase)?;
        let (base_path, base_url) = split_base(&base)?;
        let sanitizer = match self.sanitizer.ok_or(GuardConfigError::MissingSanitizer)? {
            SanitizerInput::Built(s) => s,
            SanitizerInput::Config(c) => {
                Arc::new(Sanitizer::new(*c).map_err(GuardConfigError::Sanitizer)?)
            }
        };
        if sanitizer.config().base_path != base_path {
            return Err(GuardConfigError::BasePathMismatch);
        }
        let public_paths = match self.public_paths {
            Some(p) => p,
            None => DEFAULT_PUBLIC_PATHS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        };
        for p in &public_paths {
            let bad = p.is_empty()
                || p.starts_with('/')
                || p.split('/').any(|seg| seg.is_empty() || seg == "..")
                || p.contains(['?', '#', '%']);
            if bad {
                return Err(GuardConfigError::InvalidPublicPath);
            }
        }
        let max_response_bytes = self
            .max_response_bytes
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
        if max_response_bytes == 0 || self.max_concurrency == Some(0) {
            return Err(GuardConfigError::ZeroLimit);
        }
        Ok(GuardConfig {
            base_path,
            base_url,
            sanitizer,
            validator: self.validator.ok_or(GuardConfigError::MissingValidator)?,
            grants: self.grants.ok_or(GuardConfigError::MissingGrants)?,
            registry: self.registry.ok_or(GuardConfigError::MissingRegistry)?,
            audit: self.audit.ok_or(GuardConfigError::MissingAudit)?,
            clock: self.clock.ok_or(GuardConfigError::MissingClock)?,
            rate_limiter: self.rate_limiter,
            enforce: self.enforce,
            public_paths,
            headers: self.headers.unwrap_or_default(),
            max_response_bytes,
            max_concurrency: self.max_concurrency,
            purpose: self.purpose.unwrap_or(Some(PurposeOfUse::PatientRequest)),
            allow_grantless: self.allow_grantless,
            anomaly: self.anomaly,
            anomaly_hook: self.anomaly_hook,
            cors: self.cors,
        })
    }
}

/// `/fhir` → (`/fhir`, None); `https://h/fhir` → (`/fhir`, Some(url)).
fn split_base(base: &str) -> Result<(String, Option<String>), GuardConfigError> {
    if base.ends_with('/') {
        return Err(GuardConfigError::InvalidBase);
    }
    if base.is_empty() || base.starts_with('/') {
        if base.contains(['?', '#', '%']) || base.contains("//") {
            return Err(GuardConfigError::InvalidBase);
        }
        return Ok((base.to_owned(), None));
    }
    let rest = base
        .strip_prefix("https://")
        .or_else(|| base.strip_prefix("http://"))
        .ok_or(GuardConfigError::InvalidBase)?;
    if rest.contains(['?', '#', '%', '@']) {
        return Err(GuardConfigError::InvalidBase);
    }
    let path = match rest.find('/') {
        Some(i) => &rest[i..],
        None => "",
    };
    if rest.is_empty() || path.contains("//") || path.starts_with("/..") {
        return Err(GuardConfigError::InvalidBase);
    }
    Ok((path.to_owned(), Some(base.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_are_split() {
        assert_eq!(split_base("/fhir").unwrap(), ("/fhir".into(), None));
        assert_eq!(split_base("").unwrap(), ("".into(), None));
        assert_eq!(
            split_base("https://ehr.example.org/fhir").unwrap().0,
            "/fhir"
        );
        assert_eq!(split_base("https://ehr.example.org").unwrap().0, "");
        for bad in [
            "/fhir/",
            "ftp://x/fhir",
            "fhir",
            "https://x/f?x=1",
            "https://u@x/f",
        ] {
            assert_eq!(split_base(bad), Err(GuardConfigError::InvalidBase), "{bad}");
        }
    }

    #[test]
    fn builder_names_what_is_missing() {
        assert_eq!(
            GuardConfig::builder().build().unwrap_err(),
            GuardConfigError::MissingBase
        );
        assert_eq!(
            GuardConfig::builder()
                .fhir_base("/fhir")
                .build()
                .unwrap_err(),
            GuardConfigError::MissingSanitizer
        );
        assert_eq!(
            GuardConfig::builder()
                .fhir_base("/fhir")
                .sanitizer_config(SanitizerConfig::us_core("/api"))
                .build()
                .unwrap_err(),
            GuardConfigError::BasePathMismatch
        );
        assert_eq!(
            GuardConfig::builder()
                .fhir_base("/fhir")
                .sanitizer_config(SanitizerConfig::us_core("/fhir"))
                .build()
                .unwrap_err(),
            GuardConfigError::MissingValidator
        );
    }
}
