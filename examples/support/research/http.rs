//! A small async HTTP/1.1 client over hyper + tokio-rustls (ring provider), trusting one CA:
//! the demo EHR's. It is what the research app hands to `oauth2` and `openidconnect` (their
//! `AsyncHttpClient` trait), and what the scripted patient "browser" uses for the portal.
//!
//! One connection per request, no pooling, no redirects followed: a test client, small enough
//! to read in a minute. `http://` URLs are allowed for loopback only (the app's own callback).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, pki_types};

/// Largest response body read (the biggest demo search page is far smaller).
const MAX_RESPONSE: usize = 16 * 1024 * 1024;
/// Per-request time limit (connect, TLS, request and response).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request failed before an HTTP response arrived.
#[derive(Debug)]
pub struct HttpError(String);

impl HttpError {
    fn new(m: impl Into<String>) -> Self {
        Self(m.into())
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

/// The client: a rustls configuration whose only root is the given CA.
#[derive(Clone)]
pub struct HttpsClient {
    tls: TlsConnector,
}

impl HttpsClient {
    /// A client trusting the CA certificate(s) in `pem` (e.g. the demo's `ca_cert` file).
    pub fn trusting_pem(pem: &[u8]) -> Result<Self, HttpError> {
        use pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        for cert in pki_types::CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| HttpError::new(format!("CA certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| HttpError::new(format!("CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(HttpError::new("CA certificate: no certificate in the file"));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpError::new(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// A client trusting the CA certificate file at `path`.
    pub fn trusting_file(path: &std::path::Path) -> Result<Self, HttpError> {
        let pem = std::fs::read(path)
            .map_err(|e| HttpError::new(format!("reading {}: {e}", path.display())))?;
        Self::trusting_pem(&pem)
    }

    /// Sends one request (absolute URI) and reads the whole response.
    pub async fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, HttpError> {
        tokio::time::timeout(TIMEOUT, self.send_inner(request))
            .await
            .map_err(|_| HttpError::new("request timed out"))?
    }

    async fn send_inner(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, HttpError> {
        let (mut parts, body) = request.into_parts();
        let uri = parts.uri.clone();
        let host = uri
            .host()
            .ok_or_else(|| HttpError::new("URL has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => {
                // Plain HTTP only to this machine (the app's loopback callback).
                if !host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
                    return Err(HttpError::new("plain http:// is only allowed to loopback"));
                }
                false
            }
            _ => return Err(HttpError::new("URL scheme must be https")),
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        // Origin-form request target plus a Host header, as HTTP/1.1 wants.
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = target
            .parse::<Uri>()
            .map_err(|e| HttpError::new(format!("bad URL: {e}")))?;
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        parts.headers.insert(
            header::HOST,
            HeaderValue::from_str(&authority).map_err(|_| HttpError::new("bad host"))?,
        );
        if !body.is_empty() || parts.method == http::Method::POST {
            parts.headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from_str(&body.len().to_string())
                    .map_err(|_| HttpError::new("bad length"))?,
            );
        }
        let request = Request::from_parts(parts, Full::new(Bytes::from(body)));

        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| HttpError::new(format!("connecting to {host}:{port}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        if https {
            let name = pki_types::ServerName::try_from(host.clone())
                .map_err(|_| HttpError::new("bad server name"))?;
            let tls =
                self.tls.connect(name, tcp).await.map_err(|e| {
                    HttpError::new(format!("TLS handshake with {host}:{port}: {e}"))
                })?;
            exchange(TokioIo::new(tls), request).await
        } else {
            exchange(TokioIo::new(tcp), request).await
        }
    }
}

async fn exchange<T>(io: T, request: Request<Full<Bytes>>) -> Result<Response<Vec<u8>>, HttpError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| HttpError::new(format!("HTTP handshake: {e}")))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| HttpError::new(format!("HTTP request: {e}")))?;
    let (parts, body) = response.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_RESPONSE);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| HttpError::new(format!("reading the response: {e}")))?
        .to_bytes();
    drop(sender);
    driver.abort();
    Ok(Response::from_parts(parts, bytes.to_vec()))
}

/// The boxed future `oauth2`/`openidconnect` get from this client.
pub type HttpFuture<'c> =
    Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send + 'c>>;

impl<'c> oauth2::AsyncHttpClient<'c> for HttpsClient {
    type Error = HttpError;
    type Future = HttpFuture<'c>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
