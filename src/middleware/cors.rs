//! CORS as the SMART App Launch guide asks: discovery documents, JWKS and the
//! CapabilityStatement are open to any origin; the token endpoint and the FHIR API only to the
//! origins of registered apps.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

/// Answers whether a browser origin (`https://app.example.org`) belongs to a registered app.
///
/// Implement it over the host's client registry (the origins of the apps' redirect URIs), or
/// use the fixed list in [`CorsPolicy::with_origins`].
pub trait OriginRegistry: Send + Sync {
    /// Whether `origin` (the exact `Origin` header value) is registered.
    fn is_registered(&self, origin: &str) -> bool;
}

impl OriginRegistry for BTreeSet<String> {
    fn is_registered(&self, origin: &str) -> bool {
        self.contains(origin)
    }
}

impl<T: OriginRegistry + ?Sized> OriginRegistry for Arc<T> {
    fn is_registered(&self, origin: &str) -> bool {
        (**self).is_registered(origin)
    }
}

/// Which CORS rule a resource falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorsClass {
    /// Any origin (`Access-Control-Allow-Origin: *`, no credentials): discovery, JWKS,
    /// `/metadata`.
    Public,
    /// Registered origins only, echoed with `Vary: Origin`: the token endpoint, the FHIR API.
    Registered,
}

/// The CORS policy: which origins are registered, and the headers preflights allow.
#[derive(Clone)]
pub struct CorsPolicy {
    origins: Arc<dyn OriginRegistry>,
    max_age_seconds: u32,
}

impl fmt::Debug for CorsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CorsPolicy")
            .field("max_age_seconds", &self.max_age_seconds)
            .finish_non_exhaustive()
    }
}

const ALLOW_HEADERS: &str =
    "authorization, content-type, accept, prefer, if-match, if-none-match, x-request-id";
const EXPOSE_HEADERS: &str =
    "location, etag, last-modified, content-location, retry-after, www-authenticate, x-request-id";

impl CorsPolicy {
    /// A policy over the host's registry of origins.
    pub fn new(origins: Arc<dyn OriginRegistry>) -> Self {
        Self {
            origins,
            max_age_seconds: 600,
        }
    }

    /// A policy over a fixed list of registered origins (`https://app.example.org`, no path).
    pub fn with_origins<I, S>(origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let set: BTreeSet<String> = origins.into_iter().map(Into::into).collect();
        Self::new(Arc::new(set))
    }

    /// How long a browser may cache a preflight answer (default 600 s).
    #[must_use]
    pub fn max_age_seconds(mut self, seconds: u32) -> Self {
        self.max_age_seconds = seconds;
        self
    }

    /// Whether a request from `origin` may read a resource of `class`.
    pub fn allows(&self, class: CorsClass, origin: &HeaderValue) -> bool {
        match class {
            CorsClass::Public => true,
            CorsClass::Registered => origin
                .to_str()
                .is_ok_and(|o| o != "null" && self.origins.is_registered(o)),
        }
    }

    /// Adds the CORS headers for an actual (non-preflight) response. Returns `false` when the
    /// request carried an `Origin` the class does not allow (no CORS headers are added; the
    /// browser then withholds the response from the page).
    pub fn apply(
        &self,
        class: CorsClass,
        origin: Option<&HeaderValue>,
        response: &mut HeaderMap,
    ) -> bool {
        let Some(origin) = origin else {
            if class == CorsClass::Registered {
                append_vary(response);
            }
            return true;
        };
        match class {
            CorsClass::Public => {
                response.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
                response.insert(
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static(EXPOSE_HEADERS),
                );
                true
            }
            CorsClass::Registered => {
                append_vary(response);
                if !self.allows(class, origin) {
                    return false;
                }
                response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                response.insert(
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static(EXPOSE_HEADERS),
                );
                true
            }
        }
    }

    /// Answers a preflight (`OPTIONS` with `Access-Control-Request-Method`) for a resource of
    /// `class` accepting `methods`: `204` with the allow headers, or `403` without any when the
    /// origin or method is not allowed. Returns `None` when the request is not a preflight.
    pub fn preflight(
        &self,
        class: CorsClass,
        method: &Method,
        request: &HeaderMap,
        methods: &[Method],
    ) -> Option<Response<Vec<u8>>> {
        if method != Method::OPTIONS {
            return None;
        }
        let origin = request.get(header::ORIGIN)?;
        let wanted = request.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        let method_ok = wanted
            .to_str()
            .ok()
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .is_some_and(|m| methods.contains(&m));
        let mut response = Response::new(Vec::new());
        if !method_ok || !self.allows(class, origin) {
            *response.status_mut() = StatusCode::FORBIDDEN;
            append_vary(response.headers_mut());
            return Some(response);
        }
        *response.status_mut() = StatusCode::NO_CONTENT;
        let h = response.headers_mut();
        match class {
            CorsClass::Public => {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
            }
            CorsClass::Registered => {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                append_vary(h);
            }
        }
        let list = methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(v) = HeaderValue::from_str(&list) {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(self.max_age_seconds),
        );
        Some(response)
    }
}

fn append_vary(headers: &mut HeaderMap) {
    let already = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("origin"))
    });
    if !already {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        h
    }

    fn o(origin: &str) -> Option<HeaderValue> {
        Some(HeaderValue::from_str(origin).unwrap())
    }

    #[test]
    fn public_is_open_registered_is_not() {
        let cors = CorsPolicy::with_origins(["https://app.example.org"]);
        let mut out = HeaderMap::new();
        assert!(cors.apply(
            CorsClass::Public,
            o("https://evil.example").as_ref(),
            &mut out
        ));
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");

        let mut out = HeaderMap::new();
        assert!(!cors.apply(
            CorsClass::Registered,
            o("https://evil.example").as_ref(),
            &mut out
        ));
        assert!(out.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(out[header::VARY], "Origin");

        let mut out = HeaderMap::new();
        assert!(cors.apply(
            CorsClass::Registered,
            o("https://app.example.org").as_ref(),
            &mut out
        ));
        assert_eq!(
            out[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.org"
        );

        let mut out = HeaderMap::new();
        assert!(!cors.apply(CorsClass::Registered, o("null").as_ref(), &mut out));
    }

    #[test]
    fn preflight() {
        let cors = CorsPolicy::with_origins(["https://app.example.org"]);
        let mut h = req("https://app.example.org");
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        let ok = cors
            .preflight(CorsClass::Registered, &Method::OPTIONS, &h, &[Method::POST])
            .unwrap();
        assert_eq!(ok.status(), StatusCode::NO_CONTENT);
        assert_eq!(ok.headers()[header::ACCESS_CONTROL_ALLOW_METHODS], "POST");
        let no = cors
            .preflight(CorsClass::Registered, &Method::OPTIONS, &h, &[Method::GET])
            .unwrap();
        assert_eq!(no.status(), StatusCode::FORBIDDEN);
        assert!(
            cors.preflight(CorsClass::Registered, &Method::GET, &h, &[Method::GET])
                .is_none()
        );
    }
}
