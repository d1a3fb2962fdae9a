//! Response-header hygiene.
//!
//! Removes headers that advertise server software and sets the security headers every
//! response of a PHI-bearing API needs. Apply [`SecurityHeaders::apply`] to every response on
//! the way out (the middleware does; [`crate::fhir::error_response`] does for errors).

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// What a response carries, which decides its caching and framing headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseKind {
    /// FHIR data, tokens, or anything about a patient: `Cache-Control: no-store`.
    Phi,
    /// An HTML page (portal, approval screen): no-store, strict CSP, no framing.
    Html,
    /// Public, non-personal data (discovery documents, CapabilityStatement, JWKS).
    Public,
}

/// Headers that disclose server software or framework versions; always removed.
pub const DISCLOSING_HEADERS: &[&str] = &[
    "server",
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-runtime",
    "x-version",
    "x-generator",
    "x-backend-server",
    "via",
];

/// [`DISCLOSING_HEADERS`] as header names, parsed once (a unit test keeps the two lists equal).
static DISCLOSING_NAMES: [HeaderName; 9] = [
    HeaderName::from_static("server"),
    HeaderName::from_static("x-powered-by"),
    HeaderName::from_static("x-aspnet-version"),
    HeaderName::from_static("x-aspnetmvc-version"),
    HeaderName::from_static("x-runtime"),
    HeaderName::from_static("x-version"),
    HeaderName::from_static("x-generator"),
    HeaderName::from_static("x-backend-server"),
    HeaderName::from_static("via"),
];

/// The strict Content-Security-Policy for HTML pages: nothing but same-origin scripts,
/// styles, images and form targets; no plugins, no `<base>` tricks, no framing.
pub const STRICT_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; \
object-src 'none'; frame-ancestors 'none'";

/// Which security headers to set. The defaults are the safe ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityHeaders {
    /// `Strict-Transport-Security` value (`None` disables it, e.g. behind a TLS terminator
    /// that sets its own).
    pub hsts: Option<HeaderValue>,
    /// `Referrer-Policy` value.
    pub referrer_policy: HeaderValue,
    /// `Content-Security-Policy` for HTML pages.
    pub html_csp: HeaderValue,
}

impl Default for SecurityHeaders {
    fn default() -> Self {
        Self {
            hsts: Some(HeaderValue::from_static(
                "max-age=63072000; includeSubDomains",
            )),
            referrer_policy: HeaderValue::from_static("no-referrer"),
            html_csp: HeaderValue::from_static(STRICT_CSP),
        }
    }
}

impl SecurityHeaders {
    /// Removes disclosing headers and sets the security headers for a response of `kind`.
    ///
    /// An HTML response that already carries a `Content-Security-Policy` keeps it; all other
    /// headers are set whatever the response had.
    pub fn apply(&self, headers: &mut HeaderMap, kind: ResponseKind) {
        // A response rarely carries one: look first (a handful of keys against typed names)
        // instead of parsing and hashing nine names for every response.
        if headers.keys().any(|k| DISCLOSING_NAMES.contains(k)) {
            for name in &DISCLOSING_NAMES {
                headers.remove(name);
            }
        }
        if let Some(hsts) = &self.hsts {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(header::REFERRER_POLICY, self.referrer_policy.clone());
        match kind {
            ResponseKind::Phi | ResponseKind::Html => {
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            }
            ResponseKind::Public => {}
        }
        if kind == ResponseKind::Html {
            // A page that set its own policy keeps it: it is page-specific on purpose (an
            // approval form that ends in a redirect to the app must name the app's origin in
            // `form-action`, or the browser blocks the redirect). Every other page gets the
            // strict default.
            if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
                headers.insert(header::CONTENT_SECURITY_POLICY, self.html_csp.clone());
            }
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            headers.insert(
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_html_page_keeps_its_own_policy_and_others_get_the_strict_one() {
        let headers = SecurityHeaders::default();
        let own =
            HeaderValue::from_static("default-src 'none'; form-action 'self' https://app.example");
        let mut page = HeaderMap::new();
        page.insert(header::CONTENT_SECURITY_POLICY, own.clone());
        headers.apply(&mut page, ResponseKind::Html);
        assert_eq!(page[header::CONTENT_SECURITY_POLICY], own);
        assert_eq!(page[header::X_FRAME_OPTIONS], "DENY");
        let mut plain = HeaderMap::new();
        headers.apply(&mut plain, ResponseKind::Html);
        assert_eq!(plain[header::CONTENT_SECURITY_POLICY], STRICT_CSP);
    }

    #[test]
    fn the_typed_names_are_the_documented_list() {
        let typed: Vec<&str> = DISCLOSING_NAMES.iter().map(HeaderName::as_str).collect();
        assert_eq!(typed, DISCLOSING_HEADERS);
        // Every one is removed, alone or among others.
        for name in DISCLOSING_HEADERS {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            h.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static("x/1.0"),
            );
            SecurityHeaders::default().apply(&mut h, ResponseKind::Phi);
            assert!(h.get(*name).is_none(), "{name}");
        }
    }

    #[test]
    fn strips_disclosure_and_sets_headers() {
        let mut h = HeaderMap::new();
        h.insert("server", HeaderValue::from_static("nginx/1.25.3"));
        h.insert("x-powered-by", HeaderValue::from_static("Express"));
        SecurityHeaders::default().apply(&mut h, ResponseKind::Html);
        assert!(h.get("server").is_none());
        assert!(h.get("x-powered-by").is_none());
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["cache-control"], "no-store");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        let mut p = HeaderMap::new();
        SecurityHeaders::default().apply(&mut p, ResponseKind::Public);
        assert!(p.get("cache-control").is_none());
        assert!(p.get("content-security-policy").is_none());
        assert!(p.get("strict-transport-security").is_some());
    }
}
