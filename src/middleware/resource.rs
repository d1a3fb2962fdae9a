//! [`FhirJson`]: a FHIR JSON response body that hands the guard the resource itself.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use serde_json::Value;

use crate::fhir::FHIR_JSON_MEDIA_TYPE as FHIR_JSON;

/// A FHIR resource (or Bundle) as a response body, which hands the guard the resource itself.
///
/// To check a returned resource the guard must read it. A handler that answers with bytes
/// makes the guard parse them again (a pruned parse for a read, a whole one for a search
/// Bundle it filters). A handler that already holds the resource as a `serde_json::Value`
/// can answer with [`FhirJson`] instead: the response carries the value in its extensions,
/// and the body serialises it only when someone reads the body.
///
/// * **Behind the guard** the guard takes the value out of the extensions, drops the body
///   unread, checks (or filters) the value and serialises what it checked. The bytes the
///   client receives are always written from the value the guard decided on, so there is no
///   second reading of the data that could differ from the first: a host that put other
///   bytes in the body, or wrapped it, changes nothing that is sent.
/// * **Without the guard** (or under any other server) it is an ordinary body: the value is
///   serialised once, when the server asks for the body's length, with an exact
///   `Content-Length`.
///
/// A response that carries a `Content-Encoding` has had its body transformed after the value
/// was put in; the guard refuses it rather than send the value under a wrong encoding.
///
/// Its `Debug` output names the resource type only: the content is PHI.
///
/// ```
/// use fhirguard::middleware::FhirJson;
/// use http_body::Body;
///
/// let resource = serde_json::json!({"resourceType": "Patient", "id": "355"});
/// let response = FhirJson::new(resource).into_response();
/// assert_eq!(response.headers()["content-type"], "application/fhir+json; charset=utf-8");
/// // The length is exact, so a server sends `Content-Length`, not chunks.
/// assert_eq!(response.body().size_hint().exact(), Some(37));
/// ```
pub struct FhirJson {
    value: Arc<Value>,
    bytes: OnceLock<Bytes>,
    sent: bool,
}

/// The resource a [`FhirJson`] response carries, in the response's extensions. Only
/// [`FhirJson`] puts it there; the guard takes it out.
#[derive(Clone)]
pub(crate) struct TypedResource(pub(crate) Arc<Value>);

fn resource_type(value: &Value) -> &str {
    value
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("?")
}

impl fmt::Debug for FhirJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FhirJson")
            .field("resource_type", &resource_type(&self.value))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for TypedResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TypedResource")
            .field(&resource_type(&self.0))
            .finish()
    }
}

impl FhirJson {
    /// A body holding `value`.
    pub fn new(value: Value) -> Self {
        Self {
            value: Arc::new(value),
            bytes: OnceLock::new(),
            sent: false,
        }
    }

    /// A `200 OK` response with this body, `Content-Type: application/fhir+json`, and the value
    /// in its extensions for the guard.
    pub fn into_response(self) -> Response<FhirJson> {
        self.into_response_with_status(StatusCode::OK)
    }

    /// As [`FhirJson::into_response`], with another status (`201 Created` after a create).
    pub fn into_response_with_status(self, status: StatusCode) -> Response<FhirJson> {
        let typed = TypedResource(Arc::clone(&self.value));
        let mut response = Response::new(self);
        *response.status_mut() = status;
        // Room for the guard's security headers and request id too, so that they do not
        // reallocate the map the handler's header went into.
        *response.headers_mut() = http::HeaderMap::with_capacity(12);
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        response.extensions_mut().insert(typed);
        response
    }

    /// The resource.
    pub fn value(&self) -> &Value {
        &self.value
    }

    fn bytes(&self) -> &Bytes {
        // Serialising a `Value` cannot fail (its object keys are strings); an empty body
        // would be the answer should that ever change, never a panic.
        self.bytes.get_or_init(|| {
            serde_json::to_vec(&*self.value).map_or_else(|_| Bytes::new(), Bytes::from)
        })
    }
}

impl Body for FhirJson {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.sent {
            return Poll::Ready(None);
        }
        this.sent = true;
        let bytes = this.bytes().clone();
        if bytes.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent
    }

    fn size_hint(&self) -> SizeHint {
        if self.sent {
            return SizeHint::with_exact(0);
        }
        SizeHint::with_exact(self.bytes().len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serde_json::json;

    #[test]
    fn serialises_once_with_an_exact_length() {
        let resource = json!({"resourceType": "Observation", "id": "1", "status": "final"});
        let response = FhirJson::new(resource.clone()).into_response();
        assert_eq!(response.headers()[header::CONTENT_TYPE], FHIR_JSON);
        let typed = response.extensions().get::<TypedResource>().map(|t| &*t.0);
        assert_eq!(typed, Some(&resource));
        let body = response.into_body();
        let expected = serde_json::to_vec(&resource).unwrap();
        assert_eq!(body.size_hint().exact(), Some(expected.len() as u64));
        let collected = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(body.collect())
            .unwrap()
            .to_bytes();
        assert_eq!(collected, expected);
    }

    #[test]
    fn debug_output_names_the_type_only() {
        let body = FhirJson::new(json!({"resourceType": "Patient", "name": [{"family": "Smith"}]}));
        let shown = format!("{body:?} {:?}", TypedResource(Arc::clone(&body.value)));
        assert!(shown.contains("Patient"));
        assert!(!shown.contains("Smith"));
    }
}
